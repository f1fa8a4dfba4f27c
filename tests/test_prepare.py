"""Row building: any scope becomes a row of valid text, without raising; long values are capped."""

from __future__ import annotations

import importlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from asgi_log_to_sqlite import prepare as record
from asgi_log_to_sqlite.exchange import Exchange
from asgi_log_to_sqlite.options import Options
from asgi_log_to_sqlite.prepare import RowBuilder as _RowBuilder
from asgi_log_to_sqlite.prepare import text
from asgi_log_to_sqlite.schema import REQUEST_COLUMNS

COLUMNS = list(REQUEST_COLUMNS)


def Policy(options):
    return options


def default_policy():
    return Options()


def RowBuilder(options, cap):
    return _RowBuilder(Options.from_kwargs({**_given(options), "max_value_length": cap}))


def _given(options):
    return {name: getattr(options, name) for name in options.__dataclass_fields__
            if getattr(options, name) != getattr(Options(), name) and name != "max_value_length"}


def to_row(exchange, cap, policy=None):
    """One exchange's row (or why it is left out) with a fresh builder."""
    return RowBuilder(policy or default_policy(), cap).build(exchange)


def row_of(scope, cap=4096, **facts):
    exchange = Exchange(scope, 1_700_000_000.5, 0.0)
    exchange.status = 200
    exchange.duration = 0.25
    for name, value in facts.items():
        setattr(exchange, name, value)
    row = to_row(exchange, cap)
    assert len(row) == len(COLUMNS)
    return dict(zip(COLUMNS, row, strict=False))


def http_scope(**extra):
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [],
        "scheme": "http",
        "http_version": "1.1",
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    scope.update(extra)
    return scope


def assert_valid_text(row):
    for value in row.values():
        if isinstance(value, str):
            value.encode("utf-8")  # no lone surrogates: SQLite would reject them


def test_plain_request():
    row = row_of(
        http_scope(
            path="/blog/2024/",
            query_string=b"page=2",
            headers=[
                (b"host", b"example.com"),
                (b"user-agent", b"curl/8"),
                (b"referer", b"https://example.com/"),
                (b"accept-language", b"en"),
            ],
        ),
        response_headers=[(b"content-type", b"text/html")],
        body_size=12,
        request_body_size=3,
        ttfb=0.1,
    )
    assert row == {
        "start": 1_700_000_000.5,
        "method": "GET",
        "path": "/blog/2024/",
        "query_string": "?page=2",
        "user_agent": "curl/8",
        "referer": "https://example.com/",
        "accept_language": "en",
        "http_status": 200,
        "content_type": "text/html",
        "client_ip": "127.0.0.1",
        "duration": 0.25,
        "body_size": 12,
        "host": "example.com",
        "scheme": "http",
        "http_version": "1.1",
        "request_body_size": 3,
        "ttfb": 0.1,
        "exception": None,
        "disconnected": 0,
        "connection_type": "http",
        "peer_ip": None,
        "route": None,
        "actor": None,
        "sample_rate": 1.0,
        "visitor": None,
        "instance": socket.gethostname(),
    }


def test_instance_is_the_option_or_the_host_name():
    assert row_of(http_scope())["instance"] == socket.gethostname()
    exchange = Exchange(http_scope(), 1_700_000_000.5, 0.0)
    row = to_row(exchange, 4096, Options.from_kwargs({"instance": "web-3"}))
    assert dict(zip(COLUMNS, row, strict=True))["instance"] == "web-3"


def test_empty_values_are_null():
    row = row_of(http_scope(headers=[(b"user-agent", b""), (b"referer", b"")]))
    assert row["query_string"] is None
    assert row["user_agent"] is None
    assert row["referer"] is None
    assert row["content_type"] is None


def test_host_falls_back_to_server():
    assert row_of(http_scope())["host"] == "127.0.0.1:8000"
    assert row_of(http_scope(server=("unix.sock", None)))["host"] == "unix.sock"
    assert row_of(http_scope(server=None))["host"] is None


