"""The spill: rows kept in a local SQLite log while PostgreSQL is away, shipped when it is back,
oldest first, each row once, with its own start and instance."""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid

import pytest
from pg_support import serve_paths

from asgi_log_to_sqlite import AsgiLogToSqlite
from asgi_log_to_sqlite.sinks import postgresql as pg_sink
from asgi_log_to_sqlite.sinks.spill import Spill

psycopg = pytest.importorskip("psycopg")

LOGGER = "asgi_log_to_sqlite"


async def ok_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def serve(app, paths):
    serve_paths(app, paths, **{"user-agent": "ua"})


def query(url, sql, params=()):
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def spilled_rows(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    finally:
        conn.close()


def wait_for(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


@pytest.fixture
def later_database(pg_cluster):
    """A database that does not exist yet: (its URL, a function that creates it)."""
    name = "later_" + uuid.uuid4().hex[:10]
    try:
        yield pg_cluster.url(name), lambda: pg_cluster.create_database(name)
    finally:
        pg_cluster.drop_database(name)


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_unreachable_at_start_up_rows_spill_then_ship_once(later_database, tmp_path, writer):
    url, create = later_database
    spill = str(tmp_path / "spill.db")
    log = AsgiLogToSqlite(ok_app, url, writer=writer, spill=spill, instance="web-9")
    try:
        serve(log, [f"/early/{i}" for i in range(300)])
        started = time.monotonic()
        log.flush(20)  # kept in the spill file: a flush does not wait for the database
        assert time.monotonic() - started < 10
        assert spilled_rows(spill) == 300
        early = sqlite3.connect(spill).execute(
            "SELECT min(start), max(start) FROM requests").fetchone()
        create()
        time.sleep(pg_sink.RECONNECT_EVERY + 0.1)
        serve(log, [f"/late/{i}" for i in range(50)])
        log.flush(20)
        assert log.stats()["dropped_write_failed"] == 0
    finally:
        log.close(20)
    rows = query(url, "SELECT path, instance, start FROM requests_view ORDER BY id")
    assert len(rows) == 350
    assert len({path for path, _, _ in rows}) == 350
    assert {instance for _, instance, _ in rows} == {"web-9"}
    # Oldest first: the spilled rows before the later ones, with their own start times.
    assert [p.split("/")[1] for p, _, _ in rows] == ["early"] * 300 + ["late"] * 50
    assert (rows[0][2], rows[299][2]) == early
    assert spilled_rows(spill) == 0


def test_shipped_while_idle_too(later_database, tmp_path, monkeypatch):
    monkeypatch.setattr(pg_sink, "IDLE_EVERY", 0.2)
    url, create = later_database
    spill = str(tmp_path / "spill.db")
    log = AsgiLogToSqlite(ok_app, url, writer="thread", spill=spill, flush_interval=0.05)
    try:
        serve(log, ["/a", "/b", "/c"])
        log.flush(20)
        assert spilled_rows(spill) == 3
        create()
        wait_for(lambda: spilled_rows(spill) == 0)
    finally:
        log.close(20)
    assert query(url, "SELECT count(*) FROM requests") == [(3,)]


def test_a_shipment_cut_short_is_finished_not_repeated(later_database, tmp_path, monkeypatch):
    url, create = later_database
    spill = str(tmp_path / "spill.db")
    log = AsgiLogToSqlite(ok_app, url, writer="thread", spill=spill)
    try:
        serve(log, [f"/p/{i}" for i in range(120)])
        log.flush(20)
        assert spilled_rows(spill) == 120
        create()
        # The rows reach PostgreSQL, then the process "dies" before taking them out of the file.
        real = Spill.shipped
        calls = []

        def crash_once(self, *args):
            calls.append(args)
            if len(calls) == 1:
                raise OSError("killed between the two commits")
            return real(self, *args)

        monkeypatch.setattr(Spill, "shipped", crash_once)
        monkeypatch.setattr(pg_sink, "SHIP_CHUNK", 50)
        time.sleep(pg_sink.RECONNECT_EVERY + 0.1)
        serve(log, ["/after"])
        log.flush(20)
        time.sleep(pg_sink.RECONNECT_EVERY + 0.1)
        serve(log, ["/after-2"])
        log.flush(20)
    finally:
        log.close(20)
    rows = query(url, "SELECT path FROM requests_view ORDER BY id")
    assert len(rows) == 122
    assert len(set(rows)) == 122
    assert spilled_rows(spill) == 0


def test_drop_counts_kept_in_the_spill_are_shipped_once(later_database, tmp_path):
    url, create = later_database
    spill = str(tmp_path / "spill.db")
    log = AsgiLogToSqlite(ok_app, url, writer="thread", spill=spill, max_queue=5,
                          flush_interval=0.5)
    try:
        serve(log, [f"/p/{i}" for i in range(20)])  # 15 dropped: the queue holds 5
        log.flush(20)
        create()
        time.sleep(pg_sink.RECONNECT_EVERY + 0.1)
        serve(log, ["/x"])
        log.flush(20)
        serve(log, ["/y"])
        log.flush(20)
    finally:
        log.close(20)
    assert query(url, "SELECT count(*) FROM requests") == [(7,)]
    assert query(url, "SELECT reason, sum(count)::int FROM dropped GROUP BY 1") == [
        ("queue_full", 15)]


def test_without_a_spill_rows_are_retried_then_dropped_and_counted(later_database, caplog):
    url, create = later_database
    log = AsgiLogToSqlite(ok_app, url, writer="thread", spill=False, retry_for=1,
                          flush_interval=0.05)
    try:
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            serve(log, ["/a", "/b"])
            wait_for(lambda: log.stats()["dropped_write_failed"] == 2)
        create()  # the count of those drops is stored once the database is there
        time.sleep(pg_sink.RECONNECT_EVERY + 0.1)
        log.flush(20)
    finally:
        log.close(5)
    assert any("dropped 2 record(s)" in r.getMessage() for r in caplog.records)
    assert query(url, "SELECT reason, count FROM dropped") == [("write_failed", 2)]


def test_default_spill_is_in_the_temp_folder_named_after_the_log(pg_url):
    import tempfile

    log = AsgiLogToSqlite(ok_app, pg_url, writer="thread")
    try:
        assert log.sink.spill_path.startswith(tempfile.gettempdir())
        assert "asgi-log-to-sqlite-spill-" in log.sink.spill_path
        other = AsgiLogToSqlite(ok_app, pg_url + "&schema=other", writer="thread")
        assert other.sink.spill_path != log.sink.spill_path
        other.close()
    finally:
        log.close()


def test_a_spill_folder_that_does_not_exist_is_refused(pg_url, tmp_path):
    with pytest.raises(ValueError, match="'spill'"):
        AsgiLogToSqlite(ok_app, pg_url, spill=str(tmp_path / "no" / "spill.db"))


@pytest.mark.parametrize("stored", [True, False])
def test_a_batch_whose_commit_lost_its_answer_is_not_shipped_twice(pg_url, tmp_path, stored):
    from asgi_log_to_sqlite.batch import Batch
    from asgi_log_to_sqlite.options import Options

    options = Options.from_kwargs({"spill": str(tmp_path / "spill.db"), "instance": "web-1"})
    sink = pg_sink.PostgreSQLSink(pg_url, options)
    now = time.time()
    row = [now, "GET", "/p", None, None, None, None, 200, None, None, 0.1, 1, None, "http",
           "1.1", 0, None, None, 0, "http", None, None, None, 1.0, None, "web-1"]
    rows = [tuple([now + i / 1000, *row[1:2], f"/p/{i}", *row[3:]]) for i in range(5)]
    committed = Batch(rows=list(rows), keys=[0] * 5)
    sink.write(committed)  # in PostgreSQL now...
    first_id, first_start = query(pg_url, "SELECT min(id), min(start) FROM requests")[0]
    if not stored:
        query(pg_url, "DELETE FROM requests")  # ...or, this time, not
    # ...but the writer never heard: the same rows reach the spill file, marked uncertain.
    again = Batch(rows=list(rows), keys=[0] * 5)
    sink._uncertain = (again, first_id, first_start)
    sink._to_spill(again)
    assert spilled_rows(str(tmp_path / "spill.db")) == 5
    sink.write(Batch(rows=[tuple([now + 1, *row[1:2], "/later", *row[3:]])], keys=[0]))
    sink.close()
    paths = [p for (p,) in query(pg_url, "SELECT path FROM requests_view ORDER BY id")]
    assert paths == [f"/p/{i}" for i in range(5)] + ["/later"]
    assert spilled_rows(str(tmp_path / "spill.db")) == 0


def test_a_shipment_stored_by_another_process_is_not_stored_again(pg_url, tmp_path):
    """Two processes sharing a spill file: if both read the same rows, one shipment wins and
    the other's transaction is rolled back."""
    from asgi_log_to_sqlite.options import Options

    path = str(tmp_path / "spill.db")
    make = lambda: pg_sink.PostgreSQLSink(  # noqa: E731
        pg_url, Options.from_kwargs({"spill": path, "instance": "web-1"}))
    first, second = make(), make()
    first._connection()
    now = time.time()
    row = (now, "GET", "/p", None, None, None, None, 200, None, None, 0.1, 1, None, "http",
           "1.1", 0, None, None, 0, "http", None, None, None, 1.0, None, "web-1")
    from asgi_log_to_sqlite.batch import Batch

    first._spill_file().put(Batch(rows=[row, row], keys=[0, 0]))
    spill_id, applied = first._spill_file().identity()
    # Both read shipment number applied + 1 before either stored it.
    one = first._spill_file().next_shipment(spill_id, applied + 1)
    two = second._spill_file().next_shipment(spill_id, applied + 1)
    first._write_batch(one.batch, one)
    with pytest.raises(pg_sink.ShippedElsewhere):
        second._write_batch(two.batch, two)
    first.close()
    second.close()
    assert query(pg_url, "SELECT count(*) FROM requests") == [(2,)]
