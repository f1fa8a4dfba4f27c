"""Managing log files by hand: rotate now, prune old rows, vacuum, merge several logs into one.

The command line (``asgi-log-to-sqlite rotate|prune|vacuum|merge``) is a thin layer over these
functions. Every function checks its input first and raises :class:`MaintenanceError` with a
message meant for a person (not a regular file, not SQLite, not a log database, a schema newer
than this version); what goes wrong later (a damaged page, a full disk, a file locked too long)
is a :class:`MaintenanceError` as well, naming the file. ``merge`` checks *every* input before
it writes anything, and writes in one transaction, so a bad input or a failure halfway never
leaves a partial result in the output file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import rollups
from .filekind import special_file_kind
from .rotation import (
    FileLock,
    RotationBusy,
    delete_older_than,
    file_bytes,
    reclaim_space,
    rotate_file,
)
from .schema import (
    MERGED_FILES_SQL,
    SchemaError,
    connect,
    ensure_schema,
    is_log_database,
    latest_version,
    open_readonly,
    remove_files,
    transaction,
)

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
#: Seconds rotate looks again at a file without the log's tables before it gives up.
SETTLE_WAIT = 2.0


class MaintenanceError(ValueError):
    """A file cannot be used for the requested operation; the message says why."""


class NotALogError(MaintenanceError):
    """A SQLite database without the log's tables (or one a rotation is just creating)."""


# ---- checking files ---------------------------------------------------------------------------
#: Text that is not valid UTF-8 (a damaged page, a hand edit) is read with replacement characters
#: instead of failing the whole operation.
_lenient_text = functools.partial(str, encoding="utf-8", errors="replace")


