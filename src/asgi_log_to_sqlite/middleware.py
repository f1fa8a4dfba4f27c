"""The ASGI middleware: observes ``scope``/``receive``/``send`` and hands one record per request to
the writer. It never touches SQLite and never changes what the app and the server say to each
other: every message is passed on unchanged, every exception re-raised unchanged.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from . import sigterm
from .options import Options
from .record import Exchange
from .rotation import shared_rotation_lock
from .schema import SchemaError, connect, ensure_schema
from .writer import Writer

__all__ = ["AsgiLogToSqlite"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("asgi_log_to_sqlite")

# How long the lifespan shutdown waits for the last rows to be committed.
SHUTDOWN_FLUSH_TIMEOUT = 30.0

_instances: weakref.WeakSet[AsgiLogToSqlite] = weakref.WeakSet()


def _exception_name(error: BaseException) -> str:
    cls = type(error)
    if cls.__module__ in ("builtins", "asyncio.exceptions"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _validated_path(file: Any) -> str:
    if isinstance(file, bytes) or not isinstance(file, (str, os.PathLike)):
        raise TypeError(f"option 'file' must be a path (str or os.PathLike), got {file!r}")
    path = os.fspath(file)
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ValueError(f"option 'file' must be the path of a database file, got {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"cannot log to {path!r}: the folder {folder!r} does not exist"
        )
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot log to {path!r}: it is a folder")
    return path


def _prepare_database(path: str, options: Options) -> None:
    """Create or upgrade the schema now, so that a bad path fails at construction."""
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise PermissionError(f"cannot log to {path!r}: the file is not writable")
    if not os.path.exists(path) and not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        raise PermissionError(f"cannot log to {path!r}: its folder is not writable")
    try:
        conn = connect(path, options.busy_timeout)
    except sqlite3.Error as error:
        raise OSError(f"cannot open log database {path!r}: {error}") from error
    try:
        ensure_schema(conn)
    except SchemaError as error:
        raise ValueError(f"cannot log to {path!r}: {error}") from error
    except sqlite3.DatabaseError as error:
        raise ValueError(f"cannot log to {path!r}: not a usable SQLite database ({error})") from error
    finally:
        conn.close()


class AsgiLogToSqlite:
    """Wrap an ASGI 3 application; every request it serves becomes a row in ``file``.

    ``AsgiLogToSqlite(app, "log.db", **options)``: see :class:`~asgi_log_to_sqlite.options.Options`
    for the options. The database is created (or upgraded) here; the writer thread starts with
    the first request of each process, so the object can be built before ``fork()``.
    """

    def __init__(self, app: ASGIApp, file: str | os.PathLike[str] | None = None, **options: Any):
        if file is None:
            raise TypeError("AsgiLogToSqlite() needs the database path: AsgiLogToSqlite(app, file)")
        if not callable(app):
            raise TypeError(f"AsgiLogToSqlite() needs an ASGI application, got {app!r}")
        self.app = app
        self.options = Options.from_kwargs(options)
        self.file = _validated_path(file)
        with shared_rotation_lock(self.file, self.options):  # never opened mid-rotation
            _prepare_database(self.file, self.options)
        self._writer: Writer | None = None
        self._writer_lock = threading.Lock()
        self._closed = False
        self._warned_closed = False
        _instances.add(self)

    # ---- public API ------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> None:
        """Block until every request that finished before this call is committed.

        Raises ``TimeoutError`` if that takes longer than ``timeout`` seconds.
        """
        writer = self._writer
        if writer is None:
            return
        done = threading.Event()
        writer.request_flush(done.set)
        if not done.wait(timeout):
            raise TimeoutError(f"asgi-log-to-sqlite: flush of {self.file!r} took over {timeout}s")

    async def aflush(self, timeout: float | None = None) -> None:
        """:meth:`flush` for use inside the event loop: waits without blocking it."""
        writer = self._writer
        if writer is None:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def done() -> None:
            def resolve() -> None:
                if not future.done():
                    future.set_result(None)

            try:
                loop.call_soon_threadsafe(resolve)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

        writer.request_flush(done)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"asgi-log-to-sqlite: flush of {self.file!r} took over {timeout}s"
            ) from None

    def close(self, timeout: float | None = None) -> None:
        """Commit everything, stop the writer. Safe to call twice; later requests aren't logged."""
        self._closed = True
        with self._writer_lock:
            writer = self._writer
        if writer is not None:
            writer.stop(timeout)

    async def aclose(self, timeout: float | None = None) -> None:
        """:meth:`close` for use inside the event loop."""
        self._closed = True
        await self.aflush(timeout)
        await asyncio.get_running_loop().run_in_executor(None, self.close, timeout)

    def stats(self) -> dict[str, int]:
        """Counts for this process: rows written, queued, dropped (and why), write errors."""
        writer = self._writer
        if writer is None:
            return {
                "written": 0,
                "queued": 0,
                "dropped_queue_full": 0,
                "dropped_write_failed": 0,
                "dropped_bad_record": 0,
                "write_errors": 0,
                "actor_errors": 0,
                "route_errors": 0,
            }
        return writer.stats()

    # ---- the writer, one per process -------------------------------------------------------
    def _start_writer(self) -> Writer | None:
        with self._writer_lock:
            if self._writer is None and not self._closed:
                self._writer = Writer(self.file, self.options)
        sigterm.install(_commit_all)
        return self._writer

    def _after_fork_in_child(self) -> None:
        # The parent's thread does not exist here and its queue is the parent's to write.
        self._writer = None
        self._writer_lock = threading.Lock()

    def _submit(self, exchange: Exchange) -> None:
        exchange.queued = True
        if self._closed:
            if not self._warned_closed:
                self._warned_closed = True
                logger.warning(
                    "asgi-log-to-sqlite: %s is closed; requests are served but not logged",
                    self.file,
                )
            return
        writer = self._writer
        if writer is None:
            writer = self._start_writer()
            if writer is None:
                return
        writer.put(exchange)

    def _amend(self, exchange: Exchange) -> None:
        writer = self._writer
        if writer is not None and not self._closed:
            writer.amend(exchange)

    # ---- ASGI --------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "http":
            await _HttpObserver(self, scope).run(receive, send)
        elif kind == "websocket":
            await _WebSocketObserver(self, scope).run(receive, send)
        elif kind == "lifespan":
            await _LifespanObserver(self, scope).run(receive, send)
        else:
            await self.app(scope, receive, send)


