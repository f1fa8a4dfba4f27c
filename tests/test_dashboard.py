"""The traffic dashboard's configuration: every chart's numbers on a log whose every row is known,
each filter, the time range, the address of the rows behind each bar, and the time index used by
every query (EXPLAIN QUERY PLAN). Queries run as datasette-dashboards and Datasette run them: the
``[[ ... ]]`` blocks of empty filters dropped, missing parameters bound as ``''``."""

from __future__ import annotations

import itertools
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from datasette.utils import tilde_encode
from datasette_dashboards import replace_opts_in_query

from asgi_log_to_sqlite import dashboard
from asgi_log_to_sqlite.dashboard import (
    CHARTS,
    dashboard_config,
    dashboard_slug,
    dashboards_config,
    table_path,
)
from asgi_log_to_sqlite.metadata import table_columns
from asgi_log_to_sqlite.schema import connect, ensure_schema

DAY = 1704067200  # 2024-01-01T00:00:00Z
SEED_DB = Path(__file__).parent / "fixtures" / "seed-0.1.1.db"


def lookup(conn: sqlite3.Connection, table: str, name: str | None) -> int | None:
    if name is None:
        return None
    conn.execute(f"INSERT OR IGNORE INTO {table} (name) VALUES (?)", (name,))
    return conn.execute(f"SELECT id FROM {table} WHERE name = ?", (name,)).fetchone()[0]


def add(conn: sqlite3.Connection, start: float, method: str, path: str, status: int | None,
        duration: float, body_size: int, host: str = "a.example", route: str | None = None,
        referer: str | None = None, user_agent: str = "Mozilla/5.0", **more) -> None:
    values = {
        "start": start, "method": method, "path": lookup(conn, "paths", path),
        "http_status": status, "duration": duration, "body_size": body_size,
        "host": lookup(conn, "hosts", host), "route": lookup(conn, "routes", route),
        "referer": lookup(conn, "referers", referer),
        "user_agent": lookup(conn, "user_agents", user_agent), **more,
    }
    conn.execute(
        f"INSERT INTO requests ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
        list(values.values()),
    )


def make_known_log(path: str) -> None:
    """21 requests in the first three hours of 2024-01-01, and one three days before."""
    conn = connect(path)
    ensure_schema(conn)
    conn.execute("BEGIN")
    for i in range(1, 11):  # 00:00 hour: GET / 200, 1..10 ms, from a search engine
        add(conn, DAY + 60 * i, "GET", "/", 200, i / 1000, 100, route="/",
            referer="https://search.example/")
    for i in range(4):  # 01:00 hour: POST /api 500 on b.example
        add(conn, DAY + 3600 + i, "POST", "/api", 500, 0.1, 10, host="b.example", route="/api")
    for i in range(3):  # 01:00 hour: 404s
        add(conn, DAY + 3700 + i, "GET", "/missing", 404, 0.002, 50)
    for i in range(2):  # 02:00 hour: redirects
        add(conn, DAY + 7200 + i, "GET", "/old", 301, 0.003, 0)
    add(conn, DAY + 7300, "GET", "/gone", None, 0.5, 0)  # no status: the client went away
    add(conn, DAY + 7400.5, "GET", "/", 200, 0.004, 100, route="/")
    add(conn, DAY - 3 * 86400, "GET", "/ancient", 200, 0.001, 5)  # outside the default 24 h
    conn.execute("COMMIT")
    conn.close()


@pytest.fixture
def log(tmp_path):
    path = str(tmp_path / "log.db")
    make_known_log(path)
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    yield conn
    conn.close()


def config_of(conn: sqlite3.Connection, name: str = "log") -> dict:
    found = dashboard_config(name, table_columns(conn))
    assert found is not None
    return found


def run(conn: sqlite3.Connection, chart: dict, **filters: str) -> list[dict]:
    """The chart's rows, as the browser gets them from ``/log.json?sql=...&FILTERS``."""
    sql = replace_opts_in_query(chart["query"], filters)
    params = {name: filters.get(name, "") for name in re.findall(r":(\w+)", sql)}
    return [dict(row) for row in conn.execute(sql, params)]


def chart_rows(conn, slug: str, **filters: str) -> list[dict]:
    return run(conn, config_of(conn)["charts"][slug], **filters)


