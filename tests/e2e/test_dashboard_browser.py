"""The traffic dashboard in a real headless Chromium, served by a real ``datasette serve``: every
chart drawn from a generated log with no console error and nothing fetched from outside this
machine, a filter that changes the charts, and a bar that opens the rows behind it.

Datasette 1.0 is left out: datasette-dashboards 0.8 cannot serve a page there (it calls
``Datasette.permission_allowed()``, which the 1.0 pre-releases removed), so the plugin configures
no dashboard on 1.0. A screenshot is kept under test-artifacts/."""

from __future__ import annotations

import os
import re
import sqlite3
import time

import pytest
from support import BIN, CHROMIUM, ROOT, Server, chromium, free_port

from asgi_log_to_sqlite.demo import synthetic_log

ARTIFACTS = ROOT / "test-artifacts"
CHARTS_DRAWN = """() => {
  const cards = [...document.querySelectorAll('.dashboard-card-chart')];
  return cards.length > 0 && cards.every(card => {
    const drawn = card.querySelector('svg, canvas');
    const box = drawn && drawn.getBoundingClientRect();
    const marks = card.querySelectorAll('.mark-rect path, .mark-line path, .mark-symbol path');
    return box && box.width > 50 && box.height > 50 && marks.length > 0;
  });
}"""

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs /usr/bin/chromium"),
    pytest.mark.timeout(180),
]


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """Two days of traffic (20,000 requests) and their rollups, routes for the most requested
    paths."""
    path = tmp_path_factory.mktemp("dashboard") / "log.db"
    synthetic_log(path, 20_000, end=time.time(), days=2, seed=7, routes=("/", "/about", "/blog/"))
    return path


@pytest.fixture(scope="module")
def server(log):
    port = free_port()
    args = [str(BIN / "datasette"), "serve", str(log), "--host", "127.0.0.1", "--port", str(port)]
    with Server(args, port, cwd=log.parent, log=log.parent / "datasette.out") as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture
