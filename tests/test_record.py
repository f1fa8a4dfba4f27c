"""``to_row``: any scope becomes a row of valid text, without raising; long values are capped."""

from __future__ import annotations

import pytest

from asgi_log_to_sqlite.record import Exchange, text, to_row
from asgi_log_to_sqlite.schema import REQUEST_COLUMNS

COLUMNS = list(REQUEST_COLUMNS)


def row_of(scope, cap=4096, **facts):
    exchange = Exchange(scope, 1_700_000_000.5, 0.0)
    exchange.status = 200
    exchange.duration = 0.25
    for name, value in facts.items():
        setattr(exchange, name, value)
    row = to_row(exchange, cap)
    assert len(row) == len(COLUMNS)
    return dict(zip(COLUMNS, row))


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
    }


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
    row = row_of(http_scope(http_version="2", scheme="https", extensions={"http.response.push": {}}))
    assert row["http_version"] == "2"
    assert row["scheme"] == "https"


def test_header_names_as_bytearray_and_memoryview():
    row = row_of(http_scope(headers=[(bytearray(b"User-Agent"), b"ba"), (memoryview(b"referer"), b"mv")]))
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
