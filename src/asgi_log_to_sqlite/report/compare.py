"""``--compare``: each summary figure beside the same figure for another window, with its
change, and the previous requests of the top paths, routes and status classes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .build import iso
from .files import ReportError

__all__ = ["COMPARED", "add_comparison", "previous_window"]

#: Summary figures compared, in the order reports show them: (key, latency key or None).
COMPARED: tuple[tuple[str, str | None], ...] = (
    ("requests", None),
    ("visitors", None),
    ("bytes_sent", None),
    ("server_errors", None),
    ("client_errors", None),
    ("error_rate", None),
    ("client_error_rate", None),
    ("latency", "avg"),
    ("latency", "p50"),
    ("latency", "p95"),
    ("latency", "p99"),
)


def previous_window(report: dict[str, Any]) -> tuple[float, float]:
    """The window just before the report's, as long: its --since/--until, or else the span
    from its first to its last request."""
    from .build import parse_when

    r = report["range"]
    since = r["since"] or r["first_request"]
    until = r["until"] or r["last_request"]
    if since is None or until is None:
        raise ReportError("--compare previous needs a window with requests, or --since/--until")
    try:
        start, end = parse_when(since), parse_when(until)
    except ValueError as error:
        raise ReportError(f"--compare previous: {error}") from None
    if r["until"] is None:
        # --since alone reaches the present; no window at all ends with its last request.
        end = time.time() if r["since"] else end + 1
    span = max(end - start, 1.0)
    try:
        return parse_when(iso(start - span) or ""), start
    except ValueError:
        raise ReportError(
            "--compare previous: the window before this one starts before year 1"
        ) from None


def _change(now: float | None, before: float | None) -> float | None:
    if now is None or before is None or before == 0:
        return None
    return round((now - before) / before, 6)


def add_comparison(
    report: dict[str, Any],
    compare: tuple[float, float] | str,
    build: Callable[[float, float], dict[str, Any]],
) -> None:
    """Add ``report["comparison"]``: the other window's figures and the changes."""
    since, until = previous_window(report) if compare == "previous" else compare  # type: ignore[misc]
    try:
        other = build(since, until)
    except ReportError as error:
        if "holds no requests" not in str(error):
            raise
        other = None
    figures = []
    for key, sub in COMPARED:
        now = report["summary"][key] if sub is None else report["summary"][key][sub]
        before = None
        if other is not None:
            before = other["summary"][key] if sub is None else other["summary"][key][sub]
        name = key if sub is None else f"{sub} duration" if sub == "avg" else sub
        figures.append({"name": name, "current": now, "previous": before,
                        "change": _change(now, before)})

    def previous_of(section: str, field: str) -> dict[str, int]:
        rows = (other or {}).get(section) or []
        return {row[field]: row["requests"] for row in rows}

    paths = previous_of("top_paths", "path")
    routes = previous_of("routes", "route")
    classes = previous_of("status_classes", "class")
    report["comparison"] = {
        "range": {"since": iso(since), "until": iso(until)},
        "source": (other or {}).get("source"),
        "figures": figures,
        "top_paths": [{"path": p["path"], "requests": p["requests"],
                       "previous": paths.get(p["path"], 0)} for p in report["top_paths"] or []],
        "routes": [{"route": p["route"], "requests": p["requests"],
                    "previous": routes.get(p["route"], 0)} for p in report["routes"] or []],
        "status_classes": [{"class": c["class"], "requests": c["requests"],
                            "previous": classes.get(c["class"], 0)}
                           for c in report["status_classes"]],
    }
