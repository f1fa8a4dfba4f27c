"""Privacy by default: what reaches the log file, proved on real apps and the file's raw bytes.

Apps run in-process through ``httpx.ASGITransport`` behind the real middleware, writing a real
SQLite file; assertions read that file (and its ``-wal``/``-journal``) back.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from datetime import datetime, timezone

import httpx
import pytest

from asgi_log_to_sqlite import AsgiLogToSqlite
from asgi_log_to_sqlite.options import Options
from asgi_log_to_sqlite.privacy import REDACTED, anonymize, framework_actor, parse_ip
from asgi_log_to_sqlite.privacy.addresses import VisitorHash
from asgi_log_to_sqlite.privacy.redaction import Redactor

SECRET = "Zq7-SECRET-VALUE"


async def plain_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"set-cookie", f"sid={SECRET}-setcookie; HttpOnly".encode()),
                (b"cache-control", b"no-store"),
                (b"x-request-id", b"req-42"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def serve(app, path, requests, **options):
    """Send ``requests`` (dicts for ``client.request`` plus an optional ``peer``) and flush."""
    logged = AsgiLogToSqlite(app, path, flush_interval=0.05, **options)

    async def go():
        for request in requests:
            request = dict(request)
            peer = request.pop("peer", ("127.0.0.1", 50000))
            transport = httpx.ASGITransport(app=logged, client=peer)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                request.setdefault("method", "GET")
                await c.request(**request)

    asyncio.run(go())
    logged.flush(timeout=10)
    return logged


def rows(path, sql="SELECT * FROM requests_view ORDER BY id"):
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def excluded_counts(path):
    conn = sqlite3.connect(path)
    try:
        return {
            reason: count
            for reason, count in conn.execute(
                "SELECT reason, sum(count) FROM excluded_requests GROUP BY reason"
            )
        }
    finally:
        conn.close()


def raw_bytes(path):
    """Every byte SQLite keeps for this database: the file, its WAL and its rollback journal."""
    data = b""
    for suffix in ("", "-wal", "-journal"):
        if os.path.exists(path + suffix):
            with open(path + suffix, "rb") as f:
                data += f.read()
    return data


# ---- secrets never stored --------------------------------------------------------------------
SENSITIVE_KEYS = [
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "api_key",
    "apikey",
    "key",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "pwd",
    "sig",
    "signature",
    "code",
    "state",
    "session",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "X-Goog-Signature",
    "AWSAccessKeyId",
    "access%5Ftoken",  # percent-encoded key
    "user[password]",
    "key[]",  # the array form
    "user[key]",
    "accessKey",
    "OSSAccessKeyId",  # Alibaba OSS signed URLs
    "passphrase",
    "sign",  # Yandex, Alipay, WeChat Pay
    "paySign",  # WeChat Pay JSAPI
    "verify_sign",  # PayPal IPN
    "merchantSig",  # Adyen
    "CHECKSUMHASH",  # Paytm
]


def secret_requests():
    query = "&".join(f"{key}={SECRET}-q{i}" for i, key in enumerate(SENSITIVE_KEYS))
    return [
        {
            "url": f"/a?{query}&page=2",
            "headers": {
                "Authorization": f"Bearer {SECRET}-authorization",
                "Proxy-Authorization": f"Basic {SECRET}-proxy",
                "Cookie": f"session={SECRET}-cookie",
                "X-Api-Key": f"{SECRET}-apikey-header",
                "X-Auth-Token": f"{SECRET}-auth-token-header",
                "Referer": f"https://user:{SECRET}-userinfo@example.com/p?token={SECRET}-referer&x=1",
            },
        },
        {"url": f"/b?page=3;access_token={SECRET}-semicolon"},
        {"url": f"/c?a=1&refresh_token={SECRET}-second&b=2"},
    ]


def assert_no_secret(data: bytes):
    assert SECRET.encode() not in data
    assert SECRET.encode("utf-16-le") not in data
    assert SECRET.lower().encode() not in data.lower()


def test_secrets_are_absent_from_the_file_and_its_wal_while_open_and_after_close(log_path):
    logged = serve(
        plain_app, log_path, secret_requests(), capture_response_headers=["X-Request-ID"]
    )
    try:
        # The writer's connection is open: the rows sit in the -wal, not yet checkpointed.
        assert os.path.getsize(log_path + "-wal") > 0
        data = raw_bytes(log_path)
        assert b"REDACTED" in data and b"page=2" in data and b"req-42" in data  # the right bytes
        assert_no_secret(data)
    finally:
        logged.close()
    data = raw_bytes(log_path)
    assert b"REDACTED" in data
    assert_no_secret(data)
    stored = rows(log_path)
    assert len(stored) == 3
    assert_no_secret(repr(stored).encode())


def test_query_values_are_replaced_keeping_keys_and_other_parameters(log_path):
    serve(
        plain_app,
        log_path,
        [
            {"url": "/search?access_token=abc&page=2"},
            {"url": "/search?q=kittens&page=2"},
            {"url": "/search?token=&flag&code=xyz"},
        ],
    ).close()
    assert [r["query_string"] for r in rows(log_path)] == [
        f"?access_token={REDACTED}&page=2",
        "?q=kittens&page=2",
        f"?token=&flag&code={REDACTED}",
    ]


def test_redact_query_extends_the_defaults_and_keep_query_turns_one_off(log_path):
    serve(
        plain_app,
        log_path,
        [{"url": "/x?pin=1&x_private=2&account_pin=3&code=4&state=5&page=6"}],
        redact_query=["pin", "re:^x_", "*_pin"],
        keep_query=["code"],
    ).close()
    assert rows(log_path)[0]["query_string"] == (
        f"?pin={REDACTED}&x_private={REDACTED}&account_pin={REDACTED}&code=4"
        f"&state={REDACTED}&page=6"
    )


def test_anchored_strings_and_compiled_patterns_are_regexes(log_path):
    serve(
        plain_app,
        log_path,
        [
            {"url": "/x?my_a=1&b_pin=2&pin=3&other=4"},
            {"url": "/api/v2/internal/sync"},
            {"url": "/", "headers": {"User-Agent": "curl/8.5"}},
        ],
        redact_query=["^my_", "_pin$", re.compile("^oth")],
        exclude=["^/api/v[0-9]+/internal/"],
        exclude_user_agents=["^curl/"],
    ).close()
    assert [r["query_string"] for r in rows(log_path)] == [
        f"?my_a={REDACTED}&b_pin={REDACTED}&pin=3&other={REDACTED}"
    ]
    assert excluded_counts(log_path) == {"excluded_path": 1, "excluded_user_agent": 1}


def test_referer_loses_userinfo_and_sensitive_query_values(log_path):
    serve(
        plain_app,
        log_path,
        [{"url": "/", "headers": {"Referer": "https://bob:pw@example.com/cb?code=abc&ref=home"}}],
    ).close()
    assert rows(log_path)[0]["referer"] == f"https://example.com/cb?code={REDACTED}&ref=home"


def test_a_sign_parameter_is_redacted_by_default():
    policy = Redactor()
    assert policy.query("sign=9f86d081884c7d65&page=2") == f"sign={REDACTED}&page=2"
    assert policy.query("sign_type=RSA2&design=flat") == "sign_type=RSA2&design=flat"


@pytest.mark.parametrize(
    ("referer", "stored"),
    [
        # A page anchor holds no secret: kept (it was cut to a bare "#").
        ("https://ex.com/docs#install", "https://ex.com/docs#install"),
        ("https://ex.com/a?page=2#section-3.1", "https://ex.com/a?page=2#section-3.1"),
        ("https://ex.com/#", "https://ex.com/#"),
        # OAuth implicit flow: tokens in key=value pairs of the fragment.
        (f"https://ex.com/cb#access_token={SECRET}&expires_in=3600&state=x",
         f"https://ex.com/cb#access_token={REDACTED}&expires_in=3600&state={REDACTED}"),
        # A hash route with its own query string.
        (f"https://ex.com/#/login?sign={SECRET}&next=/home",
         f"https://ex.com/#/login?sign={REDACTED}&next=/home"),
        ("https://ex.com/#/items?page=2", "https://ex.com/#/items?page=2"),
    ],
)
def test_referer_fragments_keep_anchors_and_lose_secrets(referer, stored):
    assert Redactor().url(referer) == stored


# ---- captured headers --------------------------------------------------------------------------
def test_captured_request_and_response_headers(log_path):
    serve(
        plain_app,
        log_path,
        [
            {"url": "/healthz", "headers": {"X-Request-ID": "not-recorded"}},
            {"url": "/one", "headers": {"X-Request-ID": "abc-1", "Authorization": "Bearer nope"}},
            {"url": "/static/x.css", "headers": {"X-Request-ID": "not-recorded"}},
            {"url": "/two"},
        ],
        exclude=["/static"],
        capture_request_headers=["X-Request-ID"],
        capture_response_headers=["Cache-Control", "x-request-id"],
    ).close()
    captured = rows(
        log_path,
        "SELECT r.path, c.direction, c.name, c.value FROM captured_headers_view c "
        "JOIN requests_view r ON r.id = c.request ORDER BY r.id, c.direction, c.name",
    )
    assert [tuple(c.values()) for c in captured] == [
        ("/one", "request", "x-request-id", "abc-1"),
        ("/one", "response", "cache-control", "no-store"),
        ("/one", "response", "x-request-id", "req-42"),
        ("/two", "response", "cache-control", "no-store"),
        ("/two", "response", "x-request-id", "req-42"),
    ]
    # Header values are normalized into lookups like other repeated text.
    conn = sqlite3.connect(log_path)
    assert (
        conn.execute("SELECT count(*) FROM header_values WHERE name = 'no-store'").fetchone()[0]
        == 1
    )
    conn.close()


async def redirect_app(scope, receive, send):
    location = f"https://u:{SECRET}-pw@example.com/cb?code={SECRET}-code&next=/home".encode()
    await send({"type": "http.response.start", "status": 302,
                "headers": [(b"location", location), (b"content-location", location)]})
    await send({"type": "http.response.body", "body": b""})


def test_captured_url_headers_are_redacted_like_the_referer(log_path):
    serve(
        redirect_app,
        log_path,
        [{"url": "/", "headers": {"Referer": f"https://x.com/?access_token={SECRET}-ref"}}],
        capture_request_headers=["Referer"],
        capture_response_headers=["Location", "Content-Location"],
    ).close()
    found = rows(log_path, "SELECT * FROM captured_headers_view")
    captured = {r["name"]: r["value"] for r in found}
    assert captured == {
        "referer": f"https://x.com/?access_token={REDACTED}",
        "location": f"https://example.com/cb?code={REDACTED}&next=/home",
        "content-location": f"https://example.com/cb?code={REDACTED}&next=/home",
    }
    assert_no_secret(raw_bytes(log_path))


@pytest.mark.parametrize(
    "option, header",
    [
        ("capture_request_headers", "Authorization"),
        ("capture_request_headers", "Cookie"),
        ("capture_request_headers", "X-API-Key"),
        ("capture_request_headers", "X-CSRF-Token"),
        ("capture_response_headers", "Set-Cookie"),
        ("capture_request_headers", "Proxy-Authorization"),
    ],
)
def test_naming_a_secret_header_raises_unless_explicitly_allowed(log_path, option, header):
    with pytest.raises(ValueError, match=option) as info:
        AsgiLogToSqlite(plain_app, log_path, **{option: [header]})
    assert "allow_secret_headers" in str(info.value)
    logged = AsgiLogToSqlite(
        plain_app, log_path, **{option: [header]}, allow_secret_headers=[header]
    )
    logged.close()


def test_allowed_secret_header_is_recorded_when_explicitly_allowed(log_path):
    serve(
        plain_app,
        log_path,
        [{"url": "/", "headers": {"X-CSRF-Token": "visible-on-purpose"}}],
        capture_request_headers=["X-CSRF-Token"],
        allow_secret_headers=["x-csrf-token"],
    ).close()
    assert rows(log_path, "SELECT value FROM captured_headers_view") == [
        {"value": "visible-on-purpose"}
    ]


# ---- client addresses -------------------------------------------------------------------------
def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(log_path):
    spoof = {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.7"}
    serve(
        plain_app,
        log_path,
        [
            {"url": "/", "headers": spoof, "peer": ("198.51.100.7", 1)},
            {"url": "/", "headers": spoof, "peer": ("198.51.100.8", 1)},
        ],
        trusted_proxies=["10.0.0.0/8"],
    ).close()
    # And with no trusted proxies at all: the header is not even looked at.
    other = log_path + ".2"
    serve(plain_app, other, [{"url": "/", "headers": spoof, "peer": ("198.51.100.9", 1)}]).close()
    got = [(r["client_ip"], r["peer_ip"]) for r in rows(log_path) + rows(other)]
    assert got == [
        ("198.51.100.7", "198.51.100.7"),
        ("198.51.100.8", "198.51.100.8"),
        ("198.51.100.9", None),
    ]
    assert b"6.6.6.6" not in raw_bytes(log_path) + raw_bytes(other)


def test_proxy_walk_from_the_right_stops_at_the_first_untrusted_hop(log_path):
    serve(
        plain_app,
        log_path,
        [
            # A client spoofs 6.6.6.6; the edge proxy appends the real client 203.0.113.9.
            {
                "url": "/",
                "headers": {"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.0.0.2"},
                "peer": ("10.0.0.1", 1),
            },
            # Two header lines are one list, in order.
            {
                "url": "/",
                "headers": [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "192.0.2.1:443")],
                "peer": ("10.0.0.1", 1),
            },
            # Every hop trusted: the left-most address is the client.
            {
                "url": "/",
                "headers": {"X-Forwarded-For": "10.1.1.1, 10.0.0.2"},
                "peer": ("10.0.0.1", 1),
            },
            # Garbage from a trusted proxy: no address rather than a made-up one.
            {"url": "/", "headers": {"X-Forwarded-For": "unknown"}, "peer": ("10.0.0.1", 1)},
            # A trusted peer with no header is the client itself.
            {"url": "/", "peer": ("10.0.0.1", 1)},
            # IPv4-mapped peer matches an IPv4 network.
            {
                "url": "/",
                "headers": {"X-Forwarded-For": "192.0.2.5"},
                "peer": ("::ffff:10.0.0.1", 1),
            },
        ],
        trusted_proxies=["10.0.0.0/8"],
    ).close()
    assert [(r["client_ip"], r["peer_ip"]) for r in rows(log_path)] == [
        ("203.0.113.9", "10.0.0.1"),
        ("192.0.2.1", "10.0.0.1"),
        ("10.1.1.1", "10.0.0.1"),
        (None, "10.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
        ("192.0.2.5", "::ffff:10.0.0.1"),
    ]


def test_rfc7239_forwarded_header_when_chosen(log_path):
    serve(
        plain_app,
        log_path,
        [
            {
                "url": "/",
                "headers": {
                    "Forwarded": 'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, '
                    "for=10.0.0.2;by=10.0.0.1",
                    "X-Forwarded-For": "7.7.7.7",
                },
                "peer": ("10.0.0.1", 1),
            }
        ],
        trusted_proxies=["10.0.0.0/8"],
        forwarded_header="Forwarded",
    ).close()
    assert rows(log_path)[0]["client_ip"] == "2001:db8:cafe::17"


@pytest.mark.parametrize(
    "address, prefixes, expected",
    [
        ("203.0.113.195", (24, 48), "203.0.113.0"),
        ("203.0.113.195", (16, 48), "203.0.0.0"),
        ("2001:db8:abcd:1234:5678:9abc:def0:1234", (24, 48), "2001:db8:abcd::"),
        ("2001:db8:abcd:1234:5678:9abc:def0:1234", (24, 64), "2001:db8:abcd:1234::"),
        ("::ffff:203.0.113.195", (24, 48), "::ffff:203.0.113.0"),
        ("::ffff:203.0.113.195", (16, 48), "::ffff:203.0.0.0"),
        ("fe80::1:2:3:4%eth0", (24, 48), "fe80::"),
    ],
)
def test_anonymize_truncates_ipv4_ipv6_and_ipv4_mapped(address, prefixes, expected):
    assert anonymize(parse_ip(address), prefixes) == expected


def test_anonymize_ip_applies_to_client_and_peer(log_path):
    serve(
        plain_app,
        log_path,
        [
            {"url": "/", "peer": ("203.0.113.195", 1)},
            {"url": "/", "peer": ("2001:db8:abcd:1234::99", 1)},
            {"url": "/", "peer": ("::ffff:198.51.100.77", 1)},
            {"url": "/", "headers": {"X-Forwarded-For": "192.0.2.201"}, "peer": ("10.9.8.7", 1)},
            {"url": "/", "peer": ("not-an-address", 1)},
        ],
        anonymize_ip=True,
        trusted_proxies=["10.0.0.0/8"],
    ).close()
    assert [(r["client_ip"], r["peer_ip"]) for r in rows(log_path)] == [
        ("203.0.113.0", "203.0.113.0"),
        ("2001:db8:abcd::", "2001:db8:abcd::"),
        ("::ffff:198.51.100.0", "::ffff:198.51.100.0"),
        ("192.0.2.0", "10.9.8.0"),
        (None, None),
    ]
    data = raw_bytes(log_path)
    for full in (b"203.0.113.195", b"198.51.100.77", b"192.0.2.201", b"10.9.8.7"):
        assert full not in data


def test_anonymize_ip_with_prefix_lengths(log_path):
    serve(
        plain_app,
        log_path,
        [{"url": "/", "peer": ("203.0.113.195", 1)}, {"url": "/", "peer": ("2001:db8:ab::1", 1)}],
        anonymize_ip=(16, 32),
    ).close()
    assert [r["client_ip"] for r in rows(log_path)] == ["203.0.0.0", "2001:db8::"]


def test_client_ip_false_stores_no_address(log_path):
    logged = serve(
        plain_app,
        log_path,
        [{"url": "/", "headers": {"X-Forwarded-For": "192.0.2.44"}, "peer": ("10.0.0.5", 1)}],
        client_ip=False,
        trusted_proxies=["10.0.0.0/8"],
    )
    data = raw_bytes(log_path)
    logged.close()
    data += raw_bytes(log_path)
    row = rows(log_path)[0]
    assert row["client_ip"] is None and row["peer_ip"] is None and row["visitor"] is None
    assert b"192.0.2.44" not in data and b"10.0.0.5" not in data


def test_visitor_hash_is_daily_salted_and_stores_no_address(log_path):
    ua = {"User-Agent": "Firefox/130"}
    serve(
        plain_app,
        log_path,
        [
            {"url": "/1", "headers": ua, "peer": ("192.0.2.10", 1)},
            {"url": "/2", "headers": ua, "peer": ("192.0.2.10", 2)},
            {"url": "/3", "headers": ua, "peer": ("192.0.2.11", 1)},
            {"url": "/4", "headers": {"User-Agent": "Chrome/128"}, "peer": ("192.0.2.10", 1)},
        ],
        visitor_hash=True,
        client_ip=False,
    ).close()
    visitors = [r["visitor"] for r in rows(log_path)]
    assert all(re.fullmatch("[0-9a-f]{16}", v) for v in visitors)
    assert visitors[0] == visitors[1] and len(set(visitors)) == 3
    assert b"192.0.2.1" not in raw_bytes(log_path)

    # The salt changes with the UTC day; a shared secret gives the same hash in every process.
    day1 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc).timestamp()
    day2 = datetime(2026, 3, 2, 0, 30, tzinfo=timezone.utc).timestamp()
    address = parse_ip("192.0.2.10")
    shared = Options.from_kwargs({"visitor_hash": "a-shared-secret-of-some-length"})
    one, two = VisitorHash(shared.visitor_hash), VisitorHash(shared.visitor_hash)
    assert one(address, "ua", "h", day1) == two(address, "ua", "h", day1)
    assert one(address, "ua", "h", day1) != one(address, "ua", "h", day2)
    random_key = Options.from_kwargs({"visitor_hash": True})
    p1, p2 = VisitorHash(random_key.visitor_hash), VisitorHash(random_key.visitor_hash)
    assert p1(address, "ua", "h", day1) == p1(address, "ua", "h", day1 + 60)
    assert p1(address, "ua", "h", day1) != p2(address, "ua", "h", day1)
    assert p1(address, "ua", "h", day1) != p1(address, "ua", "h", day2)


# ---- route templates ---------------------------------------------------------------------------
def test_route_templates_with_starlette(log_path):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def endpoint(request):
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/items/{item_id:int}", endpoint),
            Mount("/orgs/{org}", routes=[Route("/projects/{pid}", endpoint)]),
        ]
    )
    serve(
        app, log_path, [{"url": "/items/42"}, {"url": "/orgs/acme/projects/7"}, {"url": "/nope"}]
    ).close()
    assert [(r["path"], r["route"]) for r in rows(log_path)] == [
        ("/items/42", "/items/{item_id}"),
        ("/orgs/acme/projects/7", "/orgs/{org}/projects/{pid}"),
        ("/nope", None),
    ]


def test_route_templates_with_fastapi(log_path):
    from fastapi import APIRouter, FastAPI

    app = FastAPI()
    router = APIRouter(prefix="/api")

    @router.get("/users/{user_id}/posts/{post_id}")
    def post(user_id: int, post_id: int):
        return {"ok": True}

    app.include_router(router)
    # Prefixes given to include_router, nested routers, and a sub-app with its own includes.
    plain, outer, inner = APIRouter(), APIRouter(prefix="/outer"), APIRouter(prefix="/inner")

    @plain.get("/b/{y}")
    def b(y: str):
        return {}

    @inner.get("/c/{z}")
    def c(z: str):
        return {}

    outer.include_router(inner)
    app.include_router(plain, prefix="/v2")
    app.include_router(outer, prefix="/p")
    sub = FastAPI()

    @sub.get("/things/{name}")
    def thing(name: str):
        return {"name": name}

    sub.include_router(plain, prefix="/in-sub")
    app.mount("/sub", sub)
    urls = ["/api/users/1/posts/2", "/sub/things/x", "/v2/b/1", "/p/outer/inner/c/3",
            "/sub/in-sub/b/4"]
    serve(app, log_path, [{"url": url} for url in urls]).close()
    assert [(r["path"], r["route"]) for r in rows(log_path)] == [
        ("/api/users/1/posts/2", "/api/users/{user_id}/posts/{post_id}"),
        ("/sub/things/x", "/sub/things/{name}"),
        ("/v2/b/1", "/v2/b/{y}"),
        ("/p/outer/inner/c/3", "/p/outer/inner/c/{z}"),
        ("/sub/in-sub/b/4", "/sub/in-sub/b/{y}"),
    ]


def test_route_hook_in_scope_and_route_option(log_path):
    async def app(scope, receive, send):
        scope["asgi_log_to_sqlite.route"] = "/reports/{year}"
        await plain_app(scope, receive, send)

    serve(app, log_path, [{"url": "/reports/2024"}]).close()
    other = log_path + ".2"
    serve(plain_app, other, [{"url": "/files/a/b"}], route=lambda scope: "/files/{rest}").close()
    assert rows(log_path)[0]["route"] == "/reports/{year}"
    assert rows(other)[0]["route"] == "/files/{rest}"


# ---- actors ------------------------------------------------------------------------------------
def test_actor_from_starlette_authentication_middleware(log_path):
    from starlette.applications import Starlette
    from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
    from starlette.middleware import Middleware
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    class HeaderBackend(AuthenticationBackend):
        async def authenticate(self, conn):
            name = conn.headers.get("x-user")
            return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None

    async def endpoint(request):
        return PlainTextResponse("hello")

    app = Starlette(
        routes=[Route("/", endpoint)],
        middleware=[Middleware(AuthenticationMiddleware, backend=HeaderBackend())],
    )
    serve(app, log_path, [{"url": "/", "headers": {"X-User": "alice"}}, {"url": "/"}]).close()
    assert [r["actor"] for r in rows(log_path)] == ["alice", None]


def test_actor_from_scope_auth_and_actor_callable(log_path):
    def with_auth(app):
        async def middleware(scope, receive, send):
            if scope.get("type") == "http":
                scope["auth"] = {"id": "12345", "name": "Some One", "ts": 0}
            await app(scope, receive, send)

        return middleware

    serve(with_auth(plain_app), log_path, [{"url": "/"}]).close()
    assert rows(log_path)[0]["actor"] == "12345"

    other = log_path + ".2"
    serve(plain_app, other, [{"url": "/"}], actor=lambda scope: "svc-batch").close()
    assert rows(other)[0]["actor"] == "svc-batch"


class _Lazy:
    """Shaped like Django's SimpleLazyObject before anyone looked at it."""

    def __init__(self):
        self._wrapped = object()

    @property
    def username(self):
        raise AssertionError("the log must not resolve a lazy user")