def test_non_utf8_bytes_become_escapes():
    row = row_of(
        http_scope(
            path="/caf\udcc3",  # what a server decoding with surrogateescape hands over
            raw_path=b"/caf\xc3",
            query_string=b"q=\xff\xfe",
            headers=[(b"user-agent", b"bot \xff"), (b"referer", b"\xc3\x28")],
        )
    )
    assert_valid_text(row)
    assert row["query_string"] == "?q=\\xff\\xfe"
    assert row["user_agent"] == "bot \\xff"
    assert row["referer"] == "\\xc3("
    assert row["path"].startswith("/caf")


def test_valid_utf8_is_lossless():
    row = row_of(
        http_scope(
            path="/café/日本",
            query_string="q=ünï".encode(),
            headers=[(b"user-agent", "Agent ✓".encode())],
        )
    )
    assert row["path"] == "/café/日本"
    assert row["query_string"] == "?q=ünï"
    assert row["user_agent"] == "Agent ✓"


def test_odd_header_case_and_duplicates():
    row = row_of(
        http_scope(
            headers=[
                (b"User-Agent", b"first"),
                (b"USER-AGENT", b"second"),
                (b"ReFeReR", b"https://a/"),
                (b"Host", b"h1"),
                (b"host", b"h2"),
            ]
        ),
        response_headers=[(b"Content-Type", b"text/plain"), (b"content-type", b"text/html")],
    )
    assert row["user_agent"] == "first"
    assert row["referer"] == "https://a/"
    assert row["host"] == "h1"
    assert row["content_type"] == "text/plain"


def test_long_values_are_capped():
    big = b"a" * 65536
    row = row_of(
        http_scope(path="/" + "p" * 70000, query_string=big, headers=[(b"user-agent", big)]),
        cap=100,
    )
    assert len(row["path"]) == 100
    assert len(row["query_string"]) == 100 and row["query_string"].startswith("?a")
    assert row["user_agent"] == "a" * 100


def test_no_client_and_client_none():
    scope = http_scope()
    del scope["client"]
    assert row_of(scope)["client_ip"] is None
    assert row_of(http_scope(client=None))["client_ip"] is None


def test_empty_method_and_missing_keys():
    row = row_of({"type": "http", "method": ""})
    assert row["method"] is None
    assert row["path"] is None
    assert row["scheme"] == "http"
    assert row["connection_type"] == "http"


def test_raw_path_used_when_path_missing():
    assert row_of({"type": "http", "method": "GET", "raw_path": b"/raw"})["path"] == "/raw"


def test_http2_scope():
    extensions = {"http.response.push": {}}
    row = row_of(http_scope(http_version="2", scheme="https", extensions=extensions))
    assert row["http_version"] == "2"
    assert row["scheme"] == "https"


def test_header_names_as_bytearray_and_memoryview():
    headers = [(bytearray(b"User-Agent"), b"ba"), (memoryview(b"referer"), b"mv")]
    row = row_of(http_scope(headers=headers))
    assert (row["user_agent"], row["referer"]) == ("ba", "mv")


def test_garbage_headers_are_skipped():
    row = row_of(http_scope(headers=[None, (b"user-agent",), 42, (b"user-agent", b"ok")]))
    assert row["user_agent"] == "ok"


def test_pathsend_adds_the_file_size(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"x" * 1234)
    assert row_of(http_scope(), pathsend=str(path))["body_size"] == 1234
    assert row_of(http_scope(), pathsend=str(tmp_path / "gone"))["body_size"] == 0


def test_websocket_row():
    row = row_of(
        {"type": "websocket", "path": "/ws", "headers": [], "client": ("10.0.0.1", 1)},
        status=101,
        body_size=10,
        request_body_size=4,
    )
    assert row["method"] == "GET"
    assert row["connection_type"] == "websocket"
    assert row["scheme"] == "ws"
    assert row["http_status"] == 101


