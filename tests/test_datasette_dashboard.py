"""The traffic dashboard inside a real Datasette (0.65, driven through ``datasette.client``): one
for every log database, the same as ``asgi-log-to-sqlite metadata`` prints, the rows behind each
bar, and privacy: a dashboard is seen (even listed) only by those who may read its log."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from datasette.app import Datasette
from datasette_dashboards import replace_opts_in_query
from test_dashboard import DAY, NOW, ROUTES, make_known_log
from test_datasette_plugin import cookies, datasettes, plugin, run  # noqa: F401

from asgi_log_to_sqlite import datasette_plugin
from asgi_log_to_sqlite.dashboard import DASHBOARDS_PLUGIN
from asgi_log_to_sqlite.datasette_dashboard import dashboards_can_run
from asgi_log_to_sqlite.demo import synthetic_log
from asgi_log_to_sqlite.metadata import metadata_for_file

pytestmark = pytest.mark.skipif(
    not hasattr(Datasette, "permission_allowed"),
    reason="datasette-dashboards 0.8 needs Datasette.permission_allowed (Datasette 0.65)",
)


@pytest.fixture
def known_log(tmp_path):
    path = str(tmp_path / "log.db")
    make_known_log(path)
    return path


def get(ds: Datasette, path: str, actor: str | None = None, **params):
    return run(ds.client.get(path, params=params or None, cookies=cookies(ds, actor)))


def chart_data(ds: Datasette, chart: dict, actor: str | None = None, **filters) -> list[dict]:
    """What dashboards.js fetches for a chart: ``/DB.json?sql=...&FILTERS&_shape=objects``."""
    sql = replace_opts_in_query(chart["query"], filters)
    response = get(ds, f"/{chart['db']}.json", actor, sql=sql, _shape="objects", **filters)
    assert response.status_code == 200, response.text[:500]
    return response.json()["rows"]


def ours(ds: Datasette) -> dict:
    return ds.plugin_config(DASHBOARDS_PLUGIN) or {}


def test_every_log_database_gets_a_dashboard(datasettes, data_db, known_log, tmp_path):  # noqa: F811
    other = str(tmp_path / "other.db")
    make_known_log(other)
    ds = datasettes([data_db, known_log, other])
    assert dashboards_can_run(ds)
    assert set(ours(ds)) == {"traffic-log", "traffic-other"}
    listing = get(ds, "/-/dashboards").text
    assert "Traffic: log" in listing and "Traffic: other" in listing and "data" not in re.findall(
        r'href="/-/dashboards/([^"]+)"', listing
    )


def test_the_plugin_serves_what_the_metadata_command_prints(datasettes, known_log):  # noqa: F811
    ds = datasettes([known_log])
    printed = metadata_for_file(known_log)["plugins"][DASHBOARDS_PLUGIN]
    assert ours(ds) == printed


def test_the_dashboard_and_chart_pages(datasettes, known_log):  # noqa: F811
    ds = datasettes([known_log])
    first = get(ds, "/-/dashboards/traffic-log")
    assert first.status_code == 302 and first.headers["location"].endswith("?period=24h")
    page = get(ds, "/-/dashboards/traffic-log", period="24h")
    assert page.status_code == 200
    for chart in ours(ds)["traffic-log"]["charts"].values():
        assert chart["title"] in page.text
    assert "b.example" in page.text  # the host filter lists the log's hosts
    chart_page = get(ds, "/-/dashboards/traffic-log/latency", period="24h")
    assert chart_page.status_code == 200 and "View and edit SQL" in chart_page.text


@pytest.mark.parametrize(
    "filters",
    [{"period": "all"}, {"period": "24h", "status": "5xx"},
     {"period": "all", "host": "a.example", "method": "GET"}, {"period": "24h", "route": "/"}],
)
def test_each_bar_opens_the_rows_behind_it(datasettes, known_log, filters):  # noqa: F811
    ds = datasettes([known_log])
    charts = ours(ds)["traffic-log"]["charts"]
    checked = 0
    for slug, chart in charts.items():
        for row in chart_data(ds, chart, **filters):
            if row["rows_url"] is None:
                continue
            assert row["rows_url"].startswith("/log/requests?")
            table = get(ds, row["rows_url"].replace("/log/requests?", "/log/requests.json?", 1))
            assert table.status_code == 200
            count = table.json()["filtered_table_rows_count"]
            if "requests" in row:
                assert count == row["requests"], (slug, row)
            else:  # bytes sent: the rows' bytes add up to the bar
                rows = get(ds, row["rows_url"].replace("/log/requests?", "/log/requests.json?", 1)
                           + "&_shape=array&_size=max")
                assert sum(r["body_size"] or 0 for r in rows.json()) == row["bytes_sent"]
            checked += 1
    assert checked >= 5


def test_filters_through_datasette(datasettes, known_log):  # noqa: F811
    ds = datasettes([known_log])
    chart = ours(ds)["traffic-log"]["charts"]["requests"]
    assert sum(r["requests"] for r in chart_data(ds, chart, period="24h")) == 21
    assert sum(r["requests"] for r in chart_data(ds, chart, period="all")) == 22
    assert sum(r["requests"] for r in chart_data(ds, chart, host="b.example")) == 4
    day = chart_data(ds, chart, since="2024-01-01", until="2024-01-01")
    assert len(day) == 24  # every hour of the day, the empty ones too
    assert [r["time"] for r in day if r["requests"]] == [
        "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z"
    ]
    assert chart_data(ds, chart, period="all")[0]["bucket"] == DAY - 3 * 86400


# ---- long ranges ---------------------------------------------------------------------------
@pytest.fixture
def rolled_log(tmp_path):
    """6,000 requests over 10 days with their rollups, as the writer keeps them."""
    path = str(tmp_path / "rolled.db")
    synthetic_log(path, 6000, end=NOW, days=10, seed=3, routes=ROUTES)
    return path


def counts(path: str, sql: str) -> dict:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute(sql).fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize("period", ["7d", "all"])
def test_long_ranges_come_from_the_rollups_and_add_up_to_the_rows(
    datasettes, rolled_log, period  # noqa: F811
):
    ds = datasettes([rolled_log])
    charts = ours(ds)["traffic-rolled"]["charts"]
    conn = sqlite3.connect(rolled_log)
    newest = conn.execute("SELECT CAST(max(start) AS INTEGER) + 1 FROM requests").fetchone()[0]
    conn.close()
    lo = newest - 7 * 86400 if period == "7d" else 0
    in_range = f"FROM requests WHERE start >= {lo}"
    requests = chart_data(ds, charts["requests"], period=period)
    assert {r["counted"] for r in requests} & {"hourly rollups", "daily and hourly rollups"}
    assert sum(r["requests"] for r in requests) == counts(
        rolled_log, f"SELECT 1, count(*) {in_range}")[1]
    classes: dict[str, int] = {}
    for row in chart_data(ds, charts["status_classes"], period=period):
        classes[row["status_class"]] = classes.get(row["status_class"], 0) + row["requests"]
    assert classes == counts(
        rolled_log, f"SELECT substr(http_status, 1, 1) || 'xx', count(*) {in_range} GROUP BY 1")
    errors: dict[str, int] = {}
    for row in chart_data(ds, charts["errors"], period=period):
        errors[row["kind"]] = errors.get(row["kind"], 0) + row["requests"]
    assert errors == counts(
        rolled_log, f"SELECT CASE WHEN http_status = 404 THEN '404' ELSE '5xx' END, count(*) "
        f"{in_range} AND (http_status = 404 OR http_status >= 500) GROUP BY 1")
    sent = sum(r["bytes_sent"] for r in chart_data(ds, charts["bytes_sent"], period=period))
    assert sent == counts(rolled_log, f"SELECT 1, sum(body_size) {in_range}")[1]
    routes = {r["route"]: r["requests"] for r in chart_data(ds, charts["top_routes"],
                                                               period=period)}
    assert routes == counts(
        rolled_log, "SELECT routes.name, count(*) FROM requests JOIN routes ON routes.id = route "
        f"WHERE start >= {lo} GROUP BY 1")
    latency = chart_data(ds, charts["latency"], period=period)
    assert sum(r["requests"] for r in latency) == counts(
        rolled_log, f"SELECT 1, count(duration) {in_range}")[1]


@pytest.mark.slow  # one table request per bar: about 10 s
def test_each_bar_of_a_long_range_opens_the_rows_behind_it(datasettes, rolled_log):  # noqa: F811
    ds = datasettes([rolled_log])
    charts = ours(ds)["traffic-rolled"]["charts"]
    checked = set()
    for slug in ("requests", "status_classes", "errors", "top_routes"):
        for row in chart_data(ds, charts[slug], period="7d", status="4xx"):
            url = row["rows_url"].replace("/rolled/requests?", "/rolled/requests.json?", 1)
            table = get(ds, url)
            assert table.status_code == 200
            assert table.json()["filtered_table_rows_count"] == row["requests"], (slug, row)
            checked.add(row["counted"])
    assert "hourly rollups" in checked


def test_the_users_own_dashboards_win(datasettes, known_log):  # noqa: F811
    mine = {"title": "Mine", "charts": {}}
    theirs = {"title": "Another", "charts": {}}
    ds = datasettes([known_log], metadata={"plugins": {DASHBOARDS_PLUGIN: {
        "traffic-log": mine, "another": theirs
    }}})
    assert ours(ds) == {"traffic-log": mine, "another": theirs}
    listing = get(ds, "/-/dashboards").text
    assert "Mine" in listing and "Another" in listing and "Traffic: log" not in listing


# ---- privacy -----------------------------------------------------------------------------------
DASHBOARD_URLS = [
    "/-/dashboards/traffic-log",
    "/-/dashboards/traffic-log?period=24h",
    "/-/dashboards/traffic-log/embed?period=24h",
    "/-/dashboards/traffic-log/requests?period=24h",
    "/-/dashboards/traffic-log/top_paths/embed",
]


def assert_hidden(ds: Datasette, actor: str | None) -> None:
    listing = get(ds, "/-/dashboards", actor)
    assert listing.status_code in (200, 403)
    assert "traffic-log" not in listing.text and "Traffic: log" not in listing.text
    for url in DASHBOARD_URLS:
        response = get(ds, url, actor)
        assert response.status_code == 403, (actor, url)
        assert "a.example" not in response.text and "/api" not in response.text
    chart = ours(ds)["traffic-log"]["charts"]["top_paths"]
    data = get(ds, "/log.json", actor, sql=replace_opts_in_query(chart["query"], {}))
    assert data.status_code == 403


def assert_shown(ds: Datasette, actor: str | None) -> None:
    assert "Traffic: log" in get(ds, "/-/dashboards", actor).text
    for url in DASHBOARD_URLS:
        assert get(ds, url, actor).status_code in (200, 302), (actor, url)
    chart = ours(ds)["traffic-log"]["charts"]["top_paths"]
    assert chart_data(ds, chart, actor, period="all")[0]["path"] == "/"


def test_the_dashboard_of_the_private_log_is_private(datasettes, data_db, known_log):  # noqa: F811
    ds = datasettes(
        [data_db, known_log],
        metadata=plugin(file=known_log, allow=["alice"], flush_interval=0.05),
    )
    for actor in (None, "bob"):
        assert_hidden(ds, actor)
    for actor in ("root", "alice"):
        assert_shown(ds, actor)
    state = datasette_plugin._states.get(ds)
    assert state is not None and state.middleware is not None


def test_a_log_kept_private_by_datasette_itself(datasettes, data_db, known_log):  # noqa: F811
    private = {"databases": {"log": {"allow": {"id": "root"}}}}
    ds = datasettes([data_db, known_log], metadata=private)
    assert_hidden(ds, None)
    assert_hidden(ds, "bob")
    assert_shown(ds, "root")
    assert get(ds, "/data/items.json").status_code == 200  # the rest stays public


def test_a_private_instance_keeps_its_list_of_dashboards(datasettes, known_log):  # noqa: F811
    ds = datasettes([known_log], metadata={"allow": {"id": "root"}})
    assert get(ds, "/-/dashboards").status_code == 403
    assert "Traffic: log" in get(ds, "/-/dashboards", "root").text


def test_the_dashboard_is_opened_up_with_the_log(datasettes, known_log):  # noqa: F811
    ds = datasettes([known_log], metadata=plugin(file=known_log, allow=True))
    assert_shown(ds, None)


def test_a_database_that_stops_being_served_loses_its_dashboard(datasettes, known_log):  # noqa: F811
    ds = datasettes([known_log])
    assert "traffic-log" in ours(ds)
    ds.remove_database("log")
    assert "traffic-log" not in ours(ds)
    assert json.loads(json.dumps(ours(ds))) == ours(ds)


def test_a_damaged_log_file_breaks_no_page(datasettes, known_log, tmp_path):  # noqa: F811
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database" * 100)
    ds = datasettes([known_log])
    ds.add_database(
        __import__("datasette.database", fromlist=["Database"]).Database(ds, path=str(broken)),
        name="broken",
    )
    assert set(ours(ds)) == {"traffic-log"}
    assert get(ds, "/-/dashboards").status_code == 200
    conn = sqlite3.connect(known_log)
    assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 22
