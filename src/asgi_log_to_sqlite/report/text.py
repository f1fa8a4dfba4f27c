"""The terminal format: aligned tables that fit an 80-column terminal.

A value too long for its column (a path, a referrer) is never cut where it would make two
values look alike: it wraps onto the next lines, breaking after ``/``, ``?``, ``&`` and the
like where it can. Only a value longer than a few lines is shortened in the middle (its start
and its end kept), and only when no other value in the table shortens to the same text.
Numbers are right-aligned.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from .formatting import count, duration, nbytes, percent

__all__ = ["render_text"]

INDENT = "  "
GAP = "  "
BAR_LINES = 24
MAX_LABEL_LINES = 6
_BREAK_AFTER = "/?&=;,-_.:#@ "
NOT_KEPT = "(not kept in rollups: the rows of this window are gone)"


def _cols(text: str) -> int:
    """Terminal columns ``text`` takes: CJK and other wide characters take two, marks none."""
    if text.isascii():
        return len(text)
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def _printable(text: str) -> str:
    """Control characters (a newline in a user agent, an escape sequence) shown, not obeyed."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _fit(text: str, width: int) -> str:
    """``text`` in at most ``width`` columns, cut with an ellipsis (headings, never values)."""
    if _cols(text) <= width:
        return text
    kept, used = [], 0
    for c in text:
        used += _cols(c)
        if used > width - 1:
            break
        kept.append(c)
    return "".join(kept) + "…"


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` columns, broken after separators where possible."""
    width = max(width, 4)
    lines: list[str] = []
    rest = text
    while _cols(rest) > width:
        used, cut, last_break = 0, 0, 0
        for i, c in enumerate(rest):
            used += _cols(c)
            if used > width:
                break
            cut = i + 1
            if c in _BREAK_AFTER:
                last_break = i + 1
        if last_break > width // 3:
            cut = last_break
        lines.append(rest[: max(cut, 1)])
        rest = rest[max(cut, 1):]
    lines.append(rest)
    return lines


def _labels(values: Sequence[str], width: int) -> list[list[str]]:
    """Each value as the lines its first column takes; distinct values stay distinct."""
    wrapped = [_wrap(v, width) for v in values]
    shortened = []
    for lines in wrapped:
        if len(lines) > MAX_LABEL_LINES:
            head, tail = lines[: MAX_LABEL_LINES - 2], lines[-1:]
            shortened.append([*head, "…", *tail])
        else:
            shortened.append(lines)
    seen: dict[tuple[str, ...], int] = {}
    for lines in shortened:
        seen[tuple(lines)] = seen.get(tuple(lines), 0) + 1
    return [
        short if seen[tuple(short)] == 1 else full
        for short, full in zip(shortened, wrapped, strict=True)
    ]


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _cols(text))


def _table(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[str]] | None, width: int
) -> list[str]:
    """First column left-aligned (wrapped when long), the others right-aligned."""
    if rows is None:
        return [title, f"{INDENT}{NOT_KEPT}", ""]
    if not rows:
        return [title, f"{INDENT}(none)", ""]
    rows = [[_printable(str(cell)) for cell in row] for row in rows]
    others = [
        max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(1, len(headers))
    ]
    room = width - len(INDENT) - sum(others) - len(GAP) * len(others)
    first = max(12, min(room, max(_cols(headers[0]), *(_cols(row[0]) for row in rows))))
    labels = _labels([row[0] for row in rows], first)

    def line(label: str, cells: Sequence[str]) -> str:
        parts = [_pad(label, first)]
        parts += [cell.rjust(w) for cell, w in zip(cells, others, strict=True)]
        return (INDENT + GAP.join(parts)).rstrip()

    out = [title, line(headers[0], headers[1:])]
    for row, lines in zip(rows, labels, strict=True):
        out.append(line(lines[0], row[1:]))
        out += [(INDENT + "  " + more).rstrip() for more in lines[1:]]
    out.append("")
    return out


def _step(points: list[dict[str, Any]], most: int = BAR_LINES) -> int:
    """How many neighbouring buckets one line of the timeline merges."""
    return max(1, -(-len(points) // most))


def _bars(
    points: list[dict[str, Any]], bucket: int, width: int, most: int = BAR_LINES
) -> list[str]:
    """The timeline as horizontal bars, merging neighbouring buckets to at most ``most`` lines."""
    if not points:
        return []
    step = _step(points, most)
    merged = []
    for i in range(0, len(points), step):
        group = points[i : i + step]
        merged.append((group[0]["start"] or "-", sum(p["requests"] for p in group),
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
            bad = round(len(bar) * errors / n)
            bar = bar[: len(bar) - bad] + "!" * bad
        lines.append(f"{INDENT}{label}{GAP}{count(n).rjust(number_width)}{GAP}{bar}".rstrip())
    return lines


def _per(seconds: int) -> str:
    for size, name in ((604800, "week"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            n = seconds // size
            return name if n == 1 else f"{n} {name}s"
    return "second" if seconds == 1 else f"{seconds} seconds"


def _when(iso: str | None) -> str:
    return (iso or "-").replace("T", " ").rstrip("Z")


def _hours(hours: list[dict[str, Any]]) -> list[str]:
    """Requests by hour of day: four lines of six hours."""
    width = max(len(count(h["requests"])) for h in hours)
    return [
        INDENT + "   ".join(f"{h['hour']:02d}h {count(h['requests']).rjust(width)}"
                            for h in hours[i : i + 6])
        for i in range(0, 24, 6)
    ]


def _name(value: Any, none: str = "(none)") -> str:
    return none if value is None else str(value)


def _change(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.1f}%"


def _figure(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name in ("bytes_sent",):
        return nbytes(value)
    if name.endswith("rate"):
        return percent(value)
    if name in ("avg duration", "p50", "p95", "p99"):
        return duration(value)
    return count(value)


def _wrapped(text: str, width: int) -> list[str]:
    """Prose in lines of at most ``width`` columns, broken at spaces."""
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and _cols(line) + 1 + _cols(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


def render_text(report: dict[str, Any], width: int = 80) -> str:
    s = report["summary"]
    lat = s["latency"]
    r = report["range"]
    source = report.get("source") or {}
    out: list[str] = []
    out.append(_fit("Requests report: " + ", ".join(report["files"]), width))
    since = r["since"] or r["first_request"] or "-"
    until = r["until"] or r["last_request"] or "-"
    out.append(f"{_when(since)} to {_when(until)} UTC")
    shown = [f"{k} {', '.join(v)}" for k, v in (report.get("filters") or {}).items() if v]
    if shown:
        out += _wrapped("Only requests with " + "; ".join(shown), width)
    if source.get("note"):
        out += _wrapped(source["note"], width)
    out.append("")

    visitors_label = "Visitors" if s.get("visitors_counted_by") is None else (
        "Visitors (IPs)" if s["visitor_column"] == "client_ip" else "Visitors (hashes)"
    )
    pairs = [
        ("Requests", count(s["requests"]), visitors_label, count(s["visitors"])),
        ("User agents", count(s.get("unique_user_agents")), "Referrers",
         count(s.get("unique_referrers"))),
        ("Bytes sent", nbytes(s["bytes_sent"]), "Bytes received", nbytes(s["bytes_received"])),
        ("Server errors", f"{count(s['server_errors'])} ({percent(s['error_rate'])})",
         "Client errors", f"{count(s['client_errors'])} ({percent(s['client_error_rate'])})"),
        ("Static files", count(s.get("static_requests")), "Other requests",
         count(s.get("dynamic_requests"))),
    ]
    out.append("Summary (estimated: rows sampled)" if s.get("estimated_from_sample") else "Summary")
    for a, b, c, d in pairs:
        out.append(f"{INDENT}{a:<17}{b:>16}{GAP}{GAP}{c:<17}{d:>16}".rstrip())
    if s.get("visitors_counted_by"):
        out.append(f"{INDENT}(visitors: {s['visitors_counted_by']})")
    out.append("")
    comparison = report.get("comparison")
    if comparison:
        cr = comparison["range"]
        out += _table(
            f"Compared with {_when(cr['since'])} to {_when(cr['until'])} UTC",
            ["figure", "now", "before", "change"],
            [[f["name"].replace("_", " "), _figure(f["name"], f["current"]),
              _figure(f["name"], f["previous"]), _change(f["change"])]
             for f in comparison["figures"]],
            width,
        )
    estimated = " (estimated within 5%)" if source.get("percentiles", "exact") != "exact" else ""
    out += _table(
        f"Latency{estimated}",
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
    if report.get("hours_of_day") and any(h["requests"] for h in report["hours_of_day"]):
        out.append("Requests by hour of day (UTC)")
        out += _hours(report["hours_of_day"])
        out.append("")
    days = report.get("visitors_per_day")
    out += _table(
        "Visitors per day (the last 31)" if days and len(days) > 31 else "Visitors per day",
        ["day", "visitors", "requests"],
        None if days is None else [[d["day"] or "-", count(d["visitors"]), count(d["requests"])]
                                   for d in days[-31:]],
        width,
    )
    out += _table(
        "Status classes",
        ["class", "requests", "share"],
        [[c["class"], count(c["requests"]), percent(c["share"])] for c in report["status_classes"]],
        width,
    )
    statuses = report.get("statuses")
    out += _table(
        "Status codes", ["status", "requests"],
        None if statuses is None else [[_name(m["status"], "other"), count(m["requests"])]
                                       for m in statuses],
        width,
    )
    pct = ("p50", "p95", "p99")
    out += _table(
        "Routes (route template, or path where none)",
        ["route", "requests", "errors", "p50", "p95", "p99"],
        [[_name(p["route"]), count(p["requests"]), percent(p["error_rate"]),
          *(duration(p.get(k)) for k in pct)] for p in report.get("routes") or []],
        width,
    )
    out += _table(
        "Top paths",
        ["path", "requests", "bytes", "avg time"],
        [[_name(p["path"]), count(p["requests"]), nbytes(p["bytes"]), duration(p["avg_duration"])]
         for p in report["top_paths"]],
        width,
    )
    out += _table(
        "Slowest paths",
        ["path", "requests", "p50", "p95", "p99"],
        [[_name(p["path"]), count(p["requests"]), *(duration(p.get(k)) for k in pct)]
         for p in report["slowest_paths"]],
        width,
    )
    out += _table(
        "Not found (404)",
        ["path", "requests"],
        [[_name(p["path"]), count(p["requests"])] for p in report["not_found"]],
        width,
    )

    def listed(key: str, field: str) -> list[list[str]] | None:
        rows = report.get(key)
        if rows is None:
            return None
        return [[_name(row[field]), count(row["requests"])] for row in rows]

    out += _table("Referrers", ["referrer", "requests"], listed("referrers", "referrer"), width)
    out += _table("Referring domains", ["domain", "requests"],
                  listed("referring_domains", "domain"), width)
    out += _table("Client addresses", ["address", "requests"], listed("clients", "client"), width)
    ua = report.get("user_agents")
    if ua is None:
        out += _table("User agents", ["kind", "requests"], None, width)
    else:
        kinds = ua["kinds"]
        out += _table(
            "User agents",
            ["kind", "requests"],
            [["browsers and other clients", count(kinds["browser"])],
             ["bots", count(kinds["bot"])], ["no user agent", count(kinds["none"])]],
            width,
        )
        for title, key in (("Browsers", "browsers"), ("Operating systems", "operating_systems"),
                           ("Bots", "bots")):
            out += _table(title, ["name", "requests"],
                          [[x["name"], count(x["requests"])] for x in ua[key]], width)
    out += _table("Methods", ["method", "requests"], listed("methods", "method"), width)
    out += _table("HTTP versions", ["version", "requests"], listed("http_versions", "version"),
                  width)
    out += _table("Hosts", ["host", "requests"], listed("hosts", "host"), width)
    if report.get("instances"):
        out += _table("Instances", ["instance", "requests"], listed("instances", "instance"),
                      width)
    return "\n".join(out).rstrip() + "\n"
