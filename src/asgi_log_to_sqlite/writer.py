"""The background writer: the only code that touches the database while the app serves.

The event loop's part is :meth:`Writer.put`: a length check and a ``deque.append``, both atomic
under the GIL, so the loop never waits on a lock or on SQLite. A named daemon thread wakes every
``flush_interval`` (or when asked to flush), drains the queue and commits each batch in one
``BEGIN IMMEDIATE`` transaction, which also serialises writers from several processes sharing the
file. A batch that fails is kept and retried; only after ``retry_for`` seconds is it dropped, and
every drop is counted in memory and in the ``dropped`` table.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from itertools import repeat
from typing import Any

from . import rollups
from .bulk import insert_columns, lookup_ids
from .options import Options
from .privacy import Policy
from .record import Exchange, RowBuilder
from .rotation import Maintainer
from .schema import LOOKUP_TABLES, REQUEST_COLUMNS, connect, ensure_schema

__all__ = ["Writer", "logger"]

logger = logging.getLogger("asgi_log_to_sqlite")

_STOP = object()
# Lookup ids a writer keeps in memory per table; past it the cache starts again (ids stay valid).
CACHE_LIMIT = 100_000

INSERT_SQL = "INSERT INTO requests ({}) VALUES ({})".format(
    ", ".join(REQUEST_COLUMNS), ", ".join("?" for _ in REQUEST_COLUMNS)
)
LOOKUP_POSITIONS = [(i, table) for i, table in enumerate(REQUEST_COLUMNS.values()) if table]
COLUMN_NAMES = tuple(REQUEST_COLUMNS)


def _hour(start: float) -> str:
    """The UTC hour a request arrived in, as the ``dropped`` and ``excluded`` tables key it."""
    try:
        return datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%dT%H:00")
    except (OverflowError, OSError, ValueError, TypeError):
        return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:00")


class _Flush:
    """A marker in the queue: everything queued before it is committed when ``done`` runs."""

    __slots__ = ("done",)

    def __init__(self, done: Callable[[], None]) -> None:
        self.done = done


class _Amend:
    """A marker in the queue: ``exchange`` raised after its row was queued (a background task
    that failed after the response): its stored row gets the exception type."""

    __slots__ = ("exchange",)

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange


class Writer:
    def __init__(self, path: str, options: Options) -> None:
        self.path = path
        self.options = options
        self.queue: collections.deque[Any] = collections.deque()
        self.written = 0
        self.dropped_queue_full = 0
        self.dropped_write_failed = 0
        self.dropped_bad_record = 0
        self.write_errors = 0
        self._dropped_reported: dict[str, int] = {}
        self._wake = threading.Event()
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._cache: dict[str, dict[str, int]] = {
            t: {} for t in (*LOOKUP_TABLES, "header_names", "header_values")
        }
        # Privacy: exclusions, sampling, redaction, captured headers (privacy.py).
        self._privacy = Policy(options)
        self._builder = RowBuilder(self._privacy, options.max_value_length)
        self._skipped: collections.Counter[tuple[str, str]] = collections.Counter()
        self._captured: list[tuple[int, list[Any]]] = []
        self._built: list[Exchange] = []
        self._stopped = False
        self._first_failure: float | None = None
        self._warned_full = False
        # Rotation or retention, when configured: runs in this thread around each batch.
        self._maintainer = Maintainer.for_options(path, options)
        self._thread = threading.Thread(
            target=self._run, name=f"asgi-log-to-sqlite-writer:{os.path.basename(path)}", daemon=True
        )
        self._thread.start()

    # ---- called from the event loop ------------------------------------------------------
    def put(self, exchange: Exchange) -> None:
        if len(self.queue) >= self.options.max_queue:
            self.dropped_queue_full += 1
            if not self._warned_full:
                self._warned_full = True
                logger.warning(
                    "asgi-log-to-sqlite: queue full (%d records), dropping records for %s; "
                    "see the 'dropped' table",
                    self.options.max_queue,
                    self.path,
                )
            return
        self.queue.append(exchange)

    def amend(self, exchange: Exchange) -> None:
        """``exchange.exception`` was set after the exchange was queued: store it too."""
        if len(self.queue) < self.options.max_queue:
            self.queue.append(_Amend(exchange))

    # ---- flushing and stopping (any thread) ----------------------------------------------
    def request_flush(self, done: Callable[[], None]) -> None:
        if not self._thread.is_alive():
            done()
            return
        self.queue.append(_Flush(done))
        self._wake.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Drain, commit and stop; safe to call twice. False if the thread did not finish."""
        if not self._stopped:
            self._stopped = True
            self.queue.append(_STOP)
            self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("asgi-log-to-sqlite: writer for %s is still running", self.path)
            return False
        return True

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stats(self) -> dict[str, int]:
        return {
            "written": self.written,
            "queued": len(self.queue),
            "dropped_queue_full": self.dropped_queue_full,
            "dropped_write_failed": self.dropped_write_failed,
            "dropped_bad_record": self.dropped_bad_record,
            "write_errors": self.write_errors,
            **self._privacy.stats(),
        }

    # ---- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        self._pending: list[Exchange] = []
        self._markers: list[_Flush] = []
        self._amends: list[Exchange] = []
        self._stopping = False
        try:
            while True:
                try:
                    if self._cycle():
                        return
                except Exception:
                    # A bug of ours: count what was in hand, release the flushers, write on.
                    lost, self._pending = len(self._pending), []
                    self.dropped_bad_record += lost
                    logger.exception(
                        "asgi-log-to-sqlite: writer for %s hit an unexpected error; "
                        "%d record(s) dropped, writing goes on",
                        self.path,
                        lost,
                    )
                    markers, self._markers = self._markers, []
                    self._release(markers)
                    self._close_connection()
                    if self._stopping:
                        return
                    time.sleep(min(1.0, self.options.flush_interval))
        except BaseException:  # not even that worked: never let it pass silently
            logger.exception("asgi-log-to-sqlite: writer for %s stopped by an error", self.path)
        finally:
            self._close_connection()

    def _cycle(self) -> bool:
        """Wait for the next batch, write it; True once stopped and drained."""
        if not self._stopping:
            self._wake.wait(self.options.flush_interval)
            self._wake.clear()
        queue = self.queue
        while queue and not self._stopping:
            item = queue.popleft()
            if item is _STOP:
                self._stopping = True
                break
            if type(item) is _Amend:
                self._amends.append(item.exchange)
                continue
            if isinstance(item, _Flush):
                # Commit what came before the marker, then release the flusher.
                self._markers.append(item)
                self._pending = self._commit(self._pending, give_up=False)
                if not self._pending:
                    markers, self._markers = self._markers, []
                    self._release(markers)
                continue
            self._pending.append(item)
            if len(self._pending) >= self.options.batch_size:
                self._pending = self._commit(self._pending, give_up=False)
                if self._pending:
                    break  # failing: retry after a pause, leave the rest queued
        self._pending = self._commit(self._pending, give_up=self._stopping)
        if self._warned_full and len(queue) < self.options.max_queue // 2:
            self._warned_full = False  # caught up: warn again if the queue fills again
        if not self._pending:
            markers, self._markers = self._markers, []
            self._release(markers)
            if self._maintainer is not None and not queue:
                self._maintainer.when_idle(self)
        else:
            time.sleep(min(1.0, self.options.flush_interval))  # still failing: retry later
        if not self._stopping:
            return False
        # One more drain: what was queued after the stop, and records still failing.
        while queue:
            item = queue.popleft()
            if isinstance(item, _Flush):
                self._markers.append(item)
            elif type(item) is _Amend:
                self._amends.append(item.exchange)
            elif item is not _STOP:
                self._pending.append(item)
        self._pending = self._commit(self._pending, give_up=True)
        markers, self._markers = self._markers, []
        self._release(markers)
        return True

    def _release(self, markers: list[_Flush]) -> None:
        for marker in markers:
            try:
                marker.done()
            except Exception:
                logger.exception("asgi-log-to-sqlite: flush callback failed")

    def _commit(self, pending: list[Exchange], give_up: bool) -> list[Exchange]:
        """Write ``pending``; return what is left to retry (empty on success or when dropped)."""
        self._write_dropped_counts_if_due()
        if not pending and not self._amends:
            return pending
        first_failure = self._first_failure
        try:
            self._write(pending)
        except Exception as error:
            self.write_errors += 1
            now = time.monotonic()
            if first_failure is None:
                self._first_failure = now
                logger.warning(
                    "asgi-log-to-sqlite: could not write %d record(s) to %s (%s); retrying",
                    len(pending),
                    self.path,
                    error,
                )
                first_failure = now
            self._close_connection()  # reopen next time: the file may be gone or replaced
            if give_up or now - first_failure >= self.options.retry_for:
                if give_up:
                    # Last chance at shutdown: a short retry for a lock held by another process.
                    for delay in (0.05, 0.2, 0.5, 1.0):
                        time.sleep(delay)
                        try:
                            self._write(pending)
                            self._first_failure = None
                            return []
                        except Exception:
                            self._close_connection()
                self.dropped_write_failed += len(pending)
                self._amends = []
                self._first_failure = None
                logger.error(
                    "asgi-log-to-sqlite: dropped %d record(s) that could not be written to %s: %s",
                    len(pending),
                    self.path,
                    error,
                )
                return []
            return pending
        if first_failure is not None:
            self._first_failure = None
            logger.warning("asgi-log-to-sqlite: writing to %s works again", self.path)
        return []

    # ---- SQLite --------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """The open connection; reopened when the file was deleted or replaced under us."""
        try:
            st = os.stat(self.path)
            inode: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            inode = None
        if self._conn is not None and inode == self._inode:
            return self._conn
        self._close_connection()
        conn = connect(self.path, self.options.busy_timeout)
        try:
            ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
        st = os.stat(self.path)
        self._conn, self._inode = conn, (st.st_dev, st.st_ino)
        for cache in self._cache.values():
            cache.clear()
        return conn

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
        except Exception:
            pass

    def _rows(self, pending: list[Exchange]) -> list[tuple[Any, ...]]:
        """The rows of ``pending``; ``self._built`` gets the exchanges they came from."""
        rows: list[tuple[Any, ...]] = []
        built: list[Exchange] = []
        self._built = built
        # Counted afresh on every attempt: only a committed batch's counts reach the database.
        self._skipped = collections.Counter()
        self._captured = []
        builder = self._builder
        captures = self._privacy.captures
        for exchange in pending:
            try:
                row = builder.build(exchange)
                if type(row) is str:
                    self._skipped[(_hour(exchange.start), row)] += 1
                    continue
                if captures:
                    captured = builder.captured(exchange)
                    if captured:
                        self._captured.append((len(rows), captured))
                rows.append(row)
                built.append(exchange)
            except Exception:
                self.dropped_bad_record += 1
                logger.exception("asgi-log-to-sqlite: could not record a request; skipped")
        return rows

    def _around_batch(self) -> contextlib.AbstractContextManager[None]:
        """Rotation's lock and checks (or retention) around one transaction; see rotation.py."""
        if self._maintainer is None:
            return contextlib.nullcontext()
        return self._maintainer.around_batch(self)

    def _write(self, pending: list[Exchange]) -> None:
        with self._around_batch():
            self._write_batch(pending)

    def _write_batch(self, pending: list[Exchange]) -> None:
        rows = self._rows(pending)
        conn = self._connection()
        new_ids: dict[str, dict[str, int]] = {t: {} for t in self._cache}
        first = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                columns: list[Any] = list(zip(*rows))
                for position, table in LOOKUP_POSITIONS:
                    columns[position] = self._ids(conn, table, columns[position], new_ids)
                self._insert(conn, columns, new_ids)
                # This transaction holds the write lock: the rows got consecutive ids.
                first = conn.execute("SELECT max(rowid) FROM requests").fetchone()[0] - len(rows) + 1
                rollups.add_rows(conn, first, first + len(rows) - 1)
            if self._amends:
                self._apply_amends(conn, first)
            self._insert_skipped(conn)
            drop_counts = self._write_dropped_counts(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._amends = []
        if rows:
            # Where each row went, for an exception that comes after it was written (_Amend).
            built = self._built
            list(map(setattr, built, repeat("rowid"), range(first, first + len(rows))))
            list(map(setattr, built, repeat("file"), repeat(self._inode)))
        # Only ids that are committed may be cached: a rolled-back insert leaves no row.
        for table, ids in new_ids.items():
            cache = self._cache[table]
            if len(cache) + len(ids) > CACHE_LIMIT:
                cache.clear()
            cache.update(ids)
        self.written += len(rows)
        self._dropped_reported = drop_counts

    def _apply_amends(self, conn: sqlite3.Connection, first: int) -> None:
        """Store the exception types that came after their rows were queued."""
        built = self._built
        for exchange in self._amends:
            if exchange.exception is None:
                continue
            try:
                rowid = first + built.index(exchange)  # a row of this very batch
            except ValueError:
                if getattr(exchange, "file", None) != self._inode:
                    continue  # left out of the log, or in a file rotated since
                rowid = exchange.rowid
            # Checked against the row's start too: a file's inode and row ids can be reused
            # (a rotated file deleted by ``keep``, every row deleted by retention).
            conn.execute(
                "UPDATE requests SET exception = ? "
                "WHERE rowid = ? AND start = ? AND exception IS NULL",
                (exchange.exception, rowid, exchange.start),
            )

    def _ids(
        self,
        conn: sqlite3.Connection,
        table: str,
        names: tuple[Any, ...],
        new_ids: dict[str, dict[str, int]],
    ) -> list[int | None]:
        """Lookup names swapped for their ids (new names inserted): a column of the batch, or
        the one name of a captured header."""
        cache, fresh = self._cache[table], new_ids[table]
        missing = set(names).difference(cache, fresh)
        missing.discard(None)
        if missing:
            fresh.update(lookup_ids(conn, table, sorted(missing)))
        if not fresh:
            return list(map(cache.get, names))
        cached, new = cache.get, fresh.get
        return [cached(name) or new(name) for name in names]  # ids start at 1

    def _insert(
        self, conn: sqlite3.Connection, columns: list[Any], new_ids: dict[str, dict[str, int]]
    ) -> None:
        """Insert the rows and their captured headers."""
        if not self._captured:
            insert_columns(conn, "requests", COLUMN_NAMES, columns)
            return
        captured = dict(self._captured)
        for index, row in enumerate(zip(*columns)):
            rowid = conn.execute(INSERT_SQL, row).lastrowid
            for direction, name, value in captured.get(index, ()):
                conn.execute(
                    "INSERT INTO captured_headers (request, direction, name, value) "
                    "VALUES (?, ?, ?, ?)",
                    (
                        rowid,
                        direction,
                        self._ids(conn, "header_names", (name,), new_ids)[0],
                        self._ids(conn, "header_values", (value,), new_ids)[0],
                    ),
                )

    def _insert_skipped(self, conn: sqlite3.Connection) -> None:
        """The per-hour counts of requests left out of the log."""
        for (hour, reason), count in self._skipped.items():
            conn.execute(
                "INSERT INTO excluded_requests (hour, reason, count) VALUES (?, ?, ?) "
                "ON CONFLICT (hour, reason) DO UPDATE SET count = count + excluded.count",
                (hour, reason, count),
            )

    # ---- the visible drop count ------------------------------------------------------------
    def _drop_counts(self) -> dict[str, int]:
        return {
            "queue_full": self.dropped_queue_full,
            "write_failed": self.dropped_write_failed,
            "bad_record": self.dropped_bad_record,
        }

    def _write_dropped_counts_if_due(self) -> None:
        """Drops with no batch to ride on (e.g. all writes failing) still reach the table."""
        if self._drop_counts() == self._dropped_reported:
            return
        try:
            with self._around_batch():
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    counts = self._write_dropped_counts(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            self._dropped_reported = counts
        except Exception:
            self._close_connection()

    def _write_dropped_counts(self, conn: sqlite3.Connection) -> dict[str, int]:
        """Add the drops since the last report to this hour's row; the caller commits."""
        counts = self._drop_counts()
        hour = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:00")
        for reason, total in counts.items():
            delta = total - self._dropped_reported.get(reason, 0)
            if delta:
                conn.execute(
                    "INSERT INTO dropped (hour, reason, count) VALUES (?, ?, ?) "
                    "ON CONFLICT (hour, reason) DO UPDATE SET count = count + excluded.count",
                    (hour, reason, delta),
                )
        return counts
