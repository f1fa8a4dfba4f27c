"""Turn one or more log files into a report: a plain, JSON-ready dict (its shape is documented
in docs/cli.md and is what every renderer reads).

A report reads the rows of its window. Where rows of the window were deleted (``prune``,
retention) but the hourly rollups still count them, the whole report is read from the rollups
instead (rollups.py, rollup_report.py) and says so in ``source``.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from ..dialect import END_SECOND, FIRST_SECOND
from ..histogram import percentile_bucket
from ..postgresql_schema import is_postgresql_url
from .agents import group_user_agents
from .files import SQL_ERRORS, ReportError, display, reason
from .filters import Filters
from .queries import (
    BUCKET_UNITS,
    ID_UNITS,
    STATUS_NONE,
    STATUS_UNITS,
    UNTIMED,
    LogSet,
    Window,
    as_text,
)

__all__ = ["REPORT_VERSION", "build_report", "iso", "parse_when"]

#: Bumped when the JSON shape changes incompatibly (keys are only ever added within a version).
REPORT_VERSION = 1
PERCENTILES = (50, 95, 99)

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Timeline bucket widths, seconds: the smallest giving fewer than MAX_BUCKETS buckets is used.
_BUCKETS = (1, 10, 60, 300, 600, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400,
            # only for damaged files whose times span centuries
            365 * 86400, 3650 * 86400, 36500 * 86400, 365000 * 86400)
MAX_BUCKETS = 120
# SQLite attaches at most 10 databases to a connection (its compile-time default).
MAX_ATTACHED = 10
DAY = 86400
#: Extensions of static files (what log analysers count as "static requests").
STATIC_EXTENSIONS = frozenset(
    "css js mjs map png jpg jpeg gif svg ico webp avif bmp tif tiff woff woff2 ttf otf eot "
    "mp3 mp4 m4a ogg ogv webm wav flac avi mov mkv pdf txt xml csv json zip gz tgz bz2 xz "
    "7z rar tar swf flv doc docx xls xlsx ppt pptx wasm".split()
)


def parse_when(text: str, now: float | None = None) -> float:
    """``24h``/``7d``/``30m``/``90s``/``2w`` ago, or an ISO 8601 date or date-time (UTC unless
    it says otherwise), as unix seconds. Raises ValueError with a readable message, also for
    a moment before year 1 or after 9999."""
    now = time.time() if now is None else now
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
        moment = now - seconds
        if not FIRST_SECOND <= moment < END_SECOND:
            raise ValueError(f"{text!r} reaches back before the year 1")
        return moment
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment_dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration like 24h, 7d, 30m nor an ISO date like 2024-05-01 "
            "or 2024-05-01T12:00"
        ) from None
    if moment_dt.tzinfo is None:
        moment_dt = moment_dt.replace(tzinfo=timezone.utc)
    try:
        moment = moment_dt.timestamp()
    except (OverflowError, ValueError, OSError):
        raise ValueError(f"{text!r} is outside the years 1 to 9999 in UTC") from None
    if not FIRST_SECOND <= moment < END_SECOND:
        raise ValueError(f"{text!r} is outside the years 1 to 9999 in UTC")
    return moment


def iso(seconds: float | None) -> str | None:
    """ISO 8601 UTC, to the second; None for no time or one no calendar can show."""
    if seconds is None or not isinstance(seconds, (int, float)):
        return None
    try:
        moment = datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    # Not strftime: it writes the year 1 as "1", not "0001".
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z")


def _bucket_width(first: float, last: float) -> int:
    span = max(0.0, last - first)
    for width in _BUCKETS:
        if span / width < MAX_BUCKETS:
            return width
    return _BUCKETS[-1]


def whole(value: Any) -> int:
    """A count or a byte total as a whole number; 0 for what no sum should be (infinity, from
    damaged rows adding up past the largest float)."""
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return round(value)
    return 0


def _apportion(weights: dict[Any, float], total: int) -> Counter[Any]:
    """Whole numbers for ``weights`` that add up to ``total`` (their rounded sum): each is
    rounded down, and what is missing goes to the largest remainders."""
    weights = {k: (v if math.isfinite(v) else 0.0) for k, v in weights.items()}
    floors = Counter({key: int(value) for key, value in weights.items()})
    missing = total - sum(floors.values())
    if 0 < missing <= len(weights):
        by_remainder = sorted(weights, key=lambda key: weights[key] - floors[key], reverse=True)
        for key in by_remainder[:missing]:
            floors[key] += 1
    return floors


def _share(part: float, whole: float) -> float:
    return round(part / whole, 6) if whole else 0.0


def _distinct(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """``paths`` without repeats of one file (however spelt): a file counts once."""
    seen: list[str] = []
    kept: list[str] = []
    for path in paths:
        path = os.fspath(path)
        if is_postgresql_url(path):
            key = path
        else:
            try:
                st = os.stat(path)
                key = f"{st.st_dev}:{st.st_ino}"
            except (OSError, ValueError):
                key = os.path.realpath(path)  # missing: reported as such later
        if key not in seen:
            seen.append(key)
            kept.append(path)
    return kept


def ranked(counter: dict[Any, float], limit: int | None) -> list[tuple[Any, float]]:
    """Most first, ties by name; None sorts as the empty string."""
    items = sorted(counter.items(), key=lambda kv: (-kv[1], "" if kv[0] is None else str(kv[0])))
    return items[:limit] if limit else items


def is_static(path: str | None) -> bool:
    """A path whose last segment has a static file's extension (``/app.css``, ``/a.png``)."""
    if not path:
        return False
    last = path.rsplit("/", 1)[-1]
    _, dot, extension = last.rpartition(".")
    return bool(dot) and extension.lower() in STATIC_EXTENSIONS


