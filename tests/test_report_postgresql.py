"""The report on a PostgreSQL log: its queries run in PostgreSQL, and ``report URL`` prints what
``report FILE`` prints for the same rows (a pulled copy), for every window and filter."""

from __future__ import annotations

import json
import math
import random
import re
import urllib.parse
import uuid
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from pg_support import write_records

from asgi_log_to_sqlite.cli import cli
from asgi_log_to_sqlite.exchange import Exchange, next_key
from asgi_log_to_sqlite.postgresql_schema import partition_name
from asgi_log_to_sqlite.pull import pull
from asgi_log_to_sqlite.report import Filters, ReportError, build_report
from asgi_log_to_sqlite.report.queries import LogSet, Window

psycopg = pytest.importorskip("psycopg")

HOUR, DAY = 3600, 86400
NOW = 1_790_000_000.0  # 2026-09-21T12:53:20Z: the log spans the four days before
PATHS = ["/", "/api/items", "/api/items/7", "/api/items/42", "/api/users/3", "/blog/2024/x",
         "/blog/café", "/missing", "/static/app.css", "/static/logo.png", "/a%b_c", "/[x]"]
AGENTS = [b"curl/8.4", b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
          b"Googlebot/2.1 (+http://www.google.com/bot.html)", b""]
HOSTS = [b"example.com", b"www.example.com", b"api.example.com", b"example.org"]


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def traffic(n: int, seed: int, first: float, last: float) -> list[Exchange]:
    """Requests spread between ``first`` and ``last``: many paths, routes, hosts, methods,
    statuses and clients, some without a duration."""
    rng = random.Random(seed)
    found = []
    for i in range(n):
        path = rng.choice(PATHS)
        scope = {
            "type": "http", "method": rng.choice(["GET"] * 6 + ["POST", "PUT", "get", "DELETE"]),
            "http_version": rng.choice(["1.1", "1.1", "2"]), "path": path,
            "query_string": rng.choice([b"", b"page=2", b"q=x%20y"]),
            "headers": [(b"user-agent", rng.choice(AGENTS)),
                        (b"referer", rng.choice([b"", b"https://www.google.com/search",
                                                 b"https://news.example.net/a"])),
                        (b"host", rng.choice(HOSTS))],
            "client": (rng.choice([f"10.0.0.{rng.randrange(30)}", f"2001:db8::{rng.randrange(9)}"]),
                       1),
        }
        if path.startswith("/api/items/"):
            scope["test_route"] = "/api/items/{id}"
        record = Exchange(scope, first + (last - first) * i / n + rng.random(), 0.0)
        record.key = next_key()
        record.status = 404 if path == "/missing" else rng.choice(
            [200, 200, 200, 201, 301, 304, 400, 403, 500, 503])
        record.duration = None if rng.random() < 0.03 else rng.lognormvariate(-4, 1.2)
        record.body_size = rng.randrange(0, 50_000)
        found.append(record)
    return found


def write(target: str, records: list[Exchange], instance: str, **options) -> None:
    write_records(target, records, instance, route=lambda scope: scope.get("test_route"), **options)


def create_database(cluster) -> str:
    """A new database ordering text by a language's rules (ICU, where the server has it), so
    that a query relying on the order of text would differ from the file's."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(cluster.base_url, autocommit=True, connect_timeout=10) as conn:
        try:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
                         "ICU_LOCALE 'en-US' LOCALE 'C'")
        except psycopg.Error:
            conn.execute(f"CREATE DATABASE {name}")
    return name


@pytest.fixture(scope="module")
def central(pg_cluster, tmp_path_factory):
    """A PostgreSQL log written by three hosts (one sampling, one hashing visitors) over four
    days, and a pulled copy of it: the same rows in a SQLite file."""
    name = create_database(pg_cluster)
    url = pg_cluster.url(name)
    write(url, traffic(1500, 1, NOW - 4 * DAY, NOW), "web-1")
    write(url, traffic(600, 2, NOW - 2 * DAY, NOW), "web-2", visitor_hash="a shared secret, 16+")
    write(url, traffic(500, 3, NOW - 3 * DAY, NOW - DAY), "web-3", sample=0.5)
    path = str(tmp_path_factory.mktemp("central") / "pulled.db")
    assert pull(url, path).rows > 1500
    try:
        yield url, path
    finally:
        pg_cluster.drop_database(name)


def report_json(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["report", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def comparable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("generated_at", "files")}


#: Means of durations: sums of floats, which PostgreSQL adds up in an order of its own
#: (partition by partition, in parallel), so their last bits may differ from a file's.
MEANS = {"avg", "avg_duration"}


def assert_same(ours: object, theirs: object, where: str = "", mean: bool = False) -> None:
    """The reports are equal: every count, byte total, percentile, maximum, time and name
    exactly; a mean of durations to 12 significant digits."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if not where:
            ours, theirs = comparable(ours), comparable(theirs)
        assert ours.keys() == theirs.keys(), where
        is_mean = ours.get("name") == "avg duration"  # a --compare figure
        for key in ours:
            assert_same(ours[key], theirs[key], f"{where}.{key}", key in MEANS or is_mean)
    elif isinstance(ours, list) and isinstance(theirs, list):
        assert len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{where}[{i}]", mean)
    elif mean and isinstance(ours, float) and isinstance(theirs, float):
        assert math.isclose(ours, theirs, rel_tol=1e-12, abs_tol=1e-12), where
    else:
        assert ours == theirs and type(ours) is type(theirs), (where, ours, theirs)


