"""Report numbers checked against SQL written independently here, on generated logs.

The report groups by lookup ids per file and merges names; these tests instead read
``requests_view`` (names already joined) with plain GROUP BY and ORDER BY ... OFFSET, so both
paths to each number must agree, for one file, several files, and a time window.
"""

from __future__ import annotations

import sqlite3
import time
import unicodedata
from fractions import Fraction
from math import ceil
from typing import Any

import pytest

from asgi_log_to_sqlite.demo import USER_AGENTS, synthetic_log
from asgi_log_to_sqlite.report import (
    ReportError,
    build_report,
    parse_when,
    render_html,
    render_json,
    render_text,
)
from asgi_log_to_sqlite.schema import connect, ensure_schema

NOW = 1_750_000_000.0
ROWS = 4000


@pytest.fixture(autouse=True, params=["ln", "tree", "group-by"])
def query_variant(request, monkeypatch):
    """Every test three times: latency buckets found with SQLite's math functions, and
    without; and rows grouped with GROUP BY, as a dialect for a database that hashes does."""
    from asgi_log_to_sqlite.dialect import SQLITE
    from asgi_log_to_sqlite.report import queries

    monkeypatch.setattr(queries, "USE_MATH_FUNCTIONS", request.param == "ln")
    monkeypatch.setattr(SQLITE, "groups_by_upsert", request.param != "group-by")


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "log.db"
    synthetic_log(path, ROWS, end=NOW, days=3, seed=11)
    _add_odd_rows(path)
    return str(path)


def _add_odd_rows(path):
    """Rows with NULLs where real logs have them: no user agent, no duration, no path."""
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO requests (start, method, http_status, client_ip, duration, body_size) "
            "VALUES (?, 'GET', ?, ?, ?, ?)",
            [(NOW - 100 - i, 404 if i % 2 else 200, f"192.0.2.{i}", None if i % 3 else 0.5, None)
             for i in range(12)],
        )
    conn.close()


def _view(conn, where="1"):
    return f"(SELECT * FROM requests_view WHERE {where})"


def _percentile(conn, p, source, extra="1"):
    n = conn.execute(f"SELECT COUNT(duration) FROM {source} WHERE {extra}").fetchone()[0]
    k = max(1, ceil(Fraction(p * n, 100)))
    return conn.execute(
        f"SELECT duration FROM {source} WHERE duration IS NOT NULL AND {extra} "
        f"ORDER BY duration LIMIT 1 OFFSET ?",
        (k - 1,),
    ).fetchone()[0]


