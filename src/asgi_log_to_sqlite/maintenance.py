"""Managing log files by hand: rotate now, prune old rows, vacuum (and merge, in merge.py).

The command line (``asgi-log-to-sqlite rotate|prune|vacuum|merge``) is a thin layer over these
functions. Every function checks its input first (logfiles.py) and raises
:class:`MaintenanceError` with a message meant for a person; what goes wrong later (a damaged
page, a full disk, a file locked too long) is a :class:`MaintenanceError` as well, naming the
file.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import rollups
from .logfiles import (
    MaintenanceError,
    NotALogError,
    check_log_file,
    check_requests_table,
    describe,
    failing_as,
)
from .merge import MergeResult, merge
from .rotation import (
    FileLock,
    RotationBusy,
    delete_older_than,
    file_bytes,
    reclaim_space,
    rotate_file,
)
from .schema import connect, transaction

__all__ = [
    "MaintenanceError",
    "MergeResult",
    "PruneResult",
    "VacuumResult",
    "merge",
    "prune",
    "rotate_now",
    "vacuum",
]

#: Seconds rotate looks again at a file without the log's tables before it gives up.
SETTLE_WAIT = 2.0


def _check_settled(path: str) -> None:
    """:func:`check_log_file`, looking again for a moment at a file without the log's tables:
    a server that has just rotated the log may still be setting up the fresh file."""
    deadline = time.monotonic() + SETTLE_WAIT
    while True:
        try:
            check_log_file(path)
            return
        except NotALogError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def rotate_now(
    path: str, keep: int | None = None, timeout: float = 10.0, now: float | None = None
) -> str:
    """Rotate ``path`` now, whatever the policy; the rotated file's path.

    Safe while servers with a rotation option write to it (they take turns through the lock
    file). A program that keeps the file open without that lock (a server without a rotation
    option, Datasette) makes this fail, and nothing is renamed.
    """
    _check_settled(path)
    lock = FileLock(path)
    try:
        with lock.held(True, timeout), failing_as(f"{path}: cannot rotate"):
            target = rotate_file(
                path, now=time.time() if now is None else now, force=True, keep=keep,
                busy_timeout=timeout,
            )
    except RotationBusy as error:
        raise MaintenanceError(
            f"cannot rotate now: {error}. Nothing was renamed. Servers take turns with rotate "
            "only when they run with a rotation option (rotate, max_bytes or max_rows); "
            "other programs (a server without one, Datasette) must close the file first"
        ) from None
    except TimeoutError as error:
        raise MaintenanceError(f"cannot rotate now: {error}") from None
    except OSError as error:  # the lock file cannot be made (a read-only folder)
        raise MaintenanceError(f"{lock.path}: {describe(error)}") from None
    finally:
        lock.close()
    assert target is not None
    return target


@dataclass
class PruneResult:
    deleted: int
    remaining: int
    pages_released: int


def prune(
    path: str,
    older_than: float,
    now: float | None = None,
    progress: Callable[[int], Any] | None = None,
    timeout: float = 10.0,
    keep_rollups: bool = True,
) -> PruneResult:
    """Delete rows that started more than ``older_than`` seconds before ``now``.

    Rows go in small transactions, so servers writing the file and readers barely notice; free
    pages are then given back (files made by this version use incremental auto-vacuum). The
    hourly and daily rollups are kept (reports over those times read them), unless
    ``keep_rollups`` is false: then the rollups of hours and days that ended before the cutoff
    go too.
    """
    check_log_file(path)
    cutoff = (time.time() if now is None else now) - older_than
    deleted = 0

    def count(rows: int) -> None:
        nonlocal deleted
        deleted += rows
        if progress is not None:
            progress(rows)

    try:
        with failing_as(f"{path}: cannot prune"):
            conn = connect(path, timeout)
            try:
                check_requests_table(path, conn)
                delete_older_than(conn, cutoff, progress=count)
                if not keep_rollups:
                    _delete_rollups(conn, cutoff)
                released = reclaim_space(conn, max_steps=100_000)
                remaining = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
            finally:
                conn.close()
    except MaintenanceError as error:
        if deleted:  # each small transaction commits: what went before stays deleted
            raise MaintenanceError(f"{error}; {deleted} row(s) were deleted before") from None
        raise
    return PruneResult(deleted, remaining, released)


def _delete_rollups(conn: sqlite3.Connection, cutoff: float) -> None:
    """``prune --no-keep-rollups``: the rollups of the hours and days over before the cutoff."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    if not rollups.has_rollups(tables):
        return
    with transaction(conn):
        rollups.delete_before(conn, cutoff)


@dataclass
class VacuumResult:
    bytes_before: int
    bytes_after: int


def vacuum(path: str, timeout: float = 10.0) -> VacuumResult:
    """Rebuild the file at its smallest, and switch it to incremental auto-vacuum.

    ``VACUUM`` rewrites the whole file and holds the write lock meanwhile: writers wait (in
    their threads) until it is done. It may renumber the ``rowid`` (the view's ``id``) of rows.
    """
    check_log_file(path)
    before = file_bytes(path)
    with failing_as(f"{path}: cannot vacuum"):
        conn = connect(path, timeout)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect with the VACUUM
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    return VacuumResult(before, file_bytes(path))
