"""The diff report as text (for a terminal or a CI log), JSON (the dict as is) or HTML (one
self-contained page, no script, no network)."""

from __future__ import annotations

import json
from typing import Any

from ..report.formatting import count, duration

__all__ = ["render_html", "render_json", "render_text"]


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def _change_text(route: dict[str, Any], check: str) -> str:
    if check == "status":
        return ", ".join(f"{c['from']} -> {c['to']} ({count(c['requests'])})"
                         for c in route["status_changes"])
    if check == "latency":
        latency = route["latency"]
        return (f"median {duration(latency['original']['p50'])} -> "
                f"{duration(latency['replayed']['p50'])} (x{latency['ratio_p50']})")
    body = route["body"]
    return f"{count(body['mismatches'])} of {count(body['compared'])} bodies differ"


def _mode(report: dict[str, Any]) -> str:
    mode = report.get("mode") or {}
    if mode.get("pace") == "original":
        return f"original pace x{mode['speed']:g}"
    if mode.get("pace") == "fixed rate":
        return f"{mode['rate']:g} requests/s"
    return f"as fast as allowed, concurrency {mode.get('concurrency', '-')}"


def render_text(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [
        f"Replay of {report.get('log', '-')} against {report.get('target', '-')}",
        f"  {_mode(report)}; {count(s['replayed'])} requests replayed in "
        f"{report['elapsed_seconds']:.1f} s ({s['per_second'] or 0:g}/s)"
        + ("; INTERRUPTED" if report["interrupted"] else ""),
    ]
    if s["from_access_log"]:
        lines.append(f"  {count(s['from_access_log'])} replayed from the access-log columns only "
                     "(logged without capture_requests)")
    for reason, n in sorted(s["skipped"].items()):
        lines.append(f"  {count(n)} skipped: {reason}")
    if s["late"]:
        lines.append(f"  {count(s['late'])} sent more than 0.1 s behind the schedule "
                     "(the pace was not held: more --concurrency, or a less busy machine)")
    if s["cancelled"]:
        lines.append(f"  {count(s['cancelled'])} cancelled in flight")
    if s["unfilled_placeholders"]:
        unfilled = sorted(s["unfilled_placeholders"].items())
        names = ", ".join(f"{k} ({count(v)})" for k, v in unfilled)
        lines.append(f"  placeholders without a value (sent as REDACTED or left out): {names}")
    lines.append(
        f"  {count(s['status_changes'])} status changes, {count(s['body_mismatches'])} of "
        f"{count(s['bodies_compared'])} bodies differ; median latency "
        f"{duration(s['latency']['original']['p50'])} logged, "
        f"{duration(s['latency']['replayed']['p50'])} replayed"
    )
    lines.append("")
    changed = [r for r in report["routes"] if r["changed"]]
    if changed:
        lines.append("Changed routes")
        for route in changed:
            lines.append(f"  {route['route']}")
            for check in route["changed"]:
                lines.append(f"    {check}: {_change_text(route, check)}")
            for change in route["status_changes"]:
                for example in change["examples"]:
                    lines.append(f"      {change['from']} -> {change['to']}: {example}")
            for example in route["body"]["examples"] if "body" in route["changed"] else ():
                lines.append(f"      body differs: {example}")
    else:
        lines.append("No route changed.")
    noisy = [r for r in report["routes"] if r["noisy"]["status"] or r["noisy"]["body"]]
    if noisy:
        lines.append("")
        lines.append("Noisy routes (two replays of one request disagreed; differences not counted)")
        for route in noisy:
            what = " and ".join(k for k in ("status", "body") if route["noisy"][k])
            lines.append(f"  {route['route']}: {what}")
    lines.append("")
    header = (f"{'route':<40} {'n':>6} {'status':>7} {'p50 log':>9} {'p50 now':>9} "
              f"{'p95 log':>9} {'p95 now':>9} {'bodies':>9}")
    lines.append(header)
    for route in report["routes"]:
        latency = route["latency"]
        name = route["route"] if len(route["route"]) <= 40 else route["route"][:39] + "…"
        changes = sum(c["requests"] for c in route["status_changes"])
        bodies = (f"{route['body']['mismatches']}/{route['body']['compared']}"
                  if route["body"]["compared"] else "-")
        lines.append(
            f"{name:<40} {count(route['replayed']):>6} {count(changes):>7} "
            f"{duration(latency['original']['p50']):>9} {duration(latency['replayed']['p50']):>9} "
            f"{duration(latency['original']['p95']):>9} {duration(latency['replayed']['p95']):>9} "
            f"{bodies:>9}"
        )
    if report["failures"]:
        lines.append("")
        lines.append("FAILED: " + ", ".join(f"{f['route']} ({f['check']})"
                                             for f in report["failures"]))
    return "\n".join(lines) + "\n"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Replay of {{ r.log }}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem;
       color: #1d2433; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #dde2ea; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.changed { color: #b3261e; font-weight: 600; } .muted { color: #687386; }
code { font-size: .9em; }
</style></head><body>
<h1>Replay of <code>{{ r.log }}</code> against <code>{{ r.target }}</code></h1>
<p>{{ mode }}{% if r.mode.check_noise %}, each request sent twice{% endif %}:
{{ r.summary.replayed }} requests replayed in {{ "%.1f"|format(r.elapsed_seconds) }} s{%
if r.interrupted %} <strong>(interrupted)</strong>{% endif %}.
{{ r.summary.status_changes }} status changes, {{ r.summary.body_mismatches }} of
{{ r.summary.bodies_compared }} bodies differ; median latency
{{ dur(r.summary.latency.original.p50) }} logged, {{ dur(r.summary.latency.replayed.p50) }}
replayed.
{% if r.summary.from_access_log %}{{ r.summary.from_access_log }} replayed from the access-log
columns only.{% endif %}</p>
{% for reason, n in r.summary.skipped.items() %}<p class="muted">{{ n }} skipped: {{ reason }}</p>
{% endfor %}
{% if r.summary.late %}<p class="muted">{{ r.summary.late }} sent more than 0.1 s behind the
schedule.</p>{% endif %}
{% if r.summary.cancelled %}<p class="muted">{{ r.summary.cancelled }} cancelled in
flight.</p>{% endif %}
{% if r.summary.unfilled_placeholders %}<p class="muted">Placeholders without a value (sent as
REDACTED or left out): {% for name, n in r.summary.unfilled_placeholders|dictsort %}<code>{{ name
}}</code> ({{ n }}){% if not loop.last %}, {% endif %}{% endfor %}</p>{% endif %}
<h2>Changed routes</h2>
{% if changed %}<ul>{% for route in changed %}<li><code>{{ route.route }}</code>
<ul>{% for check in route.changed %}<li class="changed">{{ check }}: {{ text(route, check) }}</li>
{% endfor %}{% for c in route.status_changes %}{% for e in c.examples %}
<li class="muted">{{ c.from }} -> {{ c.to }}: <code>{{ e }}</code></li>{% endfor %}{% endfor %}
{% if "body" in route.changed %}{% for e in route.body.examples %}
<li class="muted">body differs: <code>{{ e }}</code></li>{% endfor %}{% endif %}
</ul></li>{% endfor %}</ul>{% else %}<p>No route changed.</p>{% endif %}
{% if noisy %}<h2>Noisy routes</h2><p class="muted">Two replays of one request disagreed:
their differences are not counted.</p><ul>{% for route in noisy %}
<li><code>{{ route.route }}</code>: {% if route.noisy.status %}status {% endif %}
{% if route.noisy.body %}body{% endif %}</li>{% endfor %}</ul>{% endif %}
<h2>Every route</h2>
<table><thead><tr><th>route</th><th>replayed</th><th>status changes</th><th>p50 logged</th>
<th>p50 replayed</th><th>p95 logged</th><th>p95 replayed</th><th>bodies differing</th></tr></thead>
<tbody>{% for route in r.routes %}<tr{% if route.changed %} class="changed"{% endif %}>
<td><code>{{ route.route }}</code></td><td class="n">{{ route.replayed }}</td>
<td class="n">{{ route.status_changes|sum(attribute="requests") }}</td>
<td class="n">{{ dur(route.latency.original.p50) }}</td>
<td class="n">{{ dur(route.latency.replayed.p50) }}</td>
<td class="n">{{ dur(route.latency.original.p95) }}</td>
<td class="n">{{ dur(route.latency.replayed.p95) }}</td>
<td class="n">{{ route.body.mismatches }} / {{ route.body.compared }}</td></tr>
{% endfor %}</tbody></table>
{% if r.failures %}<h2 class="changed">Failed</h2><ul>{% for f in r.failures %}
<li><code>{{ f.route }}</code> ({{ f.check }})</li>{% endfor %}</ul>{% endif %}
</body></html>
"""


def render_html(report: dict[str, Any]) -> str:
    import jinja2  # the cli extra

    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(_PAGE)
    return template.render(
        r=report,
        mode=_mode(report),
        changed=[r for r in report["routes"] if r["changed"]],
        noisy=[r for r in report["routes"] if r["noisy"]["status"] or r["noisy"]["body"]],
        text=_change_text,
        dur=duration,
    )
