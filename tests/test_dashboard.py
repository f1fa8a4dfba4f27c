"""The traffic dashboard's configuration: every chart's numbers on a log whose every row is known,
each filter, the time range, the address of the rows behind each bar, and the time index used by
every query (EXPLAIN QUERY PLAN). Queries run as datasette-dashboards and Datasette run them: the
``[[ ... ]]`` blocks of empty filters dropped, missing parameters bound as ``''``."""

from __future__ import annotations

import itertools
import re
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from datasette.utils import tilde_encode
from datasette_dashboards import replace_opts_in_query

from asgi_log_to_sqlite import dashboard, rollups
from asgi_log_to_sqlite.dashboard import (
    CHARTS,
    dashboard_config,
    dashboard_slug,
    dashboards_config,
    table_path,
)
from asgi_log_to_sqlite.demo import synthetic_log
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


def iso(unix: int) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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


# ---- long ranges: rollups, pieces of rows, samples ------------------------------------------
NOW = 1_750_003_000.0  # 2025-06-15 16:56:40 UTC: the newest request of the rolled log
ROUTES = ("/", "/about", "/blog/")
ROLLED_CHARTS = ("requests", "status_classes", "bytes_sent", "errors", "top_routes")


@pytest.fixture(scope="module")
def rolled_log(tmp_path_factory):
    """6,000 requests over 10 days, their rollups kept as the writer keeps them (hours folded
    into days up to the newest hour); routes for the most requested paths."""
    path = tmp_path_factory.mktemp("rolled") / "log.db"
    synthetic_log(path, 6000, end=NOW, days=10, seed=3, routes=ROUTES)
    return path


def opened(path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    return conn


@pytest.fixture
def rolled(rolled_log, tmp_path):
    """A copy of the rolled log, to change at will."""
    path = tmp_path / "log.db"
    shutil.copy(rolled_log, path)
    conn = opened(path)
    yield conn
    conn.close()


@pytest.fixture
def unrolled(rolled_log, tmp_path):
    """The same rows without their rollups: every chart counts them from the rows."""
    path = tmp_path / "raw.db"
    shutil.copy(rolled_log, path)
    conn = opened(path)
    conn.execute("DELETE FROM rollup_latency")
    conn.execute("DELETE FROM rollups")
    conn.commit()
    yield conn
    conn.close()


def without(rows: list[dict], *names: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in names} for row in rows]


def sources(rows: list[dict]) -> set[str]:
    return {row["counted"] for row in rows if row.get("counted")}


LONG_RANGES = [
    {"period": "7d"},
    {"period": "all"},
    {"period": "30d"},  # buckets of a day: whole days from the daily rollups
    {"since": "2025-06-06", "until": "2025-06-14"},
    {"period": "7d", "status": "4xx"},
    {"period": "all", "route": "/about"},
    {"period": "7d", "status": "5xx", "route": "/"},
]


@pytest.mark.parametrize("filters", LONG_RANGES)
def test_long_ranges_read_the_rollups_and_count_what_the_rows_count(
    rolled, unrolled, filters, monkeypatch
):
    monkeypatch.setattr(dashboard, "SAMPLE", 10**9)  # the rows, all of them, to compare with
    for slug in ROLLED_CHARTS:
        from_rollups = chart_rows(rolled, slug, **filters)
        from_rows = chart_rows(unrolled, slug, **filters)
        # Every bar, its number, its time and the address of its rows are the same.
        assert without(from_rollups, "counted") == without(from_rows, "counted"), slug
        assert sum(r["requests" if "requests" in r else "bytes_sent"] for r in from_rows) > 0
        assert sources(from_rows) == {"every request"}
        if slug == "bytes_sent" and "status" in filters:
            # Rollups keep bytes per route, not per status class: the rows answer.
            assert sources(from_rollups) == {"every request"}
        else:
            assert sources(from_rollups) & {"hourly rollups", "daily and hourly rollups"}, slug
    # Daily buckets (ranges over 7 days: the whole log is 10 days long) read the daily rollups;
    # hourly ones the hourly.
    requests = sources(chart_rows(rolled, "requests", **filters))
    daily = filters.get("period") != "7d"
    assert ("daily and hourly rollups" in requests) == daily