def check_against_sql(report, conn, source):
    """Every section of ``report`` recomputed from ``source`` (a subquery of requests rows)."""
    s = report["summary"]
    def q(sql: str) -> list[Any]:
        return conn.execute(sql.format(src=source)).fetchall()

    total, visitors, sent = q(
        "SELECT COUNT(*), COUNT(DISTINCT client_ip), TOTAL(body_size) FROM {src}"
    )[0]
    assert s["requests"] == total
    assert s["visitors"] == visitors
    assert s["bytes_sent"] == int(sent)
    assert s["server_errors"] == q("SELECT COUNT(*) FROM {src} WHERE http_status >= 500")[0][0]
    assert s["client_errors"] == q(
        "SELECT COUNT(*) FROM {src} WHERE http_status BETWEEN 400 AND 499")[0][0]
    assert s["error_rate"] == pytest.approx(s["server_errors"] / total, abs=1e-6)
    for p in (50, 95, 99):
        assert s["latency"][f"p{p}"] == _percentile(conn, p, source)
    assert s["latency"]["max"] == q("SELECT MAX(duration) FROM {src}")[0][0]

    classes = dict(q("SELECT (http_status / 100) || 'xx', COUNT(*) FROM {src} GROUP BY 1"))
    assert {c["class"]: c["requests"] for c in report["status_classes"]} == classes
    assert sum(p["requests"] for p in report["timeline"]["points"]) == total
    width = report["timeline"]["bucket_seconds"]
    busiest = max(report["timeline"]["points"], key=lambda p: p["requests"])
    bucket = parse_when(busiest["start"])
    assert busiest["requests"] == q(
        f"SELECT COUNT(*) FROM {{src}} WHERE start >= {bucket} AND start < {bucket + width}")[0][0]

    paths = q("SELECT path, COUNT(*), TOTAL(body_size) FROM {src} WHERE path IS NOT NULL "
              "GROUP BY path ORDER BY 2 DESC, 1 LIMIT 10")
    assert [(p["path"], p["requests"], p["bytes"]) for p in report["top_paths"]] == [
        (a, b, int(c)) for a, b, c in paths
    ]
    not_found = q("SELECT path, COUNT(*) FROM {src} WHERE http_status = 404 AND path IS NOT NULL "
                  "GROUP BY path ORDER BY 2 DESC, 1 LIMIT 10")
    assert [(p["path"], p["requests"]) for p in report["not_found"]] == not_found
    referrers = q("SELECT referer, COUNT(*) FROM {src} WHERE referer IS NOT NULL "
                  "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10")
    assert [(r["referrer"], r["requests"]) for r in report["referrers"]] == referrers
    hosts = q(
        "SELECT host, COUNT(*) FROM {src} WHERE host IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1"
    )
    assert [(h["host"], h["requests"]) for h in report["hosts"]] == hosts
    methods = q("SELECT method, COUNT(*) FROM {src} GROUP BY 1 ORDER BY 2 DESC, 1")
    assert [(m["method"], m["requests"]) for m in report["methods"]] == methods

    # Slowest endpoints: the mean ranks them; their percentiles are exact per path.
    means = dict(q("SELECT path, AVG(duration) FROM {src} WHERE path IS NOT NULL GROUP BY path "
                   "HAVING COUNT(duration) >= 5"))
    slow = report["slowest_paths"]
    assert [p["path"] for p in slow] == sorted(means, key=lambda k: (-means[k], k))[:10]
    for row in slow:
        for p in (50, 95, 99):
            assert row[f"p{p}"] == _percentile(conn, p, source, f"path = '{row['path']}'")

    # User agents: every request lands in exactly one kind; bots are the crawler strings.
    ua = report["user_agents"]
    assert sum(ua["kinds"].values()) == total
    bots = [agent for agent, _, is_bot in USER_AGENTS if is_bot]
    marks = ", ".join("?" for _ in bots)
    bot_requests = conn.execute(
        f"SELECT COUNT(*) FROM {source} WHERE user_agent IN ({marks})", bots).fetchone()[0]
    assert ua["kinds"]["bot"] == bot_requests == sum(b["requests"] for b in ua["bots"])
    assert ua["kinds"]["none"] == q("SELECT COUNT(*) FROM {src} WHERE user_agent IS NULL")[0][0]
    chrome = conn.execute(
        f"SELECT COUNT(*) FROM {source} WHERE user_agent LIKE '%Chrome/%' "
        "AND user_agent NOT LIKE '%Mobile%' AND user_agent NOT LIKE '%Edg/%'").fetchone()[0]
    assert {b["name"]: b["requests"] for b in ua["browsers"]}["Chrome"] == chrome


def test_report_matches_sql_on_one_file(log):
    report = build_report([log])
    conn = sqlite3.connect(log)
    check_against_sql(report, conn, _view(conn))
    assert report["summary"]["requests"] == ROWS + 12
    assert report["files"] == [log]


def test_report_with_a_time_window_matches_sql(log):
    since, until = NOW - 86400, NOW - 3600
    report = build_report([log], since=since, until=until)
    conn = sqlite3.connect(log)
    check_against_sql(report, conn, _view(conn, f"start >= {since} AND start < {until}"))
    assert report["range"]["since"] == "2025-06-14T15:06:40Z"
    assert report["summary"]["requests"] < ROWS


