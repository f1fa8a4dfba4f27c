"""Routes that give the Datasette example the same behaviours as the other examples.

Datasette itself provides the normal responses (``/-/versions.json``, table pages), streamed
responses (``.csv?_stream=on``) and file responses (``--static``); this plugin adds server-sent
events, a view that raises, and work after the response. Datasette has no WebSockets.
"""

from datasette import hookimpl
from datasette.utils.asgi import AsgiStream, asgi_send
from shared import SSE_EVENTS, send_welcome_email


async def sse():
    async def events(writer):
        for event in SSE_EVENTS:
            await writer.write(event.decode())

    return AsgiStream(events, content_type="text/event-stream")


async def boom():
    raise RuntimeError("this view always fails")


async def background(send):
    # A view that takes ``send`` answers by itself, then may keep working.
    await asgi_send(send, "Accepted", 202)
    await send_welcome_email()


@hookimpl
def register_routes():
    return [
        (r"^/-/example/sse$", sse),
        (r"^/-/example/error$", boom),
        (r"^/-/example/background$", background),
    ]