@pytest.mark.parametrize("filters", LONG_RANGES)
def test_latency_from_the_rollups_is_within_five_percent(rolled, unrolled, filters, monkeypatch):
    monkeypatch.setattr(dashboard, "SAMPLE", 10**9)
    from_rollups = chart_rows(rolled, "latency", **filters)
    exact = chart_rows(unrolled, "latency", **filters)
    assert [r["bucket"] for r in from_rollups] == [r["bucket"] for r in exact]
    assert [r["requests"] for r in from_rollups] == [r["requests"] for r in exact]
    for estimate, row in zip(from_rollups, exact, strict=True):
        for p in ("p50_ms", "p95_ms", "p99_ms"):
            # (both rounded to 0.1 ms)
            assert abs(estimate[p] - row[p]) <= 0.05 * row[p] + 0.1, (p, estimate, row)
        if estimate["counted"] == "every request":  # a bucket read from its rows is exact
            assert estimate == row
    status_filtered = "status" in filters  # rollups keep no latency per status class
    assert bool(sources(from_rollups) - {"every request"}) != status_filtered


def test_the_newest_hour_comes_from_the_rows_and_older_hours_from_the_rollups(rolled):
    newest = rolled.execute("SELECT max(start) FROM requests").fetchone()[0]
    # Rows the writer has stored but not yet added up: the chart counts them anyway.
    for i in range(3):
        add(rolled, newest - 30 - i, "GET", "/", 200, 0.01, 10)
    # Rows gone from an hour of two days ago (pruned): the rollups still count them.
    old = int(newest) // 3600 * 3600 - 2 * 86400
    gone = rolled.execute(
        f"DELETE FROM requests WHERE start >= {old} AND start < {old + 3600}"
    ).rowcount
    assert gone > 0
    rows = {r["bucket"]: r for r in chart_rows(rolled, "requests", period="7d")}
    total = rolled.execute(
        f"SELECT count(*) FROM requests WHERE start >= {int(newest) + 1 - 7 * 86400}"
    ).fetchone()[0]
    assert sum(r["requests"] for r in rows.values()) == total + gone
    assert rows[old]["requests"] == gone and rows[old]["counted"] == "hourly rollups"
    last = rows[max(rows)]
    assert last["counted"] == "every request" and last["time_end"] == iso(int(newest) + 1)
    # The default range, a day, is counted from its rows.
    assert sources(chart_rows(rolled, "requests")) == {"every request"}


def test_a_log_rolled_up_only_in_part_reads_its_older_rows(rolled, unrolled, monkeypatch):
    """A big log opened by this version for the first time rolls up only its newest rows: the
    hours before those (and the first, partly rolled-up hour) are read from the rows."""
    monkeypatch.setattr(dashboard, "SAMPLE", 10**9)
    rolled.execute("DELETE FROM rollup_latency")
    rolled.execute("DELETE FROM rollups")
    rolled.execute("DELETE FROM rollups_state")
    last = rolled.execute("SELECT max(rowid) FROM requests").fetchone()[0]
    rollups.add_rows(rolled, last - 2500 + 1, last)  # as the migration fills them
    for slug in ROLLED_CHARTS:
        from_rollups = chart_rows(rolled, slug, period="all")
        assert without(from_rollups, "counted") == without(
            chart_rows(unrolled, slug, period="all"), "counted"), slug
    counted = [r["counted"] for r in chart_rows(rolled, "requests", period="all")]  # days
    first_rolled = counted.index("hourly rollups")  # the first day rolled up: only in part
    assert first_rolled > 3 and set(counted[:first_rolled]) == {"every request"}
    assert "daily and hourly rollups" in counted[first_rolled:]


def test_a_sampled_log_counts_the_same_from_its_rollups(rolled, unrolled, monkeypatch):
    monkeypatch.setattr(dashboard, "SAMPLE", 10**9)
    for conn in (rolled, unrolled):
        conn.execute("UPDATE requests SET sample_rate = 0.25 WHERE rowid % 3 = 0")
    rolled.execute("DELETE FROM rollup_latency")
    rolled.execute("DELETE FROM rollups")
    rolled.execute("DELETE FROM rollups_state")
    rollups.add_rows(rolled, 1, rolled.execute("SELECT max(rowid) FROM requests").fetchone()[0])
    for slug in ("requests", "status_classes", "top_routes"):
        from_rollups = chart_rows(rolled, slug, period="7d")
        assert sources(from_rollups) & {"hourly rollups", "daily and hourly rollups"}
        assert without(from_rollups, "counted") == without(
            chart_rows(unrolled, slug, period="7d"), "counted"), slug