def test_exception_and_disconnect():
    row = row_of(http_scope(), status=500, exception="ValueError", disconnected=True)
    assert row["exception"] == "ValueError"
    assert row["disconnected"] == 1


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        (b"", None),
        ("", None),
        (b"abc", "abc"),
        (bytearray(b"abc"), "abc"),
        (memoryview(b"abc"), "abc"),
        ("x\udcff", "x\\udcff"),
        (12, "12"),
    ],
)
def test_text(value, expected):
    assert text(value, 100) == expected


# ---- RowBuilder: one builder for many requests, memoised per raw value -------------------------

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def exchange_of(scope, **facts):
    exchange = Exchange(scope, 1_700_000_000.5, 0.0)
    exchange.status = 200
    exchange.duration = 0.25
    for name, value in facts.items():
        setattr(exchange, name, value)
    return exchange


def varied_exchanges():
    """Repeated and distinct values, secrets, probes, odd types and broken items."""
    agents = [b"curl/8", b"Mozilla/5.0 (X11) Firefox/120.0", b"kube-probe/1.27", None]
    referers = [b"https://user:pass@example.com/p?token=abc&x=1", b"https://example.com/", None]
    out = []
    for i in range(60):
        headers = [(b"host", b"example.com" if i % 4 else b"other.example")]
        agent = agents[i % len(agents)]
        if agent is not None:
            headers.append((b"user-agent", agent))
        referer = referers[i % len(referers)]
        if referer is not None:
            headers.append((b"referer", referer))
        if i % 5 == 0:
            headers.append((b"accept-language", b"de-DE,de;q=0.9"))
        out.append(
            exchange_of(
                http_scope(
                    path=["/", "/blog/1", f"/item/{i}", "/healthz", "/admin/users"][i % 5],
                    query_string=[b"", b"token=abc", b"page=2", f"q={i}".encode()][i % 4],
                    headers=headers,
                    client=(f"10.0.0.{i % 7}", 1000 + i),
                ),
                response_headers=[(b"content-type", b"text/html")],
                body_size=i,
            )
        )
    out += [
        exchange_of({"type": "websocket", "path": "/ws", "headers": [], "client": ("10.0.0.1", 1)},
                    status=101),
        exchange_of({"type": "websocket", "path": "/ws", "headers": [(b"host", b"ws.example")],
                     "scheme": "wss", "client": ("10.0.0.2", 1)}, status=101),
        # bad input: unhashable values, odd case, lists for tuples, broken items
        exchange_of(http_scope(headers=[(b"user-agent", bytearray(b"curl/8"))])),
        exchange_of(http_scope(query_string=bytearray(b"token=abc&page=2"))),
        exchange_of(http_scope(path="/caf\udcc3", raw_path=b"/caf\xc3")),
        exchange_of(http_scope(headers=[(b"User-Agent", b"Odd/1"), (b"HOST", b"Up.example")])),
        exchange_of(http_scope(headers=[[b"user-agent", b"listed/1"], [b"host", b"l.example"]])),
        exchange_of(http_scope(headers=[(b"user-agent", b"three", b"items"), (b"host", b"h")])),
        exchange_of(http_scope(headers=[(b"referer", bytearray(b"https://u:p@a.example/?sid=1"))])),
        exchange_of(http_scope(), response_headers=[(b"content-type", bytearray(b"text/css"))]),
        exchange_of({"type": "http", "method": "GET", "raw_path": bytearray(b"/raw")}),
        exchange_of(http_scope(headers=None, client=None, server=None)),
        exchange_of(http_scope(method="POST", path="", raw_path=b"/fallback")),
    ]
    return out


def policies():
    return [
        default_policy(),
        Policy(Options.from_kwargs({
            "exclude": ["/admin*"],
            "exclude_user_agents": ["Firefox"],
            "redact_query": ["page"],
            "anonymize_ip": True,
            "visitor_hash": "a shared secret for the tests",
            "max_value_length": 64,
        })),
        Policy(Options.from_kwargs({"exclude_health_checks": False, "client_ip": False})),
    ]


