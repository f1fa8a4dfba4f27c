"""Turn one or more log files into a report: a plain, JSON-ready dict (its shape is documented
in docs/cli.md and is what every renderer reads).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from .agents import group_user_agents
from .queries import LogSet, ReportError, Window

__all__ = ["REPORT_VERSION", "build_report", "iso", "parse_when"]

#: Bumped when the JSON shape changes incompatibly.
REPORT_VERSION = 1

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Timeline bucket widths, seconds: the smallest giving at most MAX_BUCKETS buckets is used.
_BUCKETS = (1, 10, 60, 300, 600, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
MAX_BUCKETS = 120
# SQLite attaches at most 10 databases to a connection (its compile-time default).
MAX_ATTACHED = 10


def parse_when(text: str, now: float | None = None) -> float:
    """``24h``/``7d``/``30m``/``90s``/``2w`` ago, or an ISO 8601 date or date-time (UTC unless
    it says otherwise), as unix seconds. Raises ValueError with a readable message."""
    now = time.time() if now is None else now
    match = _RELATIVE.match(text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2).lower()]
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration like 24h, 7d, 30m nor an ISO date like 2024-05-01 "
            "or 2024-05-01T12:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bucket_width(first: float, last: float) -> int:
    span = max(0.0, last - first)
    for width in _BUCKETS:
        if span / width < MAX_BUCKETS:
            return width
    return _BUCKETS[-1]


def _apportion(weights: dict[Any, float], total: int) -> Counter[Any]:
    """Whole numbers for ``weights`` that add up to ``total`` (their rounded sum): each is
    rounded down, and what is missing goes to the largest remainders."""
    floors = Counter({key: int(value) for key, value in weights.items()})
    missing = total - sum(floors.values())
    if 0 < missing <= len(weights):
        by_remainder = sorted(weights, key=lambda key: weights[key] - floors[key], reverse=True)
        for key in by_remainder[:missing]:
            floors[key] += 1
    return floors


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _distinct(paths: Sequence[str | os.PathLike[str]]) -> list[str | os.PathLike[str]]:
    """``paths`` without repeats of one file (however spelt): a file counts once."""
    seen: list[str] = []
    kept: list[str | os.PathLike[str]] = []
    for path in paths:
        try:
            key = f"{os.stat(path).st_dev}:{os.stat(path).st_ino}"
        except OSError:
            key = os.path.realpath(path)  # missing: reported as such later
        if key not in seen:
            seen.append(key)
            kept.append(path)
    return kept


def build_report(
    paths: Sequence[str | os.PathLike[str]],
    since: float | None = None,
    until: float | None = None,
    limit: int = 10,
) -> dict[str, Any]:
    """Summarise the requests in ``paths`` (read as one log) between ``since`` and ``until``.

    Raises :class:`ReportError` for a missing file, a file that is not a log, or a log with no
    requests at all. A time window holding no requests gives a report of zeros.
    """
    if since is not None and until is not None and since >= until:
        raise ReportError("--since must be earlier than --until")
    paths = _distinct(paths)
    if len(paths) > MAX_ATTACHED:
        return _report_via_merge(paths, since, until, limit)
    window = Window(since, until)
    with LogSet(paths, window) as logs:
        if logs.total_rows() == 0:
            raise ReportError(f"{', '.join(logs.paths)}: the log holds no requests yet")
        s = logs.summary()
    # The rest is independent scans; sqlite3 releases the GIL, so each group of queries runs on
    # its own connection in a thread and a multi-core machine reads the log in parallel.
    weighted = s["sampled"]
    with ThreadPoolExecutor(max_workers=3) as pool:
        latency_f = pool.submit(
            _with_logs, paths, window, weighted, lambda logs: logs.percentiles(s["timed"])
        )
        paths_f = pool.submit(_with_logs, paths, window, weighted, lambda logs: _paths(logs, limit))
        others_f = pool.submit(
            _with_logs, paths, window, weighted, lambda logs: _others(logs, limit)
        )
        first = since if since is not None else s["first"]
        last = until if until is not None else s["last"]
        width = _bucket_width(first, last) if first is not None and last is not None else 3600
        with LogSet(paths, window, weighted) as logs:
            breakdown = logs.breakdown(width)
        percentiles = latency_f.result()
        _, top_paths, slow, slow_percentiles, not_found = paths_f.result()
        hosts, referrers, agents, instances = others_f.result()
    total = s["requests"]
    latency = {"avg": s["avg_duration"], **percentiles, "max": s["max_duration"]}

    # Counts are sums of row weights (1, or 1/sample_rate in a sampled log): added up as they
    # are, and rounded only at the end so that the parts still add up to the total.
    buckets: dict[int, list[float]] = {}
    classes: Counter[str] = Counter()
    statuses: Counter[int | None] = Counter()
    methods: Counter[str | None] = Counter()
    sent = received = server_errors = client_errors = 0.0
    for bucket, status, method, n, out, into in breakdown:
        is_error = status is not None and status >= 500
        point = buckets.setdefault(bucket, [0.0, 0.0, 0.0])
        point[0] += n
        point[1] += n if is_error else 0
        point[2] += out
        valid = isinstance(status, int) and 100 <= status <= 599
        classes[f"{status // 100}xx" if valid else "other"] += n
        statuses[status] += n
        methods[method] += n
        sent += out
        received += into
        server_errors += n if is_error else 0
        client_errors += n if valid and 400 <= status < 500 else 0
    classes, statuses, methods = (
        _apportion(counter, total) for counter in (classes, statuses, methods)
    )
    per_bucket = _apportion({b: p[0] for b, p in buckets.items()}, total)
    buckets = {b: [per_bucket[b], round(p[1]), round(p[2])] for b, p in buckets.items()}
    sent, received = round(sent), round(received)
    server_errors, client_errors = round(server_errors), round(client_errors)

    timeline: dict[str, Any] = {"bucket_seconds": width, "points": []}
    if first is not None and last is not None:
        start = int(first // width) * width
        end = int(last // width) * width
        if until is not None and end == until and end > start:
            end -= width
        timeline["points"] = [
            {"start": iso(b), "requests": p[0], "errors": p[1], "bytes": p[2]}
            for b in range(start, end + width, width)
            for p in [buckets.get(b, [0, 0, 0])]
        ]

    def ranked(counter: Counter[Any]) -> list[tuple[Any, int]]:
        return sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))[:limit]

    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "generated_at": iso(time.time()),
        "files": [os.fspath(p) for p in paths],
        "range": {
            "since": iso(since),
            "until": iso(until),
            "first_request": iso(s["first"]),
            "last_request": iso(s["last"]),
        },
        "summary": {
            "requests": total,
            "visitors": s["visitors"],
            "visitor_column": s["visitor_column"],
            # Counts and bytes of a sampled log are estimates: each row counts 1/sample_rate.
            "estimated_from_sample": s["sampled"],
            "bytes_sent": sent,
            "bytes_received": received,
            "server_errors": server_errors,
            "client_errors": client_errors,
            "error_rate": _share(server_errors, total),
            "client_error_rate": _share(client_errors, total),
            "latency": latency,
        },
        "timeline": timeline,
        "status_classes": [
            {"class": k, "requests": n, "share": _share(n, total)}
            for k, n in sorted(classes.items())
        ],
        "statuses": [{"status": k, "requests": n} for k, n in ranked(statuses)],
        "methods": [{"method": k, "requests": n} for k, n in ranked(methods)],
        "hosts": [
            {"host": r["name"], "requests": r["requests"]} for r in hosts
        ],
        # Which host or container served them (logs with an ``instance`` column).
        "instances": [
            {"instance": r["name"], "requests": r["requests"]} for r in instances
        ],
        "top_paths": [
            {
                "path": r["name"],
                "requests": r["requests"],
                "bytes": r["bytes"],
                "avg_duration": r["avg_duration"],
            }
            for r in top_paths
        ],
        "slowest_paths": [
            {
                "path": r["name"],
                "requests": r["requests"],
                "avg_duration": r["avg_duration"],
                **slow_percentiles.get(r["name"], {}),
            }
            for r in slow
        ],
        "not_found": [{"path": r["name"], "requests": r["not_found"]} for r in not_found],
        "referrers": [
            {"referrer": r["name"], "requests": r["requests"]}
            for r in referrers
        ],
        "user_agents": group_user_agents(
            [(r["name"], r["requests"]) for r in agents], limit=limit
        ),
    }
    return report


def _report_via_merge(
    paths: Sequence[str | os.PathLike[str]], since: float | None, until: float | None, limit: int
) -> dict[str, Any]:
    """More files than SQLite attaches at once: merge them into a temporary log, report on it."""
    from ..maintenance import MaintenanceError, merge

    names = [os.fspath(p) for p in paths]
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
            report = build_report([combined], since, until, limit)
        except ReportError as error:
            raise ReportError(str(error).replace(combined, ", ".join(names))) from None
    report["files"] = names
    return report


def _with_logs(
    paths: Sequence[str | os.PathLike[str]], window: Window, weighted: bool, work: Any
) -> Any:
    with LogSet(paths, window, weighted) as logs:
        return work(logs)


def _paths(logs: LogSet, limit: int) -> tuple[Any, ...]:
    """Every path once (one grouped query); the rankings sort distinct paths, not rows."""
    by_path = logs.by_name("path", limit=None)
    top_paths = by_path[:limit]
    # Slowest endpoints: by mean time among paths with enough requests for a p95 to mean
    # something (5), or among all timed paths when none has that many.
    timed_paths = [r for r in by_path if r["timed"]]
    candidates = [r for r in timed_paths if r["timed"] >= 5] or timed_paths
    slow = sorted(candidates, key=lambda r: (-r["avg_duration"], r["name"] or ""))[:limit]
    slow_percentiles = logs.path_percentiles([r["name"] for r in slow])
    not_found = sorted(
        (r for r in by_path if r["not_found"]), key=lambda r: (-r["not_found"], r["name"] or "")
    )[:limit]
    return by_path, top_paths, slow, slow_percentiles, not_found


def _others(logs: LogSet, limit: int) -> tuple[Any, ...]:
    return (
        logs.by_name("host", limit=limit, detail=False),
        logs.by_name("referer", limit=limit, detail=False),
        logs.by_name("user_agent", limit=None, skip_null=False, detail=False),
        logs.by_name("instance", limit=limit, detail=False),
    )