def test_several_files_are_one_log(tmp_path, log):
    """Rotated files have their own lookup ids: the same path is counted once, with both files'
    requests, and percentiles come from all durations together."""
    other = tmp_path / "older.db"
    conn = connect(str(other))
    ensure_schema(conn)
    # Different ids for the same names in the second file.
    conn.executemany(
        "INSERT INTO paths (name) VALUES (?)", [(f"/only-here/{i}",) for i in range(7)]
    )
    conn.close()
    synthetic_log(other, 1500, end=NOW - 3 * 86400, days=2, seed=5)
    report = build_report([log, str(other)])
    conn = sqlite3.connect(":memory:")
    conn.execute("ATTACH ? AS a", (log,))
    conn.execute("ATTACH ? AS b", (str(other),))
    source = "(SELECT * FROM a.requests_view UNION ALL SELECT * FROM b.requests_view)"
    check_against_sql(report, conn, source)
    assert report["summary"]["requests"] == ROWS + 12 + 1500


@pytest.mark.parametrize("since", [None, NOW - 86400, NOW - 3600, NOW - 60])
def test_percentiles_are_exact_for_every_window(log, since):
    """Percentiles come from the durations of the latency buckets holding each rank only; they
    must be the exact nearest-rank values all the same, overall and per path."""
    conn = sqlite3.connect(log)
    report = build_report([log], since=since)
    source = _view(conn, f"start >= {since}" if since else "1")
    for p in (50, 95, 99):
        assert report["summary"]["latency"][f"p{p}"] == _percentile(conn, p, source)
    for row in report["slowest_paths"]:
        for p in (50, 95, 99):
            assert row[f"p{p}"] == _percentile(conn, p, source, f"path = '{row['path']}'")


def test_empty_window_gives_zeros(log):
    report = build_report([log], since=NOW + 10, until=NOW + 20)
    assert report["summary"]["requests"] == 0
    assert report["summary"]["latency"]["p50"] is None
    assert report["top_paths"] == []
    # Every format renders a window without requests.
    render_text(report)
    render_json(report)
    assert "<svg" in render_html(report)


def test_log_from_0_1_1_without_newer_columns(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """CREATE TABLE paths (id INTEGER PRIMARY KEY, name TEXT);
           CREATE TABLE user_agents (id INTEGER PRIMARY KEY, name TEXT);
           CREATE TABLE referers (id INTEGER PRIMARY KEY, name TEXT);
           CREATE TABLE requests (start FLOAT, method TEXT, path INTEGER, query_string INTEGER,
               user_agent INTEGER, referer INTEGER, accept_language INTEGER, http_status INTEGER,
               content_type INTEGER, client_ip TEXT, duration FLOAT, body_size INTEGER);
           INSERT INTO paths VALUES (1, '/'), (2, '/missing');
           INSERT INTO requests (start, method, path, http_status, client_ip, duration, body_size)
           VALUES (1000, 'GET', 1, 200, '1.2.3.4', 0.1, 10),
                  (1001, 'GET', 2, 404, '1.2.3.5', 0.2, 5);"""
    )
    conn.close()
    report = build_report([str(path)])
    assert report["summary"]["requests"] == 2
    assert report["hosts"] == []
    assert report["not_found"] == [{"path": "/missing", "requests": 1}]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("24h", NOW - 86400), ("7d", NOW - 7 * 86400), ("30m", NOW - 1800), ("2w", NOW - 14 * 86400),
     ("90s", NOW - 90), ("2025-06-15", 1749945600.0), ("2025-06-15T12:00", 1749988800.0),
     ("2025-06-15T12:00:00Z", 1749988800.0), ("2025-06-15T14:00:00+02:00", 1749988800.0)],
)
def test_parse_when(text, expected):
    assert parse_when(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "24x", "", "-5d", "2025-13-01"])
def test_parse_when_rejects_nonsense(text):
    with pytest.raises(ValueError, match="24h"):
        parse_when(text, now=NOW)


