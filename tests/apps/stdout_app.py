"""A small app logged twice, for the round trip of JSON lines through ``import``: the outer
middleware writes the SQLite file ``ASGI_LOG_DB``, the inner one prints JSON lines to standard
output, both with ``flush="response"``. The same requests become rows in both."""

from __future__ import annotations

import os

from asgi_log_to_sqlite import AsgiLogToSqlite


async def _app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"unsupported scope type {scope['type']!r}")
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/boom":
        raise RuntimeError("boom")
    status = int(path.rsplit("/", 1)[1]) if path.startswith("/status/") else 200
    content_type = b"application/json" if path.startswith("/api/") else b"text/html; charset=utf-8"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": b"x" * (len(path) + len(body))})


OPTIONS = dict(flush="response", visitor_hash="a shared secret for both logs",
               exclude_health_checks=False)
app = AsgiLogToSqlite(AsgiLogToSqlite(_app, "-", **OPTIONS), os.environ["ASGI_LOG_DB"], **OPTIONS)
