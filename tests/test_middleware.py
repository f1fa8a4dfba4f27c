"""The middleware, driven in-process: what reaches the client, what reaches the log.

Apps are tiny raw ASGI callables; requests go through ``httpx.ASGITransport`` or, for scopes no
client produces (odd bytes, no client, HTTP/2, lifespan, WebSocket), through hand-written
``receive``/``send`` pairs that record every message the server side would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from asgi_log_to_sqlite import AsgiLogToSqlite

LOGGER = "asgi_log_to_sqlite"


# ---- helpers -------------------------------------------------------------------------------
def rows(path: str, where: str = "1") -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        sql = f"SELECT * FROM requests_view WHERE {where} ORDER BY id"
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def http_scope(**extra: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 12345),
        "server": ("127.0.0.1", 8000),
    }
    scope.update(extra)
    return scope


async def drive(
    app: Callable[..., Any],
    scope: dict[str, Any],
    incoming: list[dict[str, Any]] | None = None,
    send_hook: Callable[[dict[str, Any]], Any] | None = None,
) -> list[dict[str, Any]]:
    """Run one connection like a server would; the messages the app sent, in order."""
    queue = list(incoming if incoming is not None else [{"type": "http.request", "body": b""}])
    sent: list[dict[str, Any]] = []
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if send_hook is not None:
            result = send_hook(message)
            if asyncio.iscoroutine(result):
                await result
        sent.append(message)

    await app(scope, receive, send)
    return sent


def responder(status: int = 200, body: bytes | list[bytes] = b"hello", headers=None):
    """A raw ASGI app answering every request the same way; body chunks streamed if a list."""
    chunks = body if isinstance(body, list) else [body]

    async def app(scope, receive, send):
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": headers if headers is not None else [(b"content-type", b"text/plain")],
            }
        )
        for i, chunk in enumerate(chunks):
            await send(
                {"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1}
            )

    return app


async def get(app, path: str = "/", method: str = "GET", **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.request(method, path, **kwargs)


# ---- the API -------------------------------------------------------------------------------
def test_every_request_becomes_one_row(make_log, log_path):
    log = make_log(responder(body=b"hello"))

    async def main():
        for i in range(25):
            headers = {"user-agent": "ua", "referer": "r"}
            response = await get(log, f"/page/{i}?x={i}", headers=headers)
            assert response.status_code == 200 and response.text == "hello"

    asyncio.run(main())
    log.flush(timeout=10)
    found = rows(log_path)
    assert [r["path"] for r in found] == [f"/page/{i}" for i in range(25)]
    assert {r["query_string"] for r in found} == {f"?x={i}" for i in range(25)}
    first = found[0]
    assert first["method"] == "GET"
    assert first["http_status"] == 200
    assert first["body_size"] == 5
    assert first["content_type"] == "text/plain"
    assert first["user_agent"] == "ua" and first["referer"] == "r"
    assert first["host"] == "testserver"
    assert first["connection_type"] == "http"
    assert first["disconnected"] == 0 and first["exception"] is None
    assert 0 <= first["ttfb"] <= first["duration"]
    assert first["time"].endswith("Z")
    assert log.stats()["written"] == 25


def test_flush_before_any_request_returns(make_log):
    log = make_log(responder())
    log.flush(timeout=1)
    assert log.stats()["written"] == 0


def test_aflush_inside_the_loop(make_log, log_path):
    log = make_log(responder(), flush_interval=30)

    async def main():
        await get(log, "/a")
        await log.aflush(timeout=10)
        assert len(rows(log_path)) == 1

    asyncio.run(main())


def test_close_is_idempotent_and_later_requests_are_served_with_one_warning(
    make_log, log_path, caplog
):
    log = make_log(responder(body=b"still here"))

    async def main():
        await get(log, "/before")
        log.close()
        log.close()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            for _ in range(3):
                response = await get(log, "/after")
                assert response.status_code == 200 and response.text == "still here"
        await log.aclose()

    asyncio.run(main())
    assert [r["path"] for r in rows(log_path)] == ["/before"]
    warnings = [r for r in caplog.records if r.name == LOGGER and "closed" in r.getMessage()]
    assert len(warnings) == 1
    log.flush(timeout=1)  # flush after close is harmless


def test_close_before_any_request(make_log, log_path, caplog):
    log = make_log(responder())
    log.close()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert asyncio.run(get(log)).status_code == 200
    assert rows(log_path) == []


@pytest.mark.parametrize("strategy", ["process", "thread", "inline"])
def test_aclose_commits_everything(make_log, log_path, strategy):
    log = make_log(responder(), flush_interval=30, writer=strategy)

    async def main():
        for _ in range(10):
            await get(log)
        await log.aclose()
        await asyncio.wait_for(log.aclose(), 5)  # closed already: at once
        await asyncio.wait_for(log.aflush(), 5)
        log.flush(5)

    asyncio.run(main())
    assert len(rows(log_path)) == 10


def test_flush_timeout_raises_timeout_error(make_log, log_path):
    """A lock held by another connection keeps the writer waiting: flush gives up in time."""
    log = make_log(responder(), busy_timeout=30)
    asyncio.run(get(log))
    log.flush(timeout=10)
    blocker = sqlite3.connect(log_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        asyncio.run(get(log, "/blocked"))
        with pytest.raises(TimeoutError):
            log.flush(timeout=0.3)

        async def in_loop():
            with pytest.raises(TimeoutError):
                await log.aflush(timeout=0.3)

        asyncio.run(in_loop())
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    log.flush(timeout=20)
    assert [r["path"] for r in rows(log_path)] == ["/", "/blocked"]


# ---- what is recorded ----------------------------------------------------------------------
def test_streamed_chunks_are_summed(make_log, log_path):
    log = make_log(responder(body=[b"a" * 10, b"", b"b" * 1000, b"c" * 7]))
    response = asyncio.run(get(log))
    assert response.content == b"a" * 10 + b"b" * 1000 + b"c" * 7
    log.flush(timeout=10)
    assert rows(log_path)[0]["body_size"] == 1017


def test_many_chunks(make_log, log_path):
    log = make_log(responder(body=[b"x"] * 500))
    assert len(asyncio.run(get(log)).content) == 500
    log.flush(timeout=10)
    assert rows(log_path)[0]["body_size"] == 500


def test_empty_body_and_head(make_log, log_path):
    log = make_log(responder(status=204, body=b"", headers=[]))

    async def main():
        assert (await get(log, "/empty")).status_code == 204
        assert (await get(log, "/head", method="HEAD")).status_code == 204

    asyncio.run(main())
    log.flush(timeout=10)
    found = rows(log_path)
    assert [(r["method"], r["http_status"], r["body_size"], r["content_type"]) for r in found] == [
        ("GET", 204, 0, None),
        ("HEAD", 204, 0, None),
    ]


def test_head_counts_no_body_even_when_the_app_passes_one(make_log, log_path):
    # Starlette's Response sends its body for HEAD too; servers drop it: nothing is sent.
    log = make_log(responder(body=b"hello"))
    asyncio.run(get(log, "/page", method="HEAD"))
    log.flush(timeout=10)
    assert [(r["method"], r["http_status"], r["body_size"]) for r in rows(log_path)] == [
        ("HEAD", 200, 0)
    ]


def test_request_body_bytes(make_log, log_path):
    async def app(scope, receive, send):
        while True:
            message = await receive()
            if not message.get("more_body"):
                break
        await responder()(scope, receive, send)

    log = make_log(app)
    incoming = [
        {"type": "http.request", "body": b"a" * 100, "more_body": True},
        {"type": "http.request", "body": b"b" * 50, "more_body": False},
    ]
    asyncio.run(drive(log, http_scope(method="POST"), incoming))
    log.flush(timeout=10)
    assert rows(log_path)[0]["request_body_size"] == 150


def test_pathsend_counts_the_file_size(make_log, log_path, tmp_path):
    served = tmp_path / "big.bin"
    served.write_bytes(b"z" * 4321)

    async def app(scope, receive, send):
        assert "http.response.pathsend" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(served)})

    log = make_log(app)
    scope = http_scope(extensions={"http.response.pathsend": {}})
    sent = asyncio.run(drive(log, scope))
    assert sent[-1] == {"type": "http.response.pathsend", "path": str(served)}
    log.flush(timeout=10)
    assert rows(log_path)[0]["body_size"] == 4321


def test_pathsend_of_a_file_removed_after_the_response(make_log, log_path, tmp_path):
    # A temporary download (Starlette's FileResponse sets Content-Length) removed right after.
    served = tmp_path / "export.csv"
    served.write_bytes(b"z" * 777)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"777")]})
        await send({"type": "http.response.pathsend", "path": str(served)})
        served.unlink()

    log = make_log(app)
    asyncio.run(drive(log, http_scope(extensions={"http.response.pathsend": {}})))
    log.flush(timeout=10)
    assert rows(log_path)[0]["body_size"] == 777


def test_duration_runs_to_the_last_byte(make_log, log_path):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"done"})

    log = make_log(app)
    asyncio.run(drive(log, http_scope()))
    log.flush(timeout=10)
    row = rows(log_path)[0]
    assert row["ttfb"] < 0.05 <= row["duration"]


def test_row_is_queued_when_the_response_completes_even_if_the_task_is_cancelled(
    make_log, log_path
):
    """Some servers cancel the app task right after the last byte, at shutdown."""
    finished = asyncio.Event

    async def main():
        done = finished()

        async def app(scope, receive, send):
            await responder(body=b"bye")(scope, receive, send)
            done.set()
            await asyncio.sleep(3600)  # background work after the response

        log = make_log(app)
        task = asyncio.ensure_future(drive(log, http_scope()))
        await asyncio.wait_for(done.wait(), 10)
        await log.aflush(timeout=10)
        assert len(rows(log_path)) == 1  # committed while the task is still running
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await log.aflush(timeout=10)

    asyncio.run(main())
    found = rows(log_path)
    assert len(found) == 1  # not recorded twice
    assert found[0]["http_status"] == 200 and found[0]["exception"] is None


class Boom(Exception):
    pass


def test_exception_before_the_response(make_log, log_path):
    error = Boom("before")

    async def app(scope, receive, send):
        raise error

    log = make_log(app)
    with pytest.raises(Boom) as info:
        asyncio.run(drive(log, http_scope()))
    assert info.value is error  # unchanged: the same object
    log.flush(timeout=10)
    row = rows(log_path)[0]
    assert row["http_status"] == 500
    assert row["exception"] == f"{__name__}.Boom"
    assert row["body_size"] == 0


def test_builtin_exception_name(make_log, log_path):
    async def app(scope, receive, send):
        raise ValueError("x")

    log = make_log(app)
    with pytest.raises(ValueError):
        asyncio.run(drive(log, http_scope()))
    log.flush(timeout=10)
    assert rows(log_path)[0]["exception"] == "ValueError"


def test_exception_after_the_response_started(make_log, log_path):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise Boom("after")

    log = make_log(app)
    with pytest.raises(Boom, match="after"):
        asyncio.run(drive(log, http_scope()))
    log.flush(timeout=10)
    row = rows(log_path)[0]
    assert (row["http_status"], row["exception"], row["body_size"]) == (202, f"{__name__}.Boom", 7)


def test_exception_after_the_row_was_written_is_stored_too(make_log, log_path):
    # A background task that fails once the response is complete and its row committed.
    logs: list[AsgiLogToSqlite] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        await logs[0].aflush(10)
        assert rows(log_path)[-1]["exception"] is None  # written without it
        if scope["path"] == "/fails-late":
            raise Boom("late")

    log = make_log(app)
    logs.append(log)
    asyncio.run(drive(log, http_scope(path="/fine")))
    with pytest.raises(Boom, match="late"):
        asyncio.run(drive(log, http_scope(path="/fails-late")))
    asyncio.run(drive(log, http_scope(path="/fine-again")))
    log.flush(timeout=10)
    assert [(r["path"], r["http_status"], r["exception"]) for r in rows(log_path)] == [
        ("/fine", 200, None),
        ("/fails-late", 200, f"{__name__}.Boom"),
        ("/fine-again", 200, None),
    ]


def test_exception_through_httpx_still_logged(make_log, log_path):
    async def app(scope, receive, send):
        raise RuntimeError("nope")

    log = make_log(app)
    with pytest.raises(RuntimeError, match="nope"):
        asyncio.run(get(log))
    log.flush(timeout=10)
    assert rows(log_path)[0]["http_status"] == 500


def test_app_returning_without_a_response(make_log, log_path):
    async def app(scope, receive, send):
        return None

    log = make_log(app)
    assert asyncio.run(drive(log, http_scope())) == []
    log.flush(timeout=10)
    row = rows(log_path)[0]
    assert row["http_status"] == 500 and row["exception"] is None


def test_disconnect_from_receive(make_log, log_path):
    async def app(scope, receive, send):
        while (await receive())["type"] != "http.disconnect":
            pass

    log = make_log(app)
    incoming = [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.disconnect"},
    ]
    asyncio.run(drive(log, http_scope(method="POST"), incoming))
    log.flush(timeout=10)
    row = rows(log_path)[0]
    assert row["disconnected"] == 1
    assert row["request_body_size"] == 3


def test_disconnect_after_the_response_is_not_a_disconnect(make_log, log_path):
    async def app(scope, receive, send):
        await responder()(scope, receive, send)
        assert (await receive())["type"] == "http.disconnect"

    log = make_log(app)
    asyncio.run(drive(log, http_scope(), [{"type": "http.disconnect"}]))
    log.flush(timeout=10)
    assert rows(log_path)[0]["disconnected"] == 0


def test_disconnect_when_send_raises(make_log, log_path):
    class ClientGone(OSError):
        pass

    chunks = 0

    def hook(message):
        nonlocal chunks
        if message["type"] == "http.response.body":
            chunks += 1
            if chunks == 2:
                raise ClientGone("connection reset")

    log = make_log(responder(body=[b"1234", b"5678", b"9"]))
    with pytest.raises(ClientGone):
        asyncio.run(drive(log, http_scope(), send_hook=hook))
    log.flush(timeout=10)
    row = rows(log_path)[0]
    assert row["disconnected"] == 1
    assert row["http_status"] == 200
    assert row["body_size"] == 4  # bytes actually sent: not the chunk the server failed on
    assert row["exception"].endswith("ClientGone")


def test_bytes_sent_after_the_client_left_are_not_counted(make_log, log_path):
    # Servers drop what the app sends once the client is gone (uvicorn returns at once).
    async def app(scope, receive, send):
        assert (await receive())["type"] == "http.disconnect"
        await responder(body=b"x" * 100_000)(scope, receive, send)

    log = make_log(app)
    asyncio.run(drive(log, http_scope(), [{"type": "http.disconnect"}]))
    log.flush(timeout=10)
    row = rows(log_path)[0]
    assert (row["disconnected"], row["body_size"]) == (1, 0)


def test_a_second_response_start_refused_by_the_server_is_not_recorded(make_log, log_path):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.start", "status": 404,
                    "headers": [(b"content-type", b"text/html")]})

    starts = 0

    def hook(message):
        nonlocal starts
        if message["type"] == "http.response.start":
            starts += 1
            if starts == 2:
                raise RuntimeError("Response already started")  # as uvicorn says it

    log = make_log(app)
    with pytest.raises(RuntimeError):
        asyncio.run(drive(log, http_scope(), send_hook=hook))
    log.flush(timeout=10)
    row = rows(log_path)[0]
    assert (row["http_status"], row["content_type"]) == (200, "text/plain")  # what was sent
    assert row["exception"] == "RuntimeError"
    assert row["disconnected"] == 0  # the app's mistake, not a client that left


def test_a_pathsend_the_server_could_not_send_counts_no_byte(make_log, log_path, tmp_path):
    served = tmp_path / "big.bin"
    served.write_bytes(b"z" * 1000)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(served)})

    def hook(message):
        if message["type"] == "http.response.pathsend":
            raise OSError("connection reset")

    log = make_log(app)
    with pytest.raises(OSError):
        asyncio.run(drive(log, http_scope(extensions={"http.response.pathsend": {}}),
                          send_hook=hook))
    log.flush(timeout=10)
    row = rows(log_path)[0]
    assert (row["disconnected"], row["body_size"]) == (1, 0)


def test_messages_pass_through_unchanged(make_log):
    """The very same message objects reach the server, and receive hands back the same ones."""
    start = {"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]}
    body = {"type": "http.response.body", "body": b"ok", "more_body": False}
    request = {"type": "http.request", "body": b"in", "more_body": False}
    received = []

    async def app(scope, receive, send):
        received.append(await receive())
        await send(start)
        await send(body)

    log = make_log(app)
    sent = asyncio.run(drive(log, http_scope(), [request]))
    assert sent[0] is start and sent[1] is body
    assert received[0] is request
    assert start == {"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]}


def test_trailers_complete_the_response(make_log, log_path):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"abc"})
        await send({"type": "http.response.trailers", "headers": [(b"x-t", b"1")]})

    log = make_log(app)
    asyncio.run(drive(log, http_scope(extensions={"http.response.trailers": {}})))
    log.flush(timeout=10)
    row = rows(log_path)[0]
    assert (row["http_status"], row["body_size"]) == (200, 3)


def test_other_scope_types_pass_through(make_log, log_path):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    log = make_log(app)
    asyncio.run(drive(log, {"type": "custom"}))
    assert seen == ["custom"]


# ---- WebSocket -----------------------------------------------------------------------------
def ws_scope(**extra: Any) -> dict[str, Any]:
    scope = http_scope(type="websocket", scheme="ws", path="/ws", raw_path=b"/ws", subprotocols=[])
    del scope["method"]
    scope.update(extra)
    return scope


def test_websocket_accepted(make_log, log_path):
    async def app(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"].upper()})
        await send({"type": "websocket.send", "bytes": b"\x00\x01\x02"})
        await asyncio.sleep(0.05)
        assert (await receive())["type"] == "websocket.disconnect"

    log = make_log(app)
    incoming = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "héllo"},
        {"type": "websocket.disconnect", "code": 1000},
    ]
    sent = asyncio.run(drive(log, ws_scope(), incoming))
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.send"]
    log.flush(timeout=10)
    row = rows(log_path)[0]
    assert row["connection_type"] == "websocket"
    assert row["http_status"] == 101
    assert row["body_size"] == len("HÉLLO".encode()) + 3
    assert row["request_body_size"] == len("héllo".encode())
    assert row["duration"] >= 0.05
    assert row["path"] == "/ws" and row["method"] == "GET" and row["scheme"] == "ws"


def test_websocket_refused_before_accepting(make_log, log_path):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.close", "code": 1008})

    log = make_log(app)
    asyncio.run(drive(log, ws_scope(), [{"type": "websocket.connect"}]))
    log.flush(timeout=10)
    row = rows(log_path)[0]
    assert (row["http_status"], row["body_size"]) == (403, 0)


def test_websocket_denial_response(make_log, log_path):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"denied"})

    log = make_log(app)
    scope = ws_scope(extensions={"websocket.http.response": {}})
    asyncio.run(drive(log, scope, [{"type": "websocket.connect"}]))
    log.flush(timeout=10)
    row = rows(log_path)[0]
    assert (row["http_status"], row["body_size"]) == (401, 6)


def test_websocket_app_raising(make_log, log_path):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        raise Boom("ws")

    log = make_log(app)
    with pytest.raises(Boom):
        asyncio.run(drive(log, ws_scope(), [{"type": "websocket.connect"}]))
    log.flush(timeout=10)
    row = rows(log_path)[0]
    assert (row["http_status"], row["exception"]) == (101, f"{__name__}.Boom")


# ---- lifespan ------------------------------------------------------------------------------
def lifespan_server(log: AsgiLogToSqlite, log_path: str, before_shutdown=None):
    """Run lifespan like a server; return what it received and the row count it saw at the end."""
    state: dict[str, Any] = {"sent": [], "rows_at_complete": None}

    async def main():
        incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def receive():
            return await incoming.get()

        async def send(message):
            state["sent"].append(message)
            if message["type"] == "lifespan.shutdown.complete":
                state["rows_at_complete"] = len(rows(log_path))

        await incoming.put({"type": "lifespan.startup"})
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
        task = asyncio.ensure_future(log(scope, receive, send))
        for _ in range(200):
            if state["sent"]:
                break
            await asyncio.sleep(0.01)
        if before_shutdown is not None:
            await before_shutdown()
        await incoming.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(task, 20)

    asyncio.run(main())
    return state


def test_lifespan_passes_through_and_flushes_before_shutdown_complete(make_log, log_path):
    events = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await responder()(scope, receive, send)

    log = make_log(app, flush_interval=60)  # only the shutdown flush can commit these rows

    async def traffic():
        for _ in range(20):
            await get(log)

    state = lifespan_server(log, log_path, traffic)
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    assert [m["type"] for m in state["sent"]] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert state["rows_at_complete"] == 20


def test_lifespan_startup_failure_passes_through(make_log, log_path):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    log = make_log(app)
    sent: list[dict[str, Any]] = []

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(message):
        sent.append(message)

    asyncio.run(log({"type": "lifespan"}, receive, send))
    assert sent == [{"type": "lifespan.startup.failed", "message": "no database"}]


@pytest.mark.parametrize("behaviour", ["raises", "returns"])
def test_app_without_lifespan_support_is_still_flushed(make_log, log_path, behaviour):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            if behaviour == "raises":
                raise KeyError("method")  # what 0.1.1-era apps did
            return
        await responder()(scope, receive, send)

    log = make_log(app, flush_interval=60)

    async def traffic():
        for _ in range(7):
            await get(log)

    state = lifespan_server(log, log_path, traffic)
    assert [m["type"] for m in state["sent"]] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert state["rows_at_complete"] == 7


# ---- bad input -----------------------------------------------------------------------------
BAD_SCOPES = {
    "non-utf8 raw_path": {"path": "/caf\udcc3", "raw_path": b"/caf\xc3"},
    "non-utf8 query": {"query_string": b"q=\xff\xfe&x=\xc3("},
    "non-utf8 header values": {
        "headers": [(b"user-agent", b"bot\xff"), (b"referer", b"\xc3("), (b"host", b"h\xfe")]
    },
    "odd header case": {"headers": [(b"User-AGENT", b"Case"), (b"REFERER", b"https://r/")]},
    "duplicate headers": {
        "headers": [
            (b"user-agent", b"one"), (b"user-agent", b"two"), (b"host", b"a"), (b"host", b"b")
        ]
    },
    "64 KiB header": {"headers": [(b"user-agent", b"u" * 65536), (b"x-big", b"v" * 65536)]},
    "no client": {"client": ...},
    "client None": {"client": None},
    "empty method": {"method": ""},
    "HTTP/2": {"http_version": "2", "scheme": "https", "extensions": {"http.response.push": {}}},
    "no headers key": {"headers": ...},
    "no path": {"path": ..., "raw_path": ...},
    "str query": {"query_string": "a=1"},
    "server None": {"server": None},
}


@pytest.mark.parametrize("name", list(BAD_SCOPES))
def test_bad_input_never_breaks_the_response(make_log, log_path, name):
    scope = http_scope()
    for key, value in BAD_SCOPES[name].items():
        if value is ...:
            scope.pop(key, None)
        else:
            scope[key] = value
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"x/y")]}
    body = {"type": "http.response.body", "body": b"intact"}

    async def app(scope, receive, send):
        await send(start)
        await send(body)

    log = make_log(app, max_value_length=1000)
    sent = asyncio.run(drive(log, scope))
    assert sent == [start, body] and sent[0] is start and sent[1] is body
    log.flush(timeout=10)
    assert log.stats()["dropped_bad_record"] == 0
    found = rows(log_path)
    assert len(found) == 1
    row = found[0]
    for value in row.values():
        if isinstance(value, str):
            value.encode("utf-8")
            assert len(value) <= 1000
    assert row["http_status"] == 200 and row["body_size"] == 6
    if name == "64 KiB header":
        assert row["user_agent"] == "u" * 1000
    if name == "non-utf8 query":
        assert row["query_string"] == "?q=\\xff\\xfe&x=\\xc3("
    if name == "duplicate headers":
        assert (row["user_agent"], row["host"]) == ("one", "a")
    if name == "odd header case":
        assert (row["user_agent"], row["referer"]) == ("Case", "https://r/")
    if name in ("no client", "client None"):
        assert row["client_ip"] is None
    if name == "HTTP/2":
        assert row["http_version"] == "2"


def test_odd_messages_are_passed_on(make_log, log_path):
    """Messages we do not understand, or malformed ones, are the app's and server's business."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": "200", "headers": None})
        await send({"type": "http.response.body", "body": None})

    log = make_log(app)
    sent = asyncio.run(drive(log, http_scope()))
    assert sent[0]["status"] == "200"
    log.flush(timeout=10)
    assert rows(log_path)[0]["http_status"] == 200