def page(browser):
    page = browser.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.problems = []  # console errors and warnings, uncaught exceptions
    page.fetched = []
    page.on("console", lambda m: page.problems.append(m.text)
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.on("request", lambda r: page.fetched.append(r.url))
    yield page
    page.close()


def bar_values(page, chart: str) -> list[int]:
    """The request counts of a chart's bars, read from their accessible labels."""
    labels = page.eval_on_selector_all(
        f"#chart-{chart} .mark-rect path", "paths => paths.map(p => p.getAttribute('aria-label'))"
    )
    return [int(re.search(r"requests: ([\d,]+)", label).group(1).replace(",", ""))
            for label in labels]


def count(log, sql: str) -> int:
    conn = sqlite3.connect(log)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def test_every_chart_renders_offline(server, page, log):
    page.goto(f"{server.url}/-/dashboards/traffic-log")
    assert page.url.endswith("/-/dashboards/traffic-log?period=24h")
    page.wait_for_function(CHARTS_DRAWN, timeout=60_000)
    page.wait_for_load_state("networkidle")
    cards = page.locator(".dashboard-card-chart")
    assert cards.count() == 10
    assert page.problems == []
    # Vega, Vega-Lite and vega-embed come from the installed package, like everything else.
    assert [url for url in page.fetched if not url.startswith(server.url)] == []
    assert any("/-/static-plugins/datasette_dashboards/vega-lite.min.js" in u for u in page.fetched)
    # The last 24 hours of the log, every request of them in the bars.
    newest = count(log, "SELECT CAST(max(start) AS INTEGER) + 1 FROM requests")
    in_range = count(log, f"SELECT count(*) FROM requests WHERE start >= {newest - 86400}")
    assert sum(bar_values(page, "requests")) == in_range
    for chart in ("top_paths", "top_routes", "top_user_agents", "status_classes"):
        assert bar_values(page, chart), chart
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


def labels(page, chart: str) -> list[str]:
    """The accessible labels of a chart's bars and points (legend symbols have none)."""
    found = page.eval_on_selector_all(
        f"#chart-{chart} .mark-rect path, #chart-{chart} .mark-symbol path",
        "paths => paths.map(p => p.getAttribute('aria-label'))",
    )
    return [label for label in found if label]


def stacked_values(page, chart: str) -> list[int]:
    """The request counts of stacked bars: each bar's label gives where it ends and starts."""
    def number(name: str, label: str) -> int:
        return int(re.search(rf"{name}: ([\d,]+)", label).group(1).replace(",", ""))

    return [number("requests", label) - number("stack_start", label)
            for label in labels(page, chart)]


def test_a_long_range_is_drawn_from_the_rollups_with_the_rows_totals(server, page, log):
    """``7d`` holds the whole log (two days): its charts read the hourly rollups, except the
    part-hours at its ends, and add up to what the rows hold."""
    page.goto(f"{server.url}/-/dashboards/traffic-log?period=7d")
    page.wait_for_function(CHARTS_DRAWN, timeout=60_000)
    page.wait_for_load_state("networkidle")
    assert page.locator(".dashboard-card-chart").count() == 10
    assert page.problems == []
    total = count(log, "SELECT count(*) FROM requests")
    assert sum(bar_values(page, "requests")) == total
    assert sum(stacked_values(page, "status_classes")) == total
    errors = count(log, "SELECT count(*) FROM requests WHERE http_status = 404 "
                        "OR http_status BETWEEN 500 AND 599")
    assert sum(stacked_values(page, "errors")) == errors
    routed = count(log, "SELECT count(*) FROM requests WHERE route IS NOT NULL")
    assert sum(bar_values(page, "top_routes")) == routed
    for chart in ("requests", "status_classes", "latency", "bytes_sent", "errors"):
        said = {re.search(r"counted from: ([^;]+)", label).group(1)
                for label in labels(page, chart)}
        assert "hourly rollups" in said and said <= {"hourly rollups", "every request"}, chart
    assert all("counted from: daily and hourly rollups" in label
               for label in labels(page, "top_routes"))
    # Rankings of what rollups do not keep come from the rows: 20,000 of them, all counted.
    assert all("counted from: every request" in label for label in labels(page, "top_paths"))


def test_a_filter_changes_the_charts(server, page, log):
    page.goto(f"{server.url}/-/dashboards/traffic-log?period=24h")
    page.wait_for_function(CHARTS_DRAWN, timeout=60_000)
    before = sum(bar_values(page, "requests"))
    page.select_option("select#status", "5xx")
    page.click("input[type=submit][value=Apply]")
    page.wait_for_url(re.compile(r".*status=5xx.*"), timeout=30_000)
    page.wait_for_function(CHARTS_DRAWN, timeout=60_000)
    after = sum(bar_values(page, "requests"))
    newest = count(log, "SELECT CAST(max(start) AS INTEGER) + 1 FROM requests")
    server_errors = count(
        log,
        f"SELECT count(*) FROM requests WHERE start >= {newest - 86400} AND http_status >= 500",
    )
    assert 0 < after == server_errors < before
    classes = page.eval_on_selector_all(
        "#chart-status_classes .mark-rect path",
        "paths => paths.map(p => p.getAttribute('aria-label'))",
    )
    assert classes and all("status: 5xx" in label for label in classes)
    assert page.problems == []


def test_a_bar_opens_the_rows_behind_it(server, page):
    page.goto(f"{server.url}/-/dashboards/traffic-log?period=7d")
    page.wait_for_function(CHARTS_DRAWN, timeout=60_000)
    bars = page.locator("#chart-top_paths .mark-rect path")
    label = bars.first.get_attribute("aria-label")
    requests = int(re.search(r"requests: ([\d,]+)", label).group(1).replace(",", ""))
    path = re.search(r"path: ([^;]+)", label).group(1)
    bars.first.click()
    page.wait_for_url(re.compile(r".*/log/requests\?.*"), timeout=30_000)
    heading = page.locator("h3").first.inner_text()
    assert heading.startswith((f"{requests:,} rows where", f"{requests} rows where")), heading
    assert path in page.locator("table.rows-and-columns").inner_text()
