"""Reports over windows whose rows were deleted: read from the hourly and daily rollups.

A window has lost rows when the hourly rollups of its hours count more rows than the file
still holds for them (``prune``, retention). Then the whole report comes from the rollups, so
its figures stay consistent with one another, and ``source`` says so. Rollups keep, per hour
(or day) and route (or path): requests, status classes, 404s, bytes and a latency histogram.
So the report has totals, error rates, requests over time and by hour of day, top paths and
routes, 404s and percentiles within 5%; the sections that need each request (visitors, user
agents, referrers, addresses, methods, hosts, HTTP versions, single statuses) are ``null``.

A file of the set without rollup tables (written before them) contributes its rows, rolled up
here with the very SQL the writer uses.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .. import rollups
from ..dialect import END_SECOND, SQLITE, Dialect
from ..histogram import BUCKETS, estimate, percentile_bucket
from .build import (
    DAY,
    PERCENTILES,
    _apportion,
    _bucket_width,
    _frame,
    _share,
    is_static,
    iso,
    ranked,
    whole,
)
from .files import ReportError
from .queries import LogSet

__all__ = ["raw_rows_gone", "rollup_report"]

HOUR = 3600
_MEASURES = ", ".join(f"{how.upper()}({m}) AS {m}" for m, how in rollups.ROLLUP_MEASURES.items())


def _clean(column: str, how: str, dialect: Dialect = SQLITE) -> str:
    """A stored rollup figure, or 0 (NULL for a maximum) where a damaged file holds text, a
    blob or an infinity."""
    finite = dialect.finite(column)
    return finite if how == "max" else f"COALESCE({finite}, 0)"


_CLEAN = ", ".join(f"{_clean(m, how)} AS {m}" for m, how in rollups.ROLLUP_MEASURES.items())
_COUNT = "(CASE WHEN l.count >= 0 AND l.count < 9e15 THEN CAST(l.count AS INTEGER) ELSE 0 END)"


def _hours(logs: LogSet) -> tuple[int, int]:
    """The window widened to whole hours (rollups cannot split an hour)."""
    since, until = logs.window.since, logs.window.until
    low = 0 if since is None else max(0, int(since // HOUR) * HOUR)
    high = END_SECOND if until is None else min(END_SECOND, -(-int(until) // HOUR) * HOUR)
    return low, high


# The route or path of a rollup (never both) packed in one integer, as rollups.py packs it: 2 *
# route id + 1, or 2 * path id; ids are below 2**27 in rollups. With the file's number above it
# and a latency bucket below it, rows add up by a single integer key.
_PAIR = 2**27
_KEY = "(CASE WHEN route IS NOT NULL THEN route * 2 + 1 ELSE COALESCE(path, 0) * 2 END)"


def _unpack(entry: int) -> tuple[int | None, int | None]:
    entry %= 2 * _PAIR
    if entry % 2:
        return entry // 2, None
    return None, (entry // 2) or None


def _added(
    logs: LogSet, name: str, key: str, measures: list[str], source: str,
    how: dict[str, str] | None = None, with_src: bool = False,
) -> list[tuple[Any, ...]]:
    """Rows of ``source`` added up per integer ``key``, into a small keyed table: (key,
    measures) or, ``with_src``, (src, key, measures) when the key starts with ``src``. SQLite
    sorts to group; adding into a keyed table is faster for few groups."""
    how = how or {}
    conn = logs.conn
    conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
    conn.execute(f"CREATE TEMP TABLE {name} (k INTEGER PRIMARY KEY, {', '.join(measures)})")
    updates = ", ".join(
        f"{m} = " + (logs.dialect.greatest(m, f"excluded.{m}") if how.get(m) == "max"
                     else f"{m} + excluded.{m}")
        for m in measures
    )
    logs.all(f"INSERT INTO temp.{name} SELECT {key}, {', '.join(measures)} FROM ({source}) "
             f"AS s WHERE true ON CONFLICT DO UPDATE SET {updates}")
    rows = logs.all(f"SELECT * FROM temp.{name}")
    if with_src:
        return [(k // (2 * _PAIR), k, *rest) for k, *rest in rows]
    return rows


def raw_rows_gone(logs: LogSet) -> dict[str, Any] | None:
    """None when the rows of the window are all there; else when the oldest row left starts
    (None: no row left at all). Always None for a PostgreSQL log, which keeps no rollups: its
    report reads the rows that are there."""
    low, high = _hours(logs)
    gone = False
    oldest: float | None = None
    d = logs.dialect
    for f in logs.files:
        if not rollups.has_rollups(f.tables):
            continue
        requests, table = d.table(f.index, "requests"), d.table(f.index, "rollups")
        raw = logs.all(f"SELECT COUNT(*) FROM {requests} WHERE start >= ? AND start < ?",
                       (low, high))[0][0]
        rolled = logs.all(f"SELECT {d.total('rows')} FROM {table} WHERE period = {HOUR} "
                          f"AND start >= ? AND start < ?", (low, high))[0][0]
        if rolled > raw:
            gone = True
            first = logs.all(f"SELECT MIN(start) FROM {requests} WHERE start >= 0")[0][0]
            if isinstance(first, (int, float)) and (oldest is None or first < oldest):
                oldest = first
    return {"raw_rows_from": oldest} if gone else None


class _Sources:
    """Per file, SQL for its rollup rows and latency counts in the window (tables, or rows
    rolled up on the fly for a file without them)."""

    def __init__(self, logs: LogSet, daily: bool) -> None:
        self.logs = logs
        self.low, self.high = _hours(logs)
        self.rows: list[str] = []
        self.latency: list[str] = []
        self.hourly: list[str] = []
        d = logs.dialect
        for f in logs.files:
            where = logs.filters.rollup_sql(f.index, f.tables, d)
            if rollups.has_rollups(f.tables):
                table = d.table(f.index, "rollups")
                latency = d.table(f.index, "rollup_latency")
                hours = f"period = {HOUR} AND start >= {self.low} AND start < {self.high}"
                tier = hours
                if daily:
                    folded = rollups.folded_until(logs.conn, f"db{f.index}") or 0
                    d0 = -(-self.low // DAY) * DAY
                    d1 = min(self.high // DAY * DAY, folded // DAY * DAY)
                    if d1 > d0:
                        tier = (f"(period = {DAY} AND start >= {d0} AND start < {d1}) OR "
                                f"({hours} AND NOT (start >= {d0} AND start < {d1}))")
                self.rows.append(
                    f"SELECT {f.index} AS src, period, start, route, path, {_CLEAN} "
                    f"FROM {table} WHERE ({tier}) AND ({where})"
                )
                self.hourly.append(
                    f"SELECT {f.index} AS src, start, {_clean('requests', 'sum')} AS requests "
                    f"FROM {table} WHERE {hours} AND ({where})"
                )
                self.latency.append(
                    f"SELECT {f.index} AS src, u.route, u.path, l.bucket, {_COUNT} AS count "
                    f"FROM (SELECT id, route, path FROM {table} WHERE ({tier}) AND ({where})) "
                    f"AS u JOIN {latency} AS l ON l.rollup = u.id "
                    f"WHERE l.bucket BETWEEN 0 AND {BUCKETS - 1} AND {d.is_integer('l.bucket')}"
                )
            else:
                window = f"start >= {self.low} AND start < {self.high}"
                rolled = rollups.aggregate_sql(d.table(f.index, "requests"), window, f.columns, d)
                self.rows.append(
                    f"SELECT {f.index} AS src, {HOUR} AS period, start, route, path, {_MEASURES} "
                    f"FROM ({rolled}) AS a WHERE {where} GROUP BY start, route, path"
                )
                self.hourly.append(
                    f"SELECT {f.index} AS src, start, requests FROM ({rolled}) AS a WHERE {where}"
                )
                self.latency.append(
                    f"SELECT {f.index} AS src, route, path, bucket, rows AS count "
                    f"FROM ({rolled}) AS a WHERE bucket < {rollups.UNTIMED} AND {where}"
                )

    def union(self, parts: list[str]) -> str:
        return "\nUNION ALL\n".join(parts)


def rollup_report(logs: LogSet, limit: int, gone: dict[str, Any]) -> dict[str, Any]:
    beyond = logs.filters.beyond_rollups()
    raw_from = iso(gone.get("raw_rows_from"))
    since_hint = f"a --since from {raw_from} on" if raw_from else "a later --since"
    if beyond:
        raise ReportError(
            f"{', '.join(beyond)} cannot be applied to this window: rows in it were deleted "
            "and their rollups keep routes, paths, status classes, bytes and durations only; "
            f"use {since_hint}"
        )
    low, high = _hours(logs)
    extent = _Sources(logs, daily=False)
    d = logs.dialect
    first_last = logs.all(
        f"SELECT MIN(start), MAX(start + period) FROM ({extent.union(extent.rows)}) AS r"
    )[0]
    first, end = first_last
    lo = logs.window.since if logs.window.since is not None else first
    hi = logs.window.until if logs.window.until is not None else end
    width = max(HOUR, _bucket_width(lo, hi)) if lo is not None and hi is not None else HOUR
    sources = _Sources(logs, daily=width >= DAY)
    rows_sql = sources.union(sources.rows)
    measures = list(rollups.ROLLUP_MEASURES)
    sums = ", ".join(
        f"MAX({m})" if rollups.ROLLUP_MEASURES[m] == "max" else d.total(m) for m in measures
    )
    totals = dict(zip(measures, logs.all(f"SELECT {sums} FROM ({rows_sql}) AS r")[0], strict=True))
    bucket = d.bucket("start", width)
    timeline_rows = logs.all(
        f"SELECT {bucket} AS b, {d.total('requests')}, {d.total('status_5xx')}, "
        f"{d.total('bytes_sent')} "
        f"FROM ({rows_sql}) AS r GROUP BY b ORDER BY b"
    )
    hour_rows = _added(logs, "rh", f"(start / {HOUR}) % 24", ["requests"],
                       sources.union(sources.hourly))
    key_rows = [
        (src, *_unpack(key), *values)
        for src, key, *values in _added(logs, "rk", f"src * {2 * _PAIR} + {_KEY}", measures,
                                        rows_sql, {m: how for m, how in
                                                   rollups.ROLLUP_MEASURES.items()}, True)
    ]
    latency_rows = [
        (src, *_unpack(key // BUCKETS), key % BUCKETS, count)
        for src, key, count in _added(
            logs, "rl", f"(src * {2 * _PAIR} + {_KEY}) * {BUCKETS} + bucket", ["count"],
            sources.union(sources.latency), None, True)
    ]
    route_names = logs.names("routes", {(r[0], r[1]) for r in key_rows if r[1] is not None})
    path_names = logs.names("paths", {(r[0], r[2]) for r in key_rows if r[2] is not None})

    def label(src: int, route: Any, path: Any) -> tuple[str, str | None]:
        if route is not None:
            return "route", route_names.get((src, route))
        return "path", path_names.get((src, path)) if path is not None else None

    entries: dict[tuple[str, str | None], dict[str, Any]] = {}
    for src, route, path, *values in key_rows:
        entry = entries.setdefault(label(src, route, path), {m: 0.0 for m in measures} | {
            "duration_max": None, "hist": Counter()})
        for m, value in zip(measures, values, strict=True):
            if m == "duration_max":
                if value is not None and (entry[m] is None or value > entry[m]):
                    entry[m] = value
            else:
                entry[m] += value or 0
    overall: Counter[int] = Counter()
    for src, route, path, b, count in latency_rows:
        key = label(src, route, path)
        if key in entries:
            entries[key]["hist"][int(b)] += int(count)
        overall[int(b)] += int(count)

    def percentiles(hist: Counter[int], longest: float | None) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for p in PERCENTILES:
            found = percentile_bucket(hist, p)
            value = estimate(found[0]) if found else None
            if value is not None and longest is not None:
                value = min(value, longest)
            out[f"p{p}"] = value
        return out

    total = whole(totals["requests"] or 0)
    classes = {f"{c}xx": totals[f"status_{c}xx"] or 0 for c in range(1, 6)}
    classes["other"] = max(0.0, (totals["requests"] or 0) - sum(classes.values()))
    classes = {k: v for k, v in classes.items() if whole(v)}
    classes_n = _apportion(classes, total)
    server_errors = whole(totals["status_5xx"] or 0)
    client_errors = whole(totals["status_4xx"] or 0)
    static = sum(e["requests"] for (kind, name), e in entries.items()
                 if kind == "path" and is_static(name))

    def avg(entry: dict[str, Any]) -> float | None:
        return entry["duration_total"] / entry["timed"] if entry["timed"] else None

    by_path = {name: e for (kind, name), e in entries.items() if kind == "path"}
    by_route: dict[str | None, dict[str, Any]] = {}
    for (_, name), e in entries.items():  # a route and a path of the same name are one line
        if name in by_route:
            merged = by_route[name]
            for m in measures:
                if m == "duration_max":
                    merged[m] = max(v for v in (merged[m], e[m], 0.0) if v is not None)
                else:
                    merged[m] += e[m]
            merged["hist"] = merged["hist"] + e["hist"]
        else:
            by_route[name] = {**e, "hist": Counter(e["hist"])}
    timed_paths = {k: e for k, e in by_path.items() if k and e["timed"]}
    candidates = {k: e for k, e in timed_paths.items() if e["timed"] >= 5} or timed_paths
    slowest = sorted(candidates, key=lambda k: (-avg(candidates[k]), k or ""))[:limit]
    sampled = (totals["rows"] or 0) != (totals["requests"] or 0)
    note = (
        f"The rows before {raw_from.replace('T', ' ').rstrip('Z')} UTC are gone"
        if raw_from else "The rows of this window are gone"
    ) + (
        " (pruned): this report is read from the hourly and daily rollups, whole hours at a "
        "time; percentiles are within 5%; visitors, user agents, referrers, client addresses, "
        "methods, hosts, HTTP versions and single status codes are not kept in rollups."
    )
    report = _frame(logs, first=first, last=None, source={
        "rows": "rollups",
        "note": note,
        "raw_rows_from": raw_from,
        "percentiles": "estimated within 5%",
    })
    report["range"]["since"] = iso(low) if logs.window.since is not None else None
    report["range"]["until"] = iso(high) if logs.window.until is not None else None
    report["range"]["last_request"] = iso(end) if end is not None else None
    report["summary"] = {
        "requests": total,
        "visitors": None,
        "visitor_column": None,
        "visitors_counted_by": None,
        "unique_client_addresses": None,
        "unique_user_agents": None,
        "unique_referrers": None,
        "estimated_from_sample": sampled,
        "bytes_sent": whole(totals["bytes_sent"] or 0),
        "bytes_received": whole(totals["bytes_received"] or 0),
        "server_errors": server_errors,
        "client_errors": client_errors,
        "error_rate": _share(server_errors, total),
        "client_error_rate": _share(client_errors, total),
        "static_requests": whole(static),
        "dynamic_requests": max(0, total - whole(static)),
        "latency": {
            "avg": (totals["duration_total"] / totals["timed"]) if totals["timed"] else None,
            **percentiles(overall, totals["duration_max"]),
            "max": totals["duration_max"],
        },
    }
    per_bucket = _apportion({b: n for b, n, _, _ in timeline_rows}, total)
    found = {b: (e, sent) for b, _, e, sent in timeline_rows}
    points = []
    if timeline_rows:
        first_b, last_b = timeline_rows[0][0], timeline_rows[-1][0]
        for b in range(first_b, last_b + 1):
            errors, sent = found.get(b, (0, 0))
            points.append({"start": iso(b * width), "requests": per_bucket.get(b, 0),
                           "errors": whole(errors), "bytes": whole(sent)})
    report["timeline"] = {"bucket_seconds": width, "points": points}
    hours = dict(hour_rows)
    report["hours_of_day"] = [{"hour": h, "requests": whole(hours.get(h, 0))} for h in range(24)]
    report["visitors_per_day"] = None
    report["status_classes"] = [
        {"class": k, "requests": n, "share": _share(n, total)} for k, n in sorted(classes_n.items())
    ]
    for key in ("statuses", "methods", "http_versions", "hosts"):
        report[key] = None
    report["top_paths"] = [
        {"path": name, "requests": whole(n), "bytes": whole(by_path[name]["bytes_sent"]),
         "avg_duration": avg(by_path[name])}
        for name, n in ranked({k: e["requests"] for k, e in by_path.items() if k}, limit)
    ]
    report["slowest_paths"] = [
        {"path": name, "requests": whole(by_path[name]["requests"]),
         "avg_duration": avg(by_path[name]),
         **percentiles(by_path[name]["hist"], by_path[name]["duration_max"])}
        for name in slowest
    ]
    report["routes"] = [
        {"route": name, "requests": whole(n), "server_errors": whole(by_route[name]["status_5xx"]),
         "error_rate": _share(by_route[name]["status_5xx"], by_route[name]["requests"]),
         "avg_duration": avg(by_route[name]),
         **percentiles(by_route[name]["hist"], by_route[name]["duration_max"])}
        for name, n in ranked({k: e["requests"] for k, e in by_route.items() if k}, limit)
    ]
    report["not_found"] = [
        {"path": name, "requests": whole(n)}
        for name, n in ranked({k: e["not_found"] for k, e in by_path.items()
                               if k and whole(e["not_found"])}, limit)
    ]
    for key in ("referrers", "referring_domains", "clients", "user_agents", "instances"):
        report[key] = None
    return report
