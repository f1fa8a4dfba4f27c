"""How fast the traffic dashboard answers on a large log: 1,000,000 rows by default.

    .venv/bin/python benchmarks/dashboard_benchmark.py                # 1M rows over 7 days
    .venv/bin/python benchmarks/dashboard_benchmark.py --rows 200000 --repeat 3
    .venv/bin/python benchmarks/dashboard_benchmark.py --view 7d --view "7d&host=example.com"
    .venv/bin/python benchmarks/dashboard_benchmark.py --screenshot docs/dashboard.png

The log is generated with ``synthetic_log`` (7 days of plausible traffic, routes for the most
requested paths, and the hourly and daily rollups the writer keeps) and served by ``datasette
serve`` from this virtualenv with its default settings (a 1 s SQL time limit, 3 SQL threads).
For each view (by default ``24h``, the default one; ``7d``; ``all``, the whole log; ``30d``,
the same rows in daily buckets; and ``7d`` filtered by a host, which rollups do not keep) it
measures:

- each chart's query as the browser sends it (``GET /log.json?sql=...&period=...``), one at a
  time: the median of ``--repeat`` runs, in milliseconds, and what the chart was counted from
  (rows, a sample of them, rollups);
- the whole dashboard in headless Chromium (``/usr/bin/chromium``): from navigation to every
  chart drawn, median of ``--repeat`` loads (after one that warms the browser's cache).

The figures go into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from asgi_log_to_sqlite.dashboard import dashboard_config
from asgi_log_to_sqlite.demo import synthetic_log
from asgi_log_to_sqlite.metadata import table_columns

CHROMIUM = "/usr/bin/chromium"
# The most requested paths are served by route templates of the same name.
ROUTES = ("/", "/about", "/blog/", "/pricing")
# Dashboard query strings measured by default (a bare word is a period).
VIEWS = ("24h", "7d", "all", "30d", "period=7d&host=example.com")
CHARTS_DRAWN = """() => {
  const cards = [...document.querySelectorAll('.dashboard-card-chart')];
  return cards.length > 0 && cards.every(card =>
    card.querySelector('.mark-rect path, .mark-line path, .mark-symbol path'));
}"""


def generate(path: Path, rows: int) -> None:
    synthetic_log(path, rows, end=time.time(), days=7, routes=ROUTES)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    datasette = Path(sys.executable).parent / "datasette"
    process = subprocess.Popen(
        [str(datasette), "serve", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    raise SystemExit("datasette did not start")


def run_chart(base: str, database: str, query: str, view: dict[str, str]) -> tuple[float, str]:
    """Seconds and rows (or the error) of one chart query, as dashboards.js fetches it."""
    from datasette_dashboards import replace_opts_in_query

    sql = replace_opts_in_query(query, view)
    url = f"{base}/{database}.json?" + urllib.parse.urlencode(
        {"sql": sql, **view, "_shape": "objects"}
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        took = time.perf_counter() - started
        reason = re.sub(r"<[^>]+>", "", json.loads(error.read()).get("error") or "").strip()
        return took, f"failed: HTTP {error.code}: {reason.splitlines()[0] if reason else ''}"
    rows = json.loads(body)["rows"]
    counted = sorted({row.get("counted") for row in rows if row.get("counted")})
    return time.perf_counter() - started, f"{len(rows)} rows from {', '.join(counted)}"


def time_charts(
    base: str, config: dict, view: dict[str, str], repeat: int
) -> list[tuple[str, float, str]]:
    """Median seconds of each chart's query, and its rows (or the first failure)."""
    results = []
    for slug, chart in config["charts"].items():
        times, rows = [], None
        for _ in range(repeat):
            took, answer = run_chart(base, chart["db"], chart["query"], view)
            times.append(took)
            if rows is None or answer.startswith("failed"):
                rows = answer
        results.append((slug, statistics.median(times), rows or ""))
    return results


def time_dashboard(base: str, slug: str, query: str, repeat: int,
                   screenshot: str | None) -> list[float]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    times = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"],
        )
        try:
            for i in range(repeat + 1):  # the first load warms the browser's cache: not counted
                page = context.new_page()
                page.set_viewport_size({"width": 1400, "height": 1000})
                started = time.perf_counter()
                page.goto(f"{base}/-/dashboards/{slug}?{query}")
                try:
                    page.wait_for_function(CHARTS_DRAWN, timeout=30_000, polling=20)
                    took = time.perf_counter() - started
                except PlaywrightTimeout:  # a chart whose query failed is never drawn
                    took = float("inf")
                if i:
                    times.append(took)
                if screenshot and i == repeat:
                    page.screenshot(path=screenshot, full_page=True)
                page.close()
        finally:
            context.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", help="write the generated log here and keep it")
    parser.add_argument("--screenshot", help="save a screenshot of the default dashboard here")
    parser.add_argument("--view", action="append",
                        help="the dashboard's query string, e.g. 7d&status=5xx (repeatable; "
                        f"default: {', '.join(VIEWS)})")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.keep or Path(folder) / "log.db")
        if not path.exists():
            started = time.perf_counter()
            generate(path, args.rows)
            print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
        conn = sqlite3.connect(path)
        config = dashboard_config(path.stem, table_columns(conn))
        total = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        newest = conn.execute("SELECT max(start) FROM requests").fetchone()[0]
        day = conn.execute("SELECT count(*) FROM requests WHERE start >= ?",
                           (int(newest) + 1 - 86400,)).fetchone()[0]
        rolled = dict(conn.execute("SELECT period, count(*) FROM rollups GROUP BY period"))
        latency = conn.execute("SELECT count(*) FROM rollup_latency").fetchone()[0]
        conn.close()
        print(f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print(f"log: {total:,} rows, {os.path.getsize(path) / 1e6:.0f} MB; "
              f"last 24 hours: {day:,} rows; rollups: {rolled.get(3600, 0):,} hourly, "
              f"{rolled.get(86400, 0):,} daily, {latency:,} histogram counts")
        process, base = serve(path)
        try:
            for query in args.view or VIEWS:
                query = query if "=" in query.split("&")[0] else f"period={query}"
                view = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
                print(f"\n{query}: each chart query over HTTP, median of {args.repeat}")
                results = time_charts(base, config, view, args.repeat)
                for slug, took, rows in results:
                    print(f"  {slug:18s} {took * 1000:7.0f} ms   {rows}")
                slowest = max(took for _, took, _ in results)
                print(f"  slowest query: {slowest * 1000:.0f} ms (target <= 500 ms)")
                if not os.path.exists(CHROMIUM):
                    print("  (no /usr/bin/chromium: dashboard load not measured)")
                    continue
                shot = args.screenshot if query == "period=24h" else None
                loads = time_dashboard(base, f"traffic-{path.stem}", query, args.repeat, shot)
                print(f"  dashboard drawn in headless Chromium: median "
                      f"{statistics.median(loads):.2f} s of {len(loads)} loads "
                      f"(min {min(loads):.2f}, max {max(loads):.2f}; target <= 2 s; "
                      "inf: a chart was not drawn within 30 s)")
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


if __name__ == "__main__":
    main()