def referring_domain(referrer: str | None) -> str | None:
    """The host a referrer URL names, lower case (``https://www.google.com/x`` ->
    ``www.google.com``)."""
    if not referrer:
        return None
    try:
        host = urlsplit(referrer).hostname
    except ValueError:
        return None
    return host or None


def build_report(
    paths: Sequence[str | os.PathLike[str]],
    since: float | None = None,
    until: float | None = None,
    limit: int = 10,
    filters: Filters | None = None,
    compare: tuple[float, float] | str | None = None,
) -> dict[str, Any]:
    """Summarise the requests in ``paths`` (read as one log) between ``since`` and ``until``.
    A PostgreSQL URL may stand alone in place of the files: the same queries run in PostgreSQL.

    ``filters`` narrows the requests (path, route, status, host, method). ``compare`` puts the
    summary beside another window's: ``"previous"`` (the window just before, as long), or
    ``(since, until)``. Raises :class:`ReportError` for a missing file, a file that is not a
    log, or a log with no requests at all. A time window holding no requests gives a report of
    zeros.
    """
    if since is not None and until is not None and since >= until:
        raise ReportError("--since must be earlier than --until")
    filters = filters or Filters()
    names = _distinct(paths)
    if not names:
        raise ReportError("no log database given")
    if len(names) > 1 and any(is_postgresql_url(os.fspath(name)) for name in names):
        raise ReportError("a PostgreSQL URL is a whole log: give it alone")
    try:
        if len(names) > MAX_ATTACHED:
            report = _report_via_merge(names, since, until, limit, filters)
        else:
            report = _report(names, Window(since, until), limit, filters)
    except SQL_ERRORS as error:  # a damaged file, found where no query expected it
        raise ReportError(
            f"{', '.join(map(display, names))}: cannot be read ({reason(error)})") from None
    if compare is not None:
        from .compare import add_comparison

        add_comparison(report, compare, lambda s, u: build_report(names, s, u, limit, filters))
    return _finite(report)


