"""The HTML report opened in a real headless Chromium: no console errors, charts drawn, no network,
readable at phone and desktop widths. Screenshots are kept under test-artifacts/."""

from __future__ import annotations

import os
import re
import sqlite3
import time

import pytest
from support import CHROMIUM, ROOT, chromium

from asgi_log_to_sqlite.demo import synthetic_log
from asgi_log_to_sqlite.report import build_report, render_html

ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs /usr/bin/chromium")


LONG_PATHS = [
    "/images/web/2009/banner-for-the-spring-campaign-with-a-very-long-name.png",
    "/images/web/2009/banner-for-the-spring-campaign-with-a-very-long-name-2.png",
    "/api/v1/organisations/acme-corporation/projects/website-relaunch/issues?page=2",
]


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("html")
    log = folder / "log.db"
    now = time.time()
    synthetic_log(log, 5000, end=now, days=3, seed=3)
    conn = sqlite3.connect(log)
    with conn:  # long paths among the top ones, as a site's own images are
        for i, name in enumerate(LONG_PATHS):
            conn.execute("INSERT INTO paths (name) VALUES (?)", (name,))
            pid = conn.execute("SELECT max(id) FROM paths").fetchone()[0]
            conn.executemany(
                "INSERT INTO requests (start, method, path, http_status, duration, body_size) "
                "VALUES (?, 'GET', ?, 200, 0.01, 10)", [(now - j, pid) for j in range(900 - i)])
    conn.close()
    page = folder / "report.html"
    page.write_text(render_html(build_report([log], compare="previous")), encoding="utf-8")
    return page


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


def _open(browser, report_file, width, height):
    page = browser.new_page()
    page.set_viewport_size({"width": width, "height": height})
    problems: list[str] = []
    requests: list[str] = []
    page.on("console",
            lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report_file.as_uri())
    page.wait_for_load_state("load")
    return page, problems, requests


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("name", "width", "height"), [("desktop", 1280, 900), ("phone", 390, 844)])
def test_html_report_renders_charts_without_errors(browser, report_file, name, width, height):
    page, problems, requests = _open(browser, report_file, width, height)
    try:
        assert problems == []
        # Self-contained: the only thing loaded is the file itself.
        assert [u for u in requests if not u.startswith("file:")] == []
        # Charts are drawn: the timeline has a column per bucket, bar charts have bars.
        assert page.locator("#timeline svg rect.mark").count() >= 24
        assert page.locator("#hours svg rect.mark").count() == 24
        assert page.locator("#status .bar").count() >= 4
        assert page.locator("#browsers .bar").count() >= 3
        assert page.locator("#bots .bar").count() >= 1
        assert page.locator("#comparison tr").count() >= 10
        # Every bar label is whole: inside its card, nothing clipped or hidden.
        clipped = page.evaluate("""() => [...document.querySelectorAll('.bar-label')].filter(el => {
            const box = el.getBoundingClientRect();
            const card = el.closest('section').getBoundingClientRect();
            return el.scrollWidth > el.clientWidth + 1 || box.left < card.left - 0.5
                || box.right > card.right + 0.5;
        }).map(el => el.textContent)""")
        assert clipped == []
        labels = page.locator("#paths .bar-label").all_inner_texts()
        assert any(text.replace("\n", "") == LONG_PATHS[0] for text in labels)
        # Long paths in tables break after separators, never inside a word.
        style = page.evaluate(
            "() => { const s = getComputedStyle(document.querySelector('#paths td'));"
            " return [s.overflowWrap, s.wordBreak]; }")
        assert style == ["break-word", "normal"]
        box = page.locator("#timeline svg").bounding_box()
        assert box is not None and box["height"] > 50 and box["width"] > width * 0.6
        # Nothing wider than the screen: a phone scrolls down, not sideways.
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= width + 1
        assert "requests" in page.locator("#summary").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"html-report-{name}.png"), full_page=True)
        assert (ARTIFACTS / f"html-report-{name}.png").stat().st_size > 10_000
    finally:
        page.close()


def test_html_report_is_one_file_without_external_references(report_file):
    html = report_file.read_text(encoding="utf-8")
    # Referrers in the data are text; nothing is loaded from anywhere but the page itself.
    assert re.findall(r"""(?:src|href)\s*=\s*["'](?!data:|#)""", html) == []
    assert "@import" not in html
    assert "<script" not in html


def test_long_values_get_break_opportunities_after_separators(report_file):
    html = report_file.read_text(encoding="utf-8")
    assert "banner-<wbr>for-<wbr>the-<wbr>spring" in html
    assert "/<wbr>images/<wbr>web/<wbr>2009/<wbr>" in html
