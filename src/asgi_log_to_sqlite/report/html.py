"""The HTML format: one self-contained file (inline CSS and SVG, no script, no network).

Charts are SVG drawn here, on the server side, so the page needs nothing but a browser to open
it, and it prints and archives as it is. SVGs scale with ``viewBox`` and the layout is a CSS grid
that becomes one column on a phone.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from .formatting import count, duration, nbytes, percent

__all__ = ["render_html"]

CLASS_COLOURS = {"1xx": "#8e9aaf", "2xx": "#2a9d8f", "3xx": "#457b9d", "4xx": "#e9c46a",
                 "5xx": "#e63946", "other": "#adb5bd"}


def _timeline_svg(points: list[dict[str, Any]]) -> Markup:
    """Requests per bucket as columns, the 5xx part of each column in red."""
    width, height, left, bottom = 720, 220, 44, 24
    plot_w, plot_h = width - left - 8, height - bottom - 10
    peak = max((p["requests"] for p in points), default=0) or 1
    n = max(1, len(points))
    slot = plot_w / n
    bar = max(1.0, slot * 0.8)
    parts = [
        (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
         'aria-label="Requests over time" preserveAspectRatio="none">')
    ]
    for frac in (0, 0.5, 1):
        y = 10 + plot_h * (1 - frac)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{escape(count(round(peak * frac)))}</text>")
    for i, p in enumerate(points):
        x = left + i * slot + (slot - bar) / 2
        h = plot_h * p["requests"] / peak
        eh = plot_h * p["errors"] / peak
        y = 10 + plot_h - h
        tip = escape(f'{p["start"]}: {count(p["requests"])} requests, {count(p["errors"])} 5xx')
        parts.append(f'<rect class="mark ok" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                     f'height="{h - eh:.1f}"><title>{tip}</title></rect>')
        if eh > 0:
            parts.append(f'<rect class="mark err" x="{x:.1f}" y="{10 + plot_h - eh:.1f}" '
                         f'width="{bar:.1f}" height="{eh:.1f}"><title>{tip}</title></rect>')
    for i in sorted({0, n // 2, n - 1}):
        if i < len(points):
            x = left + i * slot + slot / 2
            anchor = "start" if i == 0 else "end" if i == n - 1 else "middle"
            label = points[i]["start"].replace("T", " ").rstrip("Z")[:16]
            parts.append(f'<text class="axis" x="{x:.1f}" y="{height - 6}" '
                         f'text-anchor="{anchor}">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _bars_svg(items: list[tuple[str, int]], colours: dict[str, str] | None = None) -> Markup:
    """Horizontal bars with a label and a value, one per item."""
    if not items:
        return Markup('<p class="empty">none</p>')
    row, width, label_w = 24, 380, 140
    height = row * len(items) + 4
    peak = max(v for _, v in items) or 1
    parts = [f'<svg class="chart bars" viewBox="0 0 {width} {height}" role="img">']
    for i, (label, value) in enumerate(items):
        y = 2 + i * row
        w = max(1.0, (width - label_w - 70) * value / peak)
        fill = f' style="fill:{colours[label]}"' if colours and label in colours else ""
        short = label if len(label) <= 20 else label[:19] + "…"
        parts.append(f'<text class="label" x="{label_w - 6}" y="{y + 17}" text-anchor="end">'
                     f"{escape(short)}<title>{escape(label)}</title></text>")
        parts.append(f'<rect class="mark" x="{label_w}" y="{y + 4}" width="{w:.1f}" height="18" '
                     f'rx="3"{fill}><title>{escape(label)}: {escape(count(value))}</title></rect>')
        parts.append(f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + 17}">'
                     f"{escape(count(value))}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


def render_html(report: dict[str, Any]) -> str:
    import jinja2  # the cli extra

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("asgi_log_to_sqlite.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(count=count, duration=duration, nbytes=nbytes, percent=percent)
    ua = report["user_agents"]
    charts = {
        "timeline": _timeline_svg(report["timeline"]["points"]),
        "classes": _bars_svg([(c["class"], c["requests"]) for c in report["status_classes"]],
                             CLASS_COLOURS),
        "browsers": _bars_svg([(b["name"], b["requests"]) for b in ua["browsers"]]),
        "systems": _bars_svg([(b["name"], b["requests"]) for b in ua["operating_systems"]]),
        "bots": _bars_svg([(b["name"], b["requests"]) for b in ua["bots"]]),
        "paths": _bars_svg([(p["path"] or "(none)", p["requests"]) for p in report["top_paths"]]),
    }
    return env.get_template("report.html.j2").render(r=report, charts=charts)
