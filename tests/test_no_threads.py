"""Where no thread can start (Pyodide, Datasette Lite), in CPython: ``Thread.start`` raises and
``sys.platform`` says "emscripten". The writer runs inline on the event loop, and the Datasette
plugin works in Datasette's no-thread mode (``num_sql_threads=0``). tests/test_pyodide.py runs
the middleware in real Pyodide as well."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from datasette.app import Datasette

from asgi_log_to_sqlite import AsgiLogToSqlite, datasette_plugin


@pytest.fixture
def no_threads(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(sys, "platform", "emscripten")
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    with pytest.raises(RuntimeError):
        threading.Thread(target=print).start()


def count(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    finally:
        conn.close()


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def scope(path: str) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}


async def call(app, path: str) -> None:
    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        pass

    await app(scope(path), receive, send)


def test_the_writer_runs_on_the_event_loop(no_threads, log_path):
    log = AsgiLogToSqlite(hello, log_path, flush_interval=0.01)
    threads = threading.active_count()

    async def main():
        for i in range(50):
            await call(log, f"/{i}")
        before = count(log_path)
        for _ in range(200):  # the loop runs the writer's slices between requests
            await asyncio.sleep(0.01)
            if count(log_path) == 50:
                break
        return before

    assert asyncio.run(main()) == 0
    assert count(log_path) == 50
    assert log.stats()["writer"] == "inline"
    assert threading.active_count() == threads
    log.close()


def test_the_writer_goes_on_with_the_next_event_loop(no_threads, log_path):
    # The first loop ends (asyncio.run returns) before the writer's timer fires: that timer
    # never will. The next loop that serves gets a timer of its own, rather than none at all.
    log = AsgiLogToSqlite(hello, log_path, flush_interval=0.05)

    async def serve(tag: str) -> int:
        for i in range(5):
            await call(log, f"/{tag}/{i}")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if count(log_path) >= 10:
                break
        return count(log_path)

    async def first() -> None:
        for i in range(5):
            await call(log, f"/first/{i}")

    asyncio.run(first())
    assert count(log_path) == 0
    assert asyncio.run(serve("second")) == 10
    log.close()


def test_a_locked_database_does_not_stall_the_event_loop(log_path):
    # The inline writer writes on the loop: a database another connection keeps locked fails
    # the slice at once and is retried later. It used to block the loop for busy_timeout.
    log = AsgiLogToSqlite(hello, log_path, writer="inline", busy_timeout=2, flush_interval=0.05)
    other = sqlite3.connect(log_path, isolation_level=None)

    async def main() -> float:
        other.execute("BEGIN IMMEDIATE")
        worst, last = 0.0, time.monotonic()
        for i in range(60):
            await call(log, f"/{i}")
            await asyncio.sleep(0.01)
            now = time.monotonic()
            worst, last = max(worst, now - last), now
        other.execute("COMMIT")
        await log.aflush(30)
        return worst

    try:
        worst = asyncio.run(main())
    finally:
        other.close()
        log.close()
    assert worst < 1.0  # a stall would be busy_timeout: 2 s
    assert count(log_path) == 60
    assert log.stats()["write_errors"] > 0


def test_flush_response_without_threads(no_threads, log_path):
    log = AsgiLogToSqlite(hello, log_path, flush="response")

    async def main():
        seen = []
        for i in range(3):
            await call(log, f"/{i}")
            seen.append(count(log_path))
        return seen

    assert asyncio.run(main()) == [1, 2, 3]
    log.close()


@pytest.mark.parametrize("flush", ["batch", "response"])
def test_the_datasette_plugin_in_no_thread_mode(no_threads, data_db, log_path, flush):
    ds = Datasette(
        [data_db],
        metadata={"plugins": {"asgi-log-to-sqlite": {"file": log_path, "flush": flush}}},
        settings={"num_sql_threads": 0},
    )

    async def main():
        await ds.invoke_startup()
        items = await ds.client.get("/data/items.json?_shape=array")
        missing = await ds.client.get("/data/nope.json")
        middleware = datasette_plugin._state(ds).middleware
        if flush == "batch":
            await middleware.aflush(10)  # in Pyodide, the loop's next slices do this
        # Datasette reads the log itself, with SQL on the event loop too.
        ds.add_database(ds.databases["data"].__class__(ds, path=log_path), name="log")
        served = await ds.client.get(
            "/log.json?sql=select+count(*)+as+n+from+requests&_shape=array",
            cookies={"ds_actor": ds.sign({"a": {"id": "root"}}, "actor")},
        )
        return items, missing, served, middleware

    items, missing, served, middleware = asyncio.run(main())
    assert items.json() == [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]
    assert missing.status_code == 404
    assert middleware.stats()["writer"] == "inline"
    assert served.json() == [{"n": 2}]
    middleware.close()
    assert count(log_path) == 3  # the query of the log is a request too


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_datasette_serve_in_no_thread_mode(tmp_path, data_db, log_path):
    """A real ``datasette serve --setting num_sql_threads 0`` over HTTP: each response's row is
    in the log when the client has it (flush="response")."""
    import json

    import httpx
    from support import BIN, Server, free_port

    metadata = tmp_path / "metadata.json"
    metadata.write_text(json.dumps(
        {"plugins": {"asgi-log-to-sqlite": {"file": log_path, "flush": "response"}}}))
    port = free_port()
    server = Server(
        [str(BIN / "datasette"), "serve", data_db, "-m", str(metadata), "--host", "127.0.0.1",
         "--port", str(port), "--setting", "num_sql_threads", "0"],
        port, cwd=tmp_path, log=tmp_path / "datasette.out",
    )
    with server, httpx.Client(base_url=server.url, timeout=30) as client:
        seen = []
        for path in ("/data/items.json?_shape=array", "/data/nope.json", "/-/versions.json"):
            response = client.get(path)
            conn = sqlite3.connect(f"file:{log_path}?mode=ro", uri=True)
            try:
                seen.append(conn.execute(
                    "SELECT path, http_status FROM requests_view ORDER BY id DESC LIMIT 1"
                ).fetchone())
            finally:
                conn.close()
            assert seen[-1][1] == response.status_code
        settings = client.get("/-/settings.json").json()
    assert settings["num_sql_threads"] == 0
    assert seen == [("/data/items.json", 200), ("/data/nope.json", 404),
                    ("/-/versions.json", 200)]