# ---- shape -------------------------------------------------------------------------------------
def test_the_dashboard_of_a_log(log):
    config = config_of(log)
    assert config["title"] == "Traffic: log"
    # Every log has the instance column now (which host wrote the row): its filter is there.
    assert list(config["filters"]) == [
        "period", "since", "until", "host", "route", "status", "method", "instance"
    ]
    assert config["filters"]["period"]["default"] == "24h"
    assert config["filters"]["host"]["query"].startswith("SELECT name FROM hosts")
    assert list(config["charts"]) == [chart.slug for chart in CHARTS]
    placed = {slug for row in config["layout"] for slug in row} - {"."}
    assert placed == set(config["charts"])
    assert {len(row) for row in config["layout"]} == {2}
    assert config["layout"][0] == ["requests", "requests"]
    for slug, chart in config["charts"].items():
        assert chart["db"] == "log" and chart["library"] == "vega-lite" and chart["title"]
        assert chart["display"]["encoding"]["href"] == {"field": "rows_url"}, slug
        assert chart["display"]["$schema"].endswith("/vega-lite/v6.json")
        # datasette-dashboards' blocks: one parameter each, on one line
        for block in re.findall(r"\[\[.*?\]\]", chart["query"]):
            assert len(set(re.findall(r":(\w+)", block))) == 1, block


def test_slugs_and_addresses():
    assert dashboard_slug("log") == "traffic-log"
    assert dashboard_slug("my access log!") == "traffic-my-access-log"
    tables = {"requests": ["start", "path", "http_status", "duration"], "paths": ["id", "name"]}
    found = dashboards_config({"a b": tables, "a-b": tables, "other": {"t": ["x"]}})
    assert list(found) == ["traffic-a-b", "traffic-a-b-"]
    for name in ("log", "access log", "café", "a/b.c", "x~y"):
        assert table_path(name) == f"/{tilde_encode(name)}/requests"
    assert table_path("log", base_url="/prefix/") == "/prefix/log/requests"
    assert table_path("l\udcffg") == "/l~FFg/requests"  # a file name that is not UTF-8
    with_url = dashboard_config("log", tables, "/base/log/requests")
    assert "'/base/log/requests' ||" in with_url["charts"]["requests"]["query"]


# ---- the numbers -------------------------------------------------------------------------------
def test_requests_per_hour_over_the_last_24_hours_of_the_log(log):
    rows = chart_rows(log, "requests")
    hi = DAY + 7401  # just after the newest request, in whole seconds
    # Every hour of the range has its bar, the empty ones too; the first and last are partial.
    assert len(rows) == 25
    first = (rows[0]["time"], rows[0]["time_end"])
    assert first == ("2023-12-31T02:03:21Z", "2023-12-31T03:00:00Z")
    assert [(r["time"], r["requests"]) for r in rows if r["requests"]] == [
        ("2024-01-01T00:00:00Z", 10), ("2024-01-01T01:00:00Z", 7), ("2024-01-01T02:00:00Z", 4)
    ]
    assert rows[-3]["time_end"] == "2024-01-01T01:00:00Z"
    assert rows[-1]["time_end"] == "2024-01-01T02:03:21Z"
    assert rows[-3]["rows_url"] == (
        f"/log/requests?_sort_desc=start&start__gte={DAY}&start__lt={DAY + 3600}"
    )
    assert rows[-1]["rows_url"].endswith(f"start__gte={DAY + 7200}&start__lt={hi}")
    assert rows[0]["rows_url"].endswith(f"start__gte={hi - 86400}&start__lt={DAY - 75600}")


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"period": "all"}, {DAY - 3 * 86400: 1, DAY: 10, DAY + 3600: 7, DAY + 7200: 4}),
        ({"period": "7d"}, {DAY - 3 * 86400: 1, DAY: 10, DAY + 3600: 7, DAY + 7200: 4}),
        ({"period": "1h"}, {DAY + 7200: 2, DAY + 7260: 1, DAY + 7380: 1}),
        ({"since": "2024-01-01", "until": "2024-01-01"}, {DAY: 10, DAY + 3600: 7, DAY + 7200: 4}),
        ({"since": "2024-01-01"}, {DAY + 60 * i: 1 for i in range(1, 11)}
         | {DAY + 3600: 4, DAY + 3660: 3, DAY + 7200: 2, DAY + 7260: 1, DAY + 7380: 1}),
        ({"since": "2023-12-29", "until": "2023-12-29"}, {DAY - 3 * 86400: 1}),
        ({"until": "2023-12-31"}, {}),
        ({"period": "30d", "until": "2024-01-01"}, {DAY - 3 * 86400: 1, DAY: 21}),
    ],
)
def test_the_time_range(log, filters, expected):
    rows = chart_rows(log, "requests", **filters)
    counted = {r["bucket"]: r["requests"] for r in rows if r["requests"]}
    assert counted == {bucket: n for bucket, n in expected.items() if n}
    # Buckets: a minute up to 3 hours (since 00:00 is 2 hours here), an hour up to 7 days...
    width = 60 if filters in ({"period": "1h"}, {"since": "2024-01-01"}) else 3600
    width = 86400 if filters.get("period") == "30d" else width
    for row in rows:
        assert row["bucket"] % width == 0


