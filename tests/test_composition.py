"""AsgiLogToSqlite among other ASGI middleware, inside and outside each of them.

What the log records depends on where it sits: it sees what went out at its own layer. These tests
pin that down for gzip, CORS, sessions and authentication (in process, through HTTPX's ASGI
transport), and check that nothing secret (session cookies, credentials) reaches the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
    requires,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from asgi_log_to_sqlite import AsgiLogToSqlite

TEXT = "".join(f"line {i}: the same words, again and again\n" for i in range(400)).encode()
TOKEN = "s3cr3t-token-value"
SESSION_SECRET = "session-signing-key-for-tests"


async def page(request: Request) -> Response:
    return PlainTextResponse(TEXT)


async def streamed(request: Request) -> Response:
    async def chunks():
        for start in range(0, len(TEXT), 1000):
            yield TEXT[start : start + 1000]

    return StreamingResponse(chunks(), media_type="text/plain")


async def visits(request: Request) -> Response:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JSONResponse({"visits": request.session["visits"]})


@requires("authenticated")
async def whoami(request: Request) -> Response:
    return JSONResponse(
        {
            "user": request.user.display_name,
            "scopes": request.auth.scopes,
            "raw": request.scope["auth"].scopes,
        }
    )


async def fail(request: Request) -> Response:
    raise RuntimeError("this view always fails")


ROUTES = [
    Route("/fail", fail),
    Route("/page", page),
    Route("/streamed", streamed),
    Route("/visits", visits),
    Route("/whoami", whoami),
]


def inner_app() -> Starlette:
    return Starlette(routes=ROUTES)


class TokenBackend(AuthenticationBackend):
    """Bearer-token authentication: sets scope["user"] and scope["auth"]."""

    async def authenticate(self, conn):
        header = conn.headers.get("authorization")
        if header is None:
            return None
        if header != f"Bearer {TOKEN}":
            raise AuthenticationError("bad token")
        return AuthCredentials(["authenticated"]), SimpleUser("alice")


def require_token(app, copy_scope: bool = False):
    """A plain ASGI auth middleware that refuses requests without the token, like many API
    gateways do, and sets ``scope["auth"]`` for the ones it lets through: in the scope it was
    given, or (``copy_scope``) in a copy that only the layers inside it see."""

    async def middleware(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        headers = dict(scope["headers"])
        if headers.get(b"authorization") != f"Bearer {TOKEN}".encode():
            await PlainTextResponse("Unauthorized", status_code=401)(scope, receive, send)
            return
        if copy_scope:
            scope = dict(scope)
        scope["auth"] = AuthCredentials(["authenticated"])
        scope["user"] = SimpleUser("alice")
        await app(scope, receive, send)

    return middleware


def serve(app, requests: Callable[[httpx.AsyncClient], object]) -> list[httpx.Response]:
    """Run ``requests(client)`` (an async function returning a list of responses) in process."""

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await requests(client)

    return asyncio.run(main())


def rows(log: AsgiLogToSqlite) -> list[dict]:
    log.flush(timeout=10)
    log.close(timeout=10)
    conn = sqlite3.connect(log.file)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("select * from requests_view order by id")]
    finally:
        conn.close()


def all_text(path: str) -> str:
    """Every value in every table of the log, as one string: to look for secrets in it."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        return "\n".join(
            repr(row) for table in tables for row in conn.execute(f"select * from [{table}]")
        )
    finally:
        conn.close()


def find_log(app) -> AsgiLogToSqlite:
    """The AsgiLogToSqlite instance Starlette built from ``Middleware(AsgiLogToSqlite, ...)``."""
    layer = app.middleware_stack
    while not isinstance(layer, AsgiLogToSqlite):
        layer = layer.app
    return layer


# ---- gzip ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/page", "/streamed"])
def test_outside_gzip_records_the_compressed_bytes(log_path, path):
    log = AsgiLogToSqlite(GZipMiddleware(inner_app()), log_path)

    async def requests(client):
        return [await client.get(path, headers={"accept-encoding": "gzip"})]

    (response,) = serve(log, requests)
    (row,) = rows(log)
    assert response.headers["content-encoding"] == "gzip"
    assert response.content == TEXT  # HTTPX decompressed it
    compressed = response.num_bytes_downloaded
    assert compressed < len(TEXT) // 4
    assert row["body_size"] == compressed
    assert row["content_type"].startswith("text/plain")


