"""``pull``: a window of a PostgreSQL log copied into a SQLite log file (same schema, foreign
keys declared), for Datasette and for the tools that read files. Incremental: the file remembers
what it holds (table ``pulls``), so a second pull adds only rows that are new since the first.

"New" must not miss a row that an open transaction commits later with a smaller id: writers hold
a shared advisory lock from the moment they take ids until they commit, and a pull takes it
alone for a moment to learn the id below which every row is committed
(:func:`postgresql_schema.committed_upto`). Rows above it wait for the next pull.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from . import rollups
from .bulk import insert_columns, lookup_ids
from .postgresql_schema import (
    SchemaError,
    committed_upto,
    connect,
    ensure_readable,
    parse_url,
    psycopg,
    rows_sql,
)
from .schema import PULLS_SQL, REQUEST_COLUMNS, ensure_schema, transaction
from .schema import connect as sqlite_connect

__all__ = ["PullError", "PullResult", "pull"]

CHUNK = 5_000
COLUMNS = tuple(REQUEST_COLUMNS)
LOOKUPS = [(i, table) for i, table in enumerate(REQUEST_COLUMNS.values()) if table]
START = COLUMNS.index("start")




class PullError(Exception):
    """The pull cannot be done (the database, the file); the message says why."""


@dataclasses.dataclass
class PullResult:
    rows: int
    total: int
    upto: int


def pull(
    url: str,
    path: str,
    since: float | None = None,
    instance: str | None = None,
    schema: str | None = None,
    progress: Callable[[int], Any] | None = None,
) -> PullResult:
    """Copy the rows of the PostgreSQL log at ``url`` that started at ``since`` or later (of one
    ``instance``, if given) into the SQLite log ``path`` (created if missing), skipping rows an
    earlier pull copied. All of it in one SQLite transaction: an interrupted pull leaves the
    file as it was."""
    try:
        pg = psycopg()
        target = parse_url(url, schema, option="URL")
    except (ImportError, TypeError, ValueError) as error:
        raise PullError(str(error)) from None
    source = f"{target.display}#{target.schema}"
    low = -math.inf if since is None else float(since)
    try:
        conn = connect(target, autocommit=True, timeout=10)
    except pg.Error as error:
        raise PullError(f"cannot connect to {target.display}: {_one_line(error)}") from None
    try:
        try:
            ensure_readable(conn, target)
            upto = committed_upto(conn, target)
        except (pg.Error, SchemaError) as error:
            message = _one_line(error)
            raise PullError(f"cannot read the log in {target.display}: {message}") from None
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise PullError(f"cannot write {path}: the folder {folder} does not exist")
        try:
            out = sqlite_connect(path)
            ensure_schema(out)
        except (sqlite3.Error, OSError) as error:
            raise PullError(f"cannot write {path}: {error}") from None
        try:
            return _pull_into(conn, out, source, upto, low, instance, progress)
        except sqlite3.Error as error:
            raise PullError(f"cannot write {path}: {error}") from None
        except pg.Error as error:
            message = _one_line(error)
            raise PullError(f"cannot read the log in {target.display}: {message}") from None
        finally:
            out.close()
    finally:
        conn.close()


def _pull_into(conn: Any, out: sqlite3.Connection, source: str, upto: int, low: float,
               instance: str | None, progress: Callable[[int], Any] | None) -> PullResult:
    out.execute(PULLS_SQL)
    key = instance or ""
    # What the file holds already: per earlier pull, the rows of its instance (or of all) up to
    # its id and since its start. A file's window only widens: a later, shorter --since keeps
    # the rows that are there and adds the new ones of the wider window.
    states = out.execute(
        "SELECT instance, upto, since FROM pulls WHERE source = ?", (source,)
    ).fetchall()
    for name, _, covered in states:
        if name == key:
            low = min(low, -math.inf if covered is None else covered)
    where = ["r.start >= %(low)s", "r.id <= %(upto)s"]
    params: dict[str, Any] = {"low": low, "upto": upto}
    for number, (name, last, covered) in enumerate(states):
        where.append(
            f"NOT (r.id <= %(last{number})s AND r.start >= %(since{number})s "
            f"AND (%(all{number})s OR l_instance.name IS NOT DISTINCT FROM %(name{number})s))"
        )
        params.update({f"last{number}": last, f"all{number}": name == "", f"name{number}": name,
                       f"since{number}": -math.inf if covered is None else covered})
    if instance is not None:
        where.append("l_instance.name = %(instance)s")
        params["instance"] = instance
    sql = f"{rows_sql()} WHERE {' AND '.join(where)} ORDER BY r.id"
    copied = 0
    cache: dict[str, dict[Any, int]] = {}
    with transaction(out), conn.transaction(), conn.cursor(name="pull") as cursor:
        cursor.itersize = CHUNK
        cursor.execute(sql, params)
        while True:
            chunk = cursor.fetchmany(CHUNK)
            if not chunk:
                break
            first = _insert(out, [row[1:] for row in chunk], cache)
            rollups.add_rows(out, first, first + len(chunk) - 1)  # as the SQLite sink keeps them
            _captured(conn, out, [row[0] for row in chunk], first, cache)
            copied += len(chunk)
            if progress is not None:
                progress(len(chunk))
        out.execute(
            "INSERT INTO pulls (source, instance, upto, since, pulled_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (source, instance) DO UPDATE SET upto = excluded.upto, "
            "since = excluded.since, pulled_at = excluded.pulled_at",
            (source, key, upto, None if low == -math.inf else low,
             datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")),
        )
    total = out.execute("SELECT count(*) FROM requests").fetchone()[0]
    return PullResult(copied, total, upto)


def _ids(out: sqlite3.Connection, table: str, names: Any, cache: dict[str, dict[Any, int]]
         ) -> list[int | None]:
    known = cache.setdefault(table, {})
    missing = sorted(set(names).difference(known) - {None})
    if missing:
        known.update(lookup_ids(out, table, missing))
    return [known.get(name) for name in names]


def _insert(out: sqlite3.Connection, rows: list[tuple[Any, ...]],
            cache: dict[str, dict[Any, int]]) -> int:
    """Insert the rows; the rowid of the first (they get consecutive ones: this transaction
    holds the file's write lock)."""
    columns: list[Any] = list(zip(*rows, strict=True))
    for position, table in LOOKUPS:
        columns[position] = _ids(out, table, columns[position], cache)
    insert_columns(out, "requests", COLUMNS, columns)
    return out.execute("SELECT max(rowid) FROM requests").fetchone()[0] - len(rows) + 1


def _captured(conn: Any, out: sqlite3.Connection, ids: list[int], first: int,
              cache: dict[str, dict[Any, int]]) -> None:
    """The captured headers and captures of the rows just copied, pointing at their new rowids."""
    rowid = {pg_id: first + offset for offset, pg_id in enumerate(ids)}
    with conn.cursor() as cur:
        headers = cur.execute(
            "SELECT request, direction, name, value FROM captured_headers_view "
            "WHERE request = ANY(%s)", (ids,)
        ).fetchall()
        captures = cur.execute(
            "SELECT c.request, c.raw_path, c.raw_query, q.name, c.request_body, "
            "c.request_body_sha256, c.request_body_kept, s.name, c.response_body, "
            "c.response_body_sha256, c.response_body_kept, c.response_chunks FROM captures c "
            "LEFT JOIN header_lists q ON q.id = c.request_headers "
            "LEFT JOIN header_lists s ON s.id = c.response_headers WHERE c.request = ANY(%s)",
            (ids,),
        ).fetchall()
    if headers:
        names = _ids(out, "header_names", [h[2] for h in headers], cache)
        values = _ids(out, "header_values", [h[3] for h in headers], cache)
        out.executemany(
            "INSERT INTO captured_headers (request, direction, name, value) VALUES (?, ?, ?, ?)",
            [(rowid[h[0]], h[1], names[i], values[i]) for i, h in enumerate(headers)],
        )
    if captures:
        lists = _ids(out, "header_lists", [c[3] for c in captures] + [c[7] for c in captures],
                     cache)
        n = len(captures)
        out.executemany(
            "INSERT OR IGNORE INTO captures (request, raw_path, raw_query, request_headers, "
            "request_body, request_body_sha256, request_body_kept, response_headers, "
            "response_body, response_body_sha256, response_body_kept, response_chunks) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(rowid[c[0]], _blob(c[1]), _blob(c[2]), lists[i], _blob(c[4]), c[5], c[6],
              lists[n + i], _blob(c[8]), c[9], c[10], c[11]) for i, c in enumerate(captures)],
        )


def _blob(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