class _HttpObserver:
    """Per-request state for one HTTP request; its ``exchange`` is what gets recorded."""

    __slots__ = (
        "complete", "exchange", "head", "owner", "receive_inner", "send_inner", "trailers"
    )

    def __init__(self, owner: AsgiLogToSqlite, scope: Scope) -> None:
        self.owner = owner
        self.exchange = Exchange(scope, time.time(), time.perf_counter())  # type: ignore[arg-type]
        self.trailers = False
        self.complete = False
        # Servers send no body in answer to HEAD, whatever the app passes them.
        self.head = scope.get("method") == "HEAD"

    async def run(self, receive: Receive, send: Send) -> None:
        self.receive_inner = receive
        self.send_inner = send
        exchange = self.exchange
        try:
            await self.owner.app(exchange.scope, self.receive, self.send)
        except BaseException as error:
            if not self.complete:
                if exchange.duration is None:
                    exchange.duration = time.perf_counter() - exchange.t0
                exchange.exception = _exception_name(error)
                if exchange.status is None and isinstance(error, Exception):
                    exchange.status = 500  # what the server answers for an app that raised
            elif isinstance(error, Exception) and exchange.exception is None:
                # Error pages (Starlette's ServerErrorMiddleware) are sent, then the error is
                # re-raised; a background task can fail long after the response. The row is
                # queued already: the writer reads this attribute when it builds the row, and
                # the amend stores it if the row was written before.
                exchange.exception = _exception_name(error)
                try:
                    self.owner._amend(exchange)
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
                    self.owner._submit(exchange)
            except Exception:
                logger.exception("asgi-log-to-sqlite: could not record a request")

    async def receive(self) -> Message:
        message = await self.receive_inner()
        try:
            kind = message["type"]
            if kind == "http.request":
                body = message.get("body")
                if body:
                    self.exchange.request_body_size += len(body)
            elif kind == "http.disconnect" and not self.complete:
                self.exchange.disconnected = True
        except Exception:
            pass
        return message

    async def send(self, message: Message) -> None:
        exchange = self.exchange
        finished = False
        counted = 0
        try:
            kind = message["type"]
            if kind == "http.response.start":
                exchange.status = message.get("status")
                exchange.response_headers = message.get("headers")
                exchange.ttfb = time.perf_counter() - exchange.t0
                self.trailers = bool(message.get("trailers"))
            elif kind == "http.response.body":
                body = message.get("body")
                if body and not self.head:
                    counted = len(body)
                    exchange.body_size += counted
                finished = not message.get("more_body") and not self.trailers
            elif kind == "http.response.pathsend":
                if not self.head:
                    exchange.pathsend = message.get("path")
                finished = True
            elif kind == "http.response.zerocopysend":
                if not self.head:
                    count = message.get("count")
                    if count is None:
                        count = os.fstat(message["file"].fileno()).st_size - message.get("offset", 0)
                    exchange.body_size += count
                finished = not message.get("more_body")
            elif kind == "http.response.trailers":
                finished = not message.get("more_trailers")
        except Exception:
            pass
        try:
            await self.send_inner(message)
        except BaseException:
            exchange.disconnected = True
            exchange.body_size -= counted  # the server could not send this chunk
            raise
        if finished and not self.complete:
            self.complete = True
            exchange.duration = time.perf_counter() - exchange.t0
            # Queue now: some servers cancel the app task right after the last byte.
            try:
                self.owner._submit(exchange)
            except Exception:
                logger.exception("asgi-log-to-sqlite: could not record a request")


