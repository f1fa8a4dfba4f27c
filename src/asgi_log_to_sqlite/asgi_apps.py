"""What the package's own ASGI apps (the demo site, the mock, the reverse proxy) share."""

from __future__ import annotations

from typing import Any

__all__ = ["answer_lifespan", "read_body"]


async def read_body(receive: Any) -> bytes | None:
    """A request's whole body; None if the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def answer_lifespan(receive: Any, send: Any) -> None:
    """The lifespan protocol of an app with nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
