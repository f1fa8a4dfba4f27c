"""``merge``: several logs combined into one, lookup ids remapped.

Every input is checked before anything is written (logfiles.py), and the rows are written in one
transaction, so a bad input or a failure halfway never leaves a partial result in the output
file. A file merged before (the same content, whatever its name) is skipped. Reports over more
files than SQLite attaches at once merge them into a temporary log with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import rollups
from .logfiles import (
    MaintenanceError,
    check_log_file,
    check_regular_file,
    check_requests_table,
    describe,
    failing_as,
    lenient_text,
    open_lenient,
)
from .schema import (
    FILE_SUFFIXES,
    MERGED_FILES_SQL,
    connect,
    ensure_schema,
    remove_files,
    transaction,
)

__all__ = ["MergeResult", "merge"]

#: Rows copied per ``executemany`` by merge (and per progress report).
MERGE_CHUNK = 5000


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
    with failing_as(f"{path}: cannot be read"):
        conn = open_lenient(path)
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
        found = out.execute(f"SELECT id FROM [{table}] WHERE name = ?", (name,)).fetchone()
        mapping[key] = found[0]
    return mapping


def _copy(
    out: sqlite3.Connection, source: _Source, report: Callable[[int], None]
) -> int:
    src = open_lenient(source.path)
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
        # Captured headers and captures point at request row ids: the output gives the copied
        # rows new ones, consecutive after its largest (one transaction, nobody else writing).
        wanted: set[int] = set()
        for table in ("captured_headers", "captures"):
            if table in src_tables:
                requests = src.execute(f"SELECT DISTINCT request FROM {table}")
                wanted.update(row[0] for row in requests)
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
                raise MaintenanceError(
                    f"{source.path}: the copied rows did not get consecutive ids"
                )
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
        raise MaintenanceError(f"{out}: {describe(error)}") from None
    check_regular_file(out)
    if size == 0:
        return "empty"
    check_log_file(out)
    with failing_as(f"{out}: cannot be read"):
        conn = open_lenient(out)
        try:
            check_requests_table(out, conn)
        finally:
            conn.close()
    return "log"


def _restore_output(out: str, state: str) -> None:
    """After a failed merge: remove the output it created, or empty it again."""
    if state == "missing":
        remove_files(out)
    elif state == "empty":
        for suffix in FILE_SUFFIXES[1:]:
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
        with failing_as(f"nothing was merged: copying {source.path} failed"):
            _copy(conn, source, report)
        conn.execute(
            "INSERT INTO merged_files VALUES (?, ?, ?, ?, ?, ?)",
            # The name as text SQLite can hold, whatever bytes the file system has.
            (source.fingerprint, lenient_text(os.fsencode(os.path.basename(source.path))),
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
    conn.text_factory = lenient_text
    try:
        with failing_as(f"nothing was merged: {out}: cannot be written"):
            ensure_schema(conn)
            with transaction(conn):
                _merge_into(conn, sources, result, progress)
    except BaseException:
        conn.close()
        _restore_output(out, state)
        raise
    conn.close()
    return result