class _WebSocketObserver:
    """One WebSocket connection: status 101 once accepted, 403 when refused, bytes both ways."""

    __slots__ = ("accepted", "exchange", "owner", "receive_inner", "send_inner")

    def __init__(self, owner: AsgiLogToSqlite, scope: Scope) -> None:
        self.owner = owner
        self.exchange = Exchange(scope, time.time(), time.perf_counter())  # type: ignore[arg-type]
        self.accepted = False

    async def run(self, receive: Receive, send: Send) -> None:
        self.receive_inner = receive
        self.send_inner = send
        exchange = self.exchange
        try:
            await self.owner.app(exchange.scope, self.receive, self.send)
        except BaseException as error:
            exchange.exception = _exception_name(error)
            if exchange.status is None and isinstance(error, Exception):
                exchange.status = 500
            raise
        finally:
            try:
                if exchange.status is None:
                    exchange.status = 403  # closed (or returned) before accepting
                exchange.duration = time.perf_counter() - exchange.t0
                self.owner._submit(exchange)
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


class _LifespanObserver:
    """Passes lifespan through, flushing before ``lifespan.shutdown.complete`` reaches the server.

    An app that does not speak lifespan (raises, or returns at once) would leave the server
    without a shutdown event, and uvicorn's SIGTERM path skips ``atexit``: so the middleware then
    answers the lifespan protocol itself, to keep its flush at shutdown.
    """

    def __init__(self, owner: AsgiLogToSqlite, scope: Scope) -> None:
        self.owner = owner
        self.scope = scope
        self.app_sent = False
        self.startup_received = False

    async def run(self, receive: Receive, send: Send) -> None:
        async def observed_receive() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.startup":
                self.startup_received = True
            return message

        async def observed_send(message: Message) -> None:
            self.app_sent = True
            if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self._flush()
            await send(message)

        try:
            await self.owner.app(self.scope, observed_receive, observed_send)
        except Exception as error:
            if self.app_sent:
                raise
            logger.debug("asgi-log-to-sqlite: the app does not support lifespan (%r)", error)
        if not self.app_sent:
            await self._answer(receive, send)

    async def _answer(self, receive: Receive, send: Send) -> None:
        if not self.startup_received:
            message = await receive()
            if message.get("type") != "lifespan.startup":
                return
        await send({"type": "lifespan.startup.complete"})
        while True:
            message = await receive()
            if message.get("type") == "lifespan.shutdown":
                await self._flush()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _flush(self) -> None:
        try:
            await self.owner.aflush(SHUTDOWN_FLUSH_TIMEOUT)
        except Exception:
            logger.exception("asgi-log-to-sqlite: flush at lifespan shutdown failed")


def _after_fork() -> None:
    for instance in list(_instances):
        instance._after_fork_in_child()


def _close_all_at_exit() -> None:
    for instance in list(_instances):
        try:
            instance.close(timeout=SHUTDOWN_FLUSH_TIMEOUT)
        except Exception:
            logger.exception("asgi-log-to-sqlite: could not flush %s at exit", instance.file)


def _commit_all(timeout: float) -> None:
    """Flush every middleware's queue in this process, each waiting at most ``timeout``."""
    for instance in list(_instances):
        writer = instance._writer
        if writer is None:
            continue
        try:
            done = threading.Event()
            writer.request_flush(done.set)
            done.wait(timeout)
        except Exception:
            logger.exception("asgi-log-to-sqlite: could not flush %s at SIGTERM", instance.file)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
atexit.register(_close_all_at_exit)