WINDOWS = [
    [],
    ["--since", iso(NOW - DAY)],
    ["--since", iso(NOW - 30 * HOUR), "--until", iso(NOW - 6 * HOUR)],
    ["--until", iso(NOW - 3 * DAY)],
    ["--since", iso(NOW - 2 * HOUR), "--until", iso(NOW - HOUR)],
    ["--since", iso(NOW - 50 * DAY), "--until", iso(NOW - 40 * DAY)],  # no rows at all
]
FILTERS = [
    ["--path", "/api"],
    ["--path", "/api/items/*", "--path", "/blog/caf?"],
    ["--path", "/a%b_c", "--path", "/[[]x]"],
    ["--route", "/api/items/{id}"],
    ["--status", "5xx"],
    ["--status", "404,201", "--method", "post,get"],
    ["--host", "*.example.com"],
    ["--host", "example.org", "--method", "DELETE"],
    ["--instance", "web-2"],
    ["--instance", "web-[13]", "--status", "2xx", "--path", "/static"],
    ["--limit", "3"],
]


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: " ".join(w) or "all")
def test_every_window_is_the_files(central, window):
    url, path = central
    ours = report_json(url, *window)
    assert_same(ours, report_json(path, *window))
    assert ours["files"] == [url]
    assert ours["source"]["rows"] == "raw"


@pytest.mark.parametrize("options", FILTERS, ids=" ".join)
@pytest.mark.parametrize("window", [WINDOWS[0], WINDOWS[2]], ids=["all", "window"])
def test_every_filter_is_the_files(central, window, options):
    url, path = central
    assert_same(report_json(url, *window, *options), report_json(path, *window, *options))


@pytest.mark.parametrize("compare", [
    ["--since", iso(NOW - DAY), "--until", iso(NOW), "--compare", "previous"],
    ["--since", iso(NOW - 6 * HOUR), "--until", iso(NOW), "--status", "5xx",
     "--compare", f"{iso(NOW - 3 * DAY)}..{iso(NOW - 2 * DAY)}"],
    ["--until", iso(NOW - 2 * DAY), "--compare", "previous"],
], ids=["previous", "range", "until"])
def test_comparisons_are_the_files(central, compare):
    url, path = central
    ours = report_json(url, *compare)
    assert ours["comparison"]["figures"][0]["previous"] is not None
    assert_same(ours, report_json(path, *compare))


def test_the_data_covers_what_the_report_distinguishes(central):
    """The comparisons above mean something: sampled rows, hashed visitors, routes, several
    hosts and instances, rows without a duration, several daily partitions."""
    url, _ = central
    report = build_report([url])
    assert report["summary"]["estimated_from_sample"] is True
    assert report["summary"]["visitor_column"] == "visitor"
    assert {r["route"] for r in report["routes"]} >= {"/api/items/{id}", "/"}
    assert [i["instance"] for i in report["instances"]] == ["web-1", "web-2", "web-3"]
    assert len(report["hosts"]) == 4 and len(report["timeline"]["points"]) > 90
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM requests WHERE duration IS NULL"
                            ).fetchone()[0] > 10
        days = conn.execute("SELECT count(DISTINCT tableoid) FROM requests").fetchone()[0]
    assert days == 5


def test_percentiles_are_postgresqls_own(central):
    """Exact nearest-rank percentiles: what percentile_disc gives, overall and per path."""
    url, _ = central
    since = NOW - 30 * HOUR
    report = build_report([url], since=since)
    with psycopg.connect(url) as conn:
        def disc(where: str) -> list[float]:
            return conn.execute(
                "SELECT percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration) "
                f"FROM requests_view WHERE duration IS NOT NULL AND start >= {since} AND {where}"
            ).fetchone()[0]

        latency = report["summary"]["latency"]
        assert [latency["p50"], latency["p95"], latency["p99"]] == disc("true")
        assert report["slowest_paths"]
        for row in report["slowest_paths"]:
            assert [row["p50"], row["p95"], row["p99"]] == disc(
                f"path = {psycopg.sql.quote(row['path'])}"), row["path"]


