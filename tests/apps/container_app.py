"""A raw ASGI app wrapped in the middleware, for a server standing for a container (Cloud Run,
Fly, a scale-to-zero host) that the e2e tests SIGKILL right after its last response.

``ASGI_LOG_TARGET`` is the log (a file, or ``-`` for JSON lines on standard output),
``ASGI_LOG_FLUSH`` and ``ASGI_LOG_WRITER`` the options of the same names. The writer's own
batches come only every 60 s: rows that reach the log before the kill came through
``flush="response"``.
"""

from __future__ import annotations

import os

from asgi_log_to_sqlite import AsgiLogToSqlite


async def _app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"unsupported scope type {scope['type']!r}")
    path = scope["path"]
    chunks = [b"hello, world"]
    if path.startswith("/stream/"):
        chunks = [b"chunk %d\n" % i for i in range(int(path.rsplit("/", 1)[1]))]
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    for i, chunk in enumerate(chunks):
        await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})


app = AsgiLogToSqlite(
    _app,
    os.environ["ASGI_LOG_TARGET"],
    flush=os.environ.get("ASGI_LOG_FLUSH", "response"),
    writer=os.environ.get("ASGI_LOG_WRITER", "auto"),
    flush_interval=60,
)
