"""The benchmarked app: a hello world, bare or wrapped, chosen by ``BENCH_APP``.

``BENCH_APP=bare`` serves the bare app; ``wrapped`` wraps it in ``AsgiLogToSqlite`` writing to
``BENCH_DB``. In the ``.venv-seed`` virtualenv the same import gives asgi-log-to-sqlite 0.1.1.

Two variants take the cost apart (``run.py --diagnose``): ``discard`` is the middleware with a
writer that drops every record (what the event loop's own work costs), ``busy-thread`` the bare
app beside a thread that computes in Python a quarter of the time (what any such thread costs
the loop, through the GIL), and ``idle-writer`` the middleware whose writer process reads what
it is sent and stores nothing (``idle_writer.py``: the loop's shipping, without the writer's
CPU).
"""

from __future__ import annotations

import os
import threading
import time

BODY = b"Hello, world!"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def hello(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def busy_thread(duty: float = 0.25, period: float = 0.08) -> None:
    """Start a daemon thread that spins ``duty`` of every ``period`` seconds, sleeping between."""

    def spin() -> None:
        while True:
            end = time.perf_counter() + duty * period
            while time.perf_counter() < end:
                sum(range(100))
            time.sleep((1 - duty) * period)

    threading.Thread(target=spin, name="busy", daemon=True).start()


def make(kind: str, db: str | None):
    if kind == "bare":
        return hello
    if kind == "busy-thread":
        busy_thread()
        return hello
    from asgi_log_to_sqlite import AsgiLogToSqlite

    if kind == "idle-writer":
        from asgi_log_to_sqlite.writer_process import ProcessWriter

        ProcessWriter.COMMAND = (os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                              "idle_writer.py"),)
    if kind == "discard":
        from asgi_log_to_sqlite.writer import Queue
        from asgi_log_to_sqlite.writer_process import ProcessWriter

        # This process only, a benchmark variant: every strategy's queue drops its records.
        Queue.put = ProcessWriter.put = lambda self, exchange: None
    import json

    # Middleware options for a variant, e.g. BENCH_OPTIONS='{"writer": "inline"}'.
    options = json.loads(os.environ.get("BENCH_OPTIONS") or "{}")
    if kind == "capture":
        options["capture_requests"] = True
    if kind == "capture-responses":
        options.update(capture_requests=True, capture_responses=True)
    return AsgiLogToSqlite(hello, db, **options)


app = make(os.environ.get("BENCH_APP", "bare"), os.environ.get("BENCH_DB", "bench.db"))