def test_a_startup_that_raises_after_receiving_reaches_the_server_unchanged(make_log):
    """An app that received ``lifespan.startup`` and then raised failed its startup: the server
    must see that exception (and refuse to start), not a startup.complete sent on its behalf."""

    class DatabaseDown(Exception):
        pass

    async def app(scope, receive, send):
        await receive()
        raise DatabaseDown("no database")

    log = make_log(app)
    sent: list[dict[str, Any]] = []

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(message):
        sent.append(message)

    with pytest.raises(DatabaseDown):
        asyncio.run(log({"type": "lifespan"}, receive, send))
    assert sent == []


@pytest.mark.parametrize("behaviour", ["raises", "returns"])
def test_a_shutdown_that_fails_still_commits_every_row(make_log, log_path, behaviour):
    """The server sent ``lifespan.shutdown`` and the app then raised (or returned without
    answering): the rows are committed all the same, and the exception reaches the server."""

    class CleanupFailed(Exception):
        pass

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            if behaviour == "raises":
                raise CleanupFailed("pool would not close")
            return
        await responder()(scope, receive, send)

    log = make_log(app, flush_interval=60)  # only the shutdown flush can commit these rows

    async def traffic():
        for _ in range(9):
            await get(log)

    if behaviour == "raises":
        with pytest.raises(CleanupFailed):
            lifespan_server(log, log_path, traffic)
    else:
        state = lifespan_server(log, log_path, traffic)
        assert [m["type"] for m in state["sent"]] == ["lifespan.startup.complete"]
    assert len(rows(log_path)) == 9


