"""A plain ASGI 3 application, no framework, wrapped with AsgiLogToSqlite.

Run it with any ASGI server, from this folder::

    uvicorn raw_asgi:app
    hypercorn raw_asgi:app
    granian --interface asgi raw_asgi:app
    daphne raw_asgi:app

It uses the ASGI extensions a server offers in ``scope["extensions"]``:
``http.response.pathsend`` for ``/file`` (granian), ``http.response.early_hint`` and
``http.response.trailers`` for ``/trailers`` (hypercorn over HTTP/2), and
``websocket.http.response`` to refuse WebSockets on unknown paths with a 404 page. It does not
speak the lifespan protocol; the middleware answers it, so its flush at shutdown still runs.
"""

from __future__ import annotations

import asyncio

from shared import (
    HELLO,
    LOG_FILE,
    SAMPLE_FILE,
    SSE_EVENTS,
    STREAM_CHUNKS,
    send_welcome_email,
)

from asgi_log_to_sqlite import AsgiLogToSqlite


async def start(send, status=200, content_type=b"text/plain; charset=utf-8", headers=(), **extra):
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), *headers],
            **extra,
        }
    )


async def hello(scope, receive, send):
    await start(send)
    await send({"type": "http.response.body", "body": HELLO.encode()})


async def stream(scope, receive, send):
    await start(send)
    for chunk in STREAM_CHUNKS:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def sse(scope, receive, send):
    await start(send, content_type=b"text/event-stream", headers=[(b"cache-control", b"no-cache")])
    for event in SSE_EVENTS:
        await send({"type": "http.response.body", "body": event, "more_body": True})
        await asyncio.sleep(0.01)
    await send({"type": "http.response.body", "body": b""})


async def file(scope, receive, send):
    size = SAMPLE_FILE.stat().st_size
    length = (b"content-length", str(size).encode())
    if "http.response.pathsend" in (scope.get("extensions") or {}):
        # The server sends the file itself (zero copy): the middleware records its size.
        await start(send, headers=[length, (b"x-sent-with", b"pathsend")])
        await send({"type": "http.response.pathsend", "path": str(SAMPLE_FILE)})
        return
    data = await asyncio.to_thread(SAMPLE_FILE.read_bytes)
    await start(send, headers=[length, (b"x-sent-with", b"body")])
    for offset in range(0, len(data), 8192):
        more = offset + 8192 < len(data)
        await send(
            {"type": "http.response.body", "body": data[offset : offset + 8192], "more_body": more}
        )


async def error(scope, receive, send):
    raise RuntimeError("this view always fails")


async def background(scope, receive, send):
    await start(send, status=202)
    await send({"type": "http.response.body", "body": b"Accepted"})
    # The response is complete; the app keeps running, the recorded duration does not.
    await send_welcome_email()


async def trailers(scope, receive, send):
    extensions = scope.get("extensions") or {}
    if "http.response.early_hint" in extensions:
        await send({"type": "http.response.early_hint", "links": [b"</file>; rel=preload"]})
    with_trailers = "http.response.trailers" in extensions
    await start(send, headers=[(b"trailer", b"x-checksum")], trailers=with_trailers)
    await send({"type": "http.response.body", "body": HELLO.encode()})
    if with_trailers:
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"42")]})


async def not_found(scope, receive, send):
    await start(send, status=404)
    await send({"type": "http.response.body", "body": b"Not Found"})


async def websocket_echo(scope, receive, send):
    message = await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text") or (message.get("bytes") or b"").decode()
        await send({"type": "websocket.send", "text": f"echo: {text}"})
        await send({"type": "websocket.close", "code": 1000})
        return


async def refuse_websocket(scope, receive, send):
    await receive()  # websocket.connect
    if "websocket.http.response" in (scope.get("extensions") or {}):
        # The denial response extension: a real HTTP answer instead of the server's bare 403.
        await send({"type": "websocket.http.response.start", "status": 404, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"No WebSocket here"})
    else:
        await send({"type": "websocket.close", "code": 1008})


ROUTES = {
    "/": hello,
    "/stream": stream,
    "/sse": sse,
    "/file": file,
    "/error": error,
    "/background": background,
    "/trailers": trailers,
}


async def raw_app(scope, receive, send):
    if scope["type"] == "http":
        await ROUTES.get(scope["path"], not_found)(scope, receive, send)
    elif scope["type"] == "websocket" and scope["path"] == "/ws":
        await websocket_echo(scope, receive, send)
    elif scope["type"] == "websocket":
        await refuse_websocket(scope, receive, send)
    # Other scopes (lifespan) are ignored: the middleware answers the lifespan protocol.


app = AsgiLogToSqlite(raw_app, LOG_FILE)
