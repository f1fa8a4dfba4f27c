"""A raw ASGI app logging to PostgreSQL, for the servers the e2e tests run as separate hosts.

``ASGI_LOG_URL`` names the database, ``ASGI_LOG_INSTANCE`` the host this server stands for,
``ASGI_LOG_SPILL`` its spill file. Every path answers 200 with a short text body.
"""

from __future__ import annotations

import os

from asgi_log_to_sqlite import AsgiLogToSqlite


async def _app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"logged centrally"})


app = AsgiLogToSqlite(
    _app,
    os.environ["ASGI_LOG_URL"],
    instance=os.environ["ASGI_LOG_INSTANCE"],
    spill=os.environ["ASGI_LOG_SPILL"],
)
