"""Rollups: kept by the writer batch by batch, equal to the rows they add up, outliving them.

Every check recomputes the rollups from the ``requests`` rows here, in Python, and compares
them with what the writer, a migration, ``merge`` or a late row left in the tables.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import threading
import time
from collections import Counter, defaultdict

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgi_log_to_sqlite import AsgiLogToSqlite, histogram, rollups
from asgi_log_to_sqlite.demo import synthetic_log
from asgi_log_to_sqlite.exchange import Exchange
from asgi_log_to_sqlite.maintenance import merge, prune
from asgi_log_to_sqlite.options import Options
from asgi_log_to_sqlite.prepare import Prepare
from asgi_log_to_sqlite.schema import connect, ensure_schema, latest_version
from asgi_log_to_sqlite.sinks.sqlite import SQLiteSink
from asgi_log_to_sqlite.writer import ThreadWriter

HOUR, DAY = 3600, 86400
NOW = 1_750_003_000.0  # 2025-06-15 16:56 UTC


def expected_rollups(conn: sqlite3.Connection, period: int, before: float | None = None) -> dict:
    """Rollups of ``period`` recomputed from the rows (hours before ``before`` only)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    route = "route" if "route" in columns else "NULL"
    rate = "sample_rate" if "sample_rate" in columns else "NULL"
    out: dict = defaultdict(lambda: {"rows": 0, "requests": 0.0, "2xx": 0.0, "4xx": 0.0,
                                     "5xx": 0.0, "not_found": 0.0, "bytes": 0.0, "timed": 0,
                                     "hist": Counter()})
    for start, status, duration, body, r, p, sample in conn.execute(
        f"SELECT start, http_status, duration, body_size, {route}, path, {rate} FROM requests"
    ):
        if not isinstance(start, (int, float)) or not 0 <= start < 253402300800:
            continue
        hour = int(start // HOUR) * HOUR
        if before is not None and hour >= before:
            continue
        w = 1 / sample if isinstance(sample, float) and 0 < sample < 1 else 1
        r = r if isinstance(r, int) and 1 <= r < 2**27 else None
        p = p if isinstance(p, int) and 1 <= p < 2**27 and r is None else None
        key = (int(start // period) * period, r, p)
        e = out[key]
        e["rows"] += 1
        e["requests"] += w
        if isinstance(status, int):
            for name, low in (("2xx", 200), ("4xx", 400), ("5xx", 500)):
                e[name] += w if low <= status <= low + 99 else 0
            e["not_found"] += w if status == 404 else 0
        if isinstance(body, (int, float)) and 0 <= body < 9e18:
            e["bytes"] += body * w
        if isinstance(duration, (int, float)) and math.isfinite(duration):
            e["timed"] += 1
            e["hist"][histogram.bucket_of(duration)] += 1
    return dict(out)


def stored_rollups(conn: sqlite3.Connection, period: int, before: float | None = None) -> dict:
    hist: dict = defaultdict(Counter)
    for rollup, bucket, count in conn.execute("SELECT rollup, bucket, count FROM rollup_latency"):
        hist[rollup][bucket] += count
    out = {}
    for rid, start, route, path, rows, requests, s2, s4, s5, nf, sent, timed in conn.execute(
        "SELECT id, start, route, path, rows, requests, status_2xx, status_4xx, status_5xx, "
        "not_found, bytes_sent, timed FROM rollups WHERE period = ?", (period,)
    ):
        if before is not None and start >= before:
            continue
        out[(start, route, path)] = {"rows": rows, "requests": requests, "2xx": s2, "4xx": s4,
                                     "5xx": s5, "not_found": nf, "bytes": sent, "timed": timed,
                                     "hist": Counter(hist[rid])}
    return out


def assert_same(stored: dict, expected: dict) -> None:
    assert set(stored) == set(expected)
    for key, want in expected.items():
        got = stored[key]
        assert got["hist"] == want["hist"], key
        for name in ("rows", "timed"):
            assert got[name] == want[name], (key, name)
        for name in ("requests", "2xx", "4xx", "5xx", "not_found", "bytes"):
            assert got[name] == pytest.approx(want[name], rel=1e-9), (key, name)


def assert_rollups_match_rows(path: str) -> None:
    """Hourly rollups equal the rows; daily ones equal the rows of the hours folded so far."""
    conn = sqlite3.connect(path)
    try:
        assert_same(stored_rollups(conn, HOUR), expected_rollups(conn, HOUR))
        folded = rollups.folded_until(conn)
        assert_same(stored_rollups(conn, DAY), expected_rollups(conn, DAY, before=folded))
    finally:
        conn.close()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    status = int(path.rsplit("/", 1)[1]) if path.startswith("/status/") else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"x" * (len(path) * 10)})


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def drive(log: AsgiLogToSqlite, paths: list[str]) -> None:
    async def go() -> None:
        transport = httpx.ASGITransport(app=log)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for path in paths:
                await client.get(path)
            await log.aflush(10)

    asyncio.run(go())


def fresh(path: str) -> sqlite3.Connection:
    conn = connect(path)
    ensure_schema(conn)
    return conn


# ---- the writer ---------------------------------------------------------------------------------
def exchange(path: str, status: int, start: float, duration: float | None) -> Exchange:
    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": [],
             "client": ("127.0.0.1", 1)}
    record = Exchange(scope, start, 0.0)
    record.status, record.duration, record.body_size = status, duration, len(path) * 10
    return record


