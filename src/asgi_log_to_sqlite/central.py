"""``report``, ``tail`` and ``prune`` on a PostgreSQL log (a URL given in place of a file).

``report`` runs the report's own queries, unchanged, over a local SQLite copy of the window it
covers (made by :mod:`asgi_log_to_sqlite.pull`): the same figures and the same output as for a
file, with no report SQL written twice. ``tail`` reads the log itself, with the file ``tail``'s
filters in the PostgreSQL dialect (:mod:`asgi_log_to_sqlite.dialect`) and its line format;
``prune`` deletes old rows the way retention does (whole days by dropping their partition).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from .dialect import POSTGRESQL
from .postgresql_schema import (
    LOOKUP_TABLES,
    REQUEST_TYPES,
    SchemaError,
    Target,
    connect,
    delete_older_than,
    ensure_readable,
    is_postgresql_url,
    parse_url,
    psycopg,
)
from .report.filters import Filters

__all__ = ["CentralError", "is_postgresql_url", "prune", "report", "tail"]

#: ``tail -f``: ids this far below the newest printed are read again, for rows whose
#: transaction committed after a later one's (printed once all the same).
FOLLOW_MARGIN = 10_000


class CentralError(Exception):
    """The PostgreSQL log cannot be read or changed; the message says why."""


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _open(url: str) -> tuple[Any, Target]:
    try:
        pg = psycopg()
        target = parse_url(url, option="URL")
    except (ImportError, TypeError, ValueError) as error:
        raise CentralError(str(error)) from None
    try:
        conn = connect(target, autocommit=True, timeout=10)
    except pg.Error as error:
        raise CentralError(f"cannot connect to {target.display}: {_one_line(error)}") from None
    try:
        ensure_readable(conn, target)
    except (pg.Error, SchemaError) as error:
        conn.close()
        raise CentralError(f"cannot read the log in {target.display}: {_one_line(error)}"
                           ) from None
    return conn, target


# ---- report --------------------------------------------------------------------------------------
def _first_needed(since: float | None, until: float | None,
                  compare: tuple[float, float] | str | None) -> float | None:
    """The earliest start the report reads: its window's, or the compared window's."""
    if since is None:
        return None
    if compare == "previous":
        end = until if until is not None else time.time()
        return since - (end - since)
    if isinstance(compare, tuple):
        return min(since, compare[0])
    return since


def report(url: str, since: float | None = None, until: float | None = None, limit: int = 10,
           filters: Filters | None = None,
           compare: tuple[float, float] | str | None = None) -> dict[str, Any]:
    """The report of the PostgreSQL log at ``url``: the file report's own queries over a local
    copy of the rows of its window."""
    from .pull import PullError, pull
    from .report import build_report

    conn, target = _open(url)
    conn.close()
    from .report import ReportError

    with tempfile.TemporaryDirectory(prefix="asgi-log-report-") as folder:
        copy = os.path.join(folder, "central.db")
        try:
            pull(url, copy, since=_first_needed(since, until, compare))
        except PullError as error:
            raise CentralError(str(error)) from None
        try:
            data = build_report([copy], since=since, until=until, limit=limit,
                                filters=filters, compare=compare)
        except ReportError as error:
            raise CentralError(str(error).replace(copy, target.display)) from None
    data["files"] = [target.display]
    return data


# ---- tail ----------------------------------------------------------------------------------------
_LINE = (
    "SELECT r.id, r.start, r.client_ip, r.method, l_path.name, l_query.name, l_agent.name, "
    "l_referer.name, r.http_version, r.http_status, r.body_size, r.duration FROM requests AS r "
    "LEFT JOIN paths AS l_path ON l_path.id = r.path "
    "LEFT JOIN query_strings AS l_query ON l_query.id = r.query_string "
    "LEFT JOIN user_agents AS l_agent ON l_agent.id = r.user_agent "
    "LEFT JOIN referers AS l_referer ON l_referer.id = r.referer"
)


def tail(
    url: str,
    lines: int = 10,
    follow: bool = False,
    filters: Filters | None = None,
    interval: float = 0.5,
    emit: Callable[[str], None] = print,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Print the last ``lines`` matching requests of the PostgreSQL log; with ``follow``, keep
    printing new ones (each once, in id order). The filters are the file ``tail``'s, in the
    PostgreSQL dialect."""
    from .report.tail import format_line

    pg = psycopg()
    conn, target = _open(url)
    try:
        condition = (filters or Filters()).raw_sql(None, set(REQUEST_TYPES), set(LOOKUP_TABLES),
                                                   POSTGRESQL)
    except ValueError as error:
        conn.close()
        raise CentralError(str(error)) from None
    # Its patterns are inlined literals: a % in them is not a parameter.
    condition = "true" if condition == "1" else condition.replace("%", "%%")
    try:
        newest = conn.execute("SELECT coalesce(max(id), 0) FROM requests").fetchone()[0]
        if lines:
            rows = conn.execute(
                f"SELECT * FROM ({_LINE} WHERE r.id <= %s AND {condition} "
                f"ORDER BY r.id DESC LIMIT {int(lines)}) AS last ORDER BY 1",
                [newest],
            ).fetchall()
            for row in rows:
                emit(format_line(row))
        # Only rows after those shown first; a row whose transaction committed after a later
        # one's is still printed (once) if it arrives within FOLLOW_MARGIN ids.
        floor, seen = newest, set()
        while follow and not should_stop():
            time.sleep(interval)
            rows = conn.execute(
                f"{_LINE} WHERE r.id > %s AND {condition} ORDER BY r.id",
                [max(floor, newest - FOLLOW_MARGIN)],
            ).fetchall()
            for row in rows:
                if row[0] not in seen:
                    seen.add(row[0])
                    emit(format_line(row))
            if rows:
                newest = max(newest, rows[-1][0])
                if len(seen) > 2 * FOLLOW_MARGIN:
                    seen = {i for i in seen if i > newest - FOLLOW_MARGIN}
    except pg.Error as error:
        raise CentralError(f"cannot read the log in {target.display}: {_one_line(error)}"
                           ) from None
    finally:
        conn.close()


# ---- prune ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class PruneResult:
    name: str  # the log, without its password
    deleted: int
    remaining: int


def prune(url: str, older_than: float, now: float | None = None) -> PruneResult:
    """Delete the rows that started more than ``older_than`` seconds ago."""
    pg = psycopg()
    conn, target = _open(url)
    cutoff = (time.time() if now is None else now) - older_than
    try:
        before = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        if delete_older_than(conn, target, cutoff) is None:
            raise CentralError(f"{target.display}: retention is running right now; try again")
        remaining = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    except pg.Error as error:
        raise CentralError(f"cannot prune the log in {target.display}: {_one_line(error)}"
                           ) from None
    finally:
        conn.close()
    return PruneResult(target.display, max(0, before - remaining), remaining)