def test_bad_inputs_are_report_errors(tmp_path):
    with pytest.raises(ReportError, match="no such file"):
        build_report([str(tmp_path / "missing.db")])
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(ReportError, match="not a SQLite database"):
        build_report([str(junk)])
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ReportError, match="not an asgi-log-to-sqlite log"):
        build_report([str(other)])
    empty = tmp_path / "empty.db"
    conn = connect(str(empty))
    ensure_schema(conn)
    conn.close()
    with pytest.raises(ReportError, match="no requests"):
        build_report([str(empty)])
    with pytest.raises(ReportError, match="earlier"):
        build_report([str(empty)], since=NOW, until=NOW - 1)


def test_text_report_fits_80_columns(log, tmp_path):
    long = tmp_path / "long.db"
    synthetic_log(long, 200, end=NOW, days=1, seed=2)
    conn = sqlite3.connect(long)
    with conn:
        # Wide characters take two terminal columns each: they count as two.
        for name in ("/a/very/long/path/" + "x" * 200, "/文書/" + "東京の天気予報" * 12):
            conn.execute("INSERT INTO paths (name) VALUES (?)", (name,))
            pid = conn.execute("SELECT max(id) FROM paths").fetchone()[0]
            conn.executemany(
                "INSERT INTO requests (start, method, path, http_status, duration, body_size) "
                "VALUES (?, 'GET', ?, 404, 0.01, 99999999999)",
                [(NOW - i, pid) for i in range(500)])
    conn.close()
    for paths in ([log], [str(long)]):
        text = render_text(build_report(paths))
        lines = text.splitlines()
        columns = [sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)
                   for line in lines]
        assert max(columns) <= 80
        for title in ("Summary", "Latency", "Status classes", "Top paths",
                      "Slowest paths", "Not found (404)", "Referrers", "User agents", "Browsers",
                      "Operating systems", "Bots", "Methods", "Hosts"):
            assert title in lines
        assert any(line.startswith("Requests over time (per ") for line in lines)
    assert "/a/very/long/path/xxx" in text and "…" in text


def test_json_shape_is_stable(log):
    import json

    report = json.loads(render_json(build_report([log])))
    # Keys are only ever added within a report_version: the first ones keep their order.
    assert list(report) == [
        "report_version", "generated_at", "files", "source", "filters", "range", "summary",
        "timeline", "hours_of_day", "visitors_per_day", "status_classes", "statuses",
        "methods", "http_versions", "hosts", "top_paths", "slowest_paths", "routes",
        "not_found", "referrers", "referring_domains", "clients", "user_agents", "instances",
    ]
    assert report["report_version"] == 1
    assert set(report["summary"]) == {
        "requests", "visitors", "visitor_column", "visitors_counted_by",
        "unique_client_addresses", "unique_user_agents", "unique_referrers",
        "estimated_from_sample", "bytes_sent", "bytes_received", "server_errors",
        "client_errors", "error_rate", "client_error_rate", "static_requests",
        "dynamic_requests", "latency",
    }
    assert set(report["source"]) == {"rows", "note", "raw_rows_from", "percentiles"}
    assert set(report["routes"][0]) == {
        "route", "requests", "server_errors", "error_rate", "avg_duration", "p50", "p95", "p99"
    }
    assert set(report["summary"]["latency"]) == {"avg", "p50", "p95", "p99", "max"}
    assert set(report["timeline"]) == {"bucket_seconds", "points"}
    assert set(report["timeline"]["points"][0]) == {"start", "requests", "errors", "bytes"}
    assert set(report["user_agents"]) == {"kinds", "browsers", "operating_systems", "bots"}
    assert set(report["slowest_paths"][0]) == {
        "path", "requests", "avg_duration", "p50", "p95", "p99"
    }


