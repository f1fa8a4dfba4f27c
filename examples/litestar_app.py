"""Litestar, wrapped with AsgiLogToSqlite.  Run: ``uvicorn litestar_app:app`` from this folder."""

from __future__ import annotations

from litestar import Litestar, MediaType, Response, WebSocket, get, websocket
from litestar.background_tasks import BackgroundTask
from litestar.response import File, ServerSentEvent, Stream
from shared import (
    HELLO,
    LOG_FILE,
    SAMPLE_FILE,
    send_welcome_email,
    stream_chunks,
)

from asgi_log_to_sqlite import AsgiLogToSqlite


@get("/", media_type=MediaType.TEXT)
async def hello() -> str:
    return HELLO


@get("/stream")
async def stream() -> Stream:
    return Stream(stream_chunks(), media_type=MediaType.TEXT)


async def ticks():
    for i in range(3):
        yield f"tick {i}"


@get("/sse")
async def sse() -> ServerSentEvent:
    return ServerSentEvent(ticks())


@get("/file")
async def file() -> File:
    return File(SAMPLE_FILE, media_type=MediaType.TEXT)


@get("/error")
async def error() -> None:
    raise RuntimeError("this view always fails")


@get("/background", status_code=202)
async def background() -> Response[str]:
    # Litestar runs the task after the last body byte, inside the same ASGI call.
    return Response(
        "Accepted", media_type=MediaType.TEXT, background=BackgroundTask(send_welcome_email)
    )


@websocket("/ws")
async def echo(socket: WebSocket) -> None:
    await socket.accept()
    text = await socket.receive_text()
    await socket.send_text(f"echo: {text}")
    await socket.close()


litestar_app = Litestar(route_handlers=[hello, stream, sse, file, error, background, echo])

app = AsgiLogToSqlite(litestar_app, LOG_FILE)
