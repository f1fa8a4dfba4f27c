"""``asgi-log-to-sqlite record``: record a remote service into a log, for a mock or a replay.

A reverse proxy (:mod:`.proxy`) in front of the service, wrapped in the middleware itself with
``capture_requests`` and ``capture_responses`` on: every exchange it forwards is logged with its
request and response, secrets redacted into named placeholders as capture always does them
(docs/replay.md). When the server stops, the summary says how many exchanges were recorded and
which placeholders a replay or a mock must be given values for.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import Any

from .proxy import AnswerUpstreamErrors, ReverseProxy

__all__ = ["BODY_LIMIT", "count_captures", "recorder_app", "summary"]

#: ``capture_body_limit`` of a recording: a mock can only serve a body that was kept whole.
BODY_LIMIT = "1MB"


def recorder_app(
    upstream: str,
    log: str | os.PathLike[str],
    *,
    body_limit: int | str = BODY_LIMIT,
    timeout: float = 60.0,
    options: Mapping[str, Any] | None = None,
    on_shutdown: Callable[[], Any] | None = None,
) -> Any:
    """The recording proxy as an ASGI app. ``options`` go to the middleware; capture is always
    on. ``on_shutdown`` runs (in a thread) once the last exchanges are committed, at the
    lifespan shutdown. ValueError/TypeError/OSError: a bad URL, option or log path."""
    from .middleware import AsgiLogToSqlite

    proxy = ReverseProxy(upstream, timeout=timeout)
    settings = {**dict(options or {}), "capture_requests": True, "capture_responses": True,
                "capture_body_limit": body_limit}
    app: Any = AnswerUpstreamErrors(AsgiLogToSqlite(proxy, log, **settings))
    if on_shutdown is not None:
        app = _AfterShutdown(app, on_shutdown)
    return app


class _AfterShutdown:
    """Runs a callback when the app inside has finished its lifespan shutdown (the middleware
    flushes before it says so)."""

    def __init__(self, app: Any, callback: Callable[[], Any]) -> None:
        self.app = app
        self.callback = callback

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def watched(message: Any) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await asyncio.to_thread(self.callback)
            await send(message)

        await self.app(scope, receive, watched)


def count_captures(log: str) -> int:
    """Captured exchanges in ``log`` (0 for a log without captures)."""
    from .mock.recordings import MockError, readable_log

    try:
        conn = readable_log(log)
    except MockError:
        return 0
    try:
        return conn.execute("SELECT count(*) FROM captures").fetchone()[0]
    finally:
        conn.close()


def summary(log: str, before: int = 0) -> list[str]:
    """What ``record`` says when it stops: exchanges recorded, placeholders to fill."""
    from .mock.recordings import placeholders
    from .mock.summary import placeholder_lines

    total = count_captures(log)
    lines = [f"Recorded {total - before:,} exchange(s) into {log} ({total:,} in all)."]
    if total:
        lines += placeholder_lines(placeholders(log))
    return lines
