"""Rotation and retention: keeping log files to a manageable size without losing a row.

Two alternatives, chosen by options (see :mod:`asgi_log_to_sqlite.options`):

* **Rotation** (``rotate``, ``max_bytes``, ``max_rows``, ``keep``): when the live file is due, it
  is completed and renamed to a sortable name beside it (``log-2026-11-22.db``), and a fresh file
  with the same schema takes its place.
* **Retention** (``retain``): rows older than the window are deleted from the live file in small
  transactions, and the freed pages are given back with ``PRAGMA incremental_vacuum``.

Why rotation is safe with several worker processes. Renaming a SQLite database in WAL mode while
another connection has it open is dangerous: connections find the ``-wal`` and ``-shm`` files by
name, so a connection to the renamed file and one to the fresh file could share them. So, when
rotation is on, every writer holds a *shared* ``flock`` on ``<file>.lock`` while it writes a
batch, and opens and closes its connection inside that lock. A writer that finds the file due
gives up its shared lock and takes the *exclusive* one: then no cooperating connection is open.
It checks again (another process may have rotated meanwhile: the fresh file is not due), makes
the file self-contained (``wal_checkpoint(TRUNCATE)``, then ``journal_mode=DELETE``, which SQLite
refuses while any other connection, say a Datasette, has the file open: then rotation waits and
nothing is renamed), renames it, creates the fresh file and deletes rotated files beyond ``keep``.
Every batch is written in one transaction under one shared lock, so its rows land in exactly one
file. All of this runs in the writer thread, never on the event loop.

The table ``log_meta`` (key, value) remembers when a file was started: that is what time-based
rotation compares with the clock, and what names the file once it is rotated.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .schema import (
    FILE_SUFFIXES,
    LOG_META_SQL,
    WAL_SUFFIX,
    connect,
    ensure_schema,
    open_readonly,
    remove_files,
    transaction,
)

__all__ = [
    "FileLock",
    "RotationBusy",
    "RotationSchedule",
    "delete_older_than",
    "is_rotated_file",
    "lock_path",
    "rotate_file",
    "rotated_files",
]

logger = logging.getLogger("asgi_log_to_sqlite")

#: Suffix of the lock file beside the log (``log.db`` -> ``log.db.lock``).
LOCK_SUFFIX = ".lock"
#: Tables whose rows belong to one ``requests`` row (their ``request`` column is its rowid):
#: deleted with it.
CHILD_TABLES = ("captured_headers", "captures")
#: Rows deleted per transaction by retention and prune: short write locks, readers never wait.
DELETE_BATCH = 1000

_PERIOD_FORMATS = {"hourly": "%Y-%m-%dT%H", "daily": "%Y-%m-%d", "monthly": "%Y-%m"}
_TIME_FORMAT = "%Y-%m-%dT%H-%M-%S"


class RotationBusy(Exception):
    """The file is open in another program, so renaming it now could corrupt it; try later."""


def lock_path(path: str) -> str:
    return path + LOCK_SUFFIX


class FileLock:
    """A ``flock`` on ``<file>.lock``: shared for writing a batch, exclusive for rotating.

    Waits are bounded: a lock not obtained within ``timeout`` raises :class:`TimeoutError`.
    """

    def __init__(self, path: str) -> None:
        self.path = lock_path(path)
        self._fd: int | None = None

    def acquire(self, exclusive: bool, timeout: float) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(self._fd, mode)
                return
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            if time.monotonic() >= deadline:
                kind = "exclusive" if exclusive else "shared"
                raise TimeoutError(f"could not take the {kind} lock {self.path} in {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    @contextlib.contextmanager
    def held(self, exclusive: bool, timeout: float) -> Iterator[None]:
        self.acquire(exclusive, timeout)
        try:
            yield
        finally:
            self.release()


# ---- what a file knows about itself -------------------------------------------------------
def _read_meta(conn: sqlite3.Connection, key: str) -> str | None:
    try:
        row = conn.execute("SELECT value FROM log_meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:  # no such table: a file no rotation has touched yet
        return None
    return None if row is None else row[0]


def _write_meta(conn: sqlite3.Connection, key: str, value: str, replace: bool) -> None:
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    with transaction(conn):
        conn.execute(LOG_META_SQL)
        conn.execute(f"{verb} INTO log_meta (key, value) VALUES (?, ?)", (key, value))


#: The times a date can be given for (years 1 to 9999 UTC), as unix seconds.
EARLIEST = datetime(1, 1, 1, tzinfo=timezone.utc).timestamp()
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp()


def as_time(value: object) -> float | None:
    """``value`` as unix seconds that name a date, else None.

    A file's own stamps and rows can hold anything (a damaged page, a hand edit): text that is
    no number, a blob, infinity, a time before year 1 or after 9999.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        when = float(value)
    except (ValueError, OverflowError):
        return None
    return when if EARLIEST <= when <= LATEST else None


