"""Quart, wrapped with AsgiLogToSqlite.  Run: ``uvicorn quart_app:app`` from this folder."""

from __future__ import annotations

from quart import Quart, send_file, websocket
from shared import (
    HELLO,
    LOG_FILE,
    SAMPLE_FILE,
    send_welcome_email,
    sse_events,
    stream_chunks,
)

from asgi_log_to_sqlite import AsgiLogToSqlite

quart_app = Quart(__name__)


@quart_app.get("/")
async def hello():
    return HELLO, 200, {"Content-Type": "text/plain; charset=utf-8"}


@quart_app.get("/stream")
async def stream():
    return stream_chunks(), 200, {"Content-Type": "text/plain"}


@quart_app.get("/sse")
async def sse():
    return sse_events(), 200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


@quart_app.get("/file")
async def file():
    return await send_file(SAMPLE_FILE, mimetype="text/plain")


@quart_app.get("/error")
async def error():
    raise RuntimeError("this view always fails")


@quart_app.get("/background")
async def background():
    # Quart runs it as a task beside the response; the recorded duration does not wait for it.
    quart_app.add_background_task(send_welcome_email)
    return "Accepted", 202, {"Content-Type": "text/plain"}


@quart_app.websocket("/ws")
async def echo():
    text = await websocket.receive()
    await websocket.send(f"echo: {text}")


# Quart's own way to add ASGI middleware: `app` stays a Quart instance (for `quart run`, the test
# client...), and the log still wraps everything Quart answers, lifespan included.
quart_app.asgi_app = AsgiLogToSqlite(quart_app.asgi_app, LOG_FILE)
app = quart_app
