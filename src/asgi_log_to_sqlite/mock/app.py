"""The mock as an ASGI app: recorded responses served for the requests that match them.

Each response is served as it was recorded: status, headers (but those of a connection) and
body, in the chunks it was sent in; with ``timing`` also at its pace (the time to the first
byte, then each chunk when it was sent). Several recordings of one request answer in turn
(``repeat="cycle"``) or always the latest (``repeat="last"``).

A request that no recording answers gets a 404 saying why (header ``asgi-log-to-sqlite-mock:
unmatched``), or, with ``fallback``, is proxied there and the exchange recorded into the log
through the middleware (capture on): the mock serves it from the log for later requests.

Placeholders in recorded responses are filled with ``values`` (``--set``); without a value, a
secret header (``Set-Cookie: {{set-cookie}}``) is left out, and anything else is served as
stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus, unquote_to_bytes

from ..asgi_apps import answer_lifespan, read_body
from ..placeholders import PATTERN
from ..proxy import (
    HOP_BY_HOP,
    SERVER_SET,
    AnswerUpstreamErrors,
    ReverseProxy,
    check_url,
)
from .matching import Index, Match, Miss, shown
from .recordings import MockError, Recording, load

__all__ = ["UNMATCHED_HEADER", "MockApp", "mock_app"]

logger = logging.getLogger("asgi_log_to_sqlite")
#: One line per request answered (sensitive query values shown as placeholders), at INFO.
requests_logger = logging.getLogger("asgi_log_to_sqlite.mock")

#: The header on the mock's own 404s, telling them from recorded ones.
UNMATCHED_HEADER = b"asgi-log-to-sqlite-mock"
#: Headers of a recorded response that are not served: the server frames the body itself, and
#: sets its own ``Date`` and ``Server``.
NOT_SERVED = (HOP_BY_HOP - {"content-length"}) | SERVER_SET
#: Seconds a request waits for the exchanges proxied just before it to be read back.
REFRESH_WAIT = 10.0
#: ``capture_body_limit`` of the exchanges a fallback records: a mock serves whole bodies only.
FALLBACK_BODY_LIMIT = "1MB"


def _latin1(value: str) -> str:
    return value.encode("utf-8").decode("latin-1")


def _fill_known(text: str, values: Mapping[str, str], encode: Any) -> str:
    """Placeholders with a value given are filled; the others stay as they are."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return encode(values[name]) if name in values else match.group(0)

    return PATTERN.sub(replace, text)


def _fill_body(body: bytes, content_type: str | None, values: Mapping[str, str]) -> bytes:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        def encode(value: str) -> str:
            return quote_plus(value)
    elif media == "application/json" or media.endswith("+json"):
        def encode(value: str) -> str:
            return _latin1(json.dumps(value, ensure_ascii=False)[1:-1])
    else:
        encode = _latin1
    return _fill_known(body.decode("latin-1"), values, encode).encode("latin-1")


def _pieces(recording: Recording, body: bytes) -> list[tuple[float, bytes]]:
    """The body cut where the recorded chunks ended (a filled body may be longer or shorter:
    the last piece takes the difference)."""
    if not recording.chunks:
        return [(0.0, body)]
    pieces = []
    offset = 0
    for seconds, size in recording.chunks:
        piece = body[offset:offset + size]
        offset += size
        if piece:
            pieces.append((seconds, piece))
    if offset < len(body):
        seconds = recording.chunks[-1][0]
        if pieces:
            pieces[-1] = (pieces[-1][0], pieces[-1][1] + body[offset:])
        else:
            pieces.append((seconds, body[offset:]))
    return pieces or [(0.0, b"")]


