"""Reports over one or more log databases: SQL aggregates, rendered as text, JSON or HTML.

``build_report(paths, since, until, filters=..., compare=...)`` returns a JSON-ready dict;
``render_text``, ``render_json`` and ``render_html`` turn it into the three output formats.
"""

from __future__ import annotations

from .build import REPORT_VERSION, build_report, parse_when
from .files import ReportError
from .filters import Filters, parse_methods, parse_status

__all__ = [
    "REPORT_VERSION",
    "Filters",
    "ReportError",
    "build_report",
    "parse_methods",
    "parse_status",
    "parse_when",
    "render_html",
    "render_json",
    "render_text",
]


def render_text(report: dict, width: int = 80) -> str:
    from .text import render_text as render

    return render(report, width)


def render_json(report: dict) -> str:
    from .json import render_json as render

    return render(report)


def render_html(report: dict) -> str:
    from .html import render_html as render  # Jinja2, from the cli extra

    return render(report)
