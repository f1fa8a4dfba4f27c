# Runs inside Pyodide (see run.mjs, which awaits main()): the middleware on Pyodide's own event
# loop, where no thread and no process can start. Prints one "RESULT <json>" line for
# tests/test_pyodide.py.
import asyncio
import json
import sqlite3
import sys
import threading

sys.path.insert(0, "/src")

from asgi_log_to_sqlite import AsgiLogToSqlite

result = {"platform": sys.platform, "sqlite": sqlite3.sqlite_version}
try:
    threading.Thread(target=print).start()
    result["thread_started"] = True
except RuntimeError:
    result["thread_started"] = False


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rpartition(".")[2]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello from pyodide"})


def scope(path):
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "https", "path": path, "raw_path": path.encode(),
            "query_string": b"api_key=abc&x=1", "headers": [(b"user-agent", b"Pyodide")],
            "client": ("192.0.2.1", 1234), "server": ("127.0.0.1", 80)}


async def receive():
    return {"type": "http.request", "body": b""}


async def send(message):
    pass


def count(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    finally:
        conn.close()


async def main():
    # The default: batched, written by the inline writer on the event loop's own timer.
    batched = AsgiLogToSqlite(app, "/tmp/batched.db", flush_interval=0.05)
    for i in range(20):
        await batched(scope(f"/batched/{i}"), receive, send)
    result["batched_writer"] = batched.stats()["writer"]
    result["batched_before_the_loop_ran"] = count("/tmp/batched.db")
    await asyncio.sleep(0.5)  # the loop runs the writer's slices meanwhile
    result["batched_after"] = count("/tmp/batched.db")
    conn = sqlite3.connect("/tmp/batched.db")
    result["query"] = conn.execute("SELECT query_string FROM requests_view LIMIT 1").fetchone()[0]
    conn.close()

    # flush="response": each row committed before the call returns.
    each = AsgiLogToSqlite(app, "/tmp/each.db", flush="response")
    seen = []
    for i in range(5):
        await each(scope(f"/each/{i}"), receive, send)
        seen.append(count("/tmp/each.db"))
    result["each"] = seen

    # A lifespan shutdown commits what waits.
    life = AsgiLogToSqlite(app, "/tmp/life.db", flush_interval=3600)
    messages = [{"type": "lifespan.startup"}]
    for i in range(3):
        await life(scope(f"/life/{i}"), receive, send)
    shutdown_done = asyncio.Event()


    async def life_receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(0)
        return {"type": "lifespan.shutdown"}


    async def life_send(message):
        if message["type"] == "lifespan.shutdown.complete":
            shutdown_done.set()


    before = count("/tmp/life.db")
    await life({"type": "lifespan", "asgi": {"version": "3.0"}}, life_receive, life_send)
    result["lifespan"] = [before, count("/tmp/life.db")]

    # JSON lines to standard output.
    lines = AsgiLogToSqlite(app, "-", flush="response")
    await lines(scope("/stdout"), receive, send)
    result["stdout_writer"] = lines.stats()["writer"]

    result["threads"] = threading.active_count()
    for log in (batched, each, life, lines):
        log.close()
    print("RESULT " + json.dumps(result))