class MockApp:
    """See :func:`mock_app`."""

    def __init__(
        self,
        log: str | os.PathLike[str],
        *,
        repeat: str = "cycle",
        timing: bool = False,
        fallback: str | None = None,
        values: Mapping[str, str] | None = None,
        body_limit: int | str = FALLBACK_BODY_LIMIT,
        timeout: float = 60.0,
        log_options: Mapping[str, Any] | None = None,
    ) -> None:
        if repeat not in ("cycle", "last"):
            raise ValueError(f"repeat must be 'cycle' or 'last', got {repeat!r}")
        self.log = os.fspath(log)
        self.repeat = repeat
        self.timing = timing
        self.values = {name.lower(): value for name, value in (values or {}).items()}
        self._recorder: Any = None
        self._proxy: ReverseProxy | None = None
        self._fallback: Any = None
        if fallback is not None:
            try:
                self._proxy = ReverseProxy(check_url(fallback, "--fallback"), timeout=timeout)
            except ValueError as error:
                raise MockError(str(error)) from None
            from ..middleware import AsgiLogToSqlite

            options = {**dict(log_options or {}), "capture_requests": True,
                       "capture_responses": True, "capture_body_limit": body_limit}
            try:
                self._recorder = AsgiLogToSqlite(self._proxy, self.log, **options)
            except (OSError, TypeError, ValueError) as error:
                raise MockError(f"cannot record into {self.log}: {error}") from None
            self._fallback = AnswerUpstreamErrors(self._recorder)
        self.index = Index(load(self.log))
        self._turns: dict[tuple[int, ...], int] = {}
        self._pending: list[asyncio.Event] = []
        self._lock: asyncio.Lock | None = None

    # ---- what it holds -------------------------------------------------------------------------
    @property
    def servable(self) -> int:
        """Recordings it can serve (the others lack a response body)."""
        return sum(1 for r in self.index if r.response_body is not None)

    async def aclose(self) -> None:
        """Commit what a fallback recorded and close its client (a server's lifespan shutdown
        does this by itself)."""
        if self._recorder is not None:
            await self._recorder.aclose(30.0)
        if self._proxy is not None:
            await self._proxy.aclose()

    # ---- ASGI ----------------------------------------------------------------------------------
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            if self._recorder is not None:
                await self._recorder(scope, receive, send)  # the proxy's client, the flush
            else:
                await answer_lifespan(receive, send)
        elif kind == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1003})  # never recorded

    async def _http(self, scope: Any, receive: Any, send: Any) -> None:
        body = await read_body(receive)
        if body is None:
            return
        if self._pending:
            await self._wait_for_refreshes()
        method = scope["method"].upper()
        path = scope.get("raw_path") or scope["path"].encode("utf-8")
        content_type = None
        for name, value in scope.get("headers", ()):
            if name.lower() == b"content-type":
                content_type = value.decode("latin-1")
                break
        query = scope.get("query_string", b"")
        found = self.index.find(
            method, unquote_to_bytes(path), query, body, hashlib.sha256(body).hexdigest(),
            content_type,
        )
        talk = requests_logger.isEnabledFor(logging.INFO)
        if isinstance(found, Miss):
            if self._fallback is not None:
                if talk:
                    requests_logger.info("%s -> proxied to the fallback: %s",
                                         shown(method, path, query), found.reason)
                await self._forward(scope, body, receive, send)
            else:
                if talk:
                    requests_logger.info("404 unmatched: %s", found.reason)
                await _unmatched(found, send)
            return
        recording = self._choose(found)
        if talk:
            requests_logger.info("%s -> %d (recorded request %d)", shown(method, path, query),
                                 recording.status, recording.rowid)
        await self._answer(recording, method == "HEAD", send)

    def _choose(self, found: Match) -> Recording:
        recordings = found.recordings
        if self.repeat == "last" or len(recordings) == 1:
            return recordings[-1]
        turn = self._turns.get(found.key, 0)
        self._turns[found.key] = turn + 1
        return recordings[turn % len(recordings)]

    async def _answer(self, recording: Recording, head: bool, send: Any) -> None:
        loop = asyncio.get_running_loop()
        body = recording.response_body or b""
        headers = recording.response_headers
        content_type = next((v for n, v in headers if n.lower() == "content-type"), None)
        if self.values and b"{{" in body:
            body = _fill_body(body, content_type, self.values)
        served = []
        for name, value in headers:
            lowered = name.lower()
            if lowered in NOT_SERVED:
                continue
            if "{{" in value:
                whole = PATTERN.fullmatch(value)
                if whole is not None and whole.group(1) not in self.values:
                    continue  # a secret header nobody gave a value for
                value = _fill_known(value, self.values, _latin1)
            if lowered == "content-length" and not head:
                # A body stored redacted (or filled here) is not as long as the one first sent.
                value = str(len(body))
            served.append((name.encode("latin-1"), value.encode("latin-1")))
        if self.timing and recording.ttfb:
            await asyncio.sleep(recording.ttfb)
        await send({"type": "http.response.start", "status": recording.status,
                    "headers": served})
        started = loop.time()
        if head:
            await send({"type": "http.response.body", "body": b""})
            return
        pieces = _pieces(recording, body)
        for index, (seconds, piece) in enumerate(pieces):
            if self.timing:
                delay = started + seconds - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await send({"type": "http.response.body", "body": piece,
                        "more_body": index < len(pieces) - 1})

    # ---- the fallback --------------------------------------------------------------------------
    async def _forward(self, scope: Any, body: bytes, receive: Any, send: Any) -> None:
        """Proxied and recorded; the requests that come after its answer wait until it is read
        back from the log, so that they are served from it."""
        given = False

        async def replayed() -> Any:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        done = asyncio.Event()

        async def marking_send(message: Any) -> None:
            if (message["type"] == "http.response.body" and not message.get("more_body")
                    and done not in self._pending):
                self._pending.append(done)  # before the client can have the whole answer
            await send(message)

        try:
            await self._fallback(scope, replayed, marking_send)
        finally:
            try:
                await self._refresh()
            finally:
                done.set()
                with contextlib.suppress(ValueError):
                    self._pending.remove(done)

    async def _wait_for_refreshes(self) -> None:
        waits = [asyncio.ensure_future(event.wait()) for event in list(self._pending)]
        try:
            await asyncio.wait(waits, timeout=REFRESH_WAIT)
        finally:
            for wait in waits:
                wait.cancel()

    async def _refresh(self) -> None:
        """Read back what the fallback recorded (committed first); never raises."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                await self._recorder.aflush(REFRESH_WAIT)
                new = await asyncio.to_thread(load, self.log, self.index.last_rowid)
                self.index.add(new)
            except Exception:
                logger.exception("asgi-log-to-sqlite mock: could not read back %s", self.log)


async def _unmatched(miss: Miss, send: Any) -> None:
    body = f"asgi-log-to-sqlite mock: {miss.reason}\n".encode()
    await send({"type": "http.response.start", "status": 404, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (UNMATCHED_HEADER, b"unmatched"),
    ]})
    await send({"type": "http.response.body", "body": body})


def mock_app(
    log: str | os.PathLike[str],
    *,
    repeat: str = "cycle",
    timing: bool = False,
    fallback: str | None = None,
    values: Mapping[str, str] | None = None,
    body_limit: int | str = FALLBACK_BODY_LIMIT,
    timeout: float = 60.0,
    log_options: Mapping[str, Any] | None = None,
) -> MockApp:
    """An ASGI app answering requests with the responses recorded in ``log``.

    ``repeat``: several recordings of one request answer in turn ("cycle") or always the
    latest ("last"). ``timing``: keep their pace. ``fallback``: a URL unmatched requests are
    proxied to, the exchange recorded into ``log`` (``capture_body_limit=body_limit``, plus
    ``log_options`` for the middleware). ``values``: placeholders filled in responses. The log
    is read now; MockError says why it cannot be.

    >>> transport = httpx.ASGITransport(app=mock_app("api.db"))  # doctest: +SKIP
    """
    return MockApp(log, repeat=repeat, timing=timing, fallback=fallback, values=values,
                   body_limit=body_limit, timeout=timeout, log_options=log_options)