class _DjangoUser:
    is_authenticated = True
    pk = 7
    username = ""


class _Anonymous:
    is_authenticated = False
    username = ""
    pk = None


@pytest.mark.parametrize(
    "scope, expected",
    [
        ({"user": _DjangoUser()}, "7"),
        ({"user": _Anonymous()}, None),
        ({"user": _Lazy()}, None),
        ({"user": "carol"}, "carol"),
        ({"auth": {"sub": "oidc|42"}}, "oidc|42"),
        ({"auth": {"scopes": ["read"]}}, None),
        ({"actor": {"id": "root"}}, "root"),
        ({"asgi_log_to_sqlite.actor": "svc", "user": "carol"}, "svc"),
        ({}, None),
    ],
)
def test_actor_detection(scope, expected):
    assert framework_actor(scope) == expected


def test_a_failing_actor_or_route_callable_is_caught_and_counted(log_path):
    def broken(scope):
        raise RuntimeError("boom")

    logged = AsgiLogToSqlite(plain_app, log_path, actor=broken, route=broken, flush_interval=0.05)

    async def go():
        transport = httpx.ASGITransport(app=logged)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [(await client.get("/")).status_code for _ in range(3)]

    assert asyncio.run(go()) == [200, 200, 200]
    logged.flush(timeout=10)
    stats = logged.stats()
    logged.close()
    assert stats["actor_errors"] == 3 and stats["route_errors"] == 3
    assert [(r["actor"], r["route"]) for r in rows(log_path)] == [(None, None)] * 3