def test_visitor_hash_is_preferred_when_recorded(tmp_path):
    """With the privacy option's visitor hash, visitors count hashes; rows without one fall back
    to the client address."""
    path = tmp_path / "log.db"
    synthetic_log(path, 10, end=NOW, days=1)
    conn = sqlite3.connect(path)
    if "visitor" not in {r[1] for r in conn.execute("PRAGMA table_info(requests)")}:
        pytest.skip("this schema has no visitor column")
    with conn:
        # Rows replaced by hand, rollups too (else the report would read the rollups of the
        # rows deleted here).
        conn.execute("DELETE FROM requests")
        conn.execute("DELETE FROM rollup_latency")
        conn.execute("DELETE FROM rollups")
        conn.executemany(
            "INSERT INTO requests (start, path, http_status, duration, client_ip, visitor) "
            "VALUES (?, NULL, 200, 0.1, ?, ?)",
            [(NOW, "10.0.0.1", "h1"), (NOW, "10.0.0.2", "h1"), (NOW, "10.0.0.3", None)],
        )
    conn.close()
    report = build_report([str(path)])
    assert report["summary"]["visitors"] == 2
    assert report["summary"]["visitor_column"] == "visitor"


def test_report_reads_a_log_that_is_being_written(tmp_path):
    """Read-only and WAL: a report while the writer holds the file open."""
    path = tmp_path / "live.db"
    synthetic_log(path, 100, end=time.time(), days=1)
    writer = connect(str(path))
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO requests (start, http_status, duration) VALUES (?, 200, 0.1)",
                   (time.time(),))
    try:
        assert build_report([str(path)])["summary"]["requests"] == 100
    finally:
        writer.execute("COMMIT")
        writer.close()
    assert build_report([str(path)])["summary"]["requests"] == 101


def test_more_files_than_sqlite_attaches(tmp_path):
    """Hourly rotation makes many files: past SQLite's 10 attached databases they are merged into
    a temporary log first, with the same numbers."""
    paths = []
    for i in range(12):
        path = tmp_path / f"log-{i:02d}.db"
        synthetic_log(path, 50, end=NOW - i * 3600, days=1 / 24, seed=i)
        paths.append(str(path))
    report = build_report(paths)
    assert report["files"] == paths
    total = 0
    for path in paths:
        other = sqlite3.connect(path)
        total += other.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
        other.close()
    assert report["summary"]["requests"] == total == 600
    # Check in two halves: this connection can attach 10 too.
    ips = set()
    for chunk in (paths[:6], paths[6:]):
        conn = sqlite3.connect(":memory:")
        for i, path in enumerate(chunk):
            conn.execute(f"ATTACH ? AS db{i}", (path,))
        source = " UNION ALL ".join(
            f"SELECT client_ip FROM db{i}.requests" for i in range(len(chunk))
        )
        ips |= {row[0] for row in conn.execute(source)}
        conn.close()
    assert report["summary"]["visitors"] == len(ips)
    with pytest.raises(ReportError, match="no such file"):
        build_report([*paths, str(tmp_path / "missing.db")])


def test_a_sampled_log_reports_the_requests_its_rows_stand_for(tmp_path):
    # As Datasette's canned queries do: a row recorded at sample_rate 0.1 counts 10 times.
    path = str(tmp_path / "sampled.db")
    conn = connect(path)
    ensure_schema(conn)
    now = time.time()
    conn.execute("INSERT INTO paths (name) VALUES ('/')")
    for i in range(5):
        conn.execute("INSERT INTO requests (start, method, path, http_status, duration, body_size,"
                     " sample_rate) VALUES (?, 'GET', 1, 200, 0.1, 100, 0.1)", (now - 60 + i,))
    conn.execute("INSERT INTO requests (start, method, path, http_status, duration, body_size,"
                 " sample_rate) VALUES (?, 'GET', 1, 500, 0.1, 7, 1.0)", (now - 50,))
    conn.execute("INSERT INTO excluded_requests VALUES ('2026-11-24T10:00', 'sampled_out', 45)")
    conn.close()
    report = build_report([path])
    summary = report["summary"]
    assert (summary["requests"], summary["server_errors"], summary["bytes_sent"]) == (51, 1, 5007)
    assert summary["estimated_from_sample"] is True
    assert report["top_paths"][0]["requests"] == 51
    assert sum(p["requests"] for p in report["timeline"]["points"]) == 51
    assert "estimated" in render_text(report)
    # An unsampled log is counted row by row and says nothing of estimates.
    plain = str(tmp_path / "plain.db")
    conn = connect(plain)
    ensure_schema(conn)
    conn.execute("INSERT INTO requests (start, method, http_status, duration, body_size,"
                 " sample_rate) VALUES (?, 'GET', 200, 0.1, 9, 1.0)", (now,))
    conn.close()
    assert build_report([plain])["summary"]["estimated_from_sample"] is False