@pytest.mark.parametrize("path", ["/page", "/streamed"])
def test_inside_gzip_records_the_uncompressed_bytes(log_path, path):
    log = AsgiLogToSqlite(inner_app(), log_path)
    app = GZipMiddleware(log)

    async def requests(client):
        return [await client.get(path, headers={"accept-encoding": "gzip"})]

    (response,) = serve(app, requests)
    (row,) = rows(log)
    assert response.headers["content-encoding"] == "gzip"
    assert response.num_bytes_downloaded < len(TEXT) // 4
    assert row["body_size"] == len(TEXT)


def test_declared_with_starlette_middleware_list(log_path):
    """``Middleware(AsgiLogToSqlite, file=...)`` first in the list is the outermost layer."""
    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(AsgiLogToSqlite, file=log_path), Middleware(GZipMiddleware)],
    )

    async def requests(client):
        return [
            await client.get("/page"),
            await client.get("/page", headers={"accept-encoding": "identity"}),
        ]

    compressed, plain = serve(app, requests)
    first, second = rows(find_log(app))
    assert compressed.headers["content-encoding"] == "gzip"
    assert first["body_size"] == compressed.num_bytes_downloaded < len(TEXT)
    assert "content-encoding" not in plain.headers and second["body_size"] == len(TEXT)


# ---- CORS ------------------------------------------------------------------------------------
PREFLIGHT = {"origin": "https://app.example", "access-control-request-method": "GET"}


def cors(app):
    return CORSMiddleware(app, allow_origins=["https://app.example"], allow_methods=["GET"])


def test_outside_cors_logs_preflights_and_refusals(log_path):
    log = AsgiLogToSqlite(cors(inner_app()), log_path)

    async def requests(client):
        return [
            await client.options("/page", headers=PREFLIGHT),
            await client.options("/page", headers={**PREFLIGHT, "origin": "https://evil.example"}),
            await client.get("/page", headers={"origin": "https://app.example"}),
        ]

    allowed, refused, simple = serve(log, requests)
    logged = rows(log)
    assert [r.status_code for r in (allowed, refused, simple)] == [200, 400, 200]
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    assert [(r["method"], r["http_status"]) for r in logged] == [
        ("OPTIONS", 200),
        ("OPTIONS", 400),
        ("GET", 200),
    ]
    assert logged[1]["body_size"] == len(refused.content)


def test_inside_cors_sees_only_what_cors_lets_through(log_path):
    log = AsgiLogToSqlite(inner_app(), log_path)

    async def requests(client):
        return [
            await client.options("/page", headers=PREFLIGHT),
            await client.get("/page", headers={"origin": "https://app.example"}),
        ]

    preflight, simple = serve(cors(log), requests)
    logged = rows(log)
    assert preflight.status_code == 200 and simple.status_code == 200
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    # CORS answered the preflight itself: it never reached the log.
    assert [(r["method"], r["http_status"]) for r in logged] == [("GET", 200)]


# ---- sessions --------------------------------------------------------------------------------
@pytest.mark.parametrize("log_outside", [True, False], ids=["log-outside", "log-inside"])
def test_sessions_work_and_their_cookie_is_not_stored(log_path, log_outside):
    if log_outside:
        log = AsgiLogToSqlite(SessionMiddleware(inner_app(), secret_key=SESSION_SECRET), log_path)
        app = log
    else:
        log = AsgiLogToSqlite(inner_app(), log_path)
        app = SessionMiddleware(log, secret_key=SESSION_SECRET)

    async def requests(client):
        return [await client.get("/visits") for _ in range(3)]

    responses = serve(app, requests)
    assert [r.json()["visits"] for r in responses] == [1, 2, 3]
    cookie = responses[-1].cookies.get("session") or responses[0].cookies.get("session")
    assert cookie
    logged = rows(log)
    assert [r["http_status"] for r in logged] == [200, 200, 200]
    assert [r["body_size"] for r in logged] == [len(r.content) for r in responses]
    stored = all_text(log_path)
    assert cookie not in stored and cookie.split(".")[0] not in stored
    assert SESSION_SECRET not in stored