def _finite(value: Any) -> Any:
    """The report with every infinity (a sum of absurd durations overflows) as None: JSON
    has no infinities, and no figure is better than a wrong one."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _report(names: list[str], window: Window, limit: int, filters: Filters) -> dict[str, Any]:
    """One report over attachable files; read again with locks if a file changed meanwhile."""
    for quiet in (True, False):
        with LogSet(names, window, filters, quiet=quiet) as logs:
            from .rollup_report import raw_rows_gone

            gone = raw_rows_gone(logs)
            if gone is not None:
                from .rollup_report import rollup_report

                report = rollup_report(logs, limit, gone)
            else:
                report = _raw_report(logs, limit, quiet)
            if not logs.changed():
                return report
    return report


def _raw_report(logs: LogSet, limit: int, quiet: bool) -> dict[str, Any]:
    """The report from the rows themselves (every figure exact)."""
    if not logs.has_rows():
        raise ReportError(f"{', '.join(logs.labels)}: the log holds no requests yet")
    window = logs.window
    # The bucket width comes from the window, or from the first and last request in it.
    first, last = logs.extent(first=window.since is None, last=window.until is None)
    weighted = logs.sampled()
    lo = window.since if window.since is not None else first
    hi = window.until if window.until is not None else last
    width = _bucket_width(lo, hi) if lo is not None and hi is not None else 3600
    unit = min(width, 3600)

    def task(work: Callable[[LogSet], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with logs.twin(weighted, quiet) as own:
                return work(own)
        return run

    def paths_and_percentiles(own: LogSet) -> Any:
        keys = _keys(own, own.key_groups())
        return keys, _exact_percentiles(own, keys, limit)

    def visitors_and_texts(own: LogSet) -> Any:
        return own.visits(DAY, limit), own.grouped("referer", "user_agent")

    # The scans are independent; sqlite3 and psycopg release the GIL, so each group of them
    # runs on its own connection in a thread, and the longest (paths, then their exact
    # percentiles) starts first.
    with ThreadPoolExecutor(max_workers=3) as pool:
        keys_f = pool.submit(task(paths_and_percentiles))
        time_f = pool.submit(task(lambda own: own.time_groups(unit)))
        visitors_f = pool.submit(task(visitors_and_texts))
        times = time_f.result()
        keys, exact = keys_f.result()
        ((visitor_total, per_day), (client_count, top_clients)), texts = visitors_f.result()

    t = _times([(src, key, *rest) for src, key, _, _, _, *rest in times], unit, width, limit)
    dims = [(src, host, method, version, n) for src, _, host, method, version, n, *_ in times]
    total = t["total"]
    overall = keys["overall"]

    def rounded_top(counter: dict[Any, float]) -> list[tuple[Any, int]]:
        return [(k, whole(v)) for k, v in ranked(counter, limit)]

    hosts = _named(logs, "hosts", [(src, host or None, n) for src, host, _, _, n in dims])
    referrers = _named(logs, "referers", [(src, ref, n) for src, ref, _, n in texts])
    agents = _named(logs, "user_agents", [(src, agent, n) for src, _, agent, n in texts])
    domains: Counter[str] = Counter()
    for name, n in referrers.items():
        domain = referring_domain(name)
        if domain:
            domains[domain] += n
    methods: Counter[str | None] = Counter()
    versions: Counter[str | None] = Counter()
    for _, _, method, version, n in dims:
        methods[as_text(method) or None] += n
        versions[as_text(version) or None] += n
    static = sum(v["requests"] for name, v in keys["paths"].items() if is_static(name))

    report = _frame(logs, first=t["first"], last=t["last"], source={
        "rows": "raw",
        "note": None,
        "raw_rows_from": None,
        "percentiles": "exact",
    })
    report["summary"] = {
        "requests": total,
        "visitors": visitor_total,
        "visitor_column": logs.visitor_column,
        "visitors_counted_by": (
            "distinct client addresses" if logs.visitor_column == "client_ip"
            else "distinct visitor hashes (client addresses where a row has none)"
        ),
        "unique_client_addresses": client_count,
        "unique_user_agents": sum(1 for name in agents if name is not None),
        "unique_referrers": sum(1 for name in referrers if name is not None),
        # Counts and bytes of a sampled log are estimates: each row counts 1/sample_rate.
        "estimated_from_sample": weighted,
        "bytes_sent": t["sent"],
        "bytes_received": t["received"],
        "server_errors": t["server_errors"],
        "client_errors": t["client_errors"],
        "error_rate": _share(t["server_errors"], total),
        "client_error_rate": _share(t["client_errors"], total),
        "static_requests": whole(static),
        "dynamic_requests": total - whole(static) if total >= whole(static) else 0,
        "latency": {
            "avg": (overall["duration"] / overall["timed"]) if overall["timed"] else None,
            **{f"p{p}": exact["overall"].get(p) for p in PERCENTILES},
            "max": t["longest"],
        },
    }
    report["timeline"] = t["timeline"]
    report["hours_of_day"] = t["hours_of_day"]
    report["visitors_per_day"] = [
        {"day": (iso(k * DAY) or "")[:10] or None, "visitors": v,
         "requests": t["per_day"].get(k * DAY, 0)}
        for k, v in per_day
    ]
    report["status_classes"] = t["status_classes"]
    report["statuses"] = t["statuses"]
    report["methods"] = [
        {"method": k, "requests": n}
        for k, n in ranked(_apportion(methods, total), limit)
    ]
    report["http_versions"] = [
        {"version": k, "requests": n} for k, n in rounded_top(versions)
    ]
    report["hosts"] = [
        {"host": k, "requests": n} for k, n in rounded_top(
            {k: v for k, v in hosts.items() if k is not None})
    ]
    report.update(_path_sections(keys, exact, limit))
    report["referrers"] = [
        {"referrer": k, "requests": n}
        for k, n in rounded_top({k: v for k, v in referrers.items() if k is not None})
    ]
    report["referring_domains"] = [
        {"domain": k, "requests": n} for k, n in rounded_top(domains)
    ]
    report["clients"] = [
        {"client": as_text(ip), "requests": whole(n)} for ip, n in top_clients
    ]
    report["user_agents"] = group_user_agents(
        [(name, whole(n)) for name, n in agents.items()], limit=limit
    )
    # Which host or container served them (the instance column; none in older logs).
    report["instances"] = [
        {"instance": k, "requests": n} for k, n in rounded_top(
            {k: v for k, v in _named(logs, "instances", logs.grouped("instance")).items()
             if k is not None})
    ]
    return report


def _frame(logs: LogSet, first: float | None, last: float | None,
           source: dict[str, Any]) -> dict[str, Any]:
    """The keys every report starts with."""
    return {
        "report_version": REPORT_VERSION,
        "generated_at": iso(time.time()),
        "files": list(logs.labels),
        "source": source,
        "filters": logs.filters.describe(),
        "range": {
            "since": iso(logs.window.since),
            "until": iso(logs.window.until),
            "first_request": iso(first),
            "last_request": iso(last),
        },
    }


def _times(groups: list[tuple[Any, ...]], unit: int, width: int, limit: int) -> dict[str, Any]:
    """Totals, timeline, hours of day and statuses from the (bucket, status) groups."""
    buckets: dict[int, list[float]] = {}
    hours: Counter[int] = Counter()
    days: Counter[int] = Counter()
    classes: Counter[str] = Counter()
    statuses: Counter[int | None] = Counter()
    requests = sent = received = server_errors = client_errors = 0.0
    first: float | None = None
    last: float | None = None
    longest: float | None = None
    for _src, key, n, out, into, low, high, most in groups:
        if isinstance(most, (int, float)) and (longest is None or most > longest):
            longest = most
        bucket, status = divmod(int(key), STATUS_UNITS)
        code = None if status == STATUS_NONE else status
        valid = code is not None and 100 <= code <= 599
        is_error = valid and code >= 500
        requests += n
        sent += out
        received += into
        classes[f"{code // 100}xx" if valid else "other"] += n
        statuses[code] += n
        server_errors += n if is_error else 0
        client_errors += n if valid and 400 <= code < 500 else 0
        if bucket != -1:  # rows with a time (-1: none that can be shown)
            days[bucket * unit // DAY * DAY] += n
            if isinstance(low, (int, float)) and (first is None or low < first):
                first = low
            if isinstance(high, (int, float)) and (last is None or high > last):
                last = high
            start = bucket * unit
            hours[(start // 3600) % 24] += n
            point = buckets.setdefault(start // width * width, [0.0, 0.0, 0.0])
            point[0] += n
            point[1] += n if is_error else 0
            point[2] += out
    total = whole(requests)
    # Counts are sums of row weights (1, or 1/sample_rate in a sampled log): added up as they
    # are, and rounded only at the end so that the parts still add up to the total.
    classes_n, statuses_n = _apportion(classes, total), _apportion(statuses, total)
    per_bucket = _apportion({b: p[0] for b, p in buckets.items()}, total)
    timeline: dict[str, Any] = {"bucket_seconds": width, "points": []}
    if buckets:
        start, end = min(buckets), max(buckets)
        timeline["points"] = [
            {"start": iso(b), "requests": per_bucket.get(b, 0),
             "errors": whole(buckets.get(b, [0, 0, 0])[1]),
             "bytes": whole(buckets.get(b, [0, 0, 0])[2])}
            for b in range(start, end + width, width)
        ]
    return {
        "total": total,
        "sent": whole(sent),
        "received": whole(received),
        "server_errors": whole(server_errors),
        "client_errors": whole(client_errors),
        "longest": longest,
        "first": first,
        "last": last,
        "timeline": timeline,
        "hours_of_day": [{"hour": h, "requests": whole(hours.get(h, 0))} for h in range(24)],
        "per_day": {day: whole(n) for day, n in days.items()},
        "status_classes": [
            {"class": k, "requests": n, "share": _share(n, total)}
            for k, n in sorted(classes_n.items())
        ],
        "statuses": [{"status": k, "requests": n} for k, n in ranked(statuses_n, limit)],
    }


def _new_entry() -> dict[str, Any]:
    return {"requests": 0.0, "bytes": 0.0, "timed": 0, "duration": 0.0, "not_found": 0.0,
            "server_errors": 0.0, "hist": Counter(), "ids": set()}


def _add(entry: dict[str, Any], values: Sequence[Any], bucket: int, ident: tuple[Any, ...]) -> None:
    n, out, rows, total, nf, err = values
    rows = whole(rows) or whole(n)  # counted apart only when rows are weighted
    entry["requests"] += n
    entry["bytes"] += out
    entry["not_found"] += nf
    entry["server_errors"] += err
    if bucket != UNTIMED:  # only these rows have a duration
        entry["timed"] += rows
        entry["duration"] += total
        entry["hist"][bucket] += rows
    entry["ids"].add(ident)


def _keys(logs: LogSet, groups: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Per path name, per route (template, or path of a request without one), overall, from
    the (path, route, latency bucket) groups."""
    decoded = []
    for src, key, *values in groups:
        pair, bucket = divmod(int(key), BUCKET_UNITS)
        path, route = divmod(pair, ID_UNITS)
        decoded.append((src, key, path, route, bucket, values))
    path_names = logs.names("paths", {(src, p) for src, _, p, _, _, _ in decoded if p})
    route_names = logs.names("routes", {(src, r) for src, _, _, r, _, _ in decoded if r})
    paths: dict[str | None, dict[str, Any]] = {}
    routes: dict[str | None, dict[str, Any]] = {}
    overall = _new_entry()
    for src, key, path, route, bucket, values in decoded:
        pname = path_names.get((src, path)) if path else None
        ident = (src, key - bucket)  # the group's key without its bucket
        _add(paths.setdefault(pname, _new_entry()), values, bucket, ident)
        _add(overall, values, bucket, ident)
        rname = route_names.get((src, route)) if route else pname
        _add(routes.setdefault(rname, _new_entry()), values, bucket, ident)
    return {"paths": paths, "routes": routes, "overall": overall}