def test_status_classes_and_errors(log):
    rows = chart_rows(log, "status_classes")
    assert all(type(r["requests"]) is int for r in rows)
    classes = {(r["time"][11:13], r["status_class"]): r["requests"] for r in rows}
    assert classes == {("00", "2xx"): 10, ("01", "5xx"): 4, ("01", "4xx"): 3,
                       ("02", "3xx"): 2, ("02", "other"): 1, ("02", "2xx"): 1}
    errors = [(r["time"][11:13], r["kind"], r["requests"]) for r in chart_rows(log, "errors")]
    assert errors == [("01", "404", 3), ("01", "5xx", 4)]
    paths = [(r["path"], r["kind"], r["requests"]) for r in chart_rows(log, "error_paths")]
    assert paths == [("/api", "5xx", 4), ("/missing", "404", 3)]


def test_latency_percentiles_in_milliseconds(log):
    rows = {r["time"][11:13]: r for r in chart_rows(log, "latency")}
    # 00:00: 1..10 ms; nearest rank: p50 is the 5th, p95 and p99 the 10th
    assert (rows["00"]["p50_ms"], rows["00"]["p95_ms"], rows["00"]["p99_ms"]) == (5.0, 10.0, 10.0)
    assert rows["00"]["requests"] == 10
    assert (rows["01"]["p50_ms"], rows["01"]["p99_ms"]) == (100.0, 100.0)
    assert rows["02"]["p99_ms"] == 500.0
    assert "_sort_desc=duration" in rows["00"]["rows_url"]


def test_latency_of_a_large_range_comes_from_an_even_sample(log, monkeypatch):
    monkeypatch.setattr(dashboard, "SAMPLE", 5)  # 21 rows: every 4th row
    rows = chart_rows(log, "latency")
    assert sum(r["requests"] for r in rows) == len(
        log.execute(f"SELECT 1 FROM requests WHERE start >= {DAY} AND rowid % 4 = 0").fetchall()
    )


def test_bytes_sent(log):
    rows = [r for r in chart_rows(log, "bytes_sent", period="all") if r["bytes_sent"]]
    assert [(r["bytes_sent"], r["sent"]) for r in rows] == [
        (5, "5 bytes"), (1000, "1000 bytes"), (190, "190 bytes"), (100, "100 bytes")
    ]


def test_top_charts(log):
    assert [(r["path"], r["requests"]) for r in chart_rows(log, "top_paths")] == [
        ("/", 11), ("/api", 4), ("/missing", 3), ("/old", 2), ("/gone", 1)
    ]
    assert [(r["route"], r["requests"]) for r in chart_rows(log, "top_routes")] == [
        ("/", 11), ("/api", 4)
    ]
    assert [(r["referrer"], r["requests"]) for r in chart_rows(log, "top_referrers")] == [
        ("https://search.example/", 10)
    ]
    assert [(r["user_agent"], r["requests"]) for r in chart_rows(log, "top_user_agents")] == [
        ("Mozilla/5.0", 21)
    ]
    path_id = log.execute("SELECT id FROM paths WHERE name = '/'").fetchone()[0]
    top = chart_rows(log, "top_paths")[0]
    assert top["rows_url"].endswith(f"&path={path_id}")


def test_a_ranking_with_nothing_to_rank_says_so(log):
    rows = chart_rows(log, "top_referrers", status="5xx")
    assert rows == [{"referrer": "(nothing in this range)", "requests": 0, "counted": None,
                     "rows_url": None}]
    assert chart_rows(log, "error_paths", status="2xx")[0]["path"] == "(nothing in this range)"


