"""The PostgreSQL schema: URLs, migrations, daily partitions and retention."""

from __future__ import annotations

import threading
import time

import pytest

from asgi_log_to_sqlite import AsgiLogToSqlite
from asgi_log_to_sqlite.exchange import Exchange, next_key
from asgi_log_to_sqlite.options import Options
from asgi_log_to_sqlite.postgresql_schema import (
    DAY,
    RETENTION_LOCK,
    attached_days,
    connect,
    day_of,
    delete_older_than,
    ensure_schema,
    latest_version,
    parse_url,
    partition_name,
)
from asgi_log_to_sqlite.prepare import Prepare
from asgi_log_to_sqlite.sinks import open_sink
from asgi_log_to_sqlite.sinks import postgresql as pg_sink
from asgi_log_to_sqlite.writer import ThreadWriter


async def ok_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


# ---- URLs ----------------------------------------------------------------------------------------
def test_urls_are_checked_and_their_password_never_shown():
    target = parse_url("postgresql://logger:s3cret@db.internal:5433/weblogs?schema=app_log"
                       "&sslmode=require")
    assert target.schema == "app_log"
    assert "schema" not in target.url and "sslmode=require" in target.url
    assert "s3cret" in target.url and "s3cret" not in target.display
    assert parse_url("postgres://db/log").schema == "public"
    assert parse_url("postgres://db/log", "weblogs").schema == "weblogs"
    for bad in ("postgresql://db:99999999/log", "postgresql://db:x/log",
                "postgresql://db/log?schema=1bad", "postgresql://db/log?schema=a&schema=b",
                "postgresql://db/log?nosuchparameter=1"):
        with pytest.raises(ValueError, match="'file'"):
            parse_url(bad)


def test_the_default_spill_file_differs_per_log_not_per_password():
    one = parse_url("postgresql://u:a@db/log").digest()
    assert one == parse_url("postgresql://u:b@db/log").digest()
    assert one != parse_url("postgresql://u:a@db/log?schema=x").digest()


# ---- migrations ----------------------------------------------------------------------------------
def test_created_once_then_left_alone(pg_url):
    target = parse_url(pg_url)
    with connect(target) as conn:
        ensure_schema(conn, target)
        ensure_schema(conn, target)
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
        assert [v for (v,) in versions] == list(range(1, latest_version() + 1))
        names = {name for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    assert {"requests", "requests_view", "paths", "instances", "dropped", "excluded_requests",
            "captured_headers", "captures", "spill_shipments"} <= names


def test_a_newer_log_is_refused_at_construction(pg_url):
    target = parse_url(pg_url)
    with connect(target) as conn:
        ensure_schema(conn, target)
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (latest_version() + 1,))
    with pytest.raises(ValueError, match="newer than this asgi-log-to-sqlite"):
        AsgiLogToSqlite(ok_app, pg_url, writer="thread")


def test_partitions_exist_ahead_of_time(pg_url):
    log = AsgiLogToSqlite(ok_app, pg_url, writer="thread")
    log.close()
    target = parse_url(pg_url)
    today = day_of(time.time())
    with connect(target) as conn, conn.cursor() as cur:
        assert {today - 1, today, today + 1, today + 2} <= attached_days(cur)
    assert partition_name(0) == "requests_d19700101"


# ---- retention -----------------------------------------------------------------------------------
def write_ages(url: str, ages: list[float], now: float, **given) -> ThreadWriter:
    options = Options.from_kwargs({"flush_interval": 60, "clock": lambda: now, **given})
    sink = open_sink(url, options)
    sink.prepare()
    writer = ThreadWriter(sink, Prepare(options), options)
    for age in ages:
        record = Exchange({"type": "http", "method": "GET", "path": f"/{age}",
                           "query_string": b"", "headers": []}, now - age, 0.0)
        record.key, record.status, record.duration, record.body_size = next_key(), 200, 0.1, 1
        writer.put(record)
    done = threading.Event()
    writer.request_flush(done.set)
    assert done.wait(30)
    return writer


def test_retention_drops_whole_days_and_deletes_the_rest(pg_url, monkeypatch):
    monkeypatch.setattr(pg_sink, "IDLE_EVERY", 0.0)
    now = time.time()
    ages = [hours * 3600.0 for hours in range(0, 24 * 6, 5)]  # six days, every five hours
    writer = write_ages(pg_url, ages, now, retain="2d")
    try:
        writer.sink.idle()  # retention runs between batches, on a quiet server too
    finally:
        writer.stop(10)
    target = parse_url(pg_url)
    with connect(target) as conn, conn.cursor() as cur:
        kept = conn.execute("SELECT count(*), min(start) FROM requests").fetchone()
        days = attached_days(cur)
    assert kept[0] == sum(1 for age in ages if age < 2 * DAY)
    assert kept[1] >= now - 2 * DAY
    assert min(days) == day_of(now - 2 * DAY)


def test_retention_by_hand_is_idempotent_and_one_at_a_time(pg_url):
    now = time.time()
    writer = write_ages(pg_url, [0, 3 * DAY, 4 * DAY], now)
    writer.stop(10)
    target = parse_url(pg_url)
    with connect(target) as conn, connect(target) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", (RETENTION_LOCK, target.key))
        assert delete_older_than(conn, target, now - DAY) is None  # someone else is at it
        other.execute("SELECT pg_advisory_unlock(%s, %s)", (RETENTION_LOCK, target.key))
        done = delete_older_than(conn, target, now - DAY)
        assert done is not None and done.partitions_dropped >= 2
        again = delete_older_than(conn, target, now - DAY)
        assert again is not None and (again.partitions_dropped, again.rows_deleted) == (0, 0)
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 1


def test_rows_of_any_day_find_their_partition(pg_url):
    now = time.time()
    writer = write_ages(pg_url, [0, 40 * DAY, 400 * DAY], now)
    writer.stop(10)
    target = parse_url(pg_url)
    with connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 3


def test_a_day_dropped_by_another_process_is_made_again(pg_url):
    now = time.time()
    writer = write_ages(pg_url, [0, 3 * DAY], now)  # this writer knows both days now
    try:
        target = parse_url(pg_url)
        with connect(target) as conn:
            delete_older_than(conn, target, now - DAY)  # "another process" drops the old day
        record = Exchange({"type": "http", "method": "GET", "path": "/late",
                           "query_string": b"", "headers": []}, now - 3 * DAY, 0.0)
        record.key, record.status, record.duration, record.body_size = next_key(), 200, 0.1, 1
        writer.put(record)  # a row kept in a spill file for three days, say
        done = threading.Event()
        writer.request_flush(done.set)
        assert done.wait(30)
        assert writer.stats()["dropped_bad_record"] == 0
    finally:
        writer.stop(10)
    with connect(parse_url(pg_url)) as conn:
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 2
