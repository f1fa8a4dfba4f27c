"""The JSON-lines sink: one line per row on standard output, for platforms that keep a process's
output and nothing else (AWS Lambda's CloudWatch, Cloud Run's Cloud Logging, Fly, Vercel).

``AsgiLogToSqlite(app, "-")`` (or ``"stdout"``). Each row is the line
:mod:`asgi_log_to_sqlite.jsonlines` defines: every column of the ``requests`` table with the
value the SQLite log would store (redaction applied by the prepare step, as for any sink), which
``asgi-log-to-sqlite import`` reads back into a log database.

The sink writes to file descriptor 1 itself, in whole lines, never through ``sys.stdout``'s
buffer (which may end a write in the middle of the app's own line). Before each write of at most
``PIPE_BUF`` bytes it asks ``select`` whether the descriptor takes it. Off the event loop (the
writer thread or process) it waits for the reader up to ``busy_timeout`` seconds, as a SQLite
write waits for a lock; on an event loop (the inline writer) it never waits. A reader that
stays behind (a log shipper that fell behind filled the pipe) makes the write fail like any
storage that is unavailable: the writer keeps the rows and retries them, and past ``retry_for``
counts them as dropped. So standard output never blocks an event loop.

What only a SQLite log can hold is refused when the middleware is built: rotation and
retention, captured headers and captures for replay. Late exceptions reach a row that has not
been printed yet; a line already printed is not printed again. Drop counts are logged as
warnings (the ``asgi_log_to_sqlite`` logger, on standard error).
"""

from __future__ import annotations

import logging
import os
import select
from typing import Any

from ..batch import Batch
from ..jsonlines import COLUMNS, encode
from .base import DataError

__all__ = ["TARGETS", "JSONLinesSink"]

logger = logging.getLogger("asgi_log_to_sqlite")

#: What stands for standard output in place of a file name.
TARGETS = ("-", "stdout")
#: Bytes written at once at most: a pipe that ``select`` calls writable takes this much without
#: blocking, in one piece (POSIX's PIPE_BUF is at least 512; 4096 on Linux).
CHUNK = getattr(select, "PIPE_BUF", 512)
_EXCEPTION = COLUMNS.index("exception")

#: Options that need a SQLite log: refused with the JSON-lines sink.
_SQLITE_ONLY = (
    ("rotate", None),
    ("max_bytes", None),
    ("max_rows", None),
    ("keep", None),
    ("retain", None),
    ("capture_request_headers", ()),
    ("capture_response_headers", ()),
    ("capture_requests", False),
)


class StdoutFull(OSError):
    """Standard output takes nothing more now (its reader fell behind): retried later."""


class JSONLinesSink:
    """Rows as JSON lines on a file descriptor (standard output unless told otherwise)."""

    #: Writes to this process's own standard output: a writer process could not.
    shippable = False
    #: What ``open_sink`` opens this sink from again (in a forked child).
    target = "-"

    def __init__(self, options: Any, fd: int = 1, name: str = "<stdout>") -> None:
        for option, default in _SQLITE_ONLY:
            if getattr(options, option) != default:
                raise ValueError(
                    f"option {option!r} needs a SQLite log file; it cannot be used when "
                    "logging JSON lines to standard output"
                )
        self.fd = fd
        self.name = name
        self.wait_for = options.busy_timeout
        self._partial = b""  # the rest of a line the descriptor took only part of
        self._partial_error: OSError | None = None  # why the rest could not go (disk full...)
        self._can_poll = True

    # ---- the Sink interface ------------------------------------------------------------------
    def prepare(self) -> None:
        try:
            os.fstat(self.fd)
        except OSError as error:
            raise OSError(f"cannot log to {self.name}: it is closed ({error})") from None

    def write(self, batch: Batch) -> None:
        self._send_partial()
        rows = batch.rows
        start = batch.done
        late = {amend.key: amend.exception for amend in batch.amends}
        lines = []
        try:
            for index in range(start, len(rows)):
                row = rows[index]
                exception = late.get(batch.keys[index]) if late else None
                if exception is not None and row[_EXCEPTION] is None:
                    # Into the batch itself: a retry after a full pipe builds the line again.
                    row = rows[index] = (*row[:_EXCEPTION], exception, *row[_EXCEPTION + 1:])
                lines.append(encode(row).encode("ascii") + b"\n")
        except (TypeError, ValueError, OverflowError) as error:
            raise DataError(str(error)) from error
        self._report_drops(batch)
        batch.amends = []
        for line in lines:
            # StdoutFull when nothing of the line went out: the rows before it are done.
            self._send_line(line)
            batch.done += 1  # out, or its rest kept to go first: the row is not written twice
            if self._partial:
                error, self._partial_error = self._partial_error, None
                raise error or StdoutFull(f"{self.name} is full: its reader fell behind")

    def idle(self) -> None:
        if self._partial:
            try:
                self._send_partial()
            except OSError:
                pass  # the next batch tries again

    def close(self) -> None:
        """Nothing to release: standard output belongs to the process."""

    # ---- writing -------------------------------------------------------------------------------
    def _writable(self) -> bool:
        if not self._can_poll:
            return True
        import asyncio  # here: opening a SQLite sink (this module's TARGETS) must not load it

        try:
            asyncio.get_running_loop()
            wait = 0.0  # on the event loop (the inline writer): never wait for the reader
        except RuntimeError:
            wait = self.wait_for
        try:
            return bool(select.select([], [self.fd], [], wait)[1])
        except (OSError, ValueError):
            self._can_poll = False  # a descriptor select cannot watch: plain writes
            return True

    def _send_partial(self) -> None:
        while self._partial:
            if not self._writable():
                raise StdoutFull(f"{self.name} is full: its reader fell behind")
            written = os.write(self.fd, self._partial[:CHUNK])
            self._partial = self._partial[written:]

    def _send_line(self, line: bytes) -> None:
        """Write one line, or as much of it as the descriptor takes now (the rest is kept in
        ``_partial`` and goes first next time, so lines are never cut or mixed)."""
        view = memoryview(line)
        while view:
            if not self._writable():
                if len(view) == len(line):
                    raise StdoutFull(f"{self.name} is full: its reader fell behind")
                self._partial = bytes(view)
                return
            try:
                written = os.write(self.fd, view[:CHUNK])
            except OSError as error:
                if len(view) == len(line):
                    raise
                # Part of the line is out (a disk that filled up): its rest goes first next
                # time, never the whole line again after a cut one.
                self._partial, self._partial_error = bytes(view), error
                return
            view = view[written:]

    def _report_drops(self, batch: Batch) -> None:
        if batch.done:
            return  # counts ride with the first part of a batch only
        for reason, count in batch.dropped.items():
            if count:
                logger.warning("asgi-log-to-sqlite: %d request(s) not logged to %s (%s)",
                               count, self.name, reason.replace("_", " "))
        batch.dropped = {}
