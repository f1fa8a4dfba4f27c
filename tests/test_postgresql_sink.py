"""The PostgreSQL sink against a real server (a throwaway cluster: tests/pg_support.py): rows,
lookups, instances, late exceptions, captures, isolation of bad values, many writers at once,
refused credentials and bad URLs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pg_support import serve_paths

from asgi_log_to_sqlite import AsgiLogToSqlite
from asgi_log_to_sqlite.exchange import Exchange, next_key
from asgi_log_to_sqlite.options import Options
from asgi_log_to_sqlite.postgresql_schema import REQUEST_TYPES
from asgi_log_to_sqlite.prepare import Prepare
from asgi_log_to_sqlite.schema import REQUEST_COLUMNS
from asgi_log_to_sqlite.sinks import open_sink
from asgi_log_to_sqlite.writer import ThreadWriter

psycopg = pytest.importorskip("psycopg")

LOGGER = "asgi_log_to_sqlite"
SRC = str(Path(__file__).resolve().parent.parent / "src")


# ---- helpers -------------------------------------------------------------------------------------
def query(url: str, sql: str, params: Any = (), schema: str = "public") -> list[tuple[Any, ...]]:
    from asgi_log_to_sqlite.postgresql_schema import connect, parse_url

    target = parse_url(url)
    target = type(target)(target.url, schema, target.display)
    with connect(target) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def exchange(path: str = "/", status: Any = 200, start: float | None = None,
             user_agent: bytes = b"ua") -> Exchange:
    scope = {
        "type": "http", "method": "GET", "path": path, "query_string": b"",
        "headers": [(b"user-agent", user_agent), (b"host", b"example.com")],
        "client": ("127.0.0.1", 1),
    }
    record = Exchange(scope, time.time() if start is None else start, time.perf_counter())
    record.key = next_key()
    record.status = status
    record.duration = 0.001
    record.body_size = 10
    return record


def flush(writer: ThreadWriter, timeout: float = 20) -> None:
    done = threading.Event()
    writer.request_flush(done.set)
    assert done.wait(timeout), "flush did not complete"


def make_writer(url: str, **given: Any) -> ThreadWriter:
    options = Options.from_kwargs({"flush_interval": 60, "batch_size": 5000, **given})
    sink = open_sink(url, options)
    sink.prepare()
    return ThreadWriter(sink, Prepare(options), options)


async def ok_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def run_script(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )


# ---- the schema ----------------------------------------------------------------------------------
def test_every_column_of_the_logical_schema_has_a_postgresql_type():
    assert list(REQUEST_TYPES) == list(REQUEST_COLUMNS)


# ---- rows ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("writer", ["thread", "process"])
def test_requests_become_rows_with_their_instance(pg_url, writer):
    log = AsgiLogToSqlite(ok_app, pg_url, writer=writer, instance="web-1")
    serve_paths(log, [f"/p/{i % 7}" for i in range(50)], **{"user-agent": "curl/8"})
    log.flush(20)
    log.close(20)
    assert log.stats()["written"] == 50
    rows = query(pg_url, "SELECT path, instance, user_agent, http_status, content_type "
                         "FROM requests_view ORDER BY id")
    assert len(rows) == 50
    assert rows[0] == ("/p/0", "web-1", "curl/8", 200, "text/plain")
    assert query(pg_url, "SELECT count(*) FROM paths") == [(7,)]
    assert query(pg_url, "SELECT count(DISTINCT id) FROM requests") == [(50,)]


def test_instance_defaults_to_the_host_name(pg_url):
    import socket

    log = AsgiLogToSqlite(ok_app, pg_url, writer="thread")
    serve_paths(log, ["/"])
    log.close(20)
    assert query(pg_url, "SELECT instance FROM requests_view") == [(socket.gethostname(),)]


def test_a_schema_from_the_url_or_the_option(pg_url):
    log = AsgiLogToSqlite(ok_app, pg_url + "&schema=weblogs", writer="thread")
    serve_paths(log, ["/a"])
    log.close(20)
    log = AsgiLogToSqlite(ok_app, pg_url, writer="thread", schema="other")
    serve_paths(log, ["/b", "/c"])
    log.close(20)
    assert query(pg_url, "SELECT path FROM requests_view", schema="weblogs") == [("/a",)]
    assert query(pg_url, "SELECT count(*) FROM requests", schema="other") == [(2,)]
    assert query(pg_url, "SELECT to_regclass('public.requests')") == [(None,)]


def test_a_late_exception_lands_on_its_row(pg_url):
    writer = make_writer(pg_url)
    try:
        late, other = exchange("/late"), exchange("/other")
        writer.put(late)
        writer.put(other)
        flush(writer)
        late.exception = "app.Late"
        writer.amend(late)
        flush(writer)
    finally:
        writer.stop(10)
    assert query(pg_url, "SELECT path, exception FROM requests_view ORDER BY id") == [
        ("/late", "app.Late"), ("/other", None)]


def test_captured_headers_and_captures_are_stored(pg_url):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"x-answer", b"42")]})
        await send({"type": "http.response.body", "body": b"made"})

    log = AsgiLogToSqlite(app, pg_url, writer="thread", capture_request_headers=["x-test"],
                          capture_response_headers=["x-answer"], capture_requests=True,
                          capture_responses=True)
    serve_paths(log, ["/one", "/two"], **{"x-test": "yes"})
    log.close(20)
    headers = query(pg_url, "SELECT r.path, h.direction, h.name, h.value FROM "
                            "captured_headers_view h JOIN requests_view r ON r.id = h.request "
                            "ORDER BY r.id, h.direction")
    assert headers == [("/one", "request", "x-test", "yes"), ("/one", "response", "x-answer", "42"),
                       ("/two", "request", "x-test", "yes"), ("/two", "response", "x-answer", "42")]
    captures = query(pg_url, "SELECT r.path, c.response_body FROM captures c "
                             "JOIN requests_view r ON r.id = c.request ORDER BY r.id")
    assert [(path, bytes(body)) for path, body in captures] == [("/one", b"made"),
                                                                 ("/two", b"made")]


# ---- values PostgreSQL refuses -------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["status", "nul", "start"])
def test_one_bad_request_among_2000_loses_nothing_else(pg_url, bad, caplog):
    writer = make_writer(pg_url)
    try:
        for i in range(2000):
            if i == 777 and bad == "status":
                writer.put(exchange(f"/p{i}", status=2**63))
            elif i == 777 and bad == "nul":
                writer.put(exchange(f"/p{i}\x00x", user_agent=b"a\x00b"))
            elif i == 777:
                writer.put(exchange(f"/p{i}", start=1e12))  # the year 33658: no partition
            else:
                writer.put(exchange(f"/p{i}"))
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            flush(writer, 10)
        assert time.monotonic() - started < 5
        stats = writer.stats()
    finally:
        writer.stop(10)
    count = query(pg_url, "SELECT count(*) FROM requests")[0][0]
    if bad == "start":
        assert count == 1999
        assert stats["dropped_bad_record"] == 1
        assert query(pg_url, "SELECT reason, count FROM dropped") == [("bad_record", 1)]
    else:
        assert count == 2000
        assert stats["dropped_bad_record"] == 0
    if bad == "status":
        assert query(pg_url, "SELECT count(*) FROM requests WHERE http_status IS NULL") == [(1,)]
    if bad == "nul":
        assert query(pg_url, "SELECT path, user_agent FROM requests_view WHERE path LIKE %s",
                     ("/p777%",)) == [("/p777\\x00x", "a\\x00b")]


# ---- many writers --------------------------------------------------------------------------------
WRITER_SCRIPT = """
    import random, sys, threading, time
    from asgi_log_to_sqlite.exchange import Exchange, next_key
    from asgi_log_to_sqlite.options import Options
    from asgi_log_to_sqlite.prepare import Prepare
    from asgi_log_to_sqlite.sinks import open_sink
    from asgi_log_to_sqlite.writer import ThreadWriter

    url, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    options = Options.from_kwargs({"instance": name, "batch_size": 500, "flush_interval": 0.01})
    sink = open_sink(url, options)
    sink.prepare()
    writer = ThreadWriter(sink, Prepare(options), options)
    rng = random.Random(name)
    for i in range(count):
        scope = {"type": "http", "method": "GET", "path": f"/shared/{rng.randrange(3000)}",
                 "query_string": f"q={rng.randrange(500)}".encode(),
                 "headers": [(b"user-agent", f"agent {rng.randrange(200)}".encode())],
                 "client": ("127.0.0.1", 1)}
        record = Exchange(scope, time.time(), 0.0)
        record.key, record.status, record.duration, record.body_size = next_key(), 200, 0.01, 1
        writer.put(record)
        if i % 1000 == 0:
            time.sleep(0.01)
    done = threading.Event()
    writer.request_flush(done.set)
    assert done.wait(120)
    writer.stop(30)
    stats = writer.stats()
    assert stats["written"] == count and stats["write_errors"] == 0, stats
    print("ok")
