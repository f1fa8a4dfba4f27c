"""The benchmarked app: a hello world, bare or wrapped, chosen by ``BENCH_APP``.

``BENCH_APP=bare`` serves the bare app; ``wrapped`` wraps it in ``AsgiLogToSqlite`` writing to
``BENCH_DB``. In the ``.venv-seed`` virtualenv the same import gives asgi-log-to-sqlite 0.1.1.
"""

from __future__ import annotations

import os

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


def make(kind: str, db: str | None):
    if kind == "bare":
        return hello
    from asgi_log_to_sqlite import AsgiLogToSqlite

    return AsgiLogToSqlite(hello, db)


app = make(os.environ.get("BENCH_APP", "bare"), os.environ.get("BENCH_DB", "bench.db"))
