"""The ASGI middleware: configuration and lifecycle.

``AsgiLogToSqlite(app, "log.db")`` validates its options, prepares the sink (a bad path fails
here, not at request time), and dispatches each connection to an observer
(:mod:`asgi_log_to_sqlite.observers`) by ``scope["type"]``; other scopes pass through untouched.
Finished exchanges go to the writer (:mod:`asgi_log_to_sqlite.writer`), which builds rows with
the prepare step and stores them through the sink: this module never touches storage.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import Any

from . import hosts, sigterm
from .exchange import Amend, Exchange, next_key
from .observers import (
    ASGIApp,
    HttpObserver,
    LifespanObserver,
    Receive,
    Scope,
    Send,
    WebSocketObserver,
)
from .options import Options
from .prepare import Prepare
from .sinks import open_sink
from .writer import Queue, start_writer

__all__ = ["AsgiLogToSqlite"]

logger = logging.getLogger("asgi_log_to_sqlite")

# How long the lifespan shutdown waits for the last rows to be committed.
SHUTDOWN_FLUSH_TIMEOUT = 30.0

_instances: weakref.WeakSet[AsgiLogToSqlite] = weakref.WeakSet()
#: Writers started and not stopped, held strongly: an app object collected before the process
#: ends (built inside ``main()``, no lifespan) still has its queue committed at exit.
_live_writers: set[Queue] = set()

_EMPTY_STATS = {
    "written": 0,
    "queued": 0,
    "dropped_queue_full": 0,
    "dropped_write_failed": 0,
    "dropped_bad_record": 0,
    "write_errors": 0,
    "actor_errors": 0,
    "route_errors": 0,
}


class AsgiLogToSqlite:
    """Wrap an ASGI 3 application; every request it serves becomes a row in ``file``.

    ``AsgiLogToSqlite(app, "log.db", **options)``: see :class:`~asgi_log_to_sqlite.options.Options`
    for the options. The database is created (or upgraded) here; the writer starts with the
    first request of each process, so the object can be built before ``fork()``.
    """

    def __init__(self, app: ASGIApp, file: str | os.PathLike[str] | None = None, **options: Any):
        if file is None:
            raise TypeError("AsgiLogToSqlite() needs the database path: AsgiLogToSqlite(app, file)")
        if not callable(app):
            raise TypeError(f"AsgiLogToSqlite() needs an ASGI application, got {app!r}")
        self.app = app
        self.options = Options.from_kwargs(options)
        self._given = dict(options)  # as given: what a writer process validates again
        # What the observers keep of bodies for replay (capture.py), or None.
        self.capture = (
            (self.options.capture_body_limit, self.options.capture_responses)
            if self.options.capture_requests
            else None
        )
        self.sink = open_sink(file, self.options)
        self.file = self.sink.name  # for messages: a URL without its password
        # What a writer process (or a forked child) opens: the path, or the URL in full.
        self._target = getattr(self.sink, "target", self.file)
        # A sink that writes to this process's own streams cannot run in a writer process.
        self._shippable = getattr(self.sink, "shippable", True)
        if self.options.writer == "process" and not self._shippable:
            raise ValueError(
                f"option 'writer': a writer process cannot write to {self.file}; "
                "use writer='thread', 'inline' or 'auto'"
            )
        self.sink.prepare()
        #: flush="response" (or "auto" on AWS Lambda): each row committed before the response's
        #: last message goes out (observers.py), and whatever came later before the call returns.
        self.commit_each = hosts.commits_each_response(self.options.flush)
        self._writer: Queue | None = None
        self._writer_lock = threading.Lock()
        self._closed = False
        self._warned_closed = False
        self._warned_commit = False
        _instances.add(self)

    # ---- public API ------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> None:
        """Block until every request that finished before this call is committed.

        Raises ``TimeoutError`` if that takes longer than ``timeout`` seconds.
        """
        writer = self._writer
        if writer is not None:
            writer.flush(timeout)

    async def aflush(self, timeout: float | None = None) -> None:
        """:meth:`flush` for use inside the event loop: waits without blocking it."""
        writer = self._writer
        if writer is not None:
            await writer.aflush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Commit everything, stop the writer. Safe to call twice; later requests aren't logged."""
        self._closed = True
        with self._writer_lock:
            writer = self._writer
        if writer is not None:
            writer.stop(timeout)
            _live_writers.discard(writer)

    async def aclose(self, timeout: float | None = None) -> None:
        """:meth:`close` for use inside the event loop."""
        import asyncio

        self._closed = True
        await self.aflush(timeout)
        writer = self._writer
        if writer is not None and writer.strategy == "inline":
            writer.stop(timeout)
            return
        await asyncio.get_running_loop().run_in_executor(None, self.close, timeout)

    def stats(self) -> dict[str, Any]:
        """Counts for this process: rows written, queued, dropped (and why), write errors."""
        writer = self._writer
        if writer is None:
            return dict(_EMPTY_STATS)
        return writer.stats()

    # ---- the writer, one per process -------------------------------------------------------
    def _start_writer(self) -> Queue | None:
        with self._writer_lock:
            if self._writer is None and not self._closed:
                self._writer = self._new_writer()
                _live_writers.add(self._writer)
                if self._writer.strategy in ("thread", "process"):
                    sigterm.install(_commit_all)
        return self._writer

    def _new_writer(self) -> Queue:
        """The writer of the ``writer`` option. "auto": a writer process where one can start,
        else a thread, else the event loop itself (Pyodide has neither; on AWS Lambda, see
        hosts.py)."""
        kind = hosts.writer_for(self.options.writer)
        # The clock option (for tests) is a callable of this process: rotation needs it there.
        shippable = self.options.clock is None and self._shippable
        if kind == "process" or (kind == "auto" and shippable):
            try:
                return self._process_writer()
            except Exception as error:
                logger.log(
                    logging.WARNING if kind == "process" else logging.INFO,
                    "asgi-log-to-sqlite: no writer process for %s (%s); writing from a thread",
                    self.file,
                    error,
                )
                kind = "auto"
        return start_writer(kind, self.sink, Prepare(self.options), self.options)

    def _process_writer(self) -> Queue:
        from .wire import Encoder
        from .writer_process import ProcessWriter

        # Callables stay here: the route and actor are resolved before records are shipped.
        given = {
            name: value for name, value in self._given.items()
            if name not in ("route", "actor", "clock", "writer")
        }
        handoff = getattr(self.sink, "handoff", None)
        return ProcessWriter(self._target, given, Encoder(self.options), self.options,
                             name=self.file, handoff=handoff() if handoff else None)

    def _after_fork_in_child(self) -> None:
        # The parent's thread does not exist here and its queue is the parent's to write.
        after_fork = getattr(self._writer, "after_fork", None)
        if after_fork is not None:
            after_fork()
        _live_writers.discard(self._writer)  # type: ignore[arg-type]
        self._writer = None
        self._writer_lock = threading.Lock()
        self.sink = open_sink(self._target, self.options)

    # ---- what observers call (the Recorder protocol) -------------------------------------------
    def submit(self, exchange: Exchange) -> None:
        exchange.queued = True
        exchange.key = next_key()
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

    def amend(self, amend: Amend) -> None:
        writer = self._writer
        if writer is not None and not self._closed:
            writer.amend(amend)

    def startup(self) -> None:
        """The server starts (lifespan): the writer starts now rather than with the first
        request, which would otherwise wait for a writer process to come up."""
        try:
            self._start_writer()
        except Exception:
            logger.exception("asgi-log-to-sqlite: could not start the writer for %s", self.file)

    async def commit_response(self) -> None:
        """flush="response": wait (without blocking the loop) until the row of the request that
        just ended is committed; at most ``busy_timeout`` seconds, after which it stays queued
        for the writer and the call returns anyway."""
        writer = self._writer
        if writer is None:
            return
        try:
            await writer.aflush(self.options.busy_timeout)
        except Exception as error:
            if not self._warned_commit:
                self._warned_commit = True
                logger.warning(
                    "asgi-log-to-sqlite: a request's row was not committed before its response "
                    "ended (%s); it stays queued for %s", error, self.file,
                )

    async def shutdown_flush(self) -> None:
        try:
            await self.aflush(SHUTDOWN_FLUSH_TIMEOUT)
        except Exception:
            logger.exception("asgi-log-to-sqlite: flush at lifespan shutdown failed")

    # ---- ASGI --------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "http":
            observer = HttpObserver(self, scope)
            try:
                await observer.run(receive, send)
            finally:
                if self.commit_each and not observer.committed:
                    await self.commit_response()  # no response, or an exception after it
        elif kind == "websocket":
            try:
                await WebSocketObserver(self, scope).run(receive, send)
            finally:
                if self.commit_each:
                    await self.commit_response()
        elif kind == "lifespan":
            await LifespanObserver(self, scope).run(receive, send)
        else:
            await self.app(scope, receive, send)


def _after_fork() -> None:
    for instance in list(_instances):
        instance._after_fork_in_child()


def _close_all_at_exit() -> None:
    for instance in list(_instances):
        try:
            instance.close(timeout=SHUTDOWN_FLUSH_TIMEOUT)
        except Exception:
            logger.exception("asgi-log-to-sqlite: could not flush %s at exit", instance.file)
    for writer in list(_live_writers):  # their app objects are gone
        try:
            writer.stop(SHUTDOWN_FLUSH_TIMEOUT)
        except Exception:
            logger.exception("asgi-log-to-sqlite: could not flush %s at exit", writer.name)
        _live_writers.discard(writer)


def _commit_all(timeout: float) -> None:
    """Flush every middleware's queue in this process, each waiting at most ``timeout``."""
    for writer in list(_live_writers):
        if writer.strategy not in ("thread", "process"):
            continue
        try:
            done = threading.Event()
            writer.request_flush(done.set)
            done.wait(timeout)
        except Exception:
            logger.exception("asgi-log-to-sqlite: could not flush %s at SIGTERM", writer.name)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
atexit.register(_close_all_at_exit)