"""


def run_at_once(script: str, argument_lists: list[list[str]], timeout: float) -> None:
    """One Python process per argument list, all at once; each must end printing "ok"."""
    processes = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *arguments],
                         env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for arguments in argument_lists
    ]
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            assert process.returncode == 0 and "ok" in out, err
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)


def test_four_writers_at_once_lose_nothing_and_store_nothing_twice(pg_url):
    run_at_once(WRITER_SCRIPT, [[pg_url, f"host-{i}", "5000"] for i in range(4)], timeout=240)
    assert query(pg_url, "SELECT count(*), count(DISTINCT id) FROM requests") == [(20000, 20000)]
    assert query(pg_url, "SELECT instance, count(*) FROM requests_view GROUP BY 1 ORDER BY 1") == [
        (f"host-{i}", 5000) for i in range(4)]
    for table in ("paths", "query_strings", "user_agents", "instances"):
        assert query(pg_url, f"SELECT count(*) = count(DISTINCT name) FROM {table}") == [(True,)]


SCHEMA_SCRIPT = """
    import sys, time
    from asgi_log_to_sqlite.postgresql_schema import connect, ensure_schema, parse_url
    target = parse_url(sys.argv[1])
    while time.time() < float(sys.argv[2]):
        time.sleep(0.001)
    with connect(target) as conn:
        ensure_schema(conn, target)
    print("ok")