# ---- what is recorded at all -------------------------------------------------------------------
def test_health_checks_are_excluded_by_default_and_counted_per_hour(log_path):
    serve(
        plain_app,
        log_path,
        [
            {"url": "/health"},
            {"url": "/healthz"},
            {"url": "/ping"},
            {"url": "/ready/"},
            {"url": "/live"},
            {"url": "/", "headers": {"User-Agent": "kube-probe/1.30"}},
            {"url": "/", "headers": {"User-Agent": "ELB-HealthChecker/2.0"}},
            {"url": "/healthy-food"},
            {"url": "/"},
        ],
    ).close()
    assert [r["path"] for r in rows(log_path)] == ["/healthy-food", "/"]
    assert excluded_counts(log_path) == {"health_check": 7}
    conn = sqlite3.connect(log_path)
    ((hour,),) = conn.execute("SELECT hour FROM excluded_requests").fetchall()
    conn.close()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00", hour)


def test_health_checks_recorded_when_asked(log_path):
    serve(plain_app, log_path, [{"url": "/health"}], exclude_health_checks=False).close()
    assert [r["path"] for r in rows(log_path)] == ["/health"]


def test_exclusions_by_prefix_glob_regex_user_agent_and_method(log_path):
    serve(
        plain_app,
        log_path,
        [
            {"url": "/static/app.css"},  # prefix
            {"url": "/static"},  # prefix, the folder itself
            {"url": "/statics/x"},  # not the prefix /static
            {"url": "/img/logo.png"},  # glob
            {"url": "/api/v1/internal/sync"},  # regex
            {"url": "/page", "headers": {"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1)"}},
            {"url": "/page", "method": "OPTIONS"},
            {"url": "/page", "method": "POST"},
            {"url": "/page"},
        ],
        exclude=["/static", "*.png", re.compile(r"^/api/v\d+/internal/")],
        exclude_user_agents=["googlebot"],
        methods=["GET", "post"],
    ).close()
    assert [(r["method"], r["path"]) for r in rows(log_path)] == [
        ("GET", "/statics/x"),
        ("POST", "/page"),
        ("GET", "/page"),
    ]
    assert excluded_counts(log_path) == {
        "excluded_path": 4,
        "excluded_user_agent": 1,
        "method": 1,
    }


