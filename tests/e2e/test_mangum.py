"""AWS Lambda through Mangum: real handlers, real API Gateway (v1, HTTP API 1.0 and 2.0) and ALB
events, Mangum's lifespan modes. On Lambda the process is frozen the moment the handler returns,
so every row must be committed by then: no writer thread, nothing left in a queue."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import threading

import pytest
from lambda_events import CLIENT, EVENTS, USER_AGENT, Context

from asgi_log_to_sqlite import AsgiLogToSqlite

mangum = pytest.importorskip("mangum")


@pytest.fixture(autouse=True)
def on_lambda(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "asgi-log-to-sqlite-test")


@pytest.fixture(autouse=True)
def event_loop_of_the_runtime():
    """Mangum runs every invocation on the thread's event loop; closed after the test."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


def committed(path: str) -> list[dict]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM requests_view ORDER BY id")]
    finally:
        conn.close()


class Lifespans:
    def __init__(self) -> None:
        self.startups = 0
        self.shutdowns = 0


def raw_app(lifespans: Lifespans):
    """A bare ASGI app that does not speak lifespan at all (it raises on that scope)."""

    async def app(scope, receive, send):
        assert scope["type"] == "http", f"unsupported scope {scope['type']}"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        status = 404 if scope["path"] == "/missing" else 200
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
        await send({"type": "http.response.body", "body": b"got " + body})

    return app


def starlette_app(lifespans: Lifespans):
    """A Starlette app with a lifespan of its own, and state it hands to requests."""
    import contextlib

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    @contextlib.asynccontextmanager
    async def lifespan(app):
        lifespans.startups += 1
        yield {"greeting": "state got "}
        lifespans.shutdowns += 1

    async def endpoint(request):
        if request.url.path == "/boom":
            raise RuntimeError("boom")
        body = await request.body()
        status = 404 if request.url.path == "/missing" else 200
        # The lifespan's state reaches requests only when Mangum runs the lifespan.
        greeting = getattr(request.state, "greeting", "got ")
        return PlainTextResponse(greeting.encode() + body, status_code=status)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])],
                     lifespan=lifespan)


HANDLER_OF_EVENT = {
    "api-gateway-v1": "APIGateway",
    "http-api-v1": "HTTPGateway",
    "http-api-v2": "HTTPGateway",
    "alb": "ALB",
    "alb-multi-value": "ALB",
}


@pytest.mark.parametrize("kind", sorted(EVENTS))
def test_each_event_is_read_by_mangums_handler_of_its_kind(kind):
    """The events are the shapes Mangum itself tells apart: its own inference picks the handler
    each one stands for."""
    handler = mangum.Mangum(raw_app(Lifespans()), lifespan="off")
    inferred = handler.infer(EVENTS[kind]("GET", "/items", {"page": ["2"]}), Context())
    assert type(inferred).__name__ == HANDLER_OF_EVENT[kind]
    assert inferred.scope["path"] == "/items"
    assert inferred.scope["query_string"] == b"page=2"


INVOCATIONS = [
    ("GET", "/items", {"page": ["2"], "token": ["s3cret-token"]}, b"", 200),
    ("POST", "/items", {}, b'{"name": "x"}', 200),
    ("GET", "/missing", {}, b"", 404),
    ("GET", "/boom", {}, b"", 500),
]


@pytest.mark.parametrize("lifespan", ["off", "auto"])
@pytest.mark.parametrize("kind", sorted(EVENTS))
@pytest.mark.parametrize("make_app", [raw_app, starlette_app], ids=["raw", "starlette"])
def test_every_row_is_committed_when_the_handler_returns(tmp_path, kind, lifespan, make_app):
    log_path = str(tmp_path / "log.db")
    lifespans = Lifespans()
    log = AsgiLogToSqlite(make_app(lifespans), log_path)
    handler = mangum.Mangum(log, lifespan=lifespan)
    threads_before = threading.active_count()
    try:
        for count, (method, path, params, body, status) in enumerate(INVOCATIONS, start=1):
            response = handler(EVENTS[kind](method, path, params, body), Context())
            assert response["statusCode"] == status
            if status == 200:
                text = response["body"]
                if response.get("isBase64Encoded"):
                    text = base64.b64decode(text).decode()
                # Mangum's lifespan state reached the request (only under "auto").
                prefix = "state got " if (make_app, lifespan) == (starlette_app, "auto") else "got "
                assert text == prefix + body.decode()
            # The process could be frozen now: the row is already in the file.
            rows = committed(log_path)
            assert len(rows) == count
            assert log.stats()["queued"] == 0
            row = rows[-1]
            assert (row["method"], row["path"], row["http_status"]) == (method, path, status)
        assert threading.active_count() == threads_before  # no writer thread to freeze
        assert log.stats()["writer"] == "inline"
    finally:
        log.close(10)
    rows = committed(log_path)
    assert rows[0]["query_string"] == "?page=2&token=REDACTED"
    assert rows[1]["request_body_size"] == len(INVOCATIONS[1][3])
    assert rows[3]["exception"] == "RuntimeError"
    assert all(row["user_agent"] == USER_AGENT for row in rows)
    if not kind.startswith("alb"):  # an ALB event names no source address of its own
        assert all(row["client_ip"] == CLIENT for row in rows)
    # Mangum's lifespan handling is the app's: "auto" runs the app's startup and shutdown
    # around every invocation, "off" never.
    if make_app is starlette_app:
        expected = len(INVOCATIONS) if lifespan == "auto" else 0
        assert (lifespans.startups, lifespans.shutdowns) == (expected, expected)


def test_lifespan_on_with_a_failing_startup_reaches_mangum_unchanged(tmp_path):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database"})
            return
        raise AssertionError("not reached")

    log = AsgiLogToSqlite(app, str(tmp_path / "log.db"))
    handler = mangum.Mangum(log, lifespan="on")
    try:
        with pytest.raises(mangum.exceptions.LifespanFailure, match="no database"):
            handler(EVENTS["http-api-v2"]("GET", "/", {}), Context())
    finally:
        log.close(10)


def test_the_stdout_sink_prints_each_row_before_the_handler_returns(capfd):
    log = AsgiLogToSqlite(raw_app(Lifespans()), "-")
    handler = mangum.Mangum(log, lifespan="off")
    try:
        capfd.readouterr()
        for count in (1, 2, 3):
            handler(EVENTS["http-api-v2"]("GET", f"/n{count}", {}), Context())
            lines = capfd.readouterr().out.splitlines()
            assert len(lines) == 1 and f'"path":"/n{count}"' in lines[0]
        assert log.stats()["writer"] == "inline"
    finally:
        log.close(10)


@pytest.mark.parametrize("lifespan", ["off", "auto"])
def test_postgresql_rows_are_committed_when_the_handler_returns(pg_url, lifespan):
    """The sink that outlives the container: each invocation's row is in PostgreSQL (one commit
    per invocation) when the handler returns."""
    import psycopg

    log = AsgiLogToSqlite(raw_app(Lifespans()), pg_url)
    handler = mangum.Mangum(log, lifespan=lifespan)
    try:
        for count, (method, path, params, body, status) in enumerate(INVOCATIONS, start=1):
            handler(EVENTS["http-api-v2"](method, path, params, body), Context())
            with psycopg.connect(pg_url, autocommit=True) as conn:  # another connection
                rows = conn.execute(
                    "SELECT method, path, http_status FROM requests_view ORDER BY id"
                ).fetchall()
            assert len(rows) == count
            assert rows[-1] == (method, path, status)
        assert log.stats()["writer"] == "inline"
    finally:
        log.close(10)