def test_a_file_named_twice_counts_once(log, tmp_path):
    once = build_report([log])["summary"]["requests"]
    alias = tmp_path / "alias.db"
    alias.symlink_to(log)
    twice = build_report([log, log, str(alias)])
    assert twice["summary"]["requests"] == once
    assert twice["files"] == [log]


def test_sampled_parts_add_up_and_need_no_count_of_what_was_left_out(tmp_path):
    # sample=0.3: each row stands for 3.33 requests; the parts must still add up to the total.
    # No excluded_requests row here (sampling happened to drop nothing in this file).
    path = str(tmp_path / "thirds.db")
    conn = connect(path)
    ensure_schema(conn)
    now = time.time()
    for i, status in enumerate((200, 404, 500)):
        conn.execute("INSERT INTO requests (start, method, http_status, duration, body_size,"
                     " sample_rate) VALUES (?, 'GET', ?, 0.1, 100, 0.3)", (now - 3600 * i, status))
    conn.close()
    report = build_report([path])
    total = report["summary"]["requests"]
    assert total == 10 and report["summary"]["estimated_from_sample"] is True
    assert sum(c["requests"] for c in report["status_classes"]) == total
    assert sum(s["requests"] for s in report["statuses"]) == total
    assert sum(p["requests"] for p in report["timeline"]["points"]) == total
    assert report["summary"]["bytes_sent"] == 1000


# ---- what log analysers show ------------------------------------------------------------------
@pytest.fixture(scope="module")
def routed_log(tmp_path_factory):
    """The synthetic log with route templates on /products/*, as a framework records them."""
    path = tmp_path_factory.mktemp("routed") / "log.db"
    synthetic_log(path, 6000, end=NOW, days=3, seed=21)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO routes (name) VALUES ('/products/{id}')")
        conn.execute("UPDATE requests SET route = 1 WHERE path IN "
                     "(SELECT id FROM paths WHERE name LIKE '/products/%')")
    conn.close()
    return str(path)


