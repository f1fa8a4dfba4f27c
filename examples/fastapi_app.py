"""FastAPI, wrapped with AsgiLogToSqlite.  Run: ``uvicorn fastapi_app:app`` from this folder."""

from __future__ import annotations

from fastapi import BackgroundTasks, FastAPI, WebSocket
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from shared import (
    HELLO,
    LOG_FILE,
    SAMPLE_FILE,
    send_welcome_email,
    sse_events,
    stream_chunks,
)

from asgi_log_to_sqlite import AsgiLogToSqlite

api = FastAPI()


@api.get("/", response_class=PlainTextResponse)
async def hello():
    return HELLO


@api.get("/stream")
async def stream():
    return StreamingResponse(stream_chunks(), media_type="text/plain")


@api.get("/sse")
async def sse():
    return StreamingResponse(sse_events(), media_type="text/event-stream")


@api.get("/file")
async def file():
    return FileResponse(SAMPLE_FILE)


@api.get("/error")
async def error():
    raise RuntimeError("this view always fails")


@api.get("/background", status_code=202, response_class=PlainTextResponse)
async def background(tasks: BackgroundTasks):
    tasks.add_task(send_welcome_email)  # runs after the response has been sent
    return "Accepted"


@api.websocket("/ws")
async def echo(websocket: WebSocket):
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(f"echo: {text}")
    await websocket.close()


# Wrap the FastAPI app rather than api.add_middleware(): the log then also sees the answers of
# FastAPI's own middleware stack (errors, redirects) exactly as the client gets them.
app = AsgiLogToSqlite(api, LOG_FILE)