def test_the_writer_keeps_rollups_batch_by_batch(log_path):
    options = Options.from_kwargs({"flush_interval": 60})
    writer = ThreadWriter(SQLiteSink(log_path, options), Prepare(options), options)
    try:
        # Three days and a bit, a request every ~11 minutes, committed every 7 requests.
        for i in range(400):
            path = f"/p/{i % 11}" if i % 3 else "/"
            status = (200, 404, 500, 301)[i % 4]
            writer.put(exchange(path, status, NOW - 3 * DAY + 673.0 * i, 0.001 * (i % 50) or None))
            if i % 7 == 6:
                done = threading.Event()
                writer.request_flush(done.set)
                assert done.wait(20)
    finally:
        writer.stop(20)
    assert_rollups_match_rows(log_path)
    conn = sqlite3.connect(log_path)
    assert conn.execute("SELECT sum(rows) FROM rollups WHERE period = 3600").fetchone()[0] == 400
    # Days are folded up to the newest row's hour (the present is later).
    newest = conn.execute("SELECT max(start) FROM requests").fetchone()[0]
    assert rollups.folded_until(conn) == int(newest // HOUR) * HOUR
    assert conn.execute("SELECT count(*) FROM rollups WHERE period = ?", (DAY,)).fetchone()[0] >= 3
    conn.close()


def test_rollups_count_routes_and_sampled_rows(log_path):
    """A route template is the key when there is one; a sampled row counts 1/sample_rate."""
    conn = fresh(log_path)
    conn.execute("INSERT INTO routes (name) VALUES ('/items/{id}')")
    conn.execute("INSERT INTO paths (name) VALUES ('/items/1'), ('/items/2'), ('/about')")
    conn.execute("BEGIN IMMEDIATE")
    rows = [(NOW, 1, 1, 200, 0.01, 10, 0.25), (NOW + 1, 1, 2, 500, 0.02, 20, 0.25),
            (NOW + 2, None, 3, 404, 0.5, 5, 1.0), (NOW + 3, None, 3, 200, None, 7, None)]
    conn.executemany(
        "INSERT INTO requests (start, route, path, http_status, duration, body_size, sample_rate)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    rollups.add_rows(conn, 1, 4, now=NOW + DAY)
    conn.execute("COMMIT")
    hour = int(NOW // HOUR) * HOUR
    got = {(r, p): (n, q, s5, b) for r, p, n, q, s5, b in conn.execute(
        "SELECT route, path, rows, requests, status_5xx, bytes_sent FROM rollups "
        "WHERE period = 3600 AND start = ?", (hour,))}
    assert got == {(1, None): (2, 8, 4, 120), (None, 3): (2, 2, 0, 12)}
    conn.close()
    assert_rollups_match_rows(log_path)


def test_add_rows_reads_only_the_batch(log_path):
    """O(batch): the rows outside the range are never read, and never counted."""
    synthetic_log(log_path, 2000, end=NOW, days=2)
    conn = connect(log_path)
    before = conn.execute("SELECT sum(rows) FROM rollups WHERE period = 3600").fetchone()[0]
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO requests (start, http_status, duration) VALUES (?, 200, 0.1)", (NOW,))
    last = conn.execute("SELECT max(rowid) FROM requests").fetchone()[0]
    rollups.add_rows(conn, last, last)
    conn.execute("COMMIT")
    after = conn.execute("SELECT sum(rows) FROM rollups WHERE period = 3600").fetchone()[0]
    assert after == before + 1
    columns = [row[1] for row in conn.execute("PRAGMA table_info(requests)")]
    sql = rollups.aggregate_sql("requests", "rowid BETWEEN 5 AND 9", columns)
    plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
    assert "SEARCH requests USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)" in plan
    assert "SCAN requests" not in plan
    conn.close()
    assert_rollups_match_rows(log_path)


def test_late_rows_of_a_folded_day_reach_the_day(log_path):
    synthetic_log(log_path, 500, end=NOW, days=2)
    conn = connect(log_path)
    folded = rollups.folded_until(conn)
    assert folded is not None
    conn.execute("BEGIN IMMEDIATE")
    # A request that started two days ago, committed only now (a long download).
    conn.execute("INSERT INTO requests (start, http_status, duration, body_size) "
                 "VALUES (?, 200, 7200.0, 1)", (NOW - 2 * DAY + 5,))
    last = conn.execute("SELECT max(rowid) FROM requests").fetchone()[0]
    rollups.add_rows(conn, last, last, now=NOW)
    conn.execute("COMMIT")
    assert rollups.folded_until(conn) == folded
    conn.close()
    assert_rollups_match_rows(log_path)


def test_a_failure_in_the_rollups_never_loses_the_batch(log_path, caplog):
    # The writer in this process, so that its warning reaches caplog.
    log = AsgiLogToSqlite(app, log_path, flush_interval=60, writer="thread")
    drive(log, ["/a"])
    conn = sqlite3.connect(log_path)
    conn.execute("DROP TABLE rollup_latency")
    conn.close()
    with caplog.at_level(logging.WARNING, logger="asgi_log_to_sqlite"):
        drive(log, ["/b", "/c"])
        stats = log.stats()
        log.close(10)  # the sums kept in memory are written at the latest now
    conn = sqlite3.connect(log_path)
    assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 3
    conn.close()
    assert "rollup sums not written" in caplog.text
    assert stats["write_errors"] == 0 and stats["dropped_write_failed"] == 0


def test_odd_values_never_fail_or_skew_the_rollups(log_path):
    """Damaged rows (text, blobs, infinities, huge numbers) read as missing values."""
    conn = fresh(log_path)
    conn.execute("BEGIN IMMEDIATE")
    odd = [("abc", 200, 0.1, 5), (NOW, "x", "slow", b"\x00"), (NOW, 200, float("inf"), 2**62),
           (float("inf"), 200, 0.1, 1), (-5.0, 200, 0.1, 1), (1e300, 200, 0.1, 1),
           (NOW, 2**62, -0.5, -7), (NOW, 404, 1e308, 1e300), (None, None, None, None)]
    conn.executemany("INSERT INTO requests (start, http_status, duration, body_size) "
                     "VALUES (?, ?, ?, ?)", odd)
    conn.execute("INSERT INTO requests (start, path, route, http_status) VALUES (?, 'p', -3, 200)",
                 (NOW,))
    rollups.add_rows(conn, 1, len(odd) + 1, now=NOW)
    conn.execute("COMMIT")
    conn.close()
    assert_rollups_match_rows(log_path)


# ---- migration, merge, prune, retention ---------------------------------------------------------
def test_an_older_log_gets_rollups_of_its_rows_when_upgraded(tmp_path):
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    conn.executescript(
        """CREATE TABLE paths (id INTEGER PRIMARY KEY, name TEXT);
           CREATE TABLE requests (start FLOAT, method TEXT, path INTEGER, query_string INTEGER,
               user_agent INTEGER, referer INTEGER, accept_language INTEGER, http_status INTEGER,
               content_type INTEGER, client_ip TEXT, duration FLOAT, body_size INTEGER);
           INSERT INTO paths VALUES (1, '/'), (2, '/missing');"""
    )
    conn.executemany("INSERT INTO requests (start, path, http_status, duration, body_size) "
                     "VALUES (?, ?, ?, ?, ?)",
                     [(NOW - i * 600, 1 + i % 2, 200 + 204 * (i % 2), 0.01 * i, i)
                      for i in range(300)])
    conn.commit()
    conn.close()
    conn = connect(path)
    ensure_schema(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    conn.close()
    assert_rollups_match_rows(path)


def test_prune_keeps_rollups_unless_told_and_retention_keeps_them(tmp_path):
    path = str(tmp_path / "log.db")
    synthetic_log(path, 3000, end=NOW, days=10)
    conn = sqlite3.connect(path)
    hourly = stored_rollups(conn, HOUR)
    conn.close()
    result = prune(path, 5 * DAY, now=NOW)
    assert result.deleted > 0
    conn = sqlite3.connect(path)
    assert stored_rollups(conn, HOUR) == hourly  # the rows went, their rollups stayed
    conn.close()
    prune(path, 5 * DAY, now=NOW, keep_rollups=False)
    conn = sqlite3.connect(path)
    cutoff = NOW - 5 * DAY
    assert conn.execute("SELECT count(*) FROM rollups WHERE start + period <= ?",
                        (cutoff,)).fetchone()[0] == 0
    assert {k: v for k, v in hourly.items() if k[0] + HOUR > cutoff} == stored_rollups(conn, HOUR)
    orphans = conn.execute("SELECT count(*) FROM rollup_latency WHERE rollup NOT IN "
                           "(SELECT id FROM rollups)").fetchone()[0]
    assert orphans == 0
    conn.close()
    # Retention in the writer deletes rows the same way and keeps the rollups.
    live = str(tmp_path / "live.db")
    clock = Clock(time.time())  # rows start by the wall clock; retention asks this one
    log = AsgiLogToSqlite(app, live, retain="1h", clock=clock, flush_interval=0.05)
    drive(log, [f"/old/{i}" for i in range(20)])
    clock.now += 3 * HOUR
    drive(log, ["/new"])
    log.close(10)
    conn = sqlite3.connect(live)
    assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 1
    assert conn.execute("SELECT sum(rows) FROM rollups WHERE period = 3600").fetchone()[0] == 21
    conn.close()


def test_merge_adds_rollups_of_every_file_even_of_pruned_rows(tmp_path):
    one, two, old = (str(tmp_path / f"{n}.db") for n in ("one", "two", "old"))
    synthetic_log(one, 1500, end=NOW - 3 * DAY, days=4, seed=1)
    synthetic_log(two, 1500, end=NOW, days=4, seed=2)  # overlaps one: shared hours add up
    prune(one, 5 * DAY, now=NOW)  # some of one's rows are gone, its rollups are not
    conn = sqlite3.connect(one)
    pruned_hours = stored_rollups(conn, HOUR)
    conn.close()
    # A file from before rollups: its rows make its rollups.
    conn = sqlite3.connect(old)
    conn.executescript(
        """CREATE TABLE paths (id INTEGER PRIMARY KEY, name TEXT UNIQUE);
           CREATE TABLE requests (start FLOAT, method TEXT, path INTEGER REFERENCES paths(id),
               query_string INTEGER, user_agent INTEGER, referer INTEGER, accept_language INTEGER,
               http_status INTEGER, content_type INTEGER, client_ip TEXT, duration FLOAT,
               body_size INTEGER);
           INSERT INTO paths VALUES (1, '/legacy');"""
    )
    conn.executemany("INSERT INTO requests (start, path, http_status, duration, body_size) "
                     "VALUES (?, 1, 200, 0.05, 3)", [(NOW - 7200 - i,) for i in range(50)])
    conn.commit()
    conn.close()
    out = str(tmp_path / "merged.db")
    merge(out, [one, two, old])
    merge(out, [one, two, old])  # idempotent: nothing added twice
    conn = sqlite3.connect(out)
    total = conn.execute("SELECT sum(rows) FROM rollups WHERE period = 3600").fetchone()[0]
    assert total == sum(v["rows"] for v in pruned_hours.values()) + 1500 + 50
    # Per hour and path name, the merged rollups equal the inputs' put together.
    by_name = Counter()
    for source in (one, two, old):
        c = sqlite3.connect(source)
        if "rollups" in {r[0] for r in c.execute("SELECT name FROM sqlite_master")}:
            for start, name, n in c.execute(
                "SELECT u.start, p.name, u.rows FROM rollups u LEFT JOIN paths p ON p.id = u.path "
                "WHERE u.period = 3600"):
                by_name[(start, name)] += n
        else:
            for start, name in c.execute(
                "SELECT r.start, p.name FROM requests r JOIN paths p ON p.id = r.path"):
                by_name[(int(start // HOUR) * HOUR, name)] += 1
        c.close()
    merged = Counter()
    for start, name, n in conn.execute(
        "SELECT u.start, p.name, u.rows FROM rollups u LEFT JOIN paths p ON p.id = u.path "
        "WHERE u.period = 3600"):
        merged[(start, name)] += n
    assert merged == by_name
    # Days hold every hour folded so far, and the merge folds all it brought.
    folded = rollups.folded_until(conn)
    assert folded > conn.execute("SELECT max(start) FROM rollups WHERE period = 3600").fetchone()[0]
    days = conn.execute("SELECT sum(rows) FROM rollups WHERE period = 86400").fetchone()[0]
    assert days == total
    conn.close()


# ---- the histogram -------------------------------------------------------------------------
DURATIONS = st.lists(
    st.one_of(st.floats(1e-5, 3600), st.floats(1e-5, 0.2), st.sampled_from([0.001, 0.01, 0.5])),
    min_size=1, max_size=400,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DURATIONS, st.sampled_from([50, 90, 95, 99, 99.9]))
def test_percentiles_from_the_histogram_are_within_five_percent(durations, p):
    exact = sorted(durations)[histogram.rank(p, len(durations)) - 1]
    counts = Counter(histogram.bucket_of(d) for d in durations)
    bucket, _ = histogram.percentile_bucket(counts, p)
    assert abs(histogram.estimate(bucket) - exact) <= 0.05 * exact


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_the_sql_bucket_is_the_python_bucket(durations):
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (d FLOAT)")
    conn.executemany("INSERT INTO t VALUES (?)", [(d,) for d in durations])
    sql = f"SELECT {histogram.bucket_sql('d')} FROM t ORDER BY rowid"
    got = [row[0] for row in conn.execute(sql)]
    assert got == [histogram.bucket_of(d) for d in durations]
    conn.close()


def test_an_older_big_log_gets_rollups_of_its_newest_rows(tmp_path, monkeypatch):
    from asgi_log_to_sqlite import schema

    monkeypatch.setattr(schema, "ROLLUP_BACKFILL_ROWS", 100)
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    conn.executescript(
        """CREATE TABLE requests (start FLOAT, method TEXT, path INTEGER, query_string INTEGER,
               user_agent INTEGER, referer INTEGER, accept_language INTEGER, http_status INTEGER,
               content_type INTEGER, client_ip TEXT, duration FLOAT, body_size INTEGER);"""
    )
    conn.executemany("INSERT INTO requests (start, http_status, duration) VALUES (?, 200, 0.1)",
                     [(NOW - 300 + i,) for i in range(300)])
    conn.commit()
    conn.close()
    conn = connect(path)
    ensure_schema(conn)
    assert conn.execute("SELECT SUM(rows) FROM rollups WHERE period = 3600").fetchone()[0] == 100
    conn.close()


# ---- the writer's aggregate in Python equals the SQL one -----------------------------------------
_values = st.one_of(st.none(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                    st.sampled_from([200, 404, 500, 301, 101, 199.5, 600, "x", b"y"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(
    st.one_of(st.floats(-10, 2e9), st.integers(-5, 2 * 10**9), st.just(float("inf")),
              st.just("text")),
    st.one_of(st.none(), st.integers(-1, 5), st.just(2**27), st.just(1.5)),
    st.one_of(st.none(), st.integers(-1, 5), st.just(2**27 + 1)),
    _values,
    st.one_of(st.none(), st.floats(allow_nan=True), st.floats(0, 100), st.just("slow")),
    _values,
    _values,
    st.one_of(st.none(), st.just(1.0), st.just(0.25), st.just(0), st.just(-1), st.just("x")),
), min_size=1, max_size=40))
def test_the_writers_aggregate_equals_the_sql_one(rows):
    names = ("start", "route", "path", "http_status", "duration", "body_size",
             "request_body_size", "sample_rate")
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"CREATE TABLE requests ({', '.join(names)})")
        conn.executemany(f"INSERT INTO requests VALUES ({', '.join('?' * len(names))})", rows)
        sql = rollups.aggregate_sql("requests", "1", names)
        expected = {row[0]: row for row in conn.execute(sql)}
    finally:
        conn.close()
    # What the table holds is what the writer had in hand (a float column stores 3 as 3.0...):
    # compare with the values read back, as SQLite typed them.
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"CREATE TABLE requests ({', '.join(names)})")
        conn.executemany(f"INSERT INTO requests VALUES ({', '.join('?' * len(names))})", rows)
        stored = list(zip(*conn.execute(f"SELECT {', '.join(names)} FROM requests"),
                          strict=True))
    finally:
        conn.close()
    found = {row[0]: row for row in rollups.aggregate_columns(dict(zip(names, stored,
                                                                       strict=True)))}
    assert found.keys() == expected.keys()
    for k, row in found.items():
        for mine, theirs in zip(row, expected[k], strict=True):
            if mine is None or theirs is None:
                assert mine == theirs
            else:
                assert math.isclose(mine, theirs, rel_tol=1e-9, abs_tol=1e-9), (row, expected[k])