def test_sampling_stores_the_rate_and_counts_what_it_leaves_out(log_path):
    total = 300
    serve(plain_app, log_path, [{"url": f"/p{i}"} for i in range(total)], sample=0.5).close()
    stored = rows(log_path)
    left_out = excluded_counts(log_path).get("sampled_out", 0)
    assert len(stored) + left_out == total
    assert 0 < len(stored) < total
    assert {r["sample_rate"] for r in stored} == {0.5}


def test_unsampled_rows_have_rate_one(log_path):
    serve(plain_app, log_path, [{"url": "/"}]).close()
    assert rows(log_path)[0]["sample_rate"] == 1.0
    assert excluded_counts(log_path) == {}


async def _async_actor(scope):
    return "x"


# ---- bad options -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "option, value, error",
    [
        ("redact_query", "token", TypeError),
        ("redact_query", [1], TypeError),
        ("redact_query", ["re:("], ValueError),
        ("redact_query", [""], ValueError),
        ("keep_query", "code", TypeError),
        ("capture_request_headers", "X-Request-ID", TypeError),
        ("capture_request_headers", ["bad header"], ValueError),
        ("capture_response_headers", [42], TypeError),
        ("allow_secret_headers", ["x-api-key"], ValueError),
        ("client_ip", "no", TypeError),
        ("trusted_proxies", "10.0.0.0/8", TypeError),
        ("trusted_proxies", ["10.0.0.0/33"], ValueError),
        ("trusted_proxies", ["proxy.internal"], ValueError),
        ("trusted_proxies", [10], TypeError),
        ("forwarded_header", "X-Real-IP", ValueError),
        ("forwarded_header", None, TypeError),
        ("anonymize_ip", 33, ValueError),
        ("anonymize_ip", (24, 129), ValueError),
        ("anonymize_ip", "yes", TypeError),
        ("anonymize_ip", 24.0, TypeError),
        ("visitor_hash", "short", ValueError),
        ("visitor_hash", 1, TypeError),
        ("actor", "user", TypeError),
        ("route", 3, TypeError),
        ("actor", _async_actor, TypeError),
        ("exclude", "/static", TypeError),
        ("exclude", ["static"], ValueError),
        ("exclude", ["/"], ValueError),
        ("exclude", ["re:["], ValueError),
        ("exclude_user_agents", ["re:*bot"], ValueError),
        ("exclude_health_checks", 0, TypeError),
        ("methods", "GET", TypeError),
        ("methods", [], ValueError),
        ("methods", ["GET POST"], ValueError),
        ("sample", 0, ValueError),
        ("sample", 1.5, ValueError),
        ("sample", float("nan"), ValueError),
        ("sample", "0.1", TypeError),
        ("sample", True, TypeError),
    ],
)
def test_every_bad_privacy_option_raises_naming_it(log_path, option, value, error):
    with pytest.raises(error, match=repr(option)):
        AsgiLogToSqlite(plain_app, log_path, **{option: value})
    assert not os.path.exists(log_path)  # rejected before the database was created


