"""The mock as an ASGI app: recorded responses served under ``httpx.ASGITransport`` (the library
form), in their chunks and at their pace; turns; placeholders; 404s; a fallback that records."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from apps import service_app
from asgi_lifespan import LifespanManager
from support import Server, free_port, uvicorn

from asgi_log_to_sqlite import AsgiLogToSqlite
from asgi_log_to_sqlite.mock import MockError, mock_app

CAPTURE = {"capture_requests": True, "capture_responses": True, "writer": "thread"}
SECRET = service_app.SECRET

REQUESTS = [
    ("GET", "/items/1?page=1", {}),
    ("GET", "/items/2?page=2", {}),
    ("GET", "/binary", {}),
    ("GET", "/big", {}),
    ("GET", "/gone", {}),
    ("GET", "/go", {}),
    ("HEAD", "/items/1?page=1", {}),
    ("GET", f"/search?q=owls&api_key={SECRET}-key", {}),
    ("POST", "/login", {"json": {"user": "ann", "password": f"{SECRET}-password"}}),
    ("GET", "/events", {}),
    ("GET", "/counter", {}),
    ("GET", "/counter", {}),
    ("GET", "/counter", {}),
]


def record(log: str, requests=REQUESTS) -> list[httpx.Response]:
    """The service app served in-process through the middleware with capture on."""

    async def run() -> list[httpx.Response]:
        logged = AsgiLogToSqlite(service_app.build(), log, **CAPTURE)
        transport = httpx.ASGITransport(app=logged)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            answers = [await client.request(m, url, **kw) for m, url, kw in requests]
        await logged.aclose()
        return answers

    return asyncio.run(run())


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[str, list[httpx.Response]]:
    log = str(tmp_path_factory.mktemp("mock") / "service.db")
    return log, record(log)


def ask(app: Any, requests) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
            return [await client.request(m, url, **kw) for m, url, kw in requests]

    return asyncio.run(run())


def messages(app: Any, method: str, path: str, query: bytes = b"") -> list[dict]:
    """The ASGI messages the app sends for one request."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": query, "headers": [], "http_version": "1.1"}
    asyncio.run(app(scope, receive, send))
    return sent


def test_the_library_form_answers_like_the_service(recorded):
    log, originals = recorded
    answers = ask(mock_app(log, values={"token": f"{SECRET}-token"}), REQUESTS)
    for (_, url, _), original, answer in zip(REQUESTS, originals, answers, strict=True):
        assert answer.status_code == original.status_code, url
        assert answer.content == original.content, url
        for name in ("content-type", "content-encoding", "content-length", "location"):
            assert answer.headers.get(name) == original.headers.get(name), (url, name)


def test_a_streamed_response_keeps_its_chunks_and_with_timing_its_pace(recorded):
    log, _ = recorded
    events = [m for m in messages(mock_app(log), "GET", "/events")
              if m["type"] == "http.response.body"]
    assert [m["body"] for m in events] == [
        f"id: {i}\nevent: tick\ndata: tick {i}\n\n".encode() for i in range(3)]
    assert [m["more_body"] for m in events] == [True, True, False]
    started = time.monotonic()
    paced = messages(mock_app(log, timing=True), "GET", "/events")
    assert time.monotonic() - started >= 2 * service_app.GAP  # the recorded gaps, at least
    assert [m.get("body") for m in paced[1:]] == [m["body"] for m in events]


def test_several_recordings_answer_in_turn_or_the_last_always(recorded):
    log, _ = recorded
    counter = [("GET", "/counter", {})] * 4
    assert [r.text for r in ask(mock_app(log), counter)] == ["1", "2", "3", "1"]
    assert [r.text for r in ask(mock_app(log, repeat="last"), counter)] == ["3"] * 4
    with pytest.raises(ValueError, match="repeat"):
        mock_app(log, repeat="first")


def test_placeholders_in_responses_are_filled_only_with_values_given(recorded):
    log, originals = recorded
    login = [("POST", "/login", {"json": {"user": "ann", "password": "anything"}})]
    (bare,) = ask(mock_app(log), login)
    assert bare.json() == {"user": "ann", "token": "{{token}}"}
    assert bare.headers["content-length"] == str(len(bare.content))
    assert "set-cookie" not in bare.headers  # a secret header without a value: left out
    cookie = "session=abc; Path=/"
    (filled,) = ask(mock_app(log, values={"token": 'a"b', "Set-Cookie": cookie}), login)
    assert filled.json() == {"user": "ann", "token": 'a"b'}  # escaped as JSON
    assert filled.headers["set-cookie"] == cookie
    assert filled.headers["content-length"] == str(len(filled.content))
    # The secret itself is needed by nobody: the request's password was redacted too.
    assert originals[8].json()["token"] == f"{SECRET}-token"