def test_sections_log_analysers_show_match_sql(routed_log):
    report = build_report([routed_log], limit=50)
    conn = sqlite3.connect(routed_log)
    def q(sql: str, *args: Any) -> list[Any]:
        return conn.execute(sql, args).fetchall()

    s = report["summary"]
    total = s["requests"]
    assert s["unique_user_agents"] == q("SELECT COUNT(DISTINCT user_agent) FROM requests")[0][0]
    assert s["unique_referrers"] == q("SELECT COUNT(DISTINCT referer) FROM requests")[0][0]
    assert s["unique_client_addresses"] == q("SELECT COUNT(DISTINCT client_ip) FROM requests")[0][0]
    assert s["visitors_counted_by"] == "distinct client addresses"
    # Requests by hour of day (UTC), every hour listed.
    hours = dict(q("SELECT CAST(strftime('%H', start, 'unixepoch') AS INTEGER), COUNT(*) "
                   "FROM requests GROUP BY 1"))
    assert [h["hour"] for h in report["hours_of_day"]] == list(range(24))
    assert {h["hour"]: h["requests"] for h in report["hours_of_day"]} == {
        h: hours.get(h, 0) for h in range(24)}
    # Visitors (distinct addresses) and requests per UTC day.
    days = q("SELECT date(start, 'unixepoch'), COUNT(DISTINCT client_ip), COUNT(*) "
             "FROM requests GROUP BY 1 ORDER BY 1")
    assert [(d["day"], d["visitors"], d["requests"]) for d in report["visitors_per_day"]] == days
    # HTTP versions, top client addresses, referring domains.
    assert [(v["version"], v["requests"]) for v in report["http_versions"]] == q(
        "SELECT http_version, COUNT(*) FROM requests GROUP BY 1 ORDER BY 2 DESC, 1")
    assert [(c["client"], c["requests"]) for c in report["clients"]] == q(
        "SELECT client_ip, COUNT(*) FROM requests GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 50")
    domains = q("SELECT replace(replace(substr(r.name, instr(r.name, '://') + 3), "
                "'/r/Python/', ''), '/', ''), COUNT(*) FROM requests "
                "JOIN referers r ON r.id = requests.referer GROUP BY 1 ORDER BY 2 DESC, 1")
    assert [(d["domain"], d["requests"]) for d in report["referring_domains"]] == domains
    # Static files by extension; the rest are other requests.
    static = q("SELECT COUNT(*) FROM requests JOIN paths p ON p.id = requests.path "
               "WHERE p.name LIKE '%.css' OR p.name LIKE '%.js' OR p.name LIKE '%.png'")[0][0]
    assert (s["static_requests"], s["dynamic_requests"]) == (static, total - static)
    # Routes: the template where there is one, else the path; error rate and exact percentiles.
    view = "(SELECT *, COALESCE(route, path) AS key FROM requests_view)"
    routes = q(f"SELECT key, COUNT(*), SUM(http_status >= 500) FROM {view} WHERE key IS NOT NULL "
               "GROUP BY key ORDER BY 2 DESC, 1 LIMIT 50")
    assert [(r["route"], r["requests"], r["server_errors"]) for r in report["routes"]] == routes
    assert report["routes"][0]["route"] == "/products/{id}"
    for row in report["routes"]:
        assert row["error_rate"] == pytest.approx(row["server_errors"] / row["requests"], abs=1e-6)
        for p in (50, 95, 99):
            assert row[f"p{p}"] == _percentile(conn, p, view, f"key = '{row['route']}'")
    conn.close()


def test_visitors_say_what_they_count(log):
    report = build_report([log])
    text = render_text(report)
    assert "Visitors (IPs)" in text and "distinct client addresses" in text
    assert "visitors (distinct client addresses)" in render_html(report)


def test_text_report_never_prints_two_paths_alike(tmp_path):
    """Long paths that differ only at their end were cut to the same text."""
    path = tmp_path / "long.db"
    synthetic_log(path, 50, end=NOW, days=1, seed=2)
    names = [f"/images/web/2009/{'banner-' * 12}{n}.png" for n in ("spring", "summer", "autumn")]
    names.append("/x/" + "y" * 900 + "/end-one")  # longer than the lines it may take
    names.append("/x/" + "y" * 900 + "/end-two")
    conn = sqlite3.connect(path)
    with conn:
        for i, name in enumerate(names):
            conn.execute("INSERT INTO paths (name) VALUES (?)", (name,))
            pid = conn.execute("SELECT max(id) FROM paths").fetchone()[0]
            conn.executemany("INSERT INTO requests (start, method, path, http_status, duration) "
                             "VALUES (?, 'GET', ?, 404, 0.01)",
                             [(NOW - j, pid) for j in range(90 - i)])
    conn.close()
    text = render_text(build_report([str(path)]))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    start = lines.index("Top paths")
    block = lines[start:lines.index("", start)]
    # Continuation lines are the rest of the value above them: joined, every path is whole
    # (or, past six lines, shortened in the middle, and still unlike the others).
    labels, current = [], None
    for line in block[2:]:
        if line.startswith("    "):
            current += line.strip()
        else:
            if current is not None:
                labels.append(current)
            current = line[2:].split("  ")[0]
    labels.append(current)
    for name in names[:3]:
        assert name in labels
    long_ones = [label for label in labels if label.startswith("/x/")]
    assert len(long_ones) == 2 and long_ones[0] != long_ones[1]
    assert long_ones[0].endswith("/end-two") or long_ones[0].endswith("/end-one")
