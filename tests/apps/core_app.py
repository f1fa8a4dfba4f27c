"""A raw ASGI app wrapped in the middleware, for servers run in a subprocess by the e2e tests.

The log file comes from ``ASGI_LOG_DB``; ``ASGI_LOG_FLUSH_INTERVAL`` set very long leaves the
shutdown flush as the only way rows can reach the file. ``app`` speaks lifespan;
``no_lifespan_app`` raises
on the lifespan scope like many hand-written apps do.

Paths: ``/`` hello world, ``/status/<n>`` answers status n, ``/stream/<n>`` streams n chunks.
"""

from __future__ import annotations

import os

from asgi_log_to_sqlite import AsgiLogToSqlite


async def _http(scope, receive, send):
    path = scope["path"]
    status, chunks = 200, [b"hello, world"]
    if path.startswith("/status/"):
        status, chunks = int(path.rsplit("/", 1)[1]), [b"status"]
    elif path.startswith("/stream/"):
        chunks = [b"chunk %d\n" % i for i in range(int(path.rsplit("/", 1)[1]))]
    await send(
        {"type": "http.response.start", "status": status,
         "headers": [(b"content-type", b"text/plain")]}
    )
    for i, chunk in enumerate(chunks):
        await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})


async def _with_lifespan(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await _http(scope, receive, send)


async def _without_lifespan(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"unsupported scope type {scope['type']!r}")
    await _http(scope, receive, send)


_LOG = os.environ.get("ASGI_LOG_DB", "core-e2e.db")
_INTERVAL = float(os.environ.get("ASGI_LOG_FLUSH_INTERVAL", "0.2"))
app = AsgiLogToSqlite(_with_lifespan, _LOG, flush_interval=_INTERVAL)
no_lifespan_app = AsgiLogToSqlite(_without_lifespan, _LOG, flush_interval=_INTERVAL)


async def _failing_startup(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("the database is down")  # a startup that fails
    await _http(scope, receive, send)


failing_startup_app = AsgiLogToSqlite(_failing_startup, _LOG, flush_interval=_INTERVAL)
