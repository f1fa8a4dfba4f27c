"""Requests as access-log lines, newest last, optionally following the log as it grows.

Lines are Apache's combined log format, which every log tool reads, plus the time taken: the
request target is percent-encoded as a client sends it, ``"`` and ``\\`` inside quoted fields
are escaped with a backslash and other control characters as ``\\xhh`` (as Apache's
``mod_log_config`` does), so a path or user agent holding quotes or spaces never breaks a line.

Following polls ``rowid``: rows are only ever appended, so "rowid greater than the last one
printed" is exactly "new", and the short read-only connections never block the writer (WAL)
nor a rotation.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from .files import SQL_ERRORS, ReportError, display, read_uri, reason
from .filters import Filters, parse_status
from .queries import as_text

__all__ = ["format_line", "parse_status", "rows_after", "tail"]

_LOOKUP_JOINS = {
    "path": "paths",
    "query_string": "query_strings",
    "user_agent": "user_agents",
    "referer": "referers",
}
_REQUIRED = {"start", "path", "http_status", "duration"}
# Characters a request target may hold as they are (RFC 3986 pchar, "/" and "?"), and "%",
# which in a stored path always starts an escape.
_TARGET_SAFE = "/?%!$&'()*+,;=:@-._~"
_UNPRINTABLE = re.compile(r'[\x00-\x1f\x7f"\\]')
_METHOD = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # an HTTP token
_VERSION = re.compile(r"[0-9](?:\.[0-9])?")


class _Log:
    """One short read-only look at the log file."""

    def __init__(self, path: str, quiet: bool = True) -> None:
        self.path = path
        uri, self.snapshot = read_uri(path, quiet)
        try:
            self.conn = sqlite3.connect(uri, uri=True)
        except SQL_ERRORS as error:
            raise ReportError(f"{display(path)}: cannot be opened ({reason(error)})") from None
        self.conn.text_factory = lambda data: data.decode("utf-8", "backslashreplace")
        try:
            self.columns = {row[1] for row in self.conn.execute("PRAGMA table_info(requests)")}
            self.tables = {row[0] for row in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        except SQL_ERRORS as error:
            self.conn.close()
            raise ReportError(f"{display(path)}: not a SQLite database ({reason(error)})") from None
        if not _REQUIRED <= self.columns:
            self.conn.close()
            raise ReportError(
                f"{display(path)}: not an asgi-log-to-sqlite log (no 'requests' table)"
            )

    def close(self) -> None:
        self.conn.close()

    def changed(self) -> bool:
        return self.snapshot is not None and self.snapshot.changed()


def _newest(conn: sqlite3.Connection, default: int) -> int:
    value = conn.execute("SELECT MAX(rowid) FROM requests").fetchone()[0]
    return value if isinstance(value, int) else default


def _select(columns: set[str], tables: set[str]) -> str:
    fields = ["requests.rowid", "start", "client_ip" if "client_ip" in columns else "NULL",
              "method" if "method" in columns else "NULL"]
    joins = []
    for column, table in _LOOKUP_JOINS.items():
        if column in columns and table in tables:
            fields.append(f"[{table}].name")
            joins.append(f"LEFT JOIN [{table}] ON [{table}].id = requests.{column}")
        else:
            fields.append("NULL")
    for extra in ("http_version", "http_status", "body_size", "duration"):
        fields.append(extra if extra in columns else "NULL")
    return f"SELECT {', '.join(fields)} FROM requests {' '.join(joins)}"


def rows_after(
    log: _Log,
    after: int,
    filters: Filters,
    last: int | None = None,
    upto: int | None = None,
) -> list[tuple[Any, ...]]:
    """Rows with ``after`` < rowid <= ``upto`` matching the filters; the ``last`` ones if given."""
    where = ["requests.rowid > ?"]
    params: list[Any] = [after]
    if upto is not None:
        where.append("requests.rowid <= ?")
        params.append(upto)
    where.append(filters.raw_sql(None, log.columns, log.tables))
    sql = f"{_select(log.columns, log.tables)} WHERE {' AND '.join(where)}"
    if last is not None:
        sql = f"SELECT * FROM ({sql} ORDER BY requests.rowid DESC LIMIT {int(last)}) ORDER BY 1"
    else:
        sql += " ORDER BY requests.rowid"
    return log.conn.execute(sql, params).fetchall()


def _quoted(value: Any) -> str:
    """A quoted field's content: ``-`` for nothing, ``"`` and ``\\`` escaped, controls as \\xhh."""
    text = as_text(value)
    if not text:
        return "-"
    return _UNPRINTABLE.sub(
        lambda m: "\\" + m.group() if m.group() in '"\\' else f"\\x{ord(m.group()):02x}", text
    )