def file_started(conn: sqlite3.Connection, now: float) -> float:
    """When the file was started: recorded at creation, else its first row, else ``now``.

    A recorded time that names no date counts as not recorded, and is replaced.
    """
    value = _read_meta(conn, "started")
    started = as_time(value)
    if started is None:
        first = as_time(conn.execute("SELECT min(start) FROM requests").fetchone()[0])
        fallback = first if first is not None else float(now)
        _write_meta(conn, "started", repr(fallback), value is not None)
        # Another process may have won the race.
        started = as_time(_read_meta(conn, "started"))
        if started is None:  # a ``log_meta`` that does not keep what is written to it
            started = fallback
    return started


def rows_written(conn: sqlite3.Connection) -> int:
    """Rows written to the file (its highest rowid: O(log n), unlike ``count(*)``)."""
    return conn.execute("SELECT max(rowid) FROM requests").fetchone()[0] or 0


def file_bytes(path: str) -> int:
    total = 0
    for name in (path, path + WAL_SUFFIX):
        try:
            total += os.path.getsize(name)
        except OSError:
            pass
    return total


def _label(when: float, layout: str) -> str:
    moment = datetime.fromtimestamp(when, timezone.utc)
    # Four digits for every year (strftime gives "999" on some platforms): rotated names sort.
    return moment.strftime(layout.replace("%Y", f"{moment.year:04d}"))


def period_label(period: str, when: float) -> str:
    return _label(when, _PERIOD_FORMATS[period])


def time_label(when: float) -> str:
    return _label(when, _TIME_FORMAT)


# ---- policies -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RotationSchedule:
    """When the live file is due for rotation, and how many rotated files to keep."""

    rotate: str | None = None
    max_bytes: int | None = None
    max_rows: int | None = None
    keep: int | None = None

    @classmethod
    def from_options(cls, options: Any) -> RotationSchedule | None:
        if not (options.rotate or options.max_bytes or options.max_rows):
            return None
        return cls(options.rotate, options.max_bytes, options.max_rows, options.keep)

    def due(self, conn: sqlite3.Connection, path: str, now: float) -> str | None:
        """Why the file should be rotated before the next batch ("period", "rows", "size")."""
        rows = rows_written(conn)
        if self.rotate:
            started = file_started(conn, now)
            if period_label(self.rotate, started) != period_label(self.rotate, now):
                if rows:
                    return "period"
                # An empty file from an earlier period: start it again instead of keeping an
                # empty rotated file.
                _write_meta(conn, "started", repr(float(now)), True)
        if rows and self.max_rows and rows >= self.max_rows:
            return "rows"
        if rows and self.max_bytes and file_bytes(path) >= self.max_bytes:
            return "size"
        return None

    def label(self, started: float) -> str:
        """The sortable part of a rotated file's name: the period (or time) it started."""
        return period_label(self.rotate, started) if self.rotate else time_label(started)


# ---- rotated files ------------------------------------------------------------------------
def _split(path: str) -> tuple[str, str]:
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, stem), ext


