"""Per-connection observers: what the middleware sees of HTTP, WebSocket and lifespan traffic.

Each observer wraps ``receive`` and ``send`` for one connection, fills an
:class:`~asgi_log_to_sqlite.exchange.Exchange` with cheap attribute stores, and hands it to its
recorder when the response is complete. It never changes what the app and the server say to each
other: every message is passed on unchanged, every exception re-raised unchanged, and a failure
of its own is logged and swallowed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from .capture import BodyTap, ResponseTap
from .exchange import Amend, Exchange

__all__ = ["HttpObserver", "LifespanObserver", "Recorder", "WebSocketObserver"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("asgi_log_to_sqlite")


class Recorder(Protocol):
    """Where observers hand what they saw (the middleware)."""

    app: ASGIApp
    #: ``(capture_body_limit, capture_responses)`` when ``capture_requests`` is on, else None.
    capture: tuple[int, bool] | None
    #: flush="response": each row committed before the response's last message goes out.
    commit_each: bool

    def submit(self, exchange: Exchange) -> None: ...

    def amend(self, amend: Amend) -> None: ...

    def startup(self) -> None: ...

    async def shutdown_flush(self) -> None: ...

    async def commit_response(self) -> None: ...


def exception_name(error: BaseException) -> str:
    """``module.Class`` of an exception (just ``Class`` for builtins and asyncio's)."""
    try:
        cls = type(error)
        if cls.__module__ in ("builtins", "asyncio.exceptions"):
            return str(cls.__qualname__)
        return f"{cls.__module__}.{cls.__qualname__}"
    except Exception:
        return "Exception"


class HttpObserver:
    """Per-request state for one HTTP request; its ``exchange`` is what gets recorded."""

    __slots__ = (
        "committed",
        "complete",
        "exchange",
        "head",
        "receive_inner",
        "recorder",
        "send_inner",
        "trailers"
    )

    def __init__(self, recorder: Recorder, scope: Scope) -> None:
        self.recorder = recorder
        self.exchange = exchange = Exchange(scope, time.time(), time.perf_counter())
        self.trailers = False
        self.complete = False
        #: flush="response": the row (and every late exception) is committed already.
        self.committed = False
        # Servers send no body in answer to HEAD, whatever the app passes them.
        self.head = scope.get("method") == "HEAD"
        exchange.capture = recorder.capture

    async def run(self, receive: Receive, send: Send) -> None:
        self.receive_inner = receive
        self.send_inner = send
        exchange = self.exchange
        try:
            await self.recorder.app(exchange.scope, self.receive, self.send)
        except BaseException as error:
            if not self.complete:
                if exchange.duration is None:
                    exchange.duration = time.perf_counter() - exchange.t0
                exchange.exception = exception_name(error)
                if exchange.status is None and isinstance(error, Exception):
                    exchange.status = 500  # what the server answers for an app that raised
            elif isinstance(error, Exception) and exchange.exception is None:
                # Error pages (Starlette's ServerErrorMiddleware) are sent, then the error is
                # re-raised; a background task can fail long after the response. The row is
                # queued already: the writer reads this attribute when it builds the row, and
                # the amend stores it if the row was written before.
                exchange.exception = name = exception_name(error)
                self.committed = False  # the amend is not
                try:
                    self.recorder.amend(Amend(exchange.key, exchange.start, name))
                except Exception:
                    logger.exception("asgi-log-to-sqlite: could not record a late exception")
            raise
        finally:
            try:
                if not exchange.queued:
                    if exchange.duration is None:
                        exchange.duration = time.perf_counter() - exchange.t0
                    if (
                        exchange.status is None
                        and exchange.exception is None
                        and not exchange.disconnected
                    ):
                        exchange.status = 500  # the app returned without a response
                    self.recorder.submit(exchange)
            except Exception:
                logger.exception("asgi-log-to-sqlite: could not record a request")

    async def receive(self) -> Message:
        message = await self.receive_inner()
        try:
            kind = message["type"]
            if kind == "http.request":
                body = message.get("body")
                if body:
                    exchange = self.exchange
                    exchange.request_body_size += len(body)
                    capture = exchange.capture
                    if capture is not None:
                        tap = exchange.request_tap
                        if tap is None:
                            tap = exchange.request_tap = BodyTap(capture[0])
                        tap.add(body)
            elif kind == "http.disconnect" and not self.complete:
                self.exchange.disconnected = True
        except Exception:
            pass
        return message

    async def send(self, message: Message) -> None:
        exchange = self.exchange
        finished = False
        counted = 0
        body: Any = None
        kind = None
        try:
            kind = message["type"]
            if kind == "http.response.start":
                if exchange.ttfb is None:  # a second start is refused by the server
                    exchange.status = message.get("status")
                    exchange.response_headers = message.get("headers")
                    exchange.ttfb = time.perf_counter() - exchange.t0
                    self.trailers = bool(message.get("trailers"))
                    capture = exchange.capture
                    if capture is not None:
                        exchange.response_tap = ResponseTap(capture[0], capture[1])
            elif kind == "http.response.body":
                body = message.get("body")
                # After the client left, servers drop what the app still sends.
                if body and not self.head and not exchange.disconnected:
                    counted = len(body)
                    exchange.body_size += counted
                finished = not message.get("more_body") and not self.trailers
            elif kind == "http.response.pathsend":
                if not self.head and not exchange.disconnected:
                    exchange.pathsend = message.get("path")
                    exchange.response_tap = None  # a file the server sends: no bytes to hash
                finished = True
            elif kind == "http.response.zerocopysend":
                if not self.head and not exchange.disconnected:
                    exchange.response_tap = None
                    count = message.get("count")
                    if count is None:
                        size = os.fstat(message["file"].fileno()).st_size
                        count = size - message.get("offset", 0)
                    if type(count) is int and count > 0:
                        counted = count
                        exchange.body_size += count
                finished = not message.get("more_body")
            elif kind == "http.response.trailers":
                finished = not message.get("more_trailers")
        except Exception:
            pass
        if finished and not self.complete and self.recorder.commit_each:
            # flush="response": committed before the last message goes out, so that a client
            # that has its whole response finds the row stored, even if the host stops or
            # throttles the process right after (a SIGKILL, Cloud Run's CPU between requests).
            self._complete(exchange)
            await self.recorder.commit_response()
            self.committed = True
        try:
            await self.send_inner(message)
        except BaseException as error:
            # The server could not send it. A RuntimeError is its answer to a message out of
            # turn (a second start), not a client that went away.
            if not isinstance(error, RuntimeError):
                exchange.disconnected = True
            exchange.body_size -= counted
            if kind == "http.response.pathsend":
                exchange.pathsend = None
            raise
        if counted and body is not None and exchange.response_tap is not None:
            try:
                exchange.response_tap.add(body)  # sent: part of the body the client got
            except Exception:
                logger.exception("asgi-log-to-sqlite: could not capture a response chunk")
                exchange.response_tap = None
        if finished and not self.complete:
            # Queue now: some servers cancel the app task right after the last byte.
            self._complete(exchange)

    def _complete(self, exchange: Exchange) -> None:
        """The response is complete: time it and hand it to the recorder."""
        self.complete = True
        exchange.duration = time.perf_counter() - exchange.t0
        try:
            self.recorder.submit(exchange)
        except Exception:
            logger.exception("asgi-log-to-sqlite: could not record a request")


class WebSocketObserver:
    """One WebSocket connection: status 101 once accepted, 403 when refused, bytes both ways."""

    __slots__ = ("exchange", "receive_inner", "recorder", "send_inner")

    def __init__(self, recorder: Recorder, scope: Scope) -> None:
        self.recorder = recorder
        self.exchange = Exchange(scope, time.time(), time.perf_counter())

    async def run(self, receive: Receive, send: Send) -> None:
        self.receive_inner = receive
        self.send_inner = send
        exchange = self.exchange
        try:
            await self.recorder.app(exchange.scope, self.receive, self.send)
        except BaseException as error:
            exchange.exception = exception_name(error)
            if exchange.status is None and isinstance(error, Exception):
                exchange.status = 500
            raise
        finally:
            try:
                if exchange.status is None:
                    exchange.status = 403  # closed (or returned) before accepting
                exchange.duration = time.perf_counter() - exchange.t0
                self.recorder.submit(exchange)
            except Exception:
                logger.exception("asgi-log-to-sqlite: could not record a WebSocket connection")

    async def receive(self) -> Message:
        message = await self.receive_inner()
        try:
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("bytes")
                if data is None:
                    data = (message.get("text") or "").encode("utf-8", "surrogatepass")
                self.exchange.request_body_size += len(data)
            elif kind == "websocket.disconnect":
                self.exchange.disconnected = True
        except Exception:
            pass
        return message

    async def send(self, message: Message) -> None:
        exchange = self.exchange
        try:
            kind = message["type"]
            if kind == "websocket.send":
                data = message.get("bytes")
                if data is None:
                    data = (message.get("text") or "").encode("utf-8", "surrogatepass")
                exchange.body_size += len(data)
            elif kind == "websocket.accept":
                exchange.status = 101
                exchange.ttfb = time.perf_counter() - exchange.t0
                exchange.response_headers = message.get("headers")
            elif kind == "websocket.close" and exchange.status is None:
                exchange.status = 403
            elif kind == "websocket.http.response.start":
                exchange.status = message.get("status")
                exchange.response_headers = message.get("headers")
                exchange.ttfb = time.perf_counter() - exchange.t0
            elif kind == "websocket.http.response.body":
                exchange.body_size += len(message.get("body") or b"")
        except Exception:
            pass
        try:
            await self.send_inner(message)
        except BaseException:
            exchange.disconnected = True
            raise


class LifespanObserver:
    """Passes lifespan through, flushing before ``lifespan.shutdown.complete`` reaches the server.

    An app that does not speak lifespan at all (it raises, or returns, before it ever asks for a
    message) would leave the server without a shutdown event, and uvicorn's SIGTERM path skips
    ``atexit``: the middleware then answers the lifespan protocol itself, to keep its flush at
    shutdown. An app that received ``lifespan.startup`` and then raised failed its startup: that
    exception reaches the server unchanged, as it would without the middleware. An app that
    received ``lifespan.shutdown`` and then raised, or returned without answering, is flushed all
    the same: the server is stopping.
    """

    def __init__(self, recorder: Recorder, scope: Scope) -> None:
        self.recorder = recorder
        self.scope = scope
        self.app_sent = False
        self.app_received = False
        self.startup_received = False
        self.shutdown_received = False
        self.flushed = False

    async def run(self, receive: Receive, send: Send) -> None:
        async def observed_receive() -> Message:
            self.app_received = True
            message = await receive()
            if message.get("type") == "lifespan.startup":
                self.startup_received = True
                self.recorder.startup()
            elif message.get("type") == "lifespan.shutdown":
                self.shutdown_received = True
            return message

        async def observed_send(message: Message) -> None:
            self.app_sent = True
            if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self._flush()
            await send(message)

        try:
            await self.recorder.app(self.scope, observed_receive, observed_send)
        except Exception as error:
            if self.app_sent or self.app_received:
                if self.shutdown_received:
                    await self._flush()
                raise
            logger.debug("asgi-log-to-sqlite: the app does not support lifespan (%r)", error)
        if self.shutdown_received:
            await self._flush()
        if not self.app_sent and not self.shutdown_received:
            await self._answer(receive, send)

    async def _flush(self) -> None:
        if not self.flushed:
            self.flushed = True
            await self.recorder.shutdown_flush()

    async def _answer(self, receive: Receive, send: Send) -> None:
        if not self.startup_received:
            message = await receive()
            if message.get("type") != "lifespan.startup":
                return
            self.recorder.startup()
        await send({"type": "lifespan.startup.complete"})
        while True:
            message = await receive()
            if message.get("type") == "lifespan.shutdown":
                await self.recorder.shutdown_flush()
                await send({"type": "lifespan.shutdown.complete"})
                return
