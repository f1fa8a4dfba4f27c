"""flush="response": each request's row is committed before the ASGI call returns, with every
writer strategy; "auto" does so on AWS Lambda, where the inline writer is chosen."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time

import pytest

from asgi_log_to_sqlite import AsgiLogToSqlite

LOGGER = "asgi_log_to_sqlite"


@pytest.fixture(autouse=True)
def no_lambda(monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)


def committed(path: str) -> list[tuple]:
    """Rows another connection sees: what is committed, nothing in flight."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT path, http_status, exception FROM requests_view ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})
    if scope["path"] == "/late":
        raise ValueError("after the response")


def scope_for(path: str) -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "headers": [], "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
    }


async def call(app, path: str) -> None:
    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        pass

    await app(scope_for(path), receive, send)


@pytest.mark.parametrize("writer", ["inline", "thread", "process"])
def test_each_row_is_committed_when_the_call_returns(make_log, log_path, writer):
    log = make_log(hello, flush="response", writer=writer, flush_interval=60)

    async def main():
        seen = []
        for i in range(5):
            await call(log, f"/p{i}")
            seen.append(len(committed(log_path)))
        with pytest.raises(RuntimeError):
            await call(log, "/boom")
        seen.append(committed(log_path)[-1])
        with pytest.raises(ValueError):
            await call(log, "/late")
        seen.append(committed(log_path)[-1])
        return seen

    seen = asyncio.run(main())
    assert log.stats()["writer"] == writer
    assert seen[:5] == [1, 2, 3, 4, 5]
    assert seen[5] == ("/boom", 500, "RuntimeError")
    assert seen[6] == ("/late", 200, "ValueError")


def test_batch_leaves_rows_to_the_writer(make_log, log_path):
    log = make_log(hello, flush="batch", writer="thread", flush_interval=60)
    asyncio.run(call(log, "/"))
    assert committed(log_path) == []  # the writer commits every flush_interval
    log.flush(10)
    assert len(committed(log_path)) == 1


def test_concurrent_requests_share_commits(make_log, log_path):
    log = make_log(hello, flush="response", writer="thread")

    async def main():
        await asyncio.gather(*(call(log, f"/c{i}") for i in range(200)))

    asyncio.run(main())
    assert len(committed(log_path)) == 200
    assert log.stats()["written"] == 200


def test_websocket_rows_are_committed_too(make_log, log_path):
    async def ws(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})

    log = make_log(ws, flush="response", writer="thread", flush_interval=60)
    incoming = [{"type": "websocket.connect"}]

    async def main():
        async def receive():
            return incoming.pop(0) if incoming else {"type": "websocket.disconnect"}

        async def send(message):
            pass

        scope = {**scope_for("/ws"), "type": "websocket", "scheme": "ws"}
        await log(scope, receive, send)
        return committed(log_path)

    assert asyncio.run(main()) == [("/ws", 101, None)]


def test_on_lambda_auto_means_response_and_inline(make_log, log_path, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "my-function")
    log = make_log(hello)

    async def main():
        await call(log, "/lambda")
        return committed(log_path)

    assert asyncio.run(main()) == [("/lambda", 200, None)]
    assert log.commit_each
    assert log.stats()["writer"] == "inline"


def test_on_lambda_batch_can_be_chosen(make_log, log_path, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "my-function")
    log = make_log(hello, flush="batch", writer="thread")
    assert not log.commit_each
    asyncio.run(call(log, "/"))
    log.flush(10)
    assert len(committed(log_path)) == 1


def test_a_locked_file_delays_the_call_by_busy_timeout_at_most(make_log, log_path, caplog):
    log = make_log(hello, flush="response", writer="thread", busy_timeout=0.3)
    asyncio.run(call(log, "/first"))
    holder = sqlite3.connect(log_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    try:
        with caplog.at_level(logging.WARNING, LOGGER):
            began = time.monotonic()
            asyncio.run(call(log, "/second"))
            waited = time.monotonic() - began
            asyncio.run(call(log, "/third"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Bounded: the response is never held past the timeout (plus a retry pause) for a log.
    assert waited < 10
    assert "was not committed before its response ended" in caplog.text
    assert caplog.text.count("was not committed before its response ended") == 1
    log.flush(30)  # the rows stayed queued and the writer stores them once the lock is gone
    assert [row[0] for row in committed(log_path)] == ["/first", "/second", "/third"]


def test_the_flush_option_is_validated():
    with pytest.raises(ValueError, match="option 'flush' must be one of"):
        AsgiLogToSqlite(hello, "x.db", flush="sometimes")


@pytest.mark.parametrize("writer", ["inline", "thread", "process"])
def test_the_row_is_committed_before_the_last_message_reaches_the_server(
    make_log, log_path, writer
):
    log = make_log(hello, flush="response", writer=writer, flush_interval=60)
    seen: list[tuple] = []

    async def main():
        async def receive():
            return {"type": "http.request", "body": b""}

        async def send(message):
            if message["type"] == "http.response.body" and not message.get("more_body"):
                seen.extend(committed(log_path))  # the server is about to send the last byte

        await log(scope_for("/first-byte"), receive, send)

    asyncio.run(main())
    assert seen == [("/first-byte", 200, None)]