def _free_name(path: str, label: str) -> str:
    """``log-<label>.db``, or ``log-<label>_001.db``... after the last one taken.

    ``_`` sorts after ``.``, so names sort in the order the files were made, and a number is
    never reused while a later one exists (``keep`` deletes by that order).
    """
    base, ext = _split(path)
    first = f"{base}-{label}{ext}"
    taken = [0 for s in FILE_SUFFIXES if os.path.lexists(first + s)]
    prefix = os.path.basename(f"{base}-{label}_")
    for name in rotated_files(path):
        name = os.path.basename(name)
        if name.startswith(prefix):
            taken.append(int(name[len(prefix):-len(ext) or None]))
    if not taken:
        return first
    candidate = f"{base}-{label}_{max(taken) + 1:03d}{ext}"
    n = max(taken) + 1
    while any(os.path.lexists(candidate + s) for s in FILE_SUFFIXES):
        n += 1
        candidate = f"{base}-{label}_{n:03d}{ext}"
    return candidate


def rotated_files(path: str) -> list[str]:
    """The rotated files of ``path`` beside it, oldest first.

    Oldest means rotated first. Names alone do not say it when time-based and by-hand rotations
    mix (``log-2026-11-24.db``, the rest of a day rotated at midnight, sorts before
    ``log-2026-11-24T19-35-03.db``, rotated by hand earlier that day), so each file's own
    ``rotated`` stamp decides, and the time in its name for files that have none.
    """
    folder, pattern = _rotated_pattern(path)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        match = pattern.match(name)
        full = os.path.join(folder, name)
        # A named pipe or folder that only looks like one is none (and a pipe would hang).
        if match and os.path.isfile(full):
            found.append((_rotated_at(full, match.groups()), name, full))
    return [full for _, _, full in sorted(found)]


def _rotated_pattern(path: str) -> tuple[str, re.Pattern[str]]:
    """The folder of ``path``, and the pattern its rotated files' names match."""
    base, ext = _split(path)
    folder, stem = os.path.split(base)
    return folder, re.compile(
        re.escape(stem)
        + r"-(\d{4})-(\d{2})(?:-(\d{2})(?:T(\d{2})(?:-(\d{2})-(\d{2}))?)?)?(?:_\d{3,})?"
        + re.escape(ext)
        + r"\Z"
    )


def is_rotated_file(candidate: str, path: str) -> bool:
    """Whether ``candidate`` is (by its folder and name) a rotated file of the log ``path``."""
    folder, pattern = _rotated_pattern(path)
    where, name = os.path.split(os.path.realpath(candidate))
    return where == os.path.realpath(folder) and pattern.match(name) is not None


def _rotated_at(path: str, label: tuple[str | None, ...]) -> float:
    """When ``path`` was rotated: its ``rotated`` stamp, else the start of the time it names."""
    try:
        conn = open_readonly(path, timeout=1.0)
        try:
            stamp = as_time(_read_meta(conn, "rotated"))
        finally:
            conn.close()
        if stamp is not None:
            return stamp
    except (sqlite3.Error, ValueError):  # a damaged file, text that is not UTF-8
        pass
    parts = [int(part or default) for part, default in zip(label, (0, 1, 1, 0, 0, 0), strict=False)]
    try:
        return datetime(*parts, tzinfo=timezone.utc).timestamp()
    except ValueError:  # a name that only looks like a date (month 13)
        return 0.0


def apply_keep(path: str, keep: int | None) -> list[str]:
    """Delete the oldest rotated files beyond ``keep``; the deleted paths."""
    if keep is None:
        return []
    files = rotated_files(path)
    doomed = files[: max(0, len(files) - keep)]
    for name in doomed:
        try:
            remove_files(name)
        except OSError as error:  # the rotation itself is done: say so, and go on
            logger.warning("asgi-log-to-sqlite: could not delete %s: %s", name, error)
    return doomed