# ---- the inline writer: no thread at all -----------------------------------------------------
def test_inline_writer_starts_no_thread_and_flushes_at_lifespan_shutdown(make_log, log_path):
    import threading

    before = {t.name for t in threading.enumerate()}
    answer = responder()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            raise ValueError("no lifespan here")  # the middleware answers it instead
        await answer(scope, receive, send)

    log = make_log(app, writer="inline", flush_interval=60)

    async def traffic():
        for i in range(40):
            await get(log, f"/inline/{i}")
        assert len(rows(log_path)) == 0  # nothing written before its time
        assert log.stats()["queued"] == 40

    state = lifespan_server(log, log_path, traffic)
    assert state["rows_at_complete"] == 40
    assert {t.name for t in threading.enumerate()} - before == set()
    assert log.stats()["writer"] == "inline"


def test_inline_writer_writes_in_slices_on_its_own(make_log, log_path):
    log = make_log(responder(), writer="inline", flush_interval=0.01)

    async def main():
        for i in range(600):
            await get(log, f"/s/{i % 7}")
        for _ in range(500):
            if log.stats()["written"] == 600:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert log.stats()["written"] == 600
    assert len(rows(log_path)) == 600


def test_auto_writer_falls_back_to_inline_where_threads_cannot_start(
    make_log, log_path, monkeypatch
):
    import threading

    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    log = make_log(responder())

    async def main():
        await get(log, "/no-threads")
        await log.aflush(10)

    asyncio.run(main())
    assert log.stats()["writer"] == "inline"
    assert [r["path"] for r in rows(log_path)] == ["/no-threads"]