def test_the_raw_byte_check_sees_a_value_that_is_stored(log_path):
    """Control: with redaction explicitly turned off, the same reading finds the value."""
    logged = serve(plain_app, log_path, [{"url": f"/?token={SECRET}"}], keep_query=["*"])
    try:
        assert SECRET.encode() in raw_bytes(log_path)
    finally:
        logged.close()


def test_a_callable_returning_a_coroutine_is_counted_without_a_warning(log_path):
    logged = serve(plain_app, log_path, [{"url": "/"}], actor=lambda scope: _async_actor(scope))
    stats = logged.stats()
    logged.close()
    assert stats["actor_errors"] == 1
    assert rows(log_path)[0]["actor"] is None


def test_a_log_from_before_the_privacy_columns_is_upgraded_in_place(log_path):
    from asgi_log_to_sqlite import schema

    conn = sqlite3.connect(log_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for step in schema.MIGRATIONS[:3]:
        step(conn)
    conn.execute("INSERT INTO requests (start, method, http_status) VALUES (1.5, 'GET', 200)")
    conn.execute("PRAGMA user_version=3")
    conn.close()
    serve(plain_app, log_path, [{"url": "/new?token=x"}], anonymize_ip=True).close()
    stored = rows(log_path)
    assert [(r["method"], r["sample_rate"], r["route"]) for r in stored] == [
        ("GET", None, None),
        ("GET", 1.0, None),
    ]
    assert stored[1]["query_string"] == f"?token={REDACTED}"
    assert stored[1]["client_ip"] == "127.0.0.0"