def _exact_percentiles(logs: LogSet, keys: dict[str, Any], limit: int) -> dict[str, Any]:
    """Exact p50/p95/p99 overall, for the slowest paths and for the top routes: the bucket of
    each rank from the histograms, then the durations of only those buckets, sorted here."""
    slowest = _slowest(keys["paths"], limit)
    top_routes = [name for name, _ in ranked(
        {k: v["requests"] for k, v in keys["routes"].items() if k is not None}, limit)]
    chosen = (
        [("overall", None, keys["overall"])]
        + [("path", n, keys["paths"][n]) for n in slowest]
        + [("route", n, keys["routes"][n]) for n in top_routes]
    )
    wanted: list[tuple[str, Any, int, int, int]] = []  # (kind, name, p, bucket, offset)
    keyed: set[tuple[int, int]] = set()
    for kind, name, entry in chosen:
        for p in PERCENTILES:
            found = percentile_bucket(entry["hist"], p)
            if found is None:
                continue
            wanted.append((kind, name, p, *found))
            if kind != "overall":
                keyed.update((src, base + found[0]) for src, base in entry["ids"])
    overall_buckets = {b for kind, _, _, b, _ in wanted if kind == "overall"}
    rows = logs.durations_in(overall_buckets, keyed)
    path_names = logs.names("paths", {(src, p) for src, p, *_ in rows if p})
    route_names = logs.names("routes", {(src, r) for src, _, r, *_ in rows if r})
    found: dict[tuple[str, Any, int], list[float]] = {}
    for src, path, route, duration, bucket in rows:
        pname = path_names.get((src, path)) if path else None
        rname = route_names.get((src, route)) if route else pname
        found.setdefault(("overall", None, bucket), []).append(duration)
        found.setdefault(("path", pname, bucket), []).append(duration)
        found.setdefault(("route", rname, bucket), []).append(duration)
    out: dict[str, Any] = {"overall": {}, "path": {}, "route": {}, "slowest": slowest,
                           "top_routes": top_routes}
    for kind, name, p, bucket, offset in wanted:
        values = sorted(found.get((kind, name, bucket), []))
        value = values[offset - 1] if 0 < offset <= len(values) else None
        if kind == "overall":
            out["overall"][p] = value
        else:
            out[kind].setdefault(name, {})[p] = value
    return out