def _target(path: Any, query: Any) -> str:
    """The request target as a client sends it: percent-encoded, never a space or a quote."""
    target = (as_text(path) or "-") + (as_text(query) or "")
    return quote(target, safe=_TARGET_SAFE, errors="backslashreplace") or "-"


def _when(start: Any) -> str:
    try:
        moment = datetime.fromtimestamp(start, timezone.utc)
    except (OverflowError, OSError, ValueError, TypeError):
        return "-"
    return moment.strftime("%d/%b/%Y:%H:%M:%S +0000")


def _integer(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def format_line(row: Sequence[Any]) -> str:
    """Combined log format, plus the time taken: familiar to every log tool and reader.

    A request that got no status (the client left first) shows 499, as nginx logs it.
    """
    (_, start, ip, method, path, query, agent, referer, version, status, size, took) = row
    host = as_text(ip) or "-"
    host = "".join(c if c.isprintable() and not c.isspace() else "-" for c in host)
    method_text = as_text(method) or "-"
    if not _METHOD.fullmatch(method_text):
        method_text = quote(method_text, safe="") or "-"
    version_text = as_text(version) or "1.1"
    if not _VERSION.fullmatch(version_text):
        version_text = "1.1"
    code = "499" if status is None else _integer(status) or "-"
    sent = _integer(size) if size is not None else None
    if sent is not None and sent.startswith("-"):
        sent = None
    taken = f"{took:.3f}s" if isinstance(took, (int, float)) and abs(took) < 1e15 else "-"
    request = f"{method_text} {_target(path, query)} HTTP/{version_text}"
    return (
        f'{host} - - [{_when(start)}] "{_quoted(request)}" {code} {sent or "-"} '
        f'"{_quoted(referer)}" "{_quoted(agent)}" {taken}'
    )


def tail(
    path: str,
    lines: int = 10,
    follow: bool = False,
    filters: Filters | None = None,
    interval: float = 0.5,
    emit: Callable[[str], None] = print,
    should_stop: Callable[[], bool] = lambda: False,
    statuses: Sequence[tuple[int, int]] = (),
    path_filter: str | None = None,
) -> None:
    """Print the last ``lines`` matching requests; with ``follow``, keep printing new ones.

    When following, the file is open only while a poll reads it: a connection held open would
    keep the log from being rotated (rotation waits until no other program has it open). A log
    that is rotated (renamed, and a new file started under its name) is noticed by its inode:
    the rest of the old file, found under its new name, is printed, then the new file.
    ``statuses`` and ``path_filter`` are the older spelling of ``filters``.
    """
    filters = filters or Filters(statuses=tuple(statuses),
                                 paths=(path_filter,) if path_filter else ())
    identity = _identity(path)
    rows, after = _first_rows(path, lines, filters)
    for row in rows:
        emit(format_line(row))
    while follow and not should_stop():
        time.sleep(interval)
        current = _identity(path)
        if identity is None:
            identity, after = current, 0  # the file was missing: start with whatever came
            continue
        source = path if current == identity else _renamed(path, identity)
        if source is not None:
            read = _read_new(source, identity, after, filters, emit)
            if read is None:
                continue  # renamed while being read: read it again, by inode, next time
            after = read
        if current is not None and current != identity:
            try:
                _Log(path).close()
            except ReportError:
                continue  # the new file has no schema yet: try again at the next poll
            identity, after = current, 0


def _first_rows(path: str, lines: int, filters: Filters) -> tuple[list[tuple[Any, ...]], int]:
    """The last ``lines`` rows and the newest rowid, read again with locks if the file changed
    while it was read without them."""
    for quiet in (True, False):
        log = _Log(path, quiet)
        try:
            after = _newest(log.conn, 0)
            rows = rows_after(log, 0, filters, last=lines, upto=after) if lines else []
            if not log.changed():
                return rows, after
        except SQL_ERRORS as error:
            raise ReportError(f"{display(path)}: cannot be read ({reason(error)})") from None
        finally:
            log.close()
    return rows, after


def _read_new(
    source: str,
    identity: tuple[int, int],
    after: int,
    filters: Filters,
    emit: Callable[[str], None],
) -> int | None:
    """Print the rows of ``source`` after rowid ``after``; the last rowid read, or None if
    ``source`` turned out not to be the file with ``identity`` (nothing printed then)."""
    rows: list[tuple[Any, ...]] = []
    newest = after
    for quiet in (True, False):
        try:
            log = _Log(source, quiet)
        except ReportError:
            return None
        try:
            # Up to a fixed rowid, so that a row committed meanwhile is neither lost nor doubled.
            newest = _newest(log.conn, after)
            rows = rows_after(log, after, filters, upto=newest)
            if not log.changed():
                break
        except SQL_ERRORS as error:
            raise ReportError(f"{display(source)}: cannot be read ({reason(error)})") from None
        finally:
            log.close()
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
