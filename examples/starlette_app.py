"""Starlette, wrapped with AsgiLogToSqlite.  Run: ``uvicorn starlette_app:app`` from this folder."""

from __future__ import annotations

from shared import (
    HELLO,
    LOG_FILE,
    SAMPLE_FILE,
    send_welcome_email,
    sse_events,
    stream_chunks,
)
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from asgi_log_to_sqlite import AsgiLogToSqlite


async def hello(request):
    return PlainTextResponse(HELLO)


async def stream(request):
    return StreamingResponse(stream_chunks(), media_type="text/plain")


async def sse(request):
    return StreamingResponse(sse_events(), media_type="text/event-stream")


async def file(request):
    return FileResponse(SAMPLE_FILE)


async def error(request):
    raise RuntimeError("this view always fails")


async def background(request):
    # Starlette runs the task after the last body byte, inside the same ASGI call.
    return PlainTextResponse(
        "Accepted", status_code=202, background=BackgroundTask(send_welcome_email)
    )


async def echo(websocket: WebSocket):
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(f"echo: {text}")
    await websocket.close()


starlette_app = Starlette(
    routes=[
        Route("/", hello),
        Route("/stream", stream),
        Route("/sse", sse),
        Route("/file", file),
        Route("/error", error),
        Route("/background", background),
        WebSocketRoute("/ws", echo),
    ]
)

# Outermost, so the log sees exactly what the client got (see docs/frameworks.md).
app = AsgiLogToSqlite(starlette_app, LOG_FILE)