def test_thread_writer_refuses_to_fall_back_when_asked_for(make_log, monkeypatch):
    import threading

    def refuse(self):
        raise RuntimeError("can't start new thread")

    log = make_log(responder(), writer="thread")
    monkeypatch.setattr(threading.Thread, "start", refuse)

    sent = asyncio.run(drive(log, http_scope()))  # still served: logging never breaks the app
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


# ---- isolation: one bad value never costs other rows -----------------------------------------
class _Surrogate(Exception):
    pass


_Surrogate.__qualname__ = "Bad\udcffName"
_Surrogate.__module__ = "mod\udcfe"


def _bad_apps() -> dict[str, Any]:
    async def huge_status(scope, receive, send):
        await send({"type": "http.response.start", "status": 2**63, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    async def inf_status(scope, receive, send):
        await send({"type": "http.response.start", "status": float("inf"), "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    async def huge_pathsend(scope, receive, send):
        headers = [(b"content-length", b"99999999999999999999")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": "/nonexistent"})

    async def huge_zerocopy(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.zerocopysend", "file": None, "count": 2**64})

    async def negative_zerocopy(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.zerocopysend", "file": None, "count": -5})

    async def surrogate_exception(scope, receive, send):
        raise _Surrogate("boom")

    async def headers_not_a_list(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": 5})
        await send({"type": "http.response.body", "body": b"x"})

    async def pathsend_number(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": 2**70})

    return {
        "status 2**63": huge_status,
        "status inf": inf_status,
        "pathsend Content-Length 10**20": huge_pathsend,
        "zerocopysend count 2**64": huge_zerocopy,
        "negative zerocopysend count": negative_zerocopy,
        "exception name with lone surrogates": surrogate_exception,
        "response headers not a list": headers_not_a_list,
        "pathsend path 2**70": pathsend_number,
    }


@pytest.mark.parametrize("name", list(_bad_apps()))
@pytest.mark.parametrize("strategy", ["process", "thread", "inline"])
def test_one_bad_request_among_2000_costs_no_other_row(make_log, log_path, name, strategy):
    bad = _bad_apps()[name]
    good = responder()

    async def app(scope, receive, send):
        if scope["path"] == "/bad":
            await bad(scope, receive, send)
        else:
            await good(scope, receive, send)

    log = make_log(app, writer=strategy, flush_interval=60, batch_size=5000)

    async def main():
        for i in range(2000):
            scope = http_scope(path="/bad" if i == 1000 else f"/good/{i % 10}")
            with contextlib.suppress(Exception):  # the bad app raises; the server would log it
                await drive(log, scope)
        started = time.monotonic()
        await log.aflush(10)
        return time.monotonic() - started

    took = asyncio.run(main())
    assert took < 5  # released at once, never held for retry_for
    found = rows(log_path)
    assert len(found) >= 1999
    assert len([r for r in found if r["path"] != "/bad"]) == 1999
    stats = log.stats()
    assert stats["dropped_write_failed"] == 0
    assert stats["dropped_bad_record"] + len(found) == 2000


# ---- callables that raise or answer junk never cost a row -------------------------------------
class _Junk:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@pytest.mark.parametrize("strategy", ["thread", "process"])
@pytest.mark.parametrize(
    "hooks",
    [
        {"route": lambda scope: _Junk(), "actor": lambda scope: _Junk()},
        {"route": lambda scope: 1 / 0, "actor": lambda scope: {}.missing},
        {"route": lambda scope: b"/bytes", "actor": lambda scope: ["a", "list"]},
    ],
)
def test_route_and_actor_callables_that_fail_leave_those_fields_empty(
    make_log, log_path, hooks, strategy
):
    log = make_log(responder(), writer=strategy, **hooks)

    async def main():
        for i in range(5):
            await get(log, f"/hooks/{i}")
        await log.aflush(30)

    asyncio.run(main())
    found = rows(log_path)
    assert [r["path"] for r in found] == [f"/hooks/{i}" for i in range(5)]
    assert all(r["route"] is None for r in found)
    assert log.stats()["route_errors"] >= 5 or hooks["route"](None) == b"/bytes"


@pytest.mark.parametrize("clock", [lambda: 1 / 0, lambda: "noon", lambda: float("nan"),
                                   lambda: None])
def test_a_clock_that_fails_falls_back_to_the_system_clock(make_log, log_path, clock, caplog):
    log = make_log(responder(), rotate="daily", clock=clock, flush_interval=0.05)

    async def main():
        for i in range(3):
            await get(log, f"/clock/{i}")
        await log.aflush(30)

    with caplog.at_level(logging.WARNING, logger="asgi_log_to_sqlite"):
        asyncio.run(main())
    assert [r["path"] for r in rows(log_path)] == ["/clock/0", "/clock/1", "/clock/2"]
    assert log.stats()["dropped_write_failed"] == 0
    assert any("clock option failed" in r.getMessage() for r in caplog.records)
