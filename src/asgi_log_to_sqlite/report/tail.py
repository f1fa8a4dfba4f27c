"""Requests as access-log lines, newest last, optionally following the log as it grows.

Following polls ``rowid``: rows are only ever appended, so "rowid greater than the last one
printed" is exactly "new", and the short read-only connections never block the writer (WAL)
nor a rotation.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from .queries import ReportError, _uri

__all__ = ["format_line", "parse_status", "rows_after", "tail"]

_LOOKUP_JOINS = {
    "path": "paths",
    "query_string": "query_strings",
    "user_agent": "user_agents",
    "referer": "referers",
}


def parse_status(text: str) -> tuple[int, int]:
    """``404`` -> (404, 404); ``4xx`` -> (400, 499). ValueError otherwise."""
    value = text.strip().lower()
    if len(value) == 3 and value[0] in "12345" and value[1:] == "xx":
        return int(value[0]) * 100, int(value[0]) * 100 + 99
    if len(value) == 3 and value.isdigit() and 100 <= int(value) <= 599:
        return int(value), int(value)
    raise ValueError(f"{text!r} is not an HTTP status (100-599) like 404 or a class like 5xx")


def _open(path: str) -> tuple[sqlite3.Connection, set[str]]:
    if not os.path.exists(path):
        raise ReportError(f"{path}: no such file")
    try:
        conn = sqlite3.connect(_uri(path), uri=True)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    except sqlite3.DatabaseError as error:
        raise ReportError(f"{path}: not a SQLite database ({error})") from None
    if not {"start", "path", "http_status", "duration"} <= columns:
        conn.close()
        raise ReportError(f"{path}: not an asgi-log-to-sqlite log (no 'requests' table)")
    return conn, columns


def _newest(conn: sqlite3.Connection, default: int) -> int:
    return conn.execute("SELECT COALESCE(MAX(rowid), ?) FROM requests", (default,)).fetchone()[0]


def _select(columns: set[str]) -> str:
    fields = ["requests.rowid", "start", "client_ip", "method"]
    joins = []
    for column, table in _LOOKUP_JOINS.items():
        fields.append(f"{table}.name")
        joins.append(f"LEFT JOIN {table} ON {table}.id = requests.{column}")
    for extra in ("http_version", "http_status", "body_size", "duration"):
        fields.append(extra if extra in columns else "NULL")
    return f"SELECT {', '.join(fields)} FROM requests {' '.join(joins)}"


def rows_after(
    conn: sqlite3.Connection,
    columns: set[str],
    after: int,
    statuses: Sequence[tuple[int, int]] = (),
    path: str | None = None,
    last: int | None = None,
    upto: int | None = None,
) -> list[tuple[Any, ...]]:
    """Rows with ``after`` < rowid <= ``upto`` matching the filters; the ``last`` ones if given."""
    where = ["requests.rowid > ?"]
    params: list[Any] = [after]
    if upto is not None:
        where.append("requests.rowid <= ?")
        params.append(upto)
    if statuses:
        where.append("(" + " OR ".join("http_status BETWEEN ? AND ?" for _ in statuses) + ")")
        params += [v for pair in statuses for v in pair]
    if path:
        if any(c in path for c in "*?["):
            where.append("paths.name GLOB ?")
            params.append(path)
        else:  # a plain path matches itself and everything below it
            where.append("(paths.name = ? OR paths.name GLOB ?)")
            params += [path, path.rstrip("/") + "/*"]
    sql = f"{_select(columns)} WHERE {' AND '.join(where)}"
    if last is not None:
        sql = f"SELECT * FROM ({sql} ORDER BY requests.rowid DESC LIMIT {int(last)}) ORDER BY 1"
    else:
        sql += " ORDER BY requests.rowid"
    return conn.execute(sql, params).fetchall()


def format_line(row: Sequence[Any]) -> str:
    """Combined log format, plus the time taken: familiar to every log tool and reader."""
    (_, start, ip, method, path, query, agent, referer, version, status, size, took) = row
    when = datetime.fromtimestamp(start or 0, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")
    target = (path or "-") + (query or "")
    request = f"{method or '-'} {target} HTTP/{version or '1.1'}"
    taken = f"{took:.3f}s" if took is not None else "-"
    return (
        f'{ip or "-"} - - [{when}] "{request}" {status if status is not None else "-"} '
        f'{size if size is not None else "-"} "{referer or "-"}" "{agent or "-"}" {taken}'
    )


def tail(
    path: str,
    lines: int = 10,
    follow: bool = False,
    statuses: Sequence[tuple[int, int]] = (),
    path_filter: str | None = None,
    interval: float = 0.5,
    emit: Callable[[str], None] = print,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Print the last ``lines`` matching requests; with ``follow``, keep printing new ones.

    When following, the file is open only while a poll reads it: a connection held open would
    keep the log from being rotated (rotation waits until no other program has it open). A log
    that is rotated (renamed, and a new file started under its name) is noticed by its inode:
    the rest of the old file, found under its new name, is printed, then the new file.
    """
    identity = _identity(path)
    conn, columns = _open(path)
    try:
        after = _newest(conn, 0)
        if lines:
            for row in rows_after(conn, columns, 0, statuses, path_filter, last=lines, upto=after):
                emit(format_line(row))
    except sqlite3.DatabaseError as error:
        raise ReportError(f"{path}: cannot be read ({error})") from None
    finally:
        conn.close()
    while follow and not should_stop():
        time.sleep(interval)
        current = _identity(path)
        if identity is None:
            identity, after = current, 0  # the file was missing: start with whatever came
            continue
        source = path if current == identity else _renamed(path, identity)
        if source is not None:
            read = _read_new(source, identity, after, statuses, path_filter, emit)
            if read is None:
                continue  # renamed while being read: read it again, by inode, next time
            after = read
        if current is not None and current != identity:
            try:
                _open(path)[0].close()
            except ReportError:
                continue  # the new file has no schema yet: try again at the next poll
            identity, after = current, 0


def _read_new(
    source: str,
    identity: tuple[int, int],
    after: int,
    statuses: Sequence[tuple[int, int]],
    path_filter: str | None,
    emit: Callable[[str], None],
) -> int | None:
    """Print the rows of ``source`` after rowid ``after``; the last rowid read, or None if
    ``source`` turned out not to be the file with ``identity`` (nothing printed then)."""
    try:
        conn, columns = _open(source)
    except ReportError:
        return None
    try:
        # Up to a fixed rowid, so that a row committed meanwhile is neither lost nor doubled.
        newest = _newest(conn, after)
        rows = rows_after(conn, columns, after, statuses, path_filter, upto=newest)
    except sqlite3.DatabaseError as error:
        raise ReportError(f"{source}: cannot be read ({error})") from None
    finally:
        conn.close()
    if _identity(source) != identity:
        return None
    for row in rows:
        emit(format_line(row))
    return newest


def _renamed(path: str, identity: tuple[int, int]) -> str | None:
    """The file beside ``path`` that is the file ``identity`` named before (a rotated log)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == identity:
                    return entry.path
    except OSError:
        pass
    return None


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:  # between a rotation's rename and the new file: keep the old one
        return None
    return (st.st_dev, st.st_ino)
