"""Managing log files by hand: rotate now, prune old rows, vacuum, merge several logs into one.

The command line (``asgi-log-to-sqlite rotate|prune|vacuum|merge``) is a thin layer over these
functions. Every function checks its input first and raises :class:`MaintenanceError` with a
message meant for a person (not SQLite, not a log database, a schema newer than this version);
``merge`` checks *every* input before it writes anything, and writes in one transaction, so a bad
input or a failure halfway never leaves a partial result in the output file.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import rollups
from .rotation import (
    FileLock,
    RotationBusy,
    delete_older_than,
    file_bytes,
    reclaim_space,
    rotate_file,
)
from .schema import connect, ensure_schema, is_log_database, latest_version

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

#: Rows copied per ``executemany`` by merge (and per progress report).
MERGE_CHUNK = 5000


class MaintenanceError(ValueError):
    """A file cannot be used for the requested operation; the message says why."""


class NotALogError(MaintenanceError):
    """A SQLite database without the log's tables (or one a rotation is just creating)."""


# ---- checking files ---------------------------------------------------------------------------
def _open_readonly(path: str) -> sqlite3.Connection:
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    return sqlite3.connect(uri, uri=True, isolation_level=None)


def _check_connection(path: str, conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA schema_version").fetchone()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        log = is_log_database(conn)
    except sqlite3.DatabaseError as error:
        raise MaintenanceError(f"{path}: not a SQLite database ({error})") from None
    if not log:
        raise NotALogError(f"{path}: not a log database (it has no 'requests' table)")
    if version > latest_version():
        raise MaintenanceError(
            f"{path}: schema version {version} is newer than this asgi-log-to-sqlite supports "
            f"({latest_version()}); upgrade asgi-log-to-sqlite"
        )


def check_log_file(path: str) -> None:
    """Raise :class:`MaintenanceError` unless ``path`` is a log database this version can use."""
    if not os.path.isfile(path):
        raise MaintenanceError(f"{path}: no such file")
    try:
        conn = _open_readonly(path)
    except sqlite3.Error as error:
        raise MaintenanceError(f"{path}: cannot be opened ({error})") from None
    try:
        _check_connection(path, conn)
    finally:
        conn.close()


# ---- rotate, prune, vacuum ------------------------------------------------------------------
def _check_settled(path: str, wait: float = 2.0) -> None:
    """:func:`check_log_file`, looking again for a moment at a file without the log's tables:
    a server that has just rotated the log may still be setting up the fresh file."""
    deadline = time.monotonic() + wait
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
        with lock.held(True, timeout):
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
    conn = connect(path, timeout)
    try:
        deleted, _ = delete_older_than(conn, cutoff, progress=progress)
        if not keep_rollups:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if rollups.has_rollups(tables):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    rollups.delete_before(conn, cutoff)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        released = reclaim_space(conn, max_steps=100_000)
        remaining = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    finally:
        conn.close()
    return PruneResult(deleted, remaining, released)


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


# ---- merge ------------------------------------------------------------------------------------
@dataclass
class _Source:
    path: str
    fingerprint: str
    rows: int
    first_start: float | None
    last_start: float | None


@dataclass
class MergeResult:
    merged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rows: int = 0


MERGED_FILES_SQL = """CREATE TABLE IF NOT EXISTS merged_files (
    fingerprint TEXT PRIMARY KEY,
    name TEXT,
    rows INTEGER,
    first_start FLOAT,
    last_start FLOAT,
    merged_at TEXT
)"""


def _inspect(path: str) -> _Source:
    """Check one input and fingerprint its content (independent of its name and journal)."""
    check_log_file(path)
    conn = _open_readonly(path)
    try:
        rows, first, last, duration, body, top = conn.execute(
            "SELECT count(*), min(start), max(start), total(duration), total(body_size), "
            "max(rowid) FROM requests"
        ).fetchone()
    finally:
        conn.close()
    digest = hashlib.sha256(repr((rows, first, last, duration, body, top)).encode()).hexdigest()
    return _Source(path, digest, rows, first, last)


def _columns(conn: sqlite3.Connection, schema: str = "main") -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA {schema}.table_info(requests)")]


def _lookups(conn: sqlite3.Connection) -> dict[str, str]:
    """Column of ``requests`` -> the lookup table it refers to."""
    return {row[3]: row[2] for row in conn.execute("PRAGMA foreign_key_list(requests)")}


def _map_lookup(src: sqlite3.Connection, out: sqlite3.Connection, table: str) -> dict[int, int]:
    """Source id -> output id for every name of lookup ``table`` (added to the output)."""
    mapping: dict[int, int] = {}
    for key, name in src.execute(f"SELECT id, name FROM [{table}]"):
        if name is None:
            continue
        out.execute(f"INSERT OR IGNORE INTO [{table}] (name) VALUES (?)", (name,))
        mapping[key] = out.execute(f"SELECT id FROM [{table}] WHERE name = ?", (name,)).fetchone()[0]
    return mapping


def _copy(
    out: sqlite3.Connection, source: _Source, report: Callable[[int], None]
) -> int:
    src = _open_readonly(source.path)
    try:
        src_tables = {
            row[0] for row in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        out_columns = set(_columns(out))
        out_lookups = _lookups(out)
        src_lookups = _lookups(src)
        columns = [c for c in _columns(src) if c in out_columns]
        # Lookup ids differ from file to file: translate each source id to the output's id.
        maps: dict[str, dict[int, int]] = {}
        for column in columns:
            table = src_lookups.get(column)
            if table is None or out_lookups.get(column) != table or table in maps:
                continue
            maps[table] = _map_lookup(src, out, table)
        remap = [
            (i, maps[src_lookups[c]]) for i, c in enumerate(columns)
            if c in src_lookups and src_lookups[c] in maps
        ]
        # Captured headers point at request row ids: the output gives the copied rows new ones,
        # consecutive after its largest (one transaction, nobody else writing).
        wanted: set[int] = set()
        if "captured_headers" in src_tables:
            wanted = {row[0] for row in src.execute("SELECT DISTINCT request FROM captured_headers")}
        base = out.execute("SELECT coalesce(max(rowid), 0) FROM requests").fetchone()[0]
        new_rowid: dict[int, int] = {}
        names = ", ".join(f"[{c}]" for c in columns)
        insert = f"INSERT INTO requests ({names}) VALUES ({', '.join('?' for _ in columns)})"
        cursor = src.execute(f"SELECT rowid, {names} FROM requests ORDER BY rowid")
        copied = 0
        while True:
            chunk = cursor.fetchmany(MERGE_CHUNK)
            if not chunk:
                break
            if wanted:
                for i, row in enumerate(chunk):
                    if row[0] in wanted:
                        new_rowid[row[0]] = base + copied + i + 1
            rows = []
            for row in chunk:
                values = list(row[1:])
                for i, mapping in remap:
                    if values[i] is not None:
                        values[i] = mapping.get(values[i])
                rows.append(values)
            out.executemany(insert, rows)
            copied += len(chunk)
            report(len(chunk))
        if new_rowid:
            _copy_captured_headers(src, out, new_rowid, base + copied, source.path)
        # Rollups: the source's own (they count rows it may have pruned), else made from the
        # rows just copied (a file from before rollups).
        if rollups.has_rollups(src_tables):
            for table in ("routes", "paths"):
                if table not in maps and table in src_tables:
                    maps[table] = _map_lookup(src, out, table)
            rollups.copy_rollups(src, out, maps.get("routes", {}), maps.get("paths", {}))
        elif copied:
            rollups.add_rows(out, base + 1, base + copied)
        for table in ("dropped", "excluded_requests"):
            if table in src_tables:
                out.executemany(
                    f"INSERT INTO {table} (hour, reason, count) VALUES (?, ?, ?) "
                    "ON CONFLICT (hour, reason) DO UPDATE SET count = count + excluded.count",
                    src.execute(f"SELECT hour, reason, count FROM {table}").fetchall(),
                )
        return copied
    finally:
        src.close()


def _copy_captured_headers(
    src: sqlite3.Connection, out: sqlite3.Connection, new_rowid: dict[int, int], last: int,
    path: str,
) -> None:
    if out.execute("SELECT max(rowid) FROM requests").fetchone()[0] != last:
        raise MaintenanceError(f"{path}: the copied rows did not get consecutive ids")
    names = _map_lookup(src, out, "header_names")
    values = _map_lookup(src, out, "header_values")
    out.executemany(
        "INSERT INTO captured_headers (request, direction, name, value) VALUES (?, ?, ?, ?)",
        (
            (new_rowid[request], direction, names.get(name), values.get(value))
            for request, direction, name, value in src.execute(
                "SELECT request, direction, name, value FROM captured_headers ORDER BY rowid"
            )
            if request in new_rowid  # a header whose row is gone stays behind
        ),
    )


def merge(
    out: str,
    inputs: Sequence[str],
    progress: Callable[[int, int], Any] | None = None,
    timeout: float = 10.0,
) -> MergeResult:
    """Combine log databases into ``out`` (created if missing); lookup ids are remapped.

    A file already merged into ``out`` (same content, whatever its name) is skipped, so running
    the same merge twice changes nothing. ``progress(done, total)`` is called as rows are copied.
    All inputs are checked first; rows are written in one transaction, so ``out`` gets all of
    them or none.
    """
    if not inputs:
        raise MaintenanceError("nothing to merge: give at least one input file")
    out_exists = os.path.exists(out) and os.path.getsize(out) > 0
    problems: list[str] = []
    sources: list[_Source] = []
    for path in inputs:
        if out_exists and os.path.exists(path) and os.path.samefile(path, out):
            problems.append(f"{path}: is the output file itself")
            continue
        try:
            sources.append(_inspect(path))
        except MaintenanceError as error:
            problems.append(str(error))
    if out_exists:
        try:
            check_log_file(out)
        except MaintenanceError as error:
            problems.append(f"output {error}")
    if problems:
        raise MaintenanceError("nothing was merged:\n" + "\n".join(problems))

    created = not os.path.exists(out)
    result = MergeResult()
    try:
        conn = connect(out, timeout)
    except sqlite3.Error as error:
        raise MaintenanceError(f"{out}: cannot be opened ({error})") from None
    try:
        ensure_schema(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(MERGED_FILES_SQL)
            done = {row[0] for row in conn.execute("SELECT fingerprint FROM merged_files")}
            todo: list[_Source] = []
            for source in sources:
                if source.fingerprint in done:
                    result.skipped.append(source.path)
                else:
                    done.add(source.fingerprint)
                    todo.append(source)
            # Oldest first, so that the merged rows are (roughly) in time order.
            todo.sort(key=lambda s: (s.first_start is None, s.first_start or 0.0))
            total = sum(s.rows for s in todo)
            copied = 0

            def report(n: int) -> None:
                nonlocal copied
                copied += n
                if progress is not None:
                    progress(copied, total)

            if progress is not None:
                progress(0, total)
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            for source in todo:
                _copy(conn, source, report)
                conn.execute(
                    "INSERT INTO merged_files VALUES (?, ?, ?, ?, ?, ?)",
                    (source.fingerprint, os.path.basename(source.path), source.rows,
                     source.first_start, source.last_start, stamp),
                )
                result.merged.append(source.path)
            conn.execute("COMMIT")
            result.rows = copied
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except BaseException:
        conn.close()
        if created:
            for suffix in ("", "-wal", "-shm", "-journal"):
                try:
                    os.unlink(out + suffix)
                except FileNotFoundError:
                    pass
        raise
    conn.close()
    return result
