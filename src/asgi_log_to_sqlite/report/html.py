"""The HTML format: one self-contained file (inline CSS and SVG, no script, no network).

Charts are drawn here, on the server side, so the page needs nothing but a browser to open it,
and it prints and archives as it is. Time charts are SVG scaled with ``viewBox``; bar charts
with labels are plain HTML and CSS, so a long label (a path) wraps inside its column instead of
being clipped, and long values in tables break after ``/``, ``?``, ``&``... rather than in the
middle of a word. The layout is a CSS grid that becomes one column on a phone.
"""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup, escape

from .formatting import count, duration, nbytes, percent

__all__ = ["render_html"]

CLASS_COLOURS = {"1xx": "#8e9aaf", "2xx": "#2a9d8f", "3xx": "#457b9d", "4xx": "#e9c46a",
                 "5xx": "#e63946", "other": "#adb5bd"}
_BREAKS = re.compile(r"([/?&=;,._:-])")


def breakable(value: Any) -> Markup:
    """Escaped text with a line-break opportunity after each separator (``<wbr>``)."""
    if value is None:
        return Markup("(none)")
    return Markup(_BREAKS.sub(r"\1<wbr>", str(escape(str(value)))))


def _column_svg(
    points: list[tuple[str, int, int]], label: str, every: int | None = None,
    width: int = 720, height: int = 220,
) -> Markup:
    """Columns (value, red part) with axis labels: the timeline, the hours of the day."""
    left, bottom = 44, 24
    plot_w, plot_h = width - left - 8, height - bottom - 10
    peak = max((n for _, n, _ in points), default=0) or 1
    n = max(1, len(points))
    slot = plot_w / n
    bar = max(1.0, slot * 0.8)
    parts = [
        (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
         f'aria-label="{escape(label)}" preserveAspectRatio="none">')
    ]
    for frac in (0, 0.5, 1):
        y = 10 + plot_h * (1 - frac)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{escape(count(round(peak * frac)))}</text>")
    for i, (name, value, bad) in enumerate(points):
        x = left + i * slot + (slot - bar) / 2
        h = plot_h * value / peak
        eh = plot_h * bad / peak
        y = 10 + plot_h - h
        tip = escape(f"{name}: {count(value)} requests, {count(bad)} 5xx")
        parts.append(f'<rect class="mark ok" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                     f'height="{max(h - eh, 0):.1f}"><title>{tip}</title></rect>')
        if eh > 0:
            parts.append(f'<rect class="mark err" x="{x:.1f}" y="{10 + plot_h - eh:.1f}" '
                         f'width="{bar:.1f}" height="{eh:.1f}"><title>{tip}</title></rect>')
    marks = sorted({0, n // 2, n - 1}) if every is None else range(0, n, every)
    for i in marks:
        if i < len(points):
            x = left + i * slot + slot / 2
            anchor = "middle" if every else "start" if i == 0 else "end" if i == n - 1 else "middle"
            parts.append(f'<text class="axis" x="{x:.1f}" y="{height - 6}" '
                         f'text-anchor="{anchor}">{escape(points[i][0])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _bars(items: list[tuple[Any, int]] | None, colours: dict[str, str] | None = None) -> Markup:
    """Horizontal bars with their label and value, as HTML: labels wrap, never clip."""
    if items is None:
        return Markup('<p class="empty">not kept in rollups</p>')
    if not items:
        return Markup('<p class="empty">none</p>')
    peak = max(v for _, v in items) or 1
    rows = []
    for label, value in items:
        fill = f";background:{colours[label]}" if colours and label in colours else ""
        rows.append(
            f'<div class="bar-row"><span class="bar-label" title="{escape(label)}">'
            f"{breakable(label)}</span>"
            f'<span class="bar-track"><span class="bar" style="width:{100 * value / peak:.1f}%'
            f'{fill}"></span></span><span class="bar-value">{escape(count(value))}</span></div>'
        )
    return Markup('<div class="bars">' + "".join(rows) + "</div>")


def render_html(report: dict[str, Any]) -> str:
    import jinja2  # the cli extra

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("asgi_log_to_sqlite.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(count=count, duration=duration, nbytes=nbytes, percent=percent,
                       breakable=breakable)
    ua = report.get("user_agents")

    def listed(key: str, field: str) -> list[tuple[Any, int]] | None:
        rows = report.get(key)
        return None if rows is None else [(row[field], row["requests"]) for row in rows]

    charts = {
        "timeline": _column_svg(
            [((p["start"] or "").replace("T", " ").rstrip("Z")[:16], p["requests"], p["errors"])
             for p in report["timeline"]["points"]],
            "Requests over time",
        ),
        "hours": _column_svg(
            [(f"{h['hour']:02d}", h["requests"], 0) for h in report.get("hours_of_day") or []],
            "Requests by hour of day", every=3, width=380, height=180,
        ),
        "classes": _bars([(c["class"], c["requests"]) for c in report["status_classes"]],
                         CLASS_COLOURS),
        "browsers": _bars(None if ua is None else
                          [(b["name"], b["requests"]) for b in ua["browsers"]]),
        "systems": _bars(None if ua is None else
                         [(b["name"], b["requests"]) for b in ua["operating_systems"]]),
        "bots": _bars(None if ua is None else [(b["name"], b["requests"]) for b in ua["bots"]]),
        "paths": _bars([(p["path"], p["requests"]) for p in report["top_paths"]]),
        "domains": _bars(listed("referring_domains", "domain")),
    }
    return env.get_template("report.html.j2").render(r=report, charts=charts)