def _slowest(paths: dict[str | None, dict[str, Any]], limit: int) -> list[str | None]:
    """Slowest endpoints: by mean time among paths with enough requests for a p95 to mean
    something (5), or among all timed paths when none has that many."""
    timed = {k: v for k, v in paths.items() if v["timed"] and k is not None}
    candidates = {k: v for k, v in timed.items() if v["timed"] >= 5} or timed
    return sorted(
        candidates, key=lambda k: (-candidates[k]["duration"] / candidates[k]["timed"], k or "")
    )[:limit]


def _path_sections(keys: dict[str, Any], exact: dict[str, Any], limit: int) -> dict[str, Any]:
    paths, routes = keys["paths"], keys["routes"]

    def avg(entry: dict[str, Any]) -> float | None:
        return entry["duration"] / entry["timed"] if entry["timed"] else None

    # Requests without a path (or whose path id names nothing) are in the totals, not here.
    top = ranked({k: v["requests"] for k, v in paths.items() if k is not None}, limit)
    not_found = ranked(
        {k: v["not_found"] for k, v in paths.items() if k is not None and whole(v["not_found"])},
        limit,
    )
    return {
        "top_paths": [
            {"path": name, "requests": whole(n), "bytes": whole(paths[name]["bytes"]),
             "avg_duration": avg(paths[name])}
            for name, n in top
        ],
        "slowest_paths": [
            {"path": name, "requests": whole(paths[name]["requests"]),
             "avg_duration": avg(paths[name]),
             **{f"p{p}": exact["path"].get(name, {}).get(p) for p in PERCENTILES}}
            for name in exact["slowest"]
        ],
        "routes": [
            {"route": name, "requests": whole(routes[name]["requests"]),
             "server_errors": whole(routes[name]["server_errors"]),
             "error_rate": _share(routes[name]["server_errors"], routes[name]["requests"]),
             "avg_duration": avg(routes[name]),
             **{f"p{p}": exact["route"].get(name, {}).get(p) for p in PERCENTILES}}
            for name in exact["top_routes"]
        ],
        "not_found": [{"path": name, "requests": whole(n)} for name, n in not_found],
    }


def _named(logs: LogSet, table: str, groups: list[tuple[Any, Any, float]]) -> Counter[Any]:
    """Requests per name of a lookup column, from (src, id, requests) groups."""
    names = logs.names(table, {(src, ident) for src, ident, _ in groups if ident is not None})
    out: Counter[Any] = Counter()
    for src, ident, n in groups:
        out[names.get((src, ident)) if ident is not None else None] += n
    return out


def _report_via_merge(
    names: list[str], since: float | None, until: float | None, limit: int, filters: Filters
) -> dict[str, Any]:
    """More files than SQLite attaches at once: merge them into a temporary log, report on it."""
    from ..logfiles import MaintenanceError
    from ..merge import merge

    for name in names:  # the same messages as for fewer files
        with LogSet([name]):
            pass
    with tempfile.TemporaryDirectory(prefix="asgi-log-report-") as folder:
        combined = os.path.join(folder, "combined.db")
        try:
            merge(combined, names)
        except MaintenanceError as error:
            raise ReportError(str(error)) from None
        try:
            report = _report([combined], Window(since, until), limit, filters)
        except ReportError as error:
            raise ReportError(str(error).replace(combined, ", ".join(names))) from None
    report["files"] = [display(n) for n in names]
    return report
