"""What the middleware observes of one request on the event loop, and nothing more.

An :class:`Exchange` is filled while the request runs, with cheap attribute stores only, and
handed to the writer as it is. Turning it into a row (decoding bytes, walking headers, privacy)
is the writer's "prepare" step (:mod:`asgi_log_to_sqlite.prepare`), off the event loop; nothing
there writes back into the exchange.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

__all__ = ["Amend", "Exchange", "next_key"]

#: Keys for exchanges, unique in the process: what a late exception names its row by.
next_key = itertools.count(1).__next__


class Exchange:
    """One HTTP request or WebSocket connection, as observed by the middleware."""

    __slots__ = (
        "body_size",
        "capture",
        "disconnected",
        "duration",
        "exception",
        "key",
        "pathsend",
        "queued",
        "request_body_size",
        "request_tap",
        "response_headers",
        "response_tap",
        "scope",
        "start",
        "status",
        "t0",
        "ttfb",
    )

    def __init__(self, scope: Any, start: float, t0: float) -> None:
        self.scope = scope
        self.start = start  # wall clock, unix seconds
        self.t0 = t0  # perf_counter at arrival, for durations
        self.duration: float | None = None
        self.ttfb: float | None = None
        self.status: Any = None
        self.response_headers: Any = None
        self.body_size = 0
        self.request_body_size = 0
        self.exception: str | None = None
        self.disconnected = False
        self.pathsend: Any = None
        self.queued = False
        self.key = 0  # given when queued
        # With capture_requests (capture.py): its settings, and what is kept of the bodies as
        # they stream (a tap is made with the first chunk, or the response's start).
        self.capture: tuple[int, bool] | None = None
        self.request_tap: Any = None
        self.response_tap: Any = None


class Amend(NamedTuple):
    """An exception raised after its exchange was queued (a background task failing after the
    response): the row of exchange ``key``, which arrived at ``start``, gets ``exception``."""

    key: int
    start: float
    exception: str