# ---- authentication --------------------------------------------------------------------------
def test_outside_starlette_authentication(log_path):
    """The app still sees scope["user"] and scope["auth"]; the token is never stored."""
    app = AuthenticationMiddleware(inner_app(), backend=TokenBackend())
    log = AsgiLogToSqlite(app, log_path)

    async def requests(client):
        return [
            await client.get("/whoami", headers={"authorization": f"Bearer {TOKEN}"}),
            await client.get("/whoami"),
            await client.get("/whoami", headers={"authorization": "Bearer wrong"}),
        ]

    ok, anonymous, bad = serve(log, requests)
    assert ok.json() == {"user": "alice", "scopes": ["authenticated"], "raw": ["authenticated"]}
    assert anonymous.status_code == 403 and bad.status_code == 400
    logged = rows(log)
    assert [r["http_status"] for r in logged] == [200, 403, 400]
    # Starlette sets the user in the scope itself: the log outside it sees who it was, and the
    # route Starlette matched.
    assert [r["actor"] for r in logged] == ["alice", None, None]
    assert logged[0]["route"] == "/whoami"
    assert TOKEN not in all_text(log_path)


@pytest.mark.parametrize("copy_scope", [False, True], ids=["same-scope", "copied-scope"])
def test_inside_an_auth_middleware(log_path, copy_scope):
    """Inside, the log passes the scope the auth layer built on to the app, unchanged; requests
    the auth layer refuses never reach it."""
    log = AsgiLogToSqlite(inner_app(), log_path)
    app = require_token(log, copy_scope)

    async def requests(client):
        return [
            await client.get("/whoami", headers={"authorization": f"Bearer {TOKEN}"}),
            await client.get("/whoami"),
        ]

    ok, refused = serve(app, requests)
    assert ok.json()["user"] == "alice" and refused.status_code == 401
    assert [(r["http_status"], r["actor"]) for r in rows(log)] == [(200, "alice")]
    assert TOKEN not in all_text(log_path)


@pytest.mark.parametrize("copy_scope", [False, True], ids=["same-scope", "copied-scope"])
def test_outside_an_auth_middleware_logs_refusals(log_path, copy_scope):
    """Outside, the log sees the refusals; it sees the user only if the auth layer set it in
    the scope it was given, not in a copy."""
    log = AsgiLogToSqlite(require_token(inner_app(), copy_scope), log_path)

    async def requests(client):
        return [
            await client.get("/whoami"),
            await client.get("/whoami", headers={"authorization": f"Bearer {TOKEN}"}),
        ]

    refused, ok = serve(log, requests)
    assert refused.status_code == 401 and ok.json()["user"] == "alice"
    logged = rows(log)
    assert [(r["path"], r["http_status"]) for r in logged] == [("/whoami", 401), ("/whoami", 200)]
    assert [r["actor"] for r in logged] == [None, None if copy_scope else "alice"]
    assert TOKEN not in all_text(log_path)


# ---- Starlette's error handling ----------------------------------------------------------------
def test_around_starlette_the_row_has_the_500_page(log_path):
    """Wrapping the Starlette app: the row counts the 500 page Starlette sent."""
    log = AsgiLogToSqlite(Starlette(routes=ROUTES), log_path)

    async def requests(client):
        with pytest.raises(RuntimeError):  # Starlette re-raises after its 500 page
            await client.get("/fail")
        return []

    serve(log, requests)
    (row,) = rows(log)
    assert row["http_status"] == 500 and row["body_size"] == len(b"Internal Server Error")


def test_in_starlette_middleware_list_the_row_has_the_exception(log_path):
    """In ``middleware=[...]`` the log sits inside Starlette's error handler: it sees the
    exception (recorded by name) before any 500 page exists."""
    app = Starlette(routes=ROUTES, middleware=[Middleware(AsgiLogToSqlite, file=log_path)])

    async def requests(client):
        with pytest.raises(RuntimeError):
            await client.get("/fail")
        return []

    serve(app, requests)
    (row,) = rows(find_log(app))
    assert row["http_status"] == 500 and row["exception"] == "RuntimeError"
    assert row["body_size"] == 0
