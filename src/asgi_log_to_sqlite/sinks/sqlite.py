"""The SQLite sink: batches into a local log file, in WAL mode, with normalised lookup tables.

Each batch is one ``BEGIN IMMEDIATE`` transaction, which also takes turns with the writers of
other processes sharing the file. Lookup values (paths, user agents...) are resolved to ids with
set operations and remembered per connection, and only once their transaction committed: a
rolled-back insert leaves no row behind an id. Rotation and retention run around batches through
the sink's public methods (:class:`Maintenance`); see :mod:`asgi_log_to_sqlite.rotation`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from .. import rollups
from ..batch import Batch
from ..bulk import insert_columns, lookup_ids
from ..rotation import (
    FileLock,
    RotationBusy,
    RotationSchedule,
    delete_older_than,
    reclaim_space,
    rotate_file,
    rows_written,
)
from ..schema import (
    LOOKUP_POSITIONS,
    LOOKUP_TABLES,
    REQUEST_COLUMNS,
    SchemaError,
    connect,
    ensure_schema,
    rollback,
    transaction,
)
from .base import DataError

__all__ = ["SQLiteSink", "validated_path"]

logger = logging.getLogger("asgi_log_to_sqlite")

# Lookup ids a sink keeps in memory per table; past it the cache starts again (ids stay valid).
CACHE_LIMIT = 100_000
#: Rows whose place (file, row id) is remembered for late exceptions.
PLACES_LIMIT = 100_000
#: Seconds between two retention passes of one writer.
RETAIN_EVERY = 300.0
#: Transactions one retention pass runs at most before letting the batch through.
RETAIN_MAX_TRANSACTIONS = 100
#: Seconds between two checks for rotation or retention while no batch comes.
IDLE_CHECK_EVERY = 10.0
#: After a refused rotation (the file is open elsewhere), seconds before trying again.
BUSY_BACKOFF = 10.0
#: Passes over a batch that store nothing in a full file before the rest goes in anyway.
MAX_STALLED_PASSES = 10

COLUMN_NAMES = tuple(REQUEST_COLUMNS)
CAPTURES_SQL = (
    "INSERT INTO captures (request, raw_path, raw_query, request_headers, request_body, "
    "request_body_sha256, request_body_kept, response_headers, response_body, "
    "response_body_sha256, response_body_kept, response_chunks) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_SQL = "INSERT INTO requests ({}) VALUES ({})".format(
    ", ".join(COLUMN_NAMES), ", ".join("?" for _ in COLUMN_NAMES)
)
#: Errors that say a value cannot be stored, as opposed to the file or a lock failing.
_DATA_ERRORS = (
    OverflowError,
    UnicodeError,
    ValueError,
    TypeError,
    sqlite3.InterfaceError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
)


def validated_path(file: Any) -> str:
    """The log's path, checked: clear errors at construction, never at request time."""
    if isinstance(file, bytes) or not isinstance(file, (str, os.PathLike)):
        raise TypeError(f"option 'file' must be a path (str or os.PathLike), got {file!r}")
    path = os.fspath(file)
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ValueError(f"option 'file' must be the path of a database file, got {path!r}")
    if "\x00" in path:
        raise ValueError("option 'file' must be a path without NUL characters")
    try:
        os.fsencode(path)
    except UnicodeError:
        raise ValueError(f"option 'file': {path!r} cannot be a file name here") from None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot log to {path!r}: the folder {folder!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot log to {path!r}: it is a folder")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError(f"cannot log to {path!r}: it is not a regular file")
    return path


class SQLiteSink:
    def __init__(self, path: str, options: Any) -> None:
        self.path = path
        self.name = path
        self.options = options
        #: Seconds a lock or a busy database is waited for (less on the event loop).
        self.patience: float = options.busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._cache: dict[str, dict[str, int]] = {
            t: {} for t in (*LOOKUP_TABLES, "header_names", "header_values", "header_lists")
        }
        # Where recent rows went, for late exceptions: (keys, file identity, row id of the first)
        # per part of a batch written, oldest first; a list per part, not an entry per row.
        self._places: collections.deque[tuple[list[int], tuple[int, int] | None, int]] = (
            collections.deque()
        )
        self._placed = 0  # rows in _places
        #: Rollup sums of committed rows not yet in the file (rollups.Accumulator).
        self._sums = rollups.Accumulator()
        self.maintenance = Maintenance.for_options(self, options)

    # ---- the Sink interface ------------------------------------------------------------------
    def prepare(self) -> None:
        """Create or upgrade the file now, so that a bad path fails at construction."""
        path = self.path
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise PermissionError(f"cannot log to {path!r}: the file is not writable")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.exists(path) and not os.access(folder, os.W_OK):
            raise PermissionError(f"cannot log to {path!r}: its folder is not writable")
        with self._shared_lock():  # never opened mid-rotation
            try:
                conn = connect(path, self.options.busy_timeout)
            except sqlite3.Error as error:
                raise OSError(f"cannot open log database {path!r}: {error}") from error
            try:
                ensure_schema(conn)
            except SchemaError as error:
                raise ValueError(f"cannot log to {path!r}: {error}") from error
            except sqlite3.DatabaseError as error:
                raise ValueError(
                    f"cannot log to {path!r}: not a usable SQLite database ({error})"
                ) from error
            finally:
                conn.close()

    def write(self, batch: Batch) -> None:
        if self.maintenance is None:
            self._write_part(batch)
            return
        limited, stalled = True, 0
        while True:
            before = batch.done
            with self.maintenance.around_batch():
                self._write_part(batch, limited)
            if batch.done >= len(batch.rows):
                return
            # A file that is full now is rotated by the next pass, and the rest of the batch
            # goes on under the limit: another writer may have filled it since this one looked.
            # A full file that cannot be rotated (another program has it open), or that other
            # writers keep filling first, takes the rest: late rotation beats lost rows.
            stalled = 0 if batch.done > before else stalled + 1
            limited = not self.maintenance.refused and stalled < MAX_STALLED_PASSES

    def idle(self) -> None:
        if self._sums.due():
            self.write_sums()
        if self.maintenance is not None:
            self.maintenance.when_idle()

    def close(self) -> None:
        self.write_sums()
        self.disconnect()

    def write_sums(self, locked: bool = False) -> None:
        """The rollup sums kept in memory, into the file now (before it closes or rotates);
        ``locked``: the caller holds rotation's shared lock already."""
        if not len(self._sums):
            return
        try:
            with contextlib.nullcontext() if locked else self._shared_lock():
                conn = self.connection()
                with transaction(conn):
                    rollups.add_aggregates(conn, self._sums.rows())
            self._sums.written()
        except (sqlite3.Error, OSError) as error:
            logger.warning("asgi-log-to-sqlite: rollups of %s not written: %s", self.path, error)

    # ---- connection (public: rotation closes it around its work) ------------------------------
    def connection(self) -> sqlite3.Connection:
        """The open connection; reopened when the file was deleted or replaced under us."""
        try:
            st = os.stat(self.path)
            inode: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            inode = None
        if self._conn is not None and inode == self._inode:
            return self._conn
        self.disconnect()
        conn = connect(self.path, self.patience)
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

    def disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        rollback(conn)
        try:
            conn.close()
        except Exception:
            pass

    @contextlib.contextmanager
    def waiting_at_most(self, seconds: float) -> Iterator[None]:
        """Locks and a busy database are waited for at most ``seconds`` in here (see
        :class:`~asgi_log_to_sqlite.sinks.base.Sink`)."""
        before, self.patience = self.patience, min(seconds, self.options.busy_timeout)
        self._set_busy_timeout(self.patience)
        try:
            yield
        finally:
            self.patience = before
            self._set_busy_timeout(before)

    def _set_busy_timeout(self, seconds: float) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
            except sqlite3.Error:
                pass  # a broken connection: the next write reopens it

    @contextlib.contextmanager
    def _shared_lock(self) -> Iterator[None]:
        if self.maintenance is None or self.maintenance.lock is None:
            yield
            return
        lock = FileLock(self.path)
        try:
            with lock.held(False, self.patience):
                yield
        finally:
            lock.close()

    # ---- writing -------------------------------------------------------------------------------
    def _write_part(self, batch: Batch, limited: bool = True) -> None:
        """Write the rows of ``batch`` not stored yet, as many as the file has room for (all of
        them unless ``max_rows`` rotation splits the batch), with everything else it holds."""
        conn = self.connection()
        new_ids: dict[str, dict[str, int]] = {t: {} for t in self._cache}
        start = batch.done
        try:
            with transaction(conn):
                stop = len(batch.rows)
                room = self.maintenance.room(conn) if self.maintenance and limited else None
                if room is not None:
                    stop = min(stop, start + max(room, 0))
                first, columns = self._insert(conn, batch, start, stop, new_ids)
                sums = rollups.aggregate_columns(
                    dict(zip(COLUMN_NAMES, columns, strict=True))
                ) if columns else []
                write_sums = self._sums.due(len(sums))
                if write_sums:
                    rollups.add_aggregates(conn, self._sums.rows(sums))
                if batch.amends:
                    self._amend(conn, batch, first, start, stop)
                if start == 0:  # counts ride with the first part only
                    self._count(conn, "excluded_requests", batch.excluded.items())
                    self._count_drops(conn, batch.dropped)
        except _DATA_ERRORS as error:
            raise DataError(str(error)) from error
        batch.done = stop
        if write_sums:
            self._sums.written()
        else:
            self._sums.add(sums)
        if start == 0:
            batch.excluded.clear()
            batch.dropped = {}
        if batch.amends:  # those for rows of a later part of the batch wait for it
            later = set(batch.keys[stop:])
            batch.amends = [amend for amend in batch.amends if amend.key in later]
        # Only ids that are committed may be cached: a rolled-back insert leaves no row.
        for table, ids in new_ids.items():
            cache = self._cache[table]
            if len(cache) + len(ids) > CACHE_LIMIT:
                cache.clear()
            cache.update(ids)
        if stop > start:
            places, keys = self._places, batch.keys[start:stop]
            places.append((keys, self._inode, first))
            self._placed += len(keys)
            while self._placed > PLACES_LIMIT and len(places) > 1:
                self._placed -= len(places.popleft()[0])

    def _insert(
        self,
        conn: sqlite3.Connection,
        batch: Batch,
        start: int,
        stop: int,
        new_ids: dict[str, dict[str, int]],
    ) -> tuple[int, list[Any]]:
        """Insert rows ``start:stop`` and their captured headers; the first row's id, and the
        rows' columns as inserted (lookup ids in place of names)."""
        if stop <= start:
            return 0, []
        rows = batch.rows if start == 0 and stop == len(batch.rows) else batch.rows[start:stop]
        columns: list[Any] = list(zip(*rows, strict=True))
        for position, table in LOOKUP_POSITIONS:
            columns[position] = self._ids(conn, table, columns[position], new_ids)
        if not batch.captured:
            insert_columns(conn, "requests", COLUMN_NAMES, columns)
            # This transaction holds the write lock: the rows got consecutive ids.
            first = conn.execute("SELECT max(rowid) FROM requests").fetchone()[0] - len(rows) + 1
            if batch.captures:
                self._insert_captures(conn, batch, start, stop, first, new_ids)
            return first, columns
        captured = {index - start: found for index, found in batch.captured}
        first = 0
        for index, row in enumerate(zip(*columns, strict=True)):
            rowid = conn.execute(INSERT_SQL, row).lastrowid
            if index == 0:
                first = rowid
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
        if batch.captures:
            self._insert_captures(conn, batch, start, stop, first, new_ids)
        return first, columns

    def _insert_captures(
        self,
        conn: sqlite3.Connection,
        batch: Batch,
        start: int,
        stop: int,
        first: int,
        new_ids: dict[str, dict[str, int]],
    ) -> None:
        """The captures of rows ``start:stop``, joined to them by row id (rows ``first``...);
        header lists are stored once each in ``header_lists``."""
        found = [(first + index - start, row) for index, row in batch.captures
                 if start <= index < stop]
        if not found:
            return
        lists = [row[2] for _, row in found] + [row[6] for _, row in found]
        ids = dict(zip(lists, self._ids(conn, "header_lists", tuple(lists), new_ids), strict=True))
        conn.executemany(
            CAPTURES_SQL,
            [(rowid, *row[:2], ids.get(row[2]), *row[3:6], ids.get(row[6]), *row[7:])
             for rowid, row in found],
        )

    def _ids(
        self,
        conn: sqlite3.Connection,
        table: str,
        names: tuple[Any, ...],
        new_ids: dict[str, dict[str, int]],
    ) -> list[int | None]:
        """Lookup names swapped for their ids (new names inserted)."""
        cache, fresh = self._cache[table], new_ids[table]
        missing = set(names).difference(cache, fresh)
        missing.discard(None)
        if missing:
            fresh.update(lookup_ids(conn, table, sorted(missing)))
        if not fresh:
            return list(map(cache.get, names))
        cached, new = cache.get, fresh.get
        return [cached(name) or new(name) for name in names]  # ids start at 1

    def _amend(self, conn: sqlite3.Connection, batch: Batch, first: int, start: int, stop: int):
        """Store the exception types that came after their rows were queued."""
        here = {key: first + offset for offset, key in enumerate(batch.keys[start:stop])}
        for amend in batch.amends:
            rowid = here.get(amend.key)
            if rowid is None:
                rowid = self._rowid_of(amend.key)
                if rowid is None:
                    continue  # left out of the log, or in a file rotated since
            # Checked against the row's start too: a file's inode and row ids can be reused
            # (a rotated file deleted by ``keep``, every row deleted by retention).
            conn.execute(
                "UPDATE requests SET exception = ? "
                "WHERE rowid = ? AND start = ? AND exception IS NULL",
                (amend.exception, rowid, amend.start),
            )

    def _rowid_of(self, key: int) -> int | None:
        """The row id of request ``key`` if it was written to this file lately (late exceptions
        are rare: a scan of the recent parts, newest first, costs less than an entry per row)."""
        for keys, inode, first in reversed(self._places):
            try:
                index = keys.index(key)
            except ValueError:
                continue
            return first + index if inode == self._inode else None
        return None

    @staticmethod
    def _count(conn: sqlite3.Connection, table: str, counts: Any) -> None:
        for (hour, reason), count in counts:
            conn.execute(
                f"INSERT INTO {table} (hour, reason, count) VALUES (?, ?, ?) "
                "ON CONFLICT (hour, reason) DO UPDATE SET count = count + excluded.count",
                (hour, reason, count),
            )

    def _count_drops(self, conn: sqlite3.Connection, dropped: dict[str, int]) -> None:
        hour = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:00")
        self._count(
            conn, "dropped", [((hour, reason), count) for reason, count in dropped.items() if count]
        )


# ---- rotation and retention around batches ------------------------------------------------------
class Maintenance:
    """Rotation or retention for one SQLite sink, run around its batches (in the writer).

    With rotation, every batch is written under a shared lock on ``<file>.lock``, and the
    connection never outlives it: a writer that finds the file due takes the exclusive lock, so
    no cooperating connection is open while the file is renamed (see rotation.py).
    """

    def __init__(self, sink: SQLiteSink, options: Any) -> None:
        self.sink = sink
        self.path = sink.path
        self.schedule = RotationSchedule.from_options(options)
        self.retain = options.retain
        self._clock: Callable[[], float] = options.clock or time.time
        self.lock = FileLock(self.path) if self.schedule is not None else None
        self._next_retain = float("-inf")
        self._busy_until = float("-inf")
        #: The last pass found the file due (or could not tell) and did not rotate it.
        self.refused = False
        self._next_idle_check = time.monotonic() + IDLE_CHECK_EVERY
        self._warned_clock = False
        self.rotations = 0

    @classmethod
    def for_options(cls, sink: SQLiteSink, options: Any) -> Maintenance | None:
        if RotationSchedule.from_options(options) is None and options.retain is None:
            return None
        return cls(sink, options)

    def now(self) -> float:
        """The ``clock`` option's time; the system's if it raises or answers nonsense."""
        try:
            now = self._clock()
            if isinstance(now, (int, float)) and not isinstance(now, bool) and math.isfinite(now):
                return float(now)
            raise TypeError(f"it returned {now!r}")
        except Exception as error:
            if not self._warned_clock:
                self._warned_clock = True
                logger.warning("asgi-log-to-sqlite: the clock option failed (%s); using the "
                               "system clock", error)
            return time.time()

    def room(self, conn: sqlite3.Connection) -> int | None:
        """Rows the file takes before ``max_rows`` (inside the batch's transaction)."""
        if self.schedule is None or not self.schedule.max_rows:
            return None
        return self.schedule.max_rows - rows_written(conn)

    @contextlib.contextmanager
    def around_batch(self) -> Iterator[None]:
        """Hold the shared lock (rotating first if due), or run retention if due."""
        if self.lock is None:
            self._retain_if_due()
            yield
            return
        self.lock.acquire(False, self.sink.patience)
        try:
            self._rotate_if_due()
            yield
        finally:
            # No connection may outlive the lock: the next rotator must find the file closed.
            self.sink.disconnect()
            self.lock.release()

    def when_idle(self) -> None:
        """Between batches, now and then: a file due for rotation or retention needs no traffic
        to get it (yesterday's file is rotated, old rows deleted, on a quiet server too)."""
        now = time.monotonic()
        if now < self._next_idle_check:
            return
        self._next_idle_check = now + IDLE_CHECK_EVERY
        try:
            with self.around_batch():
                pass
        except Exception as error:
            logger.warning("asgi-log-to-sqlite: maintenance of %s postponed: %s", self.path, error)

    def _rotate_if_due(self) -> None:
        assert self.lock is not None and self.schedule is not None
        now = self.now()
        self.refused = True  # until the file is found not due, or rotated
        if time.monotonic() < self._busy_until:
            return
        try:
            if not self.schedule.due(self.sink.connection(), self.path, now):
                self.refused = False
                return
        except Exception as error:  # logged; the batch goes to the current file
            logger.warning("asgi-log-to-sqlite: could not check %s for rotation: %s",
                           self.path, error)
            return
        self.sink.write_sums(locked=True)  # the sums of its rows go with the file
        self.sink.disconnect()
        self.lock.release()
        try:
            self.lock.acquire(True, self.sink.patience)
        except TimeoutError as error:
            logger.warning("asgi-log-to-sqlite: rotation of %s postponed: %s", self.path, error)
            self.lock.acquire(False, self.sink.patience)
            return
        try:
            # False: another writer rotated it while this one waited for the lock.
            if rotate_file(self.path, now=now, policy=self.schedule,
                           busy_timeout=self.sink.patience):
                self.rotations += 1
            self.refused = False
        except RotationBusy as error:
            self._busy_until = time.monotonic() + BUSY_BACKOFF
            logger.warning(
                "asgi-log-to-sqlite: rotation postponed: %s; it will be rotated once it is closed",
                error,
            )
        except Exception:
            logger.exception("asgi-log-to-sqlite: could not rotate %s", self.path)
        finally:
            self.lock.release()
            self.lock.acquire(False, self.sink.patience)

    def _retain_if_due(self) -> None:
        now = self.now()
        if self.retain is None or now < self._next_retain:
            return
        self._next_retain = now + RETAIN_EVERY
        try:
            conn = self.sink.connection()
            deleted, finished = delete_older_than(
                conn, now - self.retain, max_transactions=RETAIN_MAX_TRANSACTIONS
            )
            if not finished:
                self._next_retain = now  # more to delete: carry on before the next batch
            if deleted:
                reclaim_space(conn, max_steps=RETAIN_MAX_TRANSACTIONS)
                logger.info("asgi-log-to-sqlite: deleted %d old row(s) from %s", deleted,
                            self.path)
        except Exception as error:  # logged; retried at the next pass
            logger.warning("asgi-log-to-sqlite: retention on %s failed: %s", self.path, error)
