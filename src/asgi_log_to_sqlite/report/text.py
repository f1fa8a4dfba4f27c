"""The terminal format: aligned tables that fit an 80-column terminal.

Long values (paths, referrers) are shortened with an ellipsis in the first column so every line
stays within ``width``; numbers are right-aligned.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from .formatting import count, duration, nbytes, percent

__all__ = ["render_text"]

INDENT = "  "
GAP = "  "


def _cols(text: str) -> int:
    """Terminal columns ``text`` takes: CJK and other wide characters take two, marks none."""
    if text.isascii():
        return len(text)
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def _fit(text: str, width: int) -> str:
    """``text`` in at most ``width`` columns, cut with an ellipsis."""
    if _cols(text) <= width:
        return text
    kept, used = [], 0
    for c in text:
        used += _cols(c)
        if used > width - 1:
            break
        kept.append(c)
    return "".join(kept) + "…"


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _cols(text))


def _table(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], width: int
) -> list[str]:
    """First column left-aligned and shortened to fit; the others right-aligned."""
    if not rows:
        return [title, f"{INDENT}(none)", ""]
    others = [
        max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(1, len(headers))
    ]
    room = width - len(INDENT) - sum(others) - len(GAP) * len(others)
    first = max(8, min(room, max(_cols(headers[0]), *(_cols(row[0]) for row in rows))))

    def line(cells: Sequence[str]) -> str:
        parts = [_pad(_fit(cells[0], first), first)]
        parts += [cell.rjust(w) for cell, w in zip(cells[1:], others)]
        return _fit((INDENT + GAP.join(parts)).rstrip(), width)

    return [title, line(headers), *(line(row) for row in rows), ""]


BAR_LINES = 24


def _step(points: list[dict[str, Any]], most: int = BAR_LINES) -> int:
    """How many neighbouring buckets one line of the timeline merges."""
    return max(1, -(-len(points) // most))


def _bars(points: list[dict[str, Any]], bucket: int, width: int, most: int = BAR_LINES) -> list[str]:
    """The timeline as horizontal bars, merging neighbouring buckets to at most ``most`` lines."""
    if not points:
        return []
    step = _step(points, most)
    merged = []
    for i in range(0, len(points), step):
        group = points[i : i + step]
        merged.append((group[0]["start"], sum(p["requests"] for p in group),
                       sum(p["errors"] for p in group)))
    label_width = 19 if bucket * step < 60 else 16 if bucket * step < 86400 else 10
    peak = max(n for _, n, _ in merged) or 1
    number_width = max(len(count(n)) for _, n, _ in merged)
    room = width - len(INDENT) - label_width - number_width - 2 * len(GAP)
    lines = []
    for start, n, errors in merged:
        label = _when(start)[:label_width]
        bar = "#" * round(room * n / peak)
        if errors and n:
            bar = bar[: len(bar) - round(len(bar) * errors / n)] + "!" * round(len(bar) * errors / n)
        lines.append(f"{INDENT}{label}{GAP}{count(n).rjust(number_width)}{GAP}{bar}".rstrip())
    return lines


def _per(seconds: int) -> str:
    for size, name in ((604800, "week"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            n = seconds // size
            return name if n == 1 else f"{n} {name}s"
    return "second" if seconds == 1 else f"{seconds} seconds"


def _when(iso: str) -> str:
    return iso.replace("T", " ").rstrip("Z")


def render_text(report: dict[str, Any], width: int = 80) -> str:
    s = report["summary"]
    lat = s["latency"]
    r = report["range"]
    out: list[str] = []
    out.append(_fit("Requests report: " + ", ".join(report["files"]), width))
    since = r["since"] or r["first_request"] or "-"
    until = r["until"] or r["last_request"] or "-"
    out.append(f"{_when(since)} to {_when(until)} UTC")
    out.append("")
    pairs = [
        ("Requests", count(s["requests"]), "Visitors", count(s["visitors"])),
        ("Bytes sent", nbytes(s["bytes_sent"]), "Bytes received", nbytes(s["bytes_received"])),
        ("Server errors", f"{count(s['server_errors'])} ({percent(s['error_rate'])})",
         "Client errors", f"{count(s['client_errors'])} ({percent(s['client_error_rate'])})"),
    ]
    out.append("Summary (estimated: rows sampled)" if s.get("estimated_from_sample") else "Summary")
    for a, b, c, d in pairs:
        out.append(f"{INDENT}{a:<15}{b:>18}{GAP}{GAP}{c:<15}{d:>18}")
    out.append("")
    out += _table(
        "Latency",
        ["", "avg", "p50", "p95", "p99", "max"],
        [["all requests", *(duration(lat[k]) for k in ("avg", "p50", "p95", "p99", "max"))]],
        width,
    )
    tl = report["timeline"]
    if tl["points"]:
        step = _step(tl["points"])
        out.append(f"Requests over time (per {_per(tl['bucket_seconds'] * step)}; ! = 5xx)")
        out += _bars(tl["points"], tl["bucket_seconds"], width)
        out.append("")
    out += _table(
        "Status classes",
        ["class", "requests", "share"],
        [[c["class"], count(c["requests"]), percent(c["share"])] for c in report["status_classes"]],
        width,
    )
    out += _table(
        "Top paths",
        ["path", "requests", "bytes", "avg time"],
        [[p["path"] or "(none)", count(p["requests"]), nbytes(p["bytes"]), duration(p["avg_duration"])]
         for p in report["top_paths"]],
        width,
    )
    out += _table(
        "Slowest paths",
        ["path", "requests", "p50", "p95", "p99"],
        [[p["path"] or "(none)", count(p["requests"]), duration(p.get("p50")),
          duration(p.get("p95")), duration(p.get("p99"))] for p in report["slowest_paths"]],
        width,
    )
    out += _table(
        "Not found (404)",
        ["path", "requests"],
        [[p["path"] or "(none)", count(p["requests"])] for p in report["not_found"]],
        width,
    )
    out += _table(
        "Referrers",
        ["referrer", "requests"],
        [[p["referrer"], count(p["requests"])] for p in report["referrers"]],
        width,
    )
    ua = report["user_agents"]
    kinds = ua["kinds"]
    out += _table(
        "User agents",
        ["kind", "requests"],
        [["browsers and other clients", count(kinds["browser"])], ["bots", count(kinds["bot"])],
         ["no user agent", count(kinds["none"])]],
        width,
    )
    for title, key in (("Browsers", "browsers"), ("Operating systems", "operating_systems"),
                       ("Bots", "bots")):
        out += _table(
            title, ["name", "requests"],
            [[x["name"], count(x["requests"])] for x in ua[key]], width,
        )
    out += _table(
        "Methods", ["method", "requests"],
        [[m["method"] or "(none)", count(m["requests"])] for m in report["methods"]], width,
    )
    out += _table(
        "Status codes", ["status", "requests"],
        [[str(m["status"]), count(m["requests"])] for m in report["statuses"]], width,
    )
    out += _table(
        "Hosts", ["host", "requests"],
        [[h["host"], count(h["requests"])] for h in report["hosts"]], width,
    )
    if report.get("instances"):
        out += _table(
            "Instances", ["instance", "requests"],
            [[i["instance"], count(i["requests"])] for i in report["instances"]], width,
        )
    return "\n".join(line[:width] for line in out).rstrip() + "\n"
