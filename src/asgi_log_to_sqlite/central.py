"""``report``, ``tail`` and ``prune`` on a PostgreSQL log (a URL given in place of a file).

``report`` runs the report's own queries, unchanged, over a local SQLite copy of the window it
covers (made by :mod:`asgi_log_to_sqlite.pull`): the same figures and the same output as for a
file, with no report SQL written twice. ``tail`` reads ``requests_view`` and prints the lines
the file's ``tail`` prints (:func:`report.tail.format_line`); ``prune`` deletes old rows the way
retention does (whole days by dropping their partition).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from .postgresql_schema import (
    SchemaError,
    Target,
    connect,
    delete_older_than,
    ensure_readable,
    is_postgresql_url,
    parse_url,
    psycopg,
)

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
def report(url: str, since: float | None = None, until: float | None = None, limit: int = 10,
           instance: str | None = None) -> dict[str, Any]:
    """The report of the PostgreSQL log at ``url`` (of one ``instance``, if given)."""
    from .pull import PullError, pull
    from .report import build_report

    conn, target = _open(url)
    conn.close()
    with tempfile.TemporaryDirectory(prefix="asgi-log-report-") as folder:
        copy = os.path.join(folder, "central.db")
        try:
            pull(url, copy, since=since, instance=instance)
        except PullError as error:
            raise CentralError(str(error)) from None
        data = build_report([copy], since=since, until=until, limit=limit)
    data["files"] = [target.display]
    return data


# ---- tail ----------------------------------------------------------------------------------------
_LINE = ("SELECT id, start, client_ip, method, path, query_string, user_agent, referer, "
         "http_version, http_status, body_size, duration FROM requests_view")


def glob_as_similar(pattern: str) -> str:
    """A shell glob as a ``SIMILAR TO`` pattern (``*``, ``?`` and ``[...]`` kept, the rest
    literal): how ``tail --path`` matches in PostgreSQL, as SQLite's ``GLOB`` does in a file."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            body = "^" + body[1:] if body.startswith("^") else body
            out.append("[" + re.sub(r"([\\\]])", r"\\\1", body) + "]")
            i = end
        else:
            out.append(re.sub(r"([%_|*+?{}()\[\]\\^$.])", r"\\\1", char))
        i += 1
    return "".join(out)


def _filters(statuses: Sequence[tuple[int, int]], path: str | None, instance: str | None
             ) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if statuses:
        where.append("(" + " OR ".join("http_status BETWEEN %s AND %s" for _ in statuses) + ")")
        params += [v for pair in statuses for v in pair]
    if path:
        if any(c in path for c in "*?["):
            where.append("path SIMILAR TO %s ESCAPE '\\'")
            params.append(glob_as_similar(path))
        else:  # a plain path matches itself and everything below it
            where.append("(path = %s OR path SIMILAR TO %s ESCAPE '\\')")
            params += [path, glob_as_similar(path.rstrip("/") + "/*")]
    if instance is not None:
        where.append("instance = %s")
        params.append(instance)
    return where, params


def tail(
    url: str,
    lines: int = 10,
    follow: bool = False,
    statuses: Sequence[tuple[int, int]] = (),
    path_filter: str | None = None,
    interval: float = 0.5,
    emit: Callable[[str], None] = print,
    should_stop: Callable[[], bool] = lambda: False,
    instance: str | None = None,
) -> None:
    """Print the last ``lines`` matching requests of the PostgreSQL log; with ``follow``, keep
    printing new ones (each once, in id order)."""
    from .report.tail import format_line

    pg = psycopg()
    conn, target = _open(url)
    where, params = _filters(statuses, path_filter, instance)
    condition = " AND ".join(where) or "true"
    try:
        newest = conn.execute("SELECT coalesce(max(id), 0) FROM requests").fetchone()[0]
        if lines:
            rows = conn.execute(
                f"SELECT * FROM ({_LINE} WHERE id <= %s AND {condition} "
                f"ORDER BY id DESC LIMIT {int(lines)}) AS last ORDER BY id",
                [newest, *params],
            ).fetchall()
            for row in rows:
                emit(format_line(row))
        # Only rows after those shown first; a row whose transaction committed after a later
        # one's is still printed (once) if it arrives within FOLLOW_MARGIN ids.
        floor, seen = newest, set()
        while follow and not should_stop():
            time.sleep(interval)
            rows = conn.execute(
                f"{_LINE} WHERE id > %s AND {condition} ORDER BY id",
                [max(floor, newest - FOLLOW_MARGIN), *params],
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