def test_unmatched_requests_get_a_404_that_says_why(recorded):
    log, _ = recorded
    app = mock_app(log)
    nowhere, other_page, post, head = ask(app, [
        ("GET", "/nowhere", {}), ("GET", "/items/1?page=9&api_key=k", {}),
        ("DELETE", "/items/1?page=1", {}), ("HEAD", "/items/2?page=2", {}),
    ])
    for miss in (nowhere, other_page, post):
        assert miss.status_code == 404
        assert miss.headers["asgi-log-to-sqlite-mock"] == "unmatched"
        assert miss.headers["content-type"] == "text/plain; charset=utf-8"
    assert nowhere.text == "asgi-log-to-sqlite mock: no recording matches GET /nowhere\n"
    assert "GET /items/1?page=9&api_key={{api_key}}" in other_page.text
    assert "recorded for GET, HEAD" in post.text
    # HEAD without a HEAD recording: the GET one, without its body.
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "21"  # {"id":"2","page":"2"}


def test_websockets_are_refused(tmp_path):
    sent: list[dict] = []

    async def run(app: Any) -> None:
        async def receive() -> dict:
            return {"type": "websocket.connect"}

        async def send(message: dict) -> None:
            sent.append(message)

        await app({"type": "websocket", "path": "/ws", "headers": []}, receive, send)

    path = str(tmp_path / "log.db")
    record(path, [("GET", "/items/1?page=1", {})])
    asyncio.run(run(mock_app(path)))
    assert sent == [{"type": "websocket.close", "code": 1003}]


def test_bad_logs_and_options_are_clear_errors(tmp_path):
    with pytest.raises(MockError, match="no such file"):
        mock_app(tmp_path / "missing.db")
    with pytest.raises(MockError, match="must be a URL"):
        mock_app(tmp_path / "new.db", fallback="ftp://example.com")
    with pytest.raises(MockError, match="capture_body_limit"):
        mock_app(tmp_path / "new.db", fallback="http://127.0.0.1:1", body_limit="lots")


def count(log: str, sql: str = "SELECT count(*) FROM captures") -> int:
    conn = sqlite3.connect(log)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_a_fallback_proxies_what_is_unmatched_and_the_mock_grows_by_use(tmp_path):
    log = str(tmp_path / "grown.db")  # not there yet: the fallback starts it
    port = free_port()
    service = Server(uvicorn("apps.service_app:app", port), port,
                     env={"SERVICE_SECRET": SECRET}, log=tmp_path / "service.log")
    requests = [("GET", "/items/5?page=2", {}), ("GET", "/counter", {}),
                ("GET", "/private", {"headers": {"Authorization": f"Bearer {SECRET}-token"}})]

    async def run() -> None:
        app = mock_app(log, fallback=service.url)
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
                with service:
                    first = [await client.request(m, u, **kw) for m, u, kw in requests]
                    assert [r.status_code for r in first] == [200, 200, 200]
                    assert [r.text for r in first[1:]] == ["1", "welcome"]
                    # Served from the log now: the service's counter does not move.
                    again = await client.get("/counter")
                    assert again.text == "1"
                assert service.process.poll() is not None  # the service is gone
                second = [await client.request(m, u, **kw) for m, u, kw in requests]
                assert [(r.status_code, r.content) for r in second] == [
                    (r.status_code, r.content) for r in first]
                down = await client.get("/items/6?page=2")
                assert down.status_code == 502 and "gave no answer" in down.text
                # A failed exchange is logged, but never served as a recording.
                assert (await client.get("/items/6?page=2")).status_code == 502

    asyncio.run(run())
    assert count(log) == 5
    assert count(log, "SELECT count(*) FROM requests WHERE exception IS NOT NULL") == 2
    raw = b"".join(Path(log + suffix).read_bytes() for suffix in ("", "-wal")
                   if Path(log + suffix).exists())
    assert SECRET.encode() not in raw
