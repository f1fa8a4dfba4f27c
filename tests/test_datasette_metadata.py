"""The Datasette metadata of a log: descriptions, facets, labels, and canned queries that give the
right numbers on a log whose every row is known."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
import yaml
from click.testing import CliRunner

from asgi_log_to_sqlite.cli import cli
from asgi_log_to_sqlite.maintenance import merge
from asgi_log_to_sqlite.metadata import (
    QUERIES,
    ROLLUP_QUERIES,
    log_metadata,
    metadata_for_file,
    split_for_datasette_1,
    table_columns,
)
from asgi_log_to_sqlite.schema import connect, ensure_schema

DAY1 = 1704067200  # 2024-01-01T00:00:00Z
DAY2 = 1704153600  # 2024-01-02T00:00:00Z


def _lookup(conn: sqlite3.Connection, table: str, value: str | None) -> int | None:
    if value is None:
        return None
    conn.execute(f"INSERT OR IGNORE INTO [{table}] (name) VALUES (?)", (value,))
    return conn.execute(f"SELECT id FROM [{table}] WHERE name = ?", (value,)).fetchone()[0]


def _add(conn: sqlite3.Connection, *, path: str, user_agent=None, referer=None, content_type=None,
         request_body_size=0, exception=None, **values) -> None:
    values.update(
        path=_lookup(conn, "paths", path),
        user_agent=_lookup(conn, "user_agents", user_agent),
        referer=_lookup(conn, "referers", referer),
        content_type=_lookup(conn, "content_types", content_type),
        request_body_size=request_body_size,
        exception=exception,
    )
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    conn.execute(f"INSERT INTO requests ({columns}) VALUES ({marks})", list(values.values()))


def make_known_log(path: str) -> None:
    """117 requests over two days whose every aggregate is known (see EXPECTED_* below)."""
    conn = connect(path)
    ensure_schema(conn)
    conn.execute("BEGIN")
    for i in range(1, 101):  # /slow: durations 0.01 .. 1.00, hour 2024-01-01 00:00
        _add(conn, start=DAY1 + i, method="GET", path="/slow", http_status=200, duration=i / 100,
             body_size=1000, user_agent="Mozilla/5.0", content_type="text/html")
    for i in range(1, 11):  # /fast: durations 0.001 .. 0.010, hour 2024-01-01 01:00
        _add(conn, start=DAY1 + 3600 + i, method="GET", path="/fast", http_status=200,
             duration=i / 1000, body_size=100, user_agent="curl/8.0",
             content_type="application/json")
    for i in range(5):  # /missing: 404s, three of them linked from example.com
        _add(conn, start=DAY2 + i, method="GET", path="/missing", http_status=404, duration=0.002,
             body_size=50, referer="https://example.com/page" if i < 3 else None,
             content_type="text/html")
    for i in range(2):  # /boom: server errors
        _add(conn, start=DAY2 + 100 + i, method="POST", path="/boom", http_status=500,
             duration=0.002, body_size=20, request_body_size=10, exception="ValueError",
             content_type="text/plain")
    conn.execute("COMMIT")
    conn.close()


EXPECTED = {
    "traffic_per_day": [
        {"day": "2024-01-02", "requests": 7, "client_errors": 5, "server_errors": 2,
         "bytes_sent": 290, "sent": "290 bytes", "avg_ms": 2.0},
        {"day": "2024-01-01", "requests": 110, "client_errors": 0, "server_errors": 0,
         "bytes_sent": 101000, "sent": "98.6 KB", "avg_ms": 459.6},
    ],
    "traffic_per_hour": [
        {"hour": "2024-01-02T00:00:00Z", "requests": 7, "avg_ms": 2.0},
        {"hour": "2024-01-01T01:00:00Z", "requests": 10, "avg_ms": 5.5},
        {"hour": "2024-01-01T00:00:00Z", "requests": 100, "avg_ms": 505.0},
    ],
    "top_paths": [
        {"path": "/slow", "requests": 100, "errors": 0, "bytes_sent": 100000, "sent": "97.7 KB",
         "avg_ms": 505.0},
        {"path": "/fast", "requests": 10, "errors": 0, "bytes_sent": 1000, "sent": "1000 bytes",
         "avg_ms": 5.5},
        {"path": "/missing", "requests": 5, "errors": 5, "bytes_sent": 250, "avg_ms": 2.0},
        {"path": "/boom", "requests": 2, "errors": 2, "bytes_sent": 40, "avg_ms": 2.0},
    ],
    "slowest_endpoints": [
        {"method": "GET", "path": "/slow", "requests": 100, "p50_ms": 500.0,
         "p95_ms": 950.0, "p99_ms": 990.0, "max_ms": 1000.0},
        {"method": "GET", "path": "/fast", "requests": 10, "p50_ms": 5.0,
         "p95_ms": 10.0, "p99_ms": 10.0, "max_ms": 10.0},
        {"method": "GET", "path": "/missing", "requests": 5, "p50_ms": 2.0,
         "p95_ms": 2.0, "p99_ms": 2.0, "max_ms": 2.0},
        {"method": "POST", "path": "/boom", "requests": 2, "p50_ms": 2.0,
         "p95_ms": 2.0, "p99_ms": 2.0, "max_ms": 2.0},
    ],
    "error_paths": [
        {"path": "/boom", "http_status": 500, "requests": 2, "last_seen": "2024-01-02T00:01:41Z"},
    ],
    "not_found_paths": [
        {"path": "/missing", "requests": 5, "last_seen": "2024-01-02T00:00:04Z"},
    ],
    "top_referrers": [{"referrer": "https://example.com/page", "requests": 3}],
    "top_user_agents": [
        {"user_agent": "Mozilla/5.0", "requests": 100},
        {"user_agent": "curl/8.0", "requests": 10},
        {"user_agent": None, "requests": 7},
    ],
    "bandwidth_per_day": [
        {"day": "2024-01-02", "requests": 7, "bytes_sent": 290, "sent": "290 bytes",
         "bytes_received": 20, "received": "20 bytes"},
        {"day": "2024-01-01", "requests": 110, "bytes_sent": 101000, "sent": "98.6 KB",
         "bytes_received": 0, "received": "0 bytes"},
    ],
    "bandwidth_by_content_type": [
        {"content_type": "text/html", "requests": 105, "bytes_sent": 100250, "sent": "97.9 KB",
         "avg_bytes": 955},
        {"content_type": "application/json", "requests": 10, "bytes_sent": 1000,
         "avg_bytes": 100},
        {"content_type": "text/plain", "requests": 2, "bytes_sent": 40, "avg_bytes": 20},
    ],
}


def assert_matches(name: str, rows: list[dict]) -> None:
    """Every expected row and column is there, in order (extra columns are allowed)."""
    expected = EXPECTED[name]
    assert len(rows) == len(expected), (name, rows)
    for row, want in zip(rows, expected, strict=True):
        for key, value in want.items():
            if isinstance(value, float):
                assert row[key] == pytest.approx(value), (name, key, row)
            else:
                assert row[key] == value, (name, key, row)


@pytest.fixture
def known_log(tmp_path):
    path = str(tmp_path / "log.db")
    make_known_log(path)
    return path


def test_every_canned_query_gives_the_known_numbers(known_log):
    meta = metadata_for_file(known_log)["databases"]["log"]
    assert set(meta["queries"]) == set(QUERIES) | set(ROLLUP_QUERIES)
    assert set(QUERIES) == set(EXPECTED)
    conn = sqlite3.connect(known_log)
    conn.row_factory = sqlite3.Row
    for name in QUERIES:
        rows = [dict(row) for row in conn.execute(meta["queries"][name]["sql"])]
        assert_matches(name, rows)


def test_descriptions_units_facets_labels_and_order(known_log):
    meta = metadata_for_file(known_log)["databases"]["log"]
    requests = meta["tables"]["requests"]
    assert "seconds" in requests["columns"]["duration"]
    assert "bytes" in requests["columns"]["body_size"]
    assert requests["units"] == {
        "duration": "s", "ttfb": "s", "body_size": "B", "request_body_size": "B"
    }
    assert requests["facets"] == ["http_status", "method", "content_type", "host"]
    assert requests["sort_desc"] == "start"
    assert meta["tables"]["requests_view"]["sort_desc"] == "start"
    lookups = ["paths", "query_strings", "user_agents", "referers", "accept_languages",
               "content_types", "hosts"]
    for table in lookups:
        assert meta["tables"][table]["label_column"] == "name"
        assert meta["tables"][table]["description"]
    for query in meta["queries"].values():
        assert query["title"] and query["description"] and query["sql"]


def test_an_old_schema_only_gets_queries_it_can_run():
    tables = {
        "requests": ["start", "method", "path", "http_status", "duration", "body_size"],
        "paths": ["id", "name"],
    }
    meta = log_metadata(tables)
    assert "bandwidth_per_day" not in meta["queries"]  # needs request_body_size
    assert "top_referrers" not in meta["queries"]
    assert {"traffic_per_hour", "top_paths", "slowest_endpoints"} <= set(meta["queries"])
    assert set(meta["tables"]["requests"]["columns"]) == set(tables["requests"])


def test_not_a_log_database(tmp_path):
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (a)")
    with pytest.raises(ValueError, match="not a log database"):
        metadata_for_file(other)
    result = CliRunner().invoke(cli, ["metadata", str(other)])
    assert result.exit_code == 1
    assert "not a log database" in result.output


def test_split_for_datasette_1(known_log):
    metadata, config = split_for_datasette_1(metadata_for_file(known_log))
    log_meta, log_config = metadata["databases"]["log"], config["databases"]["log"]
    assert "queries" not in log_meta
    assert set(log_config["queries"]) == set(QUERIES) | set(ROLLUP_QUERIES)
    assert "facets" not in log_meta["tables"]["requests"]
    assert "units" not in log_meta["tables"]["requests"]
    assert log_meta["tables"]["requests"]["columns"]["duration"]
    assert log_config["tables"]["requests"]["sort_desc"] == "start"
    assert log_config["tables"]["paths"] == {"label_column": "name"}


def test_cli_prints_the_same_metadata(known_log):
    runner = CliRunner()
    as_json = runner.invoke(cli, ["metadata", known_log])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == metadata_for_file(known_log)
    as_yaml = runner.invoke(cli, ["metadata", known_log, "--yaml", "--database", "access"])
    assert as_yaml.exit_code == 0, as_yaml.output
    assert yaml.safe_load(as_yaml.output) == metadata_for_file(known_log, "access")
    assert "sql: |" in as_yaml.output  # SQL as readable blocks
    config = runner.invoke(cli, ["metadata", known_log, "--config", "--yaml"])
    assert yaml.safe_load(config.output) == split_for_datasette_1(metadata_for_file(known_log))[1]


def test_table_columns_lists_views_too(known_log):
    conn = sqlite3.connect(known_log)
    tables = table_columns(conn)
    assert "requests_view" in tables and "start" in tables["requests_view"]


def test_every_table_of_a_new_log_is_described(tmp_path):
    path = str(tmp_path / "log.db")
    conn = connect(path)
    ensure_schema(conn)
    conn.close()
    meta = metadata_for_file(path)["databases"]["log"]
    conn = sqlite3.connect(path)
    for table, columns in table_columns(conn).items():
        assert meta["tables"][table]["description"], table
        if table != "requests_view":  # its id is the requests rowid
            assert set(meta["tables"][table]["columns"]) == set(columns), table


def test_rotation_and_merge_tables_are_described(tmp_path):
    """``log_meta`` (written by rotation) and ``merged_files`` (by merge) get descriptions too."""
    source = str(tmp_path / "a.db")
    conn = connect(source)
    ensure_schema(conn)
    conn.execute(
        "INSERT INTO requests (start, method, http_status) VALUES (1700000000.5, 'GET', 200)"
    )
    conn.close()
    out = str(tmp_path / "merged.db")
    merge(out, [source])
    conn = sqlite3.connect(out)
    # The table rotation keeps in each file (rotation.py), as it creates it.
    conn.execute("CREATE TABLE IF NOT EXISTS log_meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.commit()
    tables = table_columns(conn)
    conn.close()
    assert {"log_meta", "merged_files"} <= set(tables)
    meta = metadata_for_file(out)["databases"]["merged"]
    for table in ("log_meta", "merged_files"):
        assert meta["tables"][table]["description"], table
        assert set(meta["tables"][table]["columns"]) == set(tables[table]), table


def test_sampled_rows_count_for_the_requests_they_stand_for(tmp_path):
    path = str(tmp_path / "log.db")
    conn = connect(path)
    ensure_schema(conn)
    if "sample_rate" not in table_columns(conn)["requests"]:
        pytest.skip("this schema has no sample_rate column")
    conn.execute("BEGIN")
    for i in range(5):  # a 10% sample: 5 rows stand for 50 requests
        _add(conn, start=DAY1 + i, method="GET", path="/", http_status=200, duration=0.1,
             body_size=100, sample_rate=0.1)
    _add(conn, start=DAY1 + 10, method="GET", path="/", http_status=500, duration=0.1,
         body_size=7, sample_rate=1.0)
    conn.execute("COMMIT")
    conn.row_factory = sqlite3.Row
    queries = metadata_for_file(path)["databases"]["log"]["queries"]
    day = dict(conn.execute(queries["traffic_per_day"]["sql"]).fetchone())
    assert day["requests"] == 51
    assert day["server_errors"] == 1
    assert day["bytes_sent"] == 5007
    top = dict(conn.execute(queries["top_paths"]["sql"]).fetchone())
    assert (top["path"], top["requests"], top["errors"]) == ("/", 51, 1)


def test_canned_queries_speak_human_units(known_log):
    """Milliseconds rounded to 0.1, integer bytes beside Datasette's sizes, ISO 8601 times."""
    from datasette.utils import format_bytes

    meta = metadata_for_file(known_log)["databases"]["log"]
    conn = sqlite3.connect(known_log)
    conn.row_factory = sqlite3.Row
    for name in QUERIES:  # the rollups' query (a parameter, rollups) has its own test
        rows = [dict(row) for row in conn.execute(meta["queries"][name]["sql"])]
        assert rows, name
        for row in rows:
            assert not [c for c in row if c.endswith("_seconds")], (name, row)
            for column, value in row.items():
                if column.endswith("_ms"):
                    assert isinstance(value, float) and value == round(value, 1), (name, column)
                if column.startswith("bytes_") or column == "avg_bytes":
                    assert isinstance(value, int), (name, column, value)
                if column in ("sent", "received"):
                    assert value == format_bytes(row[f"bytes_{column}"]), (name, row)
                if column in ("hour", "last_seen"):
                    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value), (name, value)
                if column == "day":
                    assert re.fullmatch(r"\d{4}-\d\d-\d\d", value), (name, value)


def test_the_metadata_holds_the_dashboard(known_log):
    document = metadata_for_file(known_log, "access")
    dashboards = document["plugins"]["datasette-dashboards"]
    assert list(dashboards) == ["traffic-access"]
    chart = dashboards["traffic-access"]["charts"]["requests"]
    assert chart["db"] == "access" and "'/access/requests' ||" in chart["query"]
    metadata, config = split_for_datasette_1(document)
    assert "plugins" not in metadata
    assert config["plugins"] == document["plugins"]