def _fsync_folder(path: str) -> None:
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rotate_file(
    path: str,
    *,
    now: float,
    policy: RotationSchedule | None = None,
    force: bool = False,
    keep: int | None = None,
    busy_timeout: float = 10.0,
) -> str | None:
    """Rotate ``path`` if due (or ``force``); the rotated file's path, or None if not due.

    The caller holds the exclusive :class:`FileLock`. Raises :class:`RotationBusy` when another
    program has the file open (nothing is renamed then).
    """
    if not os.path.exists(path):
        return None
    conn = connect(path, busy_timeout)
    try:
        if not force and (policy is None or not policy.due(conn, path, now)):
            return None
        started = file_started(conn, now)
        label = policy.label(started) if policy is not None else time_label(started)
        _write_meta(conn, "rotated", repr(float(now)), True)  # the order ``keep`` deletes by
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # Leaving WAL mode needs every other connection closed: SQLite's own proof that the
        # rename cannot strand anyone's -wal. A short wait only: writers are paused meanwhile.
        conn.execute("PRAGMA busy_timeout=250")
        try:
            mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        except sqlite3.OperationalError as error:
            mode = str(error)
        if str(mode).lower() != "delete":
            raise RotationBusy(
                f"{path} is open in another program ({mode})"
            )
        target = _free_name(path, label)
        os.rename(path, target)
    finally:
        conn.close()
    fresh = connect(path, busy_timeout)
    try:
        ensure_schema(fresh)
        _write_meta(fresh, "started", repr(float(now)), True)
    finally:
        fresh.close()
    _fsync_folder(path)
    deleted = apply_keep(path, keep if keep is not None else (policy.keep if policy else None))
    logger.info("asgi-log-to-sqlite: rotated %s to %s%s", path, target,
                f", deleted {len(deleted)} old file(s)" if deleted else "")
    return target


# ---- retention ------------------------------------------------------------------------------
def delete_older_than(
    conn: sqlite3.Connection,
    cutoff: float,
    batch: int = DELETE_BATCH,
    max_transactions: int | None = None,
    progress: Callable[[int], Any] | None = None,
) -> tuple[int, bool]:
    """Delete rows with ``start < cutoff``, ``batch`` per transaction; (deleted, finished).

    Their captured headers and captures go with them (a row id freed here can be given to a
    new request), and so do the hourly counts of dropped and excluded requests before the
    cutoff's hour. Lookup rows are never deleted: writers in other processes may hold their ids
    in memory.
    """
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    children = [table for table in CHILD_TABLES if table in tables]
    doomed = "SELECT rowid FROM requests WHERE start < ? LIMIT ?"
    deleted = 0
    transactions = 0
    while max_transactions is None or transactions < max_transactions:
        with transaction(conn):
            for table in children:
                # The same query each time in one transaction: the same rows.
                conn.execute(f"DELETE FROM {table} WHERE request IN ({doomed})", (cutoff, batch))
            count = conn.execute(
                f"DELETE FROM requests WHERE rowid IN ({doomed})", (cutoff, batch)
            ).rowcount
        transactions += 1
        deleted += count
        if progress is not None and count:
            progress(count)
        if count < batch:
            # A cutoff beyond the calendar (``older_than`` of millions of years) is its edge.
            edge = EARLIEST if not cutoff > EARLIEST else min(cutoff, LATEST)
            hour = _label(edge, "%Y-%m-%dT%H:00")
            with transaction(conn):  # a 0.1.1 file has none of these tables
                for table in ("dropped", "excluded_requests"):
                    if table in tables:
                        conn.execute(f"DELETE FROM {table} WHERE hour < ?", (hour,))
                for table in children:  # left behind by versions before this one
                    conn.execute(
                        f"DELETE FROM {table} WHERE request NOT IN (SELECT rowid FROM requests)"
                    )
            return deleted, True
    return deleted, False


def reclaim_space(conn: sqlite3.Connection, pages: int = 256, max_steps: int = 1000) -> int:
    """Give free pages back to the file system, a few at a time; pages released."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        return 0  # a file made before incremental auto-vacuum: its free pages are reused instead
    released = 0
    for _ in range(max_steps):
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        if not free:
            break
        conn.execute(f"PRAGMA incremental_vacuum({pages})").fetchall()
        released += min(free, pages)
    return released