@pytest.mark.parametrize(
    ("filters", "total", "link"),
    [
        ({"status": "5xx"}, 4, "&http_status__gte=500&http_status__lt=600"),
        ({"status": "2xx"}, 11, "&http_status__gte=200&http_status__lt=300"),
        ({"method": "POST"}, 4, "&method=POST"),
        ({"host": "b.example"}, 4, "&host=2"),
        ({"route": "/"}, 11, "&route=1"),
        ({"host": "a.example", "status": "4xx"}, 3, "&host=1&http_status__gte=400"),
        ({"host": "nowhere.example"}, 0, None),
        ({"method": ""}, 21, ""),  # an empty filter filters nothing
    ],
)
def test_filters(log, filters, total, link):
    for slug in ("requests", "status_classes", "top_paths"):
        rows = [r for r in chart_rows(log, slug, **filters) if r.get("rows_url")]
        assert sum(r["requests"] for r in rows) == total, slug
        for row in rows:
            assert link in row["rows_url"], (slug, row)


# ---- speed -------------------------------------------------------------------------------------
FILTER_VALUES = {"host": "a.example", "route": "/", "status": "2xx", "method": "GET"}


@pytest.mark.parametrize("slug", [chart.slug for chart in CHARTS])
def test_every_chart_query_reads_the_range_through_the_time_index(log, slug):
    chart = config_of(log)["charts"][slug]
    combinations = [{}] + [{k: v} for k, v in FILTER_VALUES.items()] + [FILTER_VALUES]
    for period, filters in itertools.product(["24h", "all"], combinations):
        values = {"period": period, **filters}
        sql = replace_opts_in_query(chart["query"], values)
        params = {name: values.get(name, "") for name in re.findall(r":(\w+)", sql)}
        plan = [row[3] for row in log.execute("EXPLAIN QUERY PLAN " + sql, params)]
        reads = [step for step in plan if re.search(r"\brequests\b", step)]
        assert reads, plan
        # Every read of requests seeks the index on start; the rows of the range are read by
        # a range search (start>? AND start<?), never by a scan of the table.
        assert all("INDEX requests_start" in step for step in reads), (slug, values, plan)
        assert any("requests_start (start>? AND start<?)" in step for step in reads), plan
        assert not [step for step in plan if step.startswith("SCAN requests")], plan


# ---- other logs --------------------------------------------------------------------------------
def test_a_log_written_by_0_1_1_gets_the_charts_it_can_have(tmp_path):
    path = tmp_path / "seed.db"
    shutil.copy(SEED_DB, path)
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    config = config_of(conn, "seed")
    assert "top_routes" not in config["charts"]
    assert "host" not in config["filters"] and "route" not in config["filters"]
    assert {"status", "method", "period"} <= set(config["filters"])
    for chart in config["charts"].values():
        run(conn, chart, period="all")  # every query runs on the old schema
    assert sum(r["requests"] for r in run(conn, config["charts"]["requests"], period="all")) == 8


def test_the_instance_filter_appears_with_the_column(log):
    assert "instance" in config_of(log)["filters"]  # every log has the column now
    log.execute("UPDATE requests SET instance = NULL")
    log.execute("DELETE FROM instances")
    log.execute("INSERT INTO instances (id, name) VALUES (1, 'eu-1')")
    log.execute(f"UPDATE requests SET instance = 1 WHERE start < {DAY + 3600}")
    rows = [r for r in chart_rows(log, "requests", instance="eu-1") if r["requests"]]
    assert [r["requests"] for r in rows] == [10]
    assert rows[0]["rows_url"].endswith("&instance=1")
    # A log from before the column has no such filter.
    log.execute("DROP VIEW requests_view")
    log.execute("ALTER TABLE requests DROP COLUMN instance")
    assert "instance" not in config_of(log)["filters"]


def test_a_sampled_log_counts_the_requests_rows_stand_for(log):
    log.execute(f"UPDATE requests SET sample_rate = 0.5 WHERE start < {DAY + 3600}")
    log.execute("UPDATE requests SET sample_rate = 0.25 WHERE http_status IS NULL")
    rows = [r for r in chart_rows(log, "requests") if r["requests"]]
    assert rows[0]["requests"] == 20
    classes: dict[str, int] = {}
    for row in chart_rows(log, "status_classes"):
        assert type(row["requests"]) is int
        classes[row["status_class"]] = classes.get(row["status_class"], 0) + row["requests"]
    assert classes == {"2xx": 21, "4xx": 3, "5xx": 4, "3xx": 2, "other": 4}
    top = chart_rows(log, "top_paths")[0]
    assert (top["path"], top["requests"]) == ("/", 21)