def check_regular_file(path: str) -> None:
    """Raise :class:`MaintenanceError` unless ``path`` is a regular file (or a link to one)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        raise MaintenanceError(f"{path}: no such file") from None
    except (OSError, ValueError) as error:
        raise MaintenanceError(f"{path}: {_describe(error)}") from None
    kind = special_file_kind(path)
    if kind is not None:
        raise MaintenanceError(f"{path}: not a regular file ({kind})")


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if isinstance(error, UnicodeDecodeError) and isinstance(error.object, bytes):
        # Python could not decode SQLite's own message (it quotes damaged bytes): show it anyway.
        return error.object.decode("utf-8", "replace")
    return str(error)


@contextlib.contextmanager
def _failing_as(what: str) -> Iterator[None]:
    """Errors once a file is open (a damaged page, undecodable names, a full disk, a lock held
    too long) as a :class:`MaintenanceError` that says which file and what went wrong."""
    try:
        yield
    except (sqlite3.Error, OSError, UnicodeError, SchemaError) as error:
        raise MaintenanceError(f"{what} ({_describe(error)})") from None


def _open_readonly(path: str) -> sqlite3.Connection:
    conn = open_readonly(path)
    conn.text_factory = _lenient_text
    return conn


def _check_connection(path: str, conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA schema_version").fetchone()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        log = is_log_database(conn)
    except (sqlite3.DatabaseError, UnicodeError) as error:
        # SQLite's message quotes the damaged bytes, which may not even decode.
        if "not a database" in str(error):
            raise MaintenanceError(f"{path}: not a SQLite database ({_describe(error)})") from None
        raise MaintenanceError(f"{path}: cannot be read ({_describe(error)})") from None
    if not log:
        raise NotALogError(f"{path}: not a log database (it has no 'requests' table)")
    if version > latest_version():
        raise MaintenanceError(
            f"{path}: schema version {version} is newer than this asgi-log-to-sqlite supports "
            f"({latest_version()}); upgrade asgi-log-to-sqlite"
        )


def check_log_file(path: str) -> None:
    """Raise :class:`MaintenanceError` unless ``path`` is a log database this version can use."""
    check_regular_file(path)
    try:
        conn = _open_readonly(path)
    except sqlite3.Error as error:
        raise MaintenanceError(f"{path}: cannot be opened ({error})") from None
    try:
        _check_connection(path, conn)
    finally:
        conn.close()


def _check_requests_table(path: str, conn: sqlite3.Connection) -> None:
    """Rows can only be deleted from, or added to, a ``requests`` that is a table."""
    kind = conn.execute(
        "SELECT type FROM sqlite_master WHERE name = 'requests' COLLATE NOCASE"
    ).fetchone()
    if kind is not None and kind[0] != "table":
        raise MaintenanceError(f"{path}: 'requests' is a {kind[0]}, not a table")


# ---- rotate, prune, vacuum ------------------------------------------------------------------
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
        with lock.held(True, timeout), _failing_as(f"{path}: cannot rotate"):
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
        raise MaintenanceError(f"{lock.path}: {_describe(error)}") from None
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
        with _failing_as(f"{path}: cannot prune"):
            conn = connect(path, timeout)
            try:
                _check_requests_table(path, conn)
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
    conn.execute("BEGIN IMMEDIATE")
    try:
        rollups.delete_before(conn, cutoff)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


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
    with _failing_as(f"{path}: cannot vacuum"):
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


def _inspect(path: str) -> _Source:
    """Check one input and fingerprint its content (independent of its name and journal)."""
    check_log_file(path)
    with _failing_as(f"{path}: cannot be read"):
        conn = _open_readonly(path)
        try:
            rows, first, last, duration, body, top = conn.execute(
                "SELECT count(*), min(start), max(start), total(duration), total(body_size), "
                "max(rowid) FROM requests"
            ).fetchone()
        finally:
            conn.close()
    digest = hashlib.sha256(repr((rows, first, last, duration, body, top)).encode()).hexdigest()
    return _Source(path, digest, rows, _number(first), _number(last))


def _number(value: Any) -> float | None:
    """A ``start`` that can be sorted by: text or a blob in the column is no time."""
    return float(value) if isinstance(value, (int, float)) else None


def _columns(conn: sqlite3.Connection, schema: str = "main") -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA {schema}.table_info(requests)")]


def _lookups(conn: sqlite3.Connection) -> dict[str, str]:
    """Column of ``requests`` -> the lookup table it refers to."""
    return {row[3]: row[2] for row in conn.execute("PRAGMA foreign_key_list(requests)")}


def _map_lookup(src: sqlite3.Connection, out: sqlite3.Connection, table: str) -> dict[int, int]:
    """Source id -> output id for every name of lookup ``table`` (added to the output).

    An input without the table (dropped by hand, or never made) maps nothing: its ids become
    NULL, as ids that point at no row do.
    """
    mapping: dict[int, int] = {}
    if src.execute(
        "SELECT 1 FROM sqlite_master WHERE name = ? AND type IN ('table', 'view')", (table,)
    ).fetchone() is None:
        return mapping
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
        columns = [c for c in _columns(src) if c in out_columns]
        # Lookup ids differ from file to file: translate each source id to the output's id for
        # the same name. The lookup tables have the same names in every version; the input's
        # own foreign keys are not needed (a view in place of ``requests`` declares none).
        maps: dict[str, dict[int, int]] = {}
        remap = []
        for i, column in enumerate(columns):
            table = out_lookups.get(column)
            if table is not None:
                if table not in maps:
                    maps[table] = _map_lookup(src, out, table)
                remap.append((i, maps[table]))
        # Captured headers and captures point at request row ids: the output gives the copied rows new ones,
        # consecutive after its largest (one transaction, nobody else writing).
        wanted: set[int] = set()
        for table in ("captured_headers", "captures"):
            if table in src_tables:
                wanted.update(row[0] for row in src.execute(f"SELECT DISTINCT request FROM {table}"))
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
            if out.execute("SELECT max(rowid) FROM requests").fetchone()[0] != base + copied:
                raise MaintenanceError(f"{source.path}: the copied rows did not get consecutive ids")
            if "captured_headers" in src_tables:
                _copy_captured_headers(src, out, new_rowid)
            if "captures" in src_tables:
                _copy_captures(src, out, new_rowid)
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
                    src.execute(
                        f"SELECT hour, reason, count FROM {table} WHERE hour IS NOT NULL "
                        "AND reason IS NOT NULL AND count IS NOT NULL"
                    ).fetchall(),
                )
        return copied
    finally:
        src.close()


def _copy_captured_headers(
    src: sqlite3.Connection, out: sqlite3.Connection, new_rowid: dict[int, int]
) -> None:
    names = _map_lookup(src, out, "header_names")
    values = _map_lookup(src, out, "header_values")
    out.executemany(
        "INSERT INTO captured_headers (request, direction, name, value) VALUES (?, ?, ?, ?)",
        (
            (new_rowid[request], direction, names.get(name), values.get(value))
            for request, direction, name, value in src.execute(
                "SELECT request, direction, name, value FROM captured_headers "
                "WHERE direction IS NOT NULL ORDER BY rowid"
            )
            if request in new_rowid  # a header whose row is gone stays behind
        ),
    )


def _output_state(out: str) -> str:
    """``"missing"``, ``"empty"`` (a file of 0 bytes) or ``"log"``; MaintenanceError for an
    output that cannot be merged into (not a regular file, not a log, newer, a view)."""
    try:
        size = os.stat(out).st_size
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as error:
        raise MaintenanceError(f"{out}: {_describe(error)}") from None
    check_regular_file(out)
    if size == 0:
        return "empty"
    check_log_file(out)
    with _failing_as(f"{out}: cannot be read"):
        conn = _open_readonly(out)
        try:
            _check_requests_table(out, conn)
        finally:
            conn.close()
    return "log"


def _restore_output(out: str, state: str) -> None:
    """After a failed merge: remove the output it created, or empty it again."""
    if state == "missing":
        remove_files(out)
    elif state == "empty":
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(out + suffix)
        with contextlib.suppress(OSError):
            os.truncate(out, 0)


def _merge_into(
    conn: sqlite3.Connection,
    sources: list[_Source],
    result: MergeResult,
    progress: Callable[[int, int], Any] | None,
) -> None:
    """Copy the sources not merged before into the output (``conn``, in a transaction)."""
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
        # The error may come from reading the input as well as from writing the output.
        with _failing_as(f"nothing was merged: copying {source.path} failed"):
            _copy(conn, source, report)
        conn.execute(
            "INSERT INTO merged_files VALUES (?, ?, ?, ?, ?, ?)",
            # The name as text SQLite can hold, whatever bytes the file system has.
            (source.fingerprint, _lenient_text(os.fsencode(os.path.basename(source.path))),
             source.rows,
             source.first_start, source.last_start, stamp),
        )
        result.merged.append(source.path)
    result.rows = copied


#: The columns of ``captures`` copied by merge; the two header-list ids are remapped.
CAPTURE_COLUMNS = (
    "request", "raw_path", "raw_query", "request_headers", "request_body",
    "request_body_sha256", "request_body_kept", "response_headers", "response_body",
    "response_body_sha256", "response_body_kept", "response_chunks",
)


def _copy_captures(
    src: sqlite3.Connection, out: sqlite3.Connection, new_rowid: dict[int, int]
) -> None:
    lists = _map_lookup(src, out, "header_lists")
    names = ", ".join(CAPTURE_COLUMNS)
    rows = src.execute(f"SELECT {names} FROM captures ORDER BY request")
    insert = f"INSERT INTO captures ({names}) VALUES ({', '.join('?' for _ in CAPTURE_COLUMNS)})"
    while True:
        chunk = rows.fetchmany(MERGE_CHUNK)
        if not chunk:
            return
        out.executemany(
            insert,
            (
                (new_rowid[row[0]], row[1], row[2], lists.get(row[3]), *row[4:7],
                 lists.get(row[7]), *row[8:])
                for row in chunk
                if row[0] in new_rowid  # a capture whose row is gone stays behind
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
    problems: list[str] = []
    sources: list[_Source] = []
    try:
        state = _output_state(out)
    except MaintenanceError as error:
        state = "bad"
        problems.append(f"output {error}")
    for path in inputs:
        if state == "log" and os.path.exists(path) and os.path.samefile(path, out):
            problems.append(f"{path}: is the output file itself")
            continue
        try:
            sources.append(_inspect(path))
        except MaintenanceError as error:
            problems.append(str(error))
    if problems:
        raise MaintenanceError("nothing was merged: " + "; ".join(problems))

    result = MergeResult()
    try:
        conn = connect(out, timeout)
    except sqlite3.Error as error:
        raise MaintenanceError(f"{out}: cannot be opened ({error})") from None
    conn.text_factory = _lenient_text
    try:
        with _failing_as(f"nothing was merged: {out}: cannot be written"):
            ensure_schema(conn)
            with transaction(conn):
                _merge_into(conn, sources, result, progress)
    except BaseException:
        conn.close()
        _restore_output(out, state)
        raise
    conn.close()
    return result