def test_a_reader_without_rights_to_write_or_create(central, pg_cluster):
    """A role that may only read the log's tables, with no right to make temporary tables,
    in read-only transactions (as on a standby), gets the same report."""
    url, _ = central
    role = "reader_" + uuid.uuid4().hex[:8]
    database = urllib.parse.urlsplit(url).path.lstrip("/")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute(f"ALTER ROLE {role} SET default_transaction_read_only = on")
    reader = url.replace("postgres@", f"{role}@", 1)
    try:
        for window in ({}, {"since": NOW - DAY, "filters": Filters(paths=("/api",))}):
            assert_same(build_report([reader], **window), build_report([url], **window))
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_the_threads_of_a_report_read_one_snapshot(central):
    """Rows committed while a report runs are in none of its scans, or in all of them."""
    url, _ = central
    with LogSet([url]) as logs, psycopg.connect(url) as conn:
        before = logs.all("SELECT count(*) FROM requests")[0][0]
        conn.execute("INSERT INTO requests (start, http_status) VALUES (%s, 200)", [NOW - 60])
        conn.commit()
        with logs.twin(weighted=True) as twin:
            assert twin.all("SELECT count(*) FROM requests")[0][0] == before
        with LogSet([url]) as fresh:
            assert fresh.all("SELECT count(*) FROM requests")[0][0] == before + 1
        conn.execute("DELETE FROM requests WHERE start = %s AND path IS NULL", [NOW - 60])
        conn.commit()


def test_the_window_reads_only_its_partitions_through_the_start_index(central, monkeypatch):
    """Every query of a report that reads the window's rows reads only the partitions of the
    window's days, and PostgreSQL can find the range in them with the ``start`` index."""
    url, _ = central
    statements: list[str] = []
    run = LogSet.all

    def recorded(self, sql, params=()):
        statements.append(sql)
        return run(self, sql, params)

    monkeypatch.setattr(LogSet, "all", recorded)
    since, until = NOW - 2 * HOUR, NOW - HOUR
    build_report([url], since=since, until=until)
    windowed = [s for s in statements if repr(since) in s and not s.startswith("SET")]
    assert len(windowed) >= 5
    day = partition_name(int(since // DAY))
    with psycopg.connect(url) as conn:
        for sql in windowed:
            plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN (COSTS OFF) {sql}"))
            assert set(re.findall(r"requests_d\d{8}", plan)) == {day}, plan
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN (COSTS OFF) {windowed[-1]}"))
    assert f"Bitmap Index Scan on {day}_start_idx" in plan, plan
    condition = plan.split(f"Bitmap Index Scan on {day}_start_idx", 1)[1].split("\n")[1]
    assert f"(start >= '{since:.0f}'::double precision)" in condition, plan


def test_errors_are_one_line(central, pg_cluster, tmp_path):
    url, path = central
    runner = CliRunner()
    for args in (["report", pg_cluster.url("no_such_database")],
                 ["report", url.replace("postgresql://", "postgresql://x:secret@", 1)],
                 ["report", url.split("?")[0] + "?host=/nowhere&port=1"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1, args
        assert "Traceback" not in result.output and result.output.count("\n") == 1
        assert "secret" not in result.output
    result = runner.invoke(cli, ["report", url, path])
    assert result.exit_code == 2 and "give it alone" in result.output
    with pytest.raises(ReportError, match="give it alone"):
        build_report([path, url])
    empty = pg_cluster.create_database()
    try:
        empty_url = pg_cluster.url(empty)
        write(empty_url, [], "web-1")
        with pytest.raises(ReportError, match="holds no requests yet"):
            build_report([empty_url])
        with pytest.raises(ReportError, match="no asgi-log-to-sqlite log in schema nowhere"):
            build_report([pg_cluster.url(empty, schema="nowhere")])
    finally:
        pg_cluster.drop_database(empty)


def test_a_window_and_filters_as_sql_in_both_dialects(central):
    """The relation a report reads: one SELECT, a temporary view over a file, a subquery in
    PostgreSQL."""
    url, path = central
    window, filters = Window(NOW - DAY, NOW), Filters(paths=("/api",))
    with LogSet([url], window, filters) as pg, LogSet([path], window, filters) as lite:
        assert pg.files[0].rows.startswith("(SELECT ") and pg.files[0].rows.endswith(") AS r0")
        assert lite.files[0].rows == "r0"
        assert pg.dialect.name == "postgresql" and lite.dialect.name == "sqlite"
        query = "SELECT COUNT(*), MIN(path) FROM {r}"
        assert pg.all(pg.each(query)) == lite.all(lite.each(query)) != [(0, None)]


def test_latency_buckets_by_comparisons_alone(central, monkeypatch):
    """Where latency buckets are found by the tree of comparisons (SQLite without its math
    functions), PostgreSQL finds the same percentiles with it."""
    from asgi_log_to_sqlite.report import queries

    url, path = central
    expected = build_report([path], since=NOW - DAY)
    monkeypatch.setattr(queries, "USE_MATH_FUNCTIONS", False)
    with LogSet([url]) as logs:
        assert not logs.bucket_in_sql
    assert_same(build_report([url], since=NOW - DAY), expected)