@pytest.mark.parametrize(
    ("filters", "slugs"),
    [
        # Rollups keep no host, method or instance: rows answer, a sample of them.
        ({"period": "7d", "host": "example.com"}, [c.slug for c in CHARTS]),
        ({"period": "all", "method": "GET"}, ["requests", "status_classes", "top_routes"]),
        # Nor paths of routed requests, referrers or user agents, whatever the filters.
        ({"period": "7d"}, ["top_paths", "top_referrers", "top_user_agents", "error_paths"]),
        ({"period": "all", "status": "5xx"}, ["bytes_sent", "top_paths", "error_paths"]),
    ],
)
def test_what_rollups_do_not_keep_comes_from_an_even_sample_of_rows(
    rolled, filters, slugs, monkeypatch
):
    monkeypatch.setattr(dashboard, "SAMPLE", 500)
    lo, hi = rolled.execute(
        "SELECT CAST(min(start) AS INTEGER), CAST(max(start) AS INTEGER) + 1 FROM requests"
    ).fetchone()
    if filters["period"] == "7d":
        lo = hi - 7 * 86400
    every = rolled.execute(
        f"SELECT count(*) FROM requests WHERE start >= {lo} AND start < {hi}"
    ).fetchone()[0] // 500
    assert every > 5
    where = f"start >= {lo} AND start < {hi} AND rowid % {every} = 0"
    if "host" in filters:
        where += " AND host = (SELECT id FROM hosts WHERE name = 'example.com')"
    if "method" in filters:
        where += " AND method = 'GET'"
    if "status" in filters:
        where += " AND http_status BETWEEN 500 AND 599"
    for slug in slugs:
        rows = chart_rows(rolled, slug, **filters)
        assert sources(rows) == {f"a sample: 1 request in {every}"}, slug
        if slug in ("requests", "status_classes"):
            sampled = rolled.execute(f"SELECT count(*) FROM requests WHERE {where}").fetchone()[0]
            assert sum(r["requests"] for r in rows) == sampled * every, slug
        for slug_, column, table in (("top_paths", "path", "paths"),
                                     ("top_user_agents", "user_agent", "user_agents")):
            if slug == slug_:  # the first bar: its sampled rows, times k
                sampled = rolled.execute(
                    f"SELECT count(*) FROM requests WHERE {where} AND {column} = "
                    f"(SELECT id FROM {table} WHERE name = ?)", (rows[0][column],)).fetchone()[0]
                assert rows[0]["requests"] == sampled * every


FILTER_VALUES = {"host": "a.example", "route": "/", "status": "2xx", "method": "GET"}


@pytest.mark.parametrize("slug", [chart.slug for chart in CHARTS])
def test_every_chart_query_reads_through_the_time_index_and_the_rollups_key(rolled, slug):
    chart = config_of(rolled)["charts"][slug]
    combinations = [{}] + [{k: v} for k, v in FILTER_VALUES.items()] + [FILTER_VALUES]
    for period, filters in itertools.product(["24h", "7d", "all"], combinations):
        values = {"period": period, **filters}
        sql = replace_opts_in_query(chart["query"], values)
        params = {name: values.get(name, "") for name in re.findall(r":(\w+)", sql)}
        plan = [row[3] for row in rolled.execute("EXPLAIN QUERY PLAN " + sql, params)]
        reads = [step for step in plan if re.search(r"\brequests\b", step)]
        assert reads, plan
        # Every read of requests seeks the index on start; the rows of the range are read by
        # a range search (start>? AND start<?), never by a scan of the table.
        assert all("INDEX requests_start" in step for step in reads), (slug, values, plan)
        assert any("requests_start (start>? AND start<?)" in step for step in reads), plan
        # Rollups are read by their key (period, start), their histograms by rollup.
        for step in plan:
            if re.search(r"\brollups\b", step):
                assert "INDEX rollups_key (period=?" in step, (slug, values, step)
            if re.search(r"\b(rollup_latency|latency_buckets)\b", step):
                assert "PRIMARY KEY" in step, (slug, values, step)
        assert not [s for s in plan if re.match(r"SCAN (requests|rollups|rollup_latency)\b", s)]
    if chart_reads_rollups(slug):
        assert any("rollups_key (period=? AND start>? AND start<?)" in s for s in plan), plan


def chart_reads_rollups(slug: str) -> bool:
    return next(c for c in CHARTS if c.slug == slug).rollups


def test_every_chart_query_fits_in_an_address(rolled):
    """dashboards.js fetches each chart with GET and the SQL in the address: h11, uvicorn's
    HTTP parser unless httptools is installed, refuses a request head over 16 KiB."""
    for chart in config_of(rolled)["charts"].values():
        assert len(quote(chart["query"], safe="-_.!~*'()")) < 12_000, chart["title"]


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
