"""What every example app serves, so that each framework's example shows the same behaviours.

Each example exposes the same endpoints, written the way that framework writes them:

=============  ======================================================================
``/``          a normal response
``/stream``    a streamed response, in ``STREAM_CHUNKS``
``/sse``       server-sent events (``text/event-stream``), ``SSE_EVENTS``
``/file``      the file ``SAMPLE_FILE``
``/error``     a view that raises ``RuntimeError``
``/background``  a short response, then half a second of work after it (a "welcome email")
``/ws``        a WebSocket that echoes one message (where the framework has WebSockets)
=============  ======================================================================

Configuration comes from the environment so the same files serve as documentation and as the
apps the end-to-end tests run: ``ASGI_LOG_FILE`` (the log database, default ``log.db``) and
``EXAMPLE_OUTBOX`` (where the background work notes when it finished, default ``outbox.txt``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

LOG_FILE = os.environ.get("ASGI_LOG_FILE", "log.db")
OUTBOX = os.environ.get("EXAMPLE_OUTBOX", "outbox.txt")
SAMPLE_FILE = Path(__file__).resolve().parent / "files" / "sample.txt"

HELLO = "Hello, world!"
STREAM_CHUNKS = tuple(f"chunk {i}\n".encode() for i in range(10))
SSE_EVENTS = tuple(f"data: tick {i}\n\n".encode() for i in range(3))
BACKGROUND_SECONDS = 0.5


def _note_in_outbox(what: str) -> None:
    with open(OUTBOX, "a", encoding="utf-8") as outbox:
        outbox.write(f"{time.time()!r} {what}\n")


async def send_welcome_email() -> None:
    """Stands for slow work done after the response: the log's duration must not include it."""
    await asyncio.sleep(BACKGROUND_SECONDS)
    await asyncio.to_thread(_note_in_outbox, "welcome email")


def send_welcome_email_sync() -> None:
    """The same, for frameworks that run their after-response work in a thread."""
    time.sleep(BACKGROUND_SECONDS)
    _note_in_outbox("welcome email")


async def stream_chunks() -> AsyncIterator[bytes]:
    for chunk in STREAM_CHUNKS:
        yield chunk
        await asyncio.sleep(0)


async def sse_events() -> AsyncIterator[bytes]:
    for event in SSE_EVENTS:
        yield event
        await asyncio.sleep(0.01)