"""


def test_twenty_processes_create_the_schema_at_once(pg_url):
    from asgi_log_to_sqlite.postgresql_schema import latest_version

    url = pg_url + "&schema=fresh"
    at = str(time.time() + 3)
    run_at_once(SCHEMA_SCRIPT, [[url, at]] * 20, timeout=120)
    assert query(pg_url, "SELECT max(version), count(*) FROM schema_migrations",
                 schema="fresh") == [(latest_version(), latest_version())]


# ---- bad settings and refused credentials --------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        ("mysql://db/log", {}, "'file'"),
        ("postgresql://db:port/log", {}, "'file'"),
        ("postgresql://db/log?nosuch=1", {}, "'file'"),
        ("postgresql:/db/log", {}, "'file'"),
        ("postgres:log", {}, "'file'"),
        ("postgresql://db/log?schema=bad-name", {}, "schema"),
        ("postgresql://db/log?schema=a", {"schema": "b"}, "disagree"),
        ("postgresql://db/log", {"rotate": "daily"}, "'rotate'"),
        ("postgresql://db/log", {"max_rows": 10}, "'max_rows'"),
        ("log.db", {"spill": "spill.db"}, "'spill'"),
        ("log.db", {"schema": "weblogs"}, "'schema'"),
    ],
)
def test_bad_settings_fail_at_construction_naming_the_option(tmp_path, monkeypatch, target,
                                                             options, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message) as raised:
        AsgiLogToSqlite(ok_app, target, writer="thread", **options)
    assert "\n" not in str(raised.value)  # one line, libpq's trailing newline taken off
    assert not list(tmp_path.iterdir())  # no file made for a URL gone wrong


def test_refused_credentials_are_logged_once_counted_and_rows_kept(pg_url, tmp_path, caplog):
    query(pg_url, "DO $$ BEGIN CREATE ROLE cannot_log_in NOLOGIN; "
                  "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    url = pg_url.replace("postgres@", "cannot_log_in@")
    spill = str(tmp_path / "spill.db")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        log = AsgiLogToSqlite(ok_app, url, writer="thread", spill=spill)
        for _ in range(3):
            serve_paths(log, ["/a", "/b"])
            log.flush(20)
            time.sleep(0.5)
        stats = log.stats()
        log.close(20)
    refusals = [r for r in caplog.records if "refused the credentials" in r.getMessage()]
    assert len(refusals) == 1
    assert "cannot_log_in" in refusals[0].getMessage()
    assert stats["connect_errors"] >= 1
    assert stats["dropped_write_failed"] == 0
    import sqlite3

    conn = sqlite3.connect(spill)
    assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 6
    conn.close()


REFUSED_SCRIPT = """
    import asyncio, logging, sys
    from asgi_log_to_sqlite import AsgiLogToSqlite

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    async def main():
        log = AsgiLogToSqlite(app, sys.argv[1], spill=sys.argv[2])  # the default writer
        for i in range(3):
            scope = {"type": "http", "method": "GET", "path": f"/{i}", "query_string": b"",
                     "headers": [], "client": ("127.0.0.1", 9)}

            async def receive():
                return {"type": "http.request", "body": b""}

            async def send(message):
                pass

            await log(scope, receive, send)
            await asyncio.sleep(0.7)
        log.flush(20)
        print(log.stats()["writer"], log.stats()["connect_errors"])
        log.close(20)

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
"""


def test_refused_credentials_are_logged_once_by_an_app_and_its_writer_process(pg_url, tmp_path):
    url = pg_url.replace("postgres@", "no_such_role@")
    done = run_script(REFUSED_SCRIPT, url, str(tmp_path / "spill.db"))
    assert done.returncode == 0, done.stderr
    writer, errors = done.stdout.split()
    assert writer == "process" and int(errors) >= 1
    assert done.stderr.count("refused the credentials") == 1, done.stderr
    # The rows went to the spill file: the database has not come back, so nobody says it has.
    assert "works again" not in done.stderr, done.stderr
