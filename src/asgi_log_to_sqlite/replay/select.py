"""Which logged requests a replay sends: rows of one log, filtered in SQL, oldest first.

The log is opened read-only. Old logs lack columns (0.1.1 has no host, route or captures): those
read as NULL, and the rows replay from the access-log columns they have.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..filekind import special_file_kind
from ..report.files import display
from ..schema import open_readonly

__all__ = ["Recorded", "ReplayError", "Selection", "count_rows", "open_log", "read_rows"]

#: Rows read from SQLite at a time.
CHUNK = 500


class ReplayError(Exception):
    """A replay cannot start (missing or unusable log, bad target...); the message says why."""


@dataclass(frozen=True)
class Selection:
    """The filters of ``replay``: all of them must hold for a row to be replayed."""

    since: float | None = None
    until: float | None = None
    #: Path globs (``/api/*``); a plain path also matches everything below it. Any may match.
    paths: Sequence[str] = ()
    #: Route templates (``/items/{item_id}``), exact or globs. Any may match.
    routes: Sequence[str] = ()
    #: Status ranges, inclusive (``(500, 599)``). Any may match.
    statuses: Sequence[tuple[int, int]] = ()
    #: Replay every method, not only the safe GET and HEAD.
    all_methods: bool = False


@dataclass
class Recorded:
    """One logged request: its access-log columns and, when it was captured, the capture."""

    rowid: int
    start: float
    method: str
    path: str | None
    query_string: str | None  # as the log stores it: with its leading "?", values REDACTED
    host: str | None
    scheme: str | None
    user_agent: str | None
    referer: str | None
    accept_language: str | None
    status: int | None
    duration: float | None
    route: str | None
    request_body_size: int | None
    captured: bool = False
    raw_path: bytes | None = None
    raw_query: bytes | None = None
    request_headers: str | None = None  # JSON [[name, value], ...]
    request_body: bytes | None = None
    request_body_kept: bool = False
    response_body_sha256: str | None = None

    @property
    def key(self) -> str:
        """What the diff report groups by: the route template, else the path."""
        return self.route or self.path or "(no path)"


def open_log(path: str) -> tuple[sqlite3.Connection, set[str], set[str]]:
    """A read-only connection, the columns of ``requests`` and the tables of the file."""
    if not os.path.exists(path):
        raise ReplayError(f"{path}: no such file")
    kind = special_file_kind(path)  # SQLite would wait forever on a named pipe
    if kind is not None:
        raise ReplayError(f"{path}: is {kind}, not a log database")
    try:
        conn = open_readonly(path)
        # Text that is not UTF-8 (a damaged log) is replayed with \xNN escapes, not refused.
        conn.text_factory = lambda data: data.decode("utf-8", "backslashreplace")
        columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    except sqlite3.DatabaseError as error:
        raise ReplayError(f"{path}: not a SQLite database ({error})") from None
    if not {"start", "path", "http_status", "duration"} <= columns:
        conn.close()
        raise ReplayError(f"{path}: not an asgi-log-to-sqlite log (no 'requests' table)")
    return conn, columns, tables


_LOOKUPS = {
    "path": "paths",
    "query_string": "query_strings",
    "host": "hosts",
    "user_agent": "user_agents",
    "referer": "referers",
    "accept_language": "accept_languages",
    "route": "routes",
}
_PLAIN = ("scheme", "http_status", "duration", "request_body_size")
_CAPTURE = (
    "captures.raw_path",
    "captures.raw_query",
    "header_lists.name",
    "captures.request_body",
    "captures.request_body_kept",
    "captures.response_body_sha256",
)


def _query(columns: set[str], tables: set[str], selection: Selection) -> tuple[str, list[Any]]:
    fields = ["requests.rowid", "requests.start", "requests.method"]
    joins = []
    for column, table in _LOOKUPS.items():
        if column in columns and table in tables:
            fields.append(f"[{table}].name")
            joins.append(f"LEFT JOIN [{table}] ON [{table}].id = requests.{column}")
        else:
            fields.append("NULL")
    fields += [f"requests.{c}" if c in columns else "NULL" for c in _PLAIN]
    captures = "captures" in tables and "header_lists" in tables
    if captures:
        fields.append("captures.request IS NOT NULL")
        fields += _CAPTURE
        joins.append("LEFT JOIN captures ON captures.request = requests.rowid")
        joins.append("LEFT JOIN header_lists ON header_lists.id = captures.request_headers")
    else:
        fields += ["0"] + ["NULL"] * len(_CAPTURE)
    where: list[str] = []
    params: list[Any] = []
    if selection.since is not None:
        where.append("requests.start >= ?")
        params.append(selection.since)
    if selection.until is not None:
        where.append("requests.start < ?")
        params.append(selection.until)
    if selection.statuses:
        where.append(
            "(" + " OR ".join("requests.http_status BETWEEN ? AND ?" for _ in selection.statuses)
            + ")"
        )
        params += [v for pair in selection.statuses for v in pair]
    if not selection.all_methods:
        where.append("upper(requests.method) IN ('GET', 'HEAD')")
    if "connection_type" in columns:  # a WebSocket connection is not an HTTP request to resend
        where.append("(requests.connection_type IS NULL OR requests.connection_type = 'http')")
    if selection.paths:
        if "paths" not in tables:
            where.append("0")
        parts = []
        for glob in selection.paths:
            if any(c in glob for c in "*?["):
                parts.append("paths.name GLOB ?")
                params.append(glob)
            else:  # a plain path matches itself and everything below it
                parts.append("(paths.name = ? OR paths.name GLOB ?)")
                params += [glob, glob.rstrip("/") + "/*"]
        where.append("(" + " OR ".join(parts) + ")")
    if selection.routes:
        if "route" not in columns or "routes" not in tables:
            where.append("0")
        else:
            where.append("(" + " OR ".join("routes.name GLOB ?" for _ in selection.routes) + ")")
            # A template's braces are no glob characters, but its [ ] would be: escape them.
            params += [r.replace("[", "[[]") for r in selection.routes]
    sql = f"SELECT {', '.join(fields)} FROM requests {' '.join(joins)}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql, params


def count_rows(path: str, selection: Selection) -> int:
    conn, columns, tables = open_log(path)
    try:
        sql, params = _query(columns, tables, selection)
        return conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise ReplayError(f"{display(path)}: cannot be read ({error})") from None
    finally:
        conn.close()


def read_rows(path: str, selection: Selection) -> Iterator[list[Recorded]]:
    """The selected rows in the order they arrived, ``CHUNK`` at a time."""
    conn, columns, tables = open_log(path)
    try:
        sql, params = _query(columns, tables, selection)
        cursor = conn.execute(sql + " ORDER BY requests.start, requests.rowid", params)
        while True:
            chunk = cursor.fetchmany(CHUNK)
            if not chunk:
                return
            yield [_recorded(row) for row in chunk]
    except sqlite3.DatabaseError as error:  # a damaged page found on the way
        raise ReplayError(f"{display(path)}: cannot be read ({error})") from None
    finally:
        conn.close()


def _real(value: Any) -> float | None:
    """A finite number from a column a damaged log may fill with text, blobs or infinities."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _blob(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def _recorded(row: Sequence[Any]) -> Recorded:
    (rowid, start, method, path, query, host, agent, referer, language, route, scheme, status,
     duration, body_size, captured, raw_path, raw_query, headers, body, kept, response_hash) = row
    return Recorded(
        rowid=rowid,
        start=_real(start) or 0.0,
        method=method.upper() if isinstance(method, str) and method else "GET",
        path=_text(path),
        query_string=_text(query),
        host=_text(host),
        scheme=_text(scheme),
        user_agent=_text(agent),
        referer=_text(referer),
        accept_language=_text(language),
        status=_integer(status),
        duration=_real(duration),
        route=_text(route),
        request_body_size=_integer(body_size),
        captured=bool(captured),
        raw_path=_blob(raw_path),
        raw_query=_blob(raw_query),
        request_headers=_text(headers),
        request_body=_blob(body),
        request_body_kept=bool(kept),
        response_body_sha256=_text(response_hash),
    )