def assert_one_builder_matches_fresh_ones(exchanges, policy, cap):
    builder = RowBuilder(policy, cap)
    # Twice through, the second time backwards: every value is then met again from the memo.
    for exchange in exchanges + exchanges[::-1]:
        assert builder.build(exchange) == to_row(exchange, cap, policy)


@pytest.mark.parametrize("policy_index", range(3))
@pytest.mark.parametrize("cap", [4096, 12])
def test_one_builder_matches_a_fresh_builder_per_exchange(policy_index, cap):
    assert_one_builder_matches_fresh_ones(varied_exchanges(), policies()[policy_index], cap)


def test_one_builder_matches_fresh_ones_on_the_benchmark_mix(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    writer_bench = importlib.import_module("writer_bench")
    exchanges = writer_bench.records(3000)
    for policy in policies():
        builder = RowBuilder(policy, 4096)
        for exchange in exchanges:
            assert builder.build(exchange) == to_row(exchange, 4096, policy)


def test_memo_limit_overflow_keeps_results_exact(monkeypatch):
    monkeypatch.setattr(record, "MEMO_LIMIT", 5)
    exchanges = [
        exchange_of(
            http_scope(
                path=f"/p/{i % 37}",
                query_string=f"token=s{i % 23}&n={i % 11}".encode(),
                headers=[
                    (b"user-agent", f"agent/{i % 19}".encode()),
                    (b"referer", f"https://u:p@r{i % 13}.example/".encode()),
                    (b"host", f"h{i % 17}.example".encode()),
                ],
                client=(f"192.0.2.{i % 29}", 1),
            )
        )
        for i in range(400)
    ]
    for policy in policies():
        builder = RowBuilder(policy, 4096)
        for exchange in exchanges:
            assert builder.build(exchange) == to_row(exchange, 4096, policy)
        for memo in (builder._text, builder._query, builder._agent, builder._referer,
                     builder._path_verdict, builder._client):
            assert len(memo) <= 5


@pytest.mark.parametrize(
    "bytes_scope, bytearray_scope",
    [
        (http_scope(headers=[(b"user-agent", b"curl/8")]),
         http_scope(headers=[(b"user-agent", bytearray(b"curl/8"))])),
        (http_scope(headers=[(b"referer", b"https://u:p@a.example/x?token=abc")]),
         http_scope(headers=[(b"referer", bytearray(b"https://u:p@a.example/x?token=abc"))])),
        (http_scope(headers=[(b"host", b"h.example"), (b"accept-language", b"en")]),
         http_scope(headers=[(b"host", bytearray(b"h.example")),
                             (b"accept-language", bytearray(b"en"))])),
        (http_scope(query_string=b"token=abc&page=2"),
         http_scope(query_string=bytearray(b"token=abc&page=2"))),
        ({"type": "http", "method": "GET", "raw_path": b"/raw"},
         {"type": "http", "method": "GET", "raw_path": bytearray(b"/raw")}),
        (http_scope(headers=[(b"user-agent", b"kube-probe/1.27")]),
         http_scope(headers=[(b"user-agent", bytearray(b"kube-probe/1.27"))])),
    ],
)
def test_bytearray_recorded_like_bytes(bytes_scope, bytearray_scope):
    builder = RowBuilder(default_policy(), 4096)
    expected = to_row(exchange_of(bytes_scope), 4096)
    for _ in range(3):  # before and after the bytes value is in the memos
        assert builder.build(exchange_of(bytearray_scope)) == expected
        assert builder.build(exchange_of(bytes_scope)) == expected
    assert to_row(exchange_of(bytearray_scope), 4096) == expected


def test_bytearray_content_type_recorded_like_bytes():
    builder = RowBuilder(default_policy(), 4096)
    plain = builder.build(exchange_of(http_scope(), response_headers=[(b"content-type", b"a/b")]))
    odd = builder.build(
        exchange_of(http_scope(), response_headers=[(b"content-type", bytearray(b"a/b"))])
    )
    assert odd == plain
    assert dict(zip(COLUMNS, odd, strict=False))["content_type"] == "a/b"


def test_memo_does_not_leak_a_secret():
    builder = RowBuilder(default_policy(), 4096)
    scope = http_scope(
        query_string=b"token=abc&page=2",
        headers=[(b"referer", b"https://user:pass@example.com/p?token=abc")],
    )
    for _ in range(3):
        row = dict(zip(COLUMNS, builder.build(exchange_of(scope)), strict=False))
        assert row["query_string"] == "?token=REDACTED&page=2"
        assert "abc" not in row["referer"] and "user" not in row["referer"]
        assert "pass" not in row["referer"]
        assert row["referer"].startswith("https://example.com/p?token=")
    # The same secret under a bytearray (no memo) and under a capped builder.
    odd = dict(zip(COLUMNS, builder.build(exchange_of(http_scope(
        query_string=bytearray(b"token=abc")
    ))), strict=False))
    assert odd["query_string"] == "?token=REDACTED"
    capped = RowBuilder(default_policy(), 8)
    for _ in range(2):
        built = capped.build(exchange_of(http_scope(query_string=b"token=abc")))
        row = dict(zip(COLUMNS, built, strict=True))
        assert "abc" not in row["query_string"] and len(row["query_string"]) <= 8


@pytest.mark.parametrize(
    "scope",
    [
        http_scope(path="/healthz"),
        http_scope(path="/healthz/"),
        http_scope(headers=[(b"user-agent", b"kube-probe/1.27")]),
        http_scope(headers=[(b"User-Agent", b"kube-probe/1.27")]),
        http_scope(path="/healthz", headers=[(b"user-agent", b"curl/8")]),
    ],
)
def test_health_checks_are_skipped_every_time(scope):
    builder = RowBuilder(default_policy(), 4096)
    for _ in range(3):
        assert builder.build(exchange_of(scope)) == "health_check"
        assert isinstance(builder.build(exchange_of(http_scope(path="/ok"))), tuple)
    assert to_row(exchange_of(scope), 4096) == "health_check"


def test_excluded_paths_through_the_builder():
    policy = Policy(Options.from_kwargs({"exclude": ["/admin*"]}))
    builder = RowBuilder(policy, 4096)
    for _ in range(3):
        for path in ("/admin", "/admin/users", "/administrator"):
            assert builder.build(exchange_of(http_scope(path=path))) == "excluded_path"
        for path in ("/", "/public/admin", "/Admin"):
            assert isinstance(builder.build(exchange_of(http_scope(path=path))), tuple)
    # The verdict comes from the memo the second time; a fresh builder agrees.
    assert builder._path_verdict["/admin/users"] == "excluded_path"
    assert to_row(exchange_of(http_scope(path="/admin/users")), 4096, policy) == "excluded_path"
    # A health check wins over an excluded path, and agents are excluded independently.
    both = Policy(Options.from_kwargs({"exclude": ["/healthz"], "exclude_user_agents": ["bot"]}))
    builder = RowBuilder(both, 4096)
    for _ in range(2):
        assert builder.build(exchange_of(http_scope(path="/healthz"))) == "health_check"
        scope = http_scope(headers=[(b"user-agent", b"somebot/1")])
        assert builder.build(exchange_of(scope)) == "excluded_user_agent"


def test_equal_raw_values_of_other_types_are_memoised_apart():
    builder = RowBuilder(default_policy(), 4096)
    for version in (1.0, 1, True):
        exchange = exchange_of(http_scope(http_version=version))
        assert builder.build(exchange) == to_row(exchange, 4096)


def test_hooks_run_once_for_a_request_with_an_unhashable_value():
    calls = []

    def route(scope):
        calls.append(scope["path"])
        raise ValueError("broken hook")

    policy = Policy(Options.from_kwargs({"route": route}))
    builder = RowBuilder(policy, 4096)
    row = builder.build(exchange_of(http_scope(path="/x", query_string=bytearray(b"a=1"))))
    assert dict(zip(COLUMNS, row, strict=False))["query_string"] == "?a=1"
    assert calls == ["/x"]
    assert builder.detectors.errors["route_errors"] == 1


def test_bytes_and_text_of_the_same_content_under_python_bb():
    """A Host header and the server address that stands in for a missing one can be the same
    ASCII text as bytes and as str: under ``python -bb`` comparing those raises, so they must
    never meet in one memo."""
    code = """
from asgi_log_to_sqlite.exchange import Exchange
from asgi_log_to_sqlite.options import Options
from asgi_log_to_sqlite.prepare import RowBuilder
builder = RowBuilder(Options())
def scope(headers):
    return {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": headers,
            "client": ("10.0.0.1", 1), "server": ("127.0.0.1", 8000)}
rows = []
for headers in ([(b"host", b"127.0.0.1:8000")], [], [(b"host", b"127.0.0.1:8000")], []):
    exchange = Exchange(scope(headers), 1.0, 0.0)
    exchange.status = 200
    rows.append(builder.build(exchange))
assert {row[12] for row in rows} == {"127.0.0.1:8000"}, rows
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-bb", "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_percent_escapes_that_are_not_utf8_are_kept_as_escapes():
    # Servers decode /caf%E9 to "/caf\ufffd"; the raw path still says which byte it was.
    lossy = http_scope(path="/caf\ufffd/\ufffd", raw_path=b"/caf%E9/%FF")
    assert row_of(lossy)["path"] == "/caf%E9/%FF"
    # The same for a server that decodes with surrogateescape.
    assert row_of(http_scope(path="/caf\udce9", raw_path=b"/caf%e9"))["path"] == "/caf%E9"
    # A real U+FFFD (valid UTF-8, percent-encoded) stays what it is.
    real = http_scope(path="/x\ufffd", raw_path=b"/x%EF%BF%BD")
    assert row_of(real)["path"] == "/x\ufffd"
    assert row_of(http_scope(path="/x\ufffd", raw_path=None))["path"] == "/x\ufffd"


@pytest.mark.parametrize(
    ("raw_path", "path", "stored"),
    [
        # The server decodes both to "/a/b": only the raw path tells them apart.
        (b"/a%2Fb", "/a/b", "/a%2Fb"),
        (b"/a/b", "/a/b", "/a/b"),
        (b"/a%2fb", "/a/b", "/a%2Fb"),
        # A literal % stays an escape, so every % in a stored path starts one.
        (b"/100%25", "/100%", "/100%25"),
        (b"/q%3Fx%23y", "/q?x#y", "/q%3Fx%23y"),
        (b"/nul%00", "/nul\x00", "/nul%00"),
        # The common case stays readable: other escapes are decoded.
        (b"/caf%C3%A9/%E6%97%A5", "/caf\u00e9/\u65e5", "/caf\u00e9/\u65e5"),
        (b"/a%20b", "/a b", "/a b"),
        (b"/%7Euser", "/~user", "/~user"),
        # A % that starts no escape is escaped itself.
        (b"/a%zz", "/a%zz", "/a%25zz"),
    ],
)
def test_stored_path_keeps_what_decoding_loses(raw_path, path, stored):
    assert row_of(http_scope(path=path, raw_path=raw_path))["path"] == stored


def test_stored_path_follows_the_app_when_the_raw_path_is_another_path():
    # uvicorn --root-path: the mount point is in path, not in raw_path.
    mounted = http_scope(path="/api/a/b", raw_path=b"/a%2Fb", root_path="/api")
    assert row_of(mounted)["path"] == "/api/a%2Fb"
    # A middleware rewrote the path: what the app saw is what is stored.
    rewritten = http_scope(path="/v2/items", raw_path=b"/items%2F1")
    assert row_of(rewritten)["path"] == "/v2/items"
    # Odd raw paths never break the row.
    for raw in (None, "/a%2Fb", bytearray(b"/a%2Fb"), b"%", b"\xff\xfe%"):
        row = row_of(http_scope(path="/a/b", raw_path=raw))
        assert row["path"] == "/a/b"
        assert_valid_text(row)
