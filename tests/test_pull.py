"""pull: a window of a PostgreSQL log into a SQLite log file, incrementally, each row once."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from click.testing import CliRunner

from asgi_log_to_sqlite.cli import cli
from asgi_log_to_sqlite.exchange import Exchange, next_key
from asgi_log_to_sqlite.options import Options
from asgi_log_to_sqlite.postgresql_schema import WATERMARK_LOCK, connect, parse_url
from asgi_log_to_sqlite.prepare import Prepare
from asgi_log_to_sqlite.pull import PullError, pull
from asgi_log_to_sqlite.sinks import open_sink
from asgi_log_to_sqlite.writer import ThreadWriter

pytest.importorskip("psycopg")

DAY = 86400.0


def write(url, paths_and_ages, instance="web-1"):
    """Rows for ``(path, age in seconds)``, written by a writer of ``instance``."""
    options = Options.from_kwargs({"instance": instance, "flush_interval": 60,
                                   "capture_request_headers": ["x-test"]})
    sink = open_sink(url, options)
    writer = ThreadWriter(sink, Prepare(options), options)
    now = time.time()
    for path, age in paths_and_ages:
        scope = {"type": "http", "method": "GET", "path": path, "query_string": b"",
                 "headers": [(b"user-agent", b"ua"), (b"x-test", path.encode())],
                 "client": ("127.0.0.1", 1)}
        record = Exchange(scope, now - age, 0.0)
        record.key, record.status, record.duration, record.body_size = next_key(), 200, 0.01, 5
        writer.put(record)
    done = threading.Event()
    writer.request_flush(done.set)
    assert done.wait(30)
    writer.stop(10)


def rows(path, sql="SELECT path, instance FROM requests_view ORDER BY path"):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_window_then_only_new_rows(pg_url, tmp_path):
    out = str(tmp_path / "pulled.db")
    old = [(f"/old/{i}", 10 * DAY) for i in range(5)]
    write(pg_url, old + [(f"/a/{i}", 3600) for i in range(20)])
    write(pg_url, [(f"/b/{i}", 7200) for i in range(10)], instance="web-2")
    first = pull(pg_url, out, since=time.time() - 7 * DAY)
    assert (first.rows, first.total) == (30, 30)
    assert {instance for _, instance in rows(out)} == {"web-1", "web-2"}
    assert pull(pg_url, out, since=time.time() - 7 * DAY).rows == 0
    write(pg_url, [(f"/c/{i}", 1) for i in range(7)])
    again = pull(pg_url, out, since=time.time() - 7 * DAY)
    assert (again.rows, again.total) == (7, 37)
    # A window reaching further back brings the older rows, once.
    wider = pull(pg_url, out, since=time.time() - 30 * DAY)
    assert (wider.rows, wider.total) == (5, 42)
    assert pull(pg_url, out).rows == 0
    assert len(rows(out)) == len(set(rows(out))) == 42
    # A log file Datasette reads like any other: declared foreign keys, captured headers.
    conn = sqlite3.connect(out)
    keys = {row[3]: row[2] for row in conn.execute("PRAGMA foreign_key_list(requests)")}
    assert keys["instance"] == "instances" and keys["path"] == "paths"
    # Rollups kept as the SQLite sink keeps them (reports over pruned windows use them).
    assert conn.execute("SELECT sum(requests) FROM rollups WHERE period = 3600"
                        ).fetchone()[0] == 42
    assert conn.execute("SELECT count(*) FROM captured_headers_view WHERE name = 'x-test'"
                        ).fetchone()[0] == 42
    assert conn.execute("SELECT count(*) FROM requests_view r JOIN captured_headers_view h "
                        "ON h.request = r.id WHERE h.value = r.path").fetchone()[0] == 42
    conn.close()


def test_one_instance(pg_url, tmp_path):
    out = str(tmp_path / "pulled.db")
    write(pg_url, [("/a", 10)])
    write(pg_url, [("/b", 10), ("/c", 10)], instance="web-3")
    assert pull(pg_url, out, instance="web-3").rows == 2
    assert rows(out) == [("/b", "web-3"), ("/c", "web-3")]
    write(pg_url, [("/d", 1)], instance="web-3")
    write(pg_url, [("/e", 1)])
    assert pull(pg_url, out, instance="web-3").rows == 1
    assert pull(pg_url, out).rows == 2  # the rows of other instances, once
    assert len(rows(out)) == len(set(rows(out))) == 5
    assert pull(pg_url, out, instance="web-3").rows == 0


def test_a_transaction_still_open_is_waited_for_not_missed(pg_url, tmp_path):
    out = str(tmp_path / "pulled.db")
    write(pg_url, [("/first", 1)])
    target = parse_url(pg_url)
    slow = connect(target, autocommit=False)
    # A writer that took its id and has not committed yet...
    slow.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", (WATERMARK_LOCK, target.key))
    slow.execute("INSERT INTO requests (id, start) VALUES (nextval('requests_id_seq'), %s)",
                 (time.time(),))
    # ...while another one commits a larger id.
    write(pg_url, [("/third", 1)])
    result: list = []
    puller = threading.Thread(target=lambda: result.append(pull(pg_url, out)))
    puller.start()
    time.sleep(0.5)
    slow.commit()
    slow.close()
    puller.join(60)
    assert result and result[0].rows == 3
    assert pull(pg_url, out).rows == 0


def test_errors_are_one_line(pg_url, tmp_path, pg_cluster):
    with pytest.raises(PullError, match="no asgi-log-to-sqlite log"):
        pull(pg_url, str(tmp_path / "x.db"))
    with pytest.raises(PullError, match="cannot connect"):
        pull(pg_cluster.url("no_such_database"), str(tmp_path / "x.db"))
    with pytest.raises(PullError, match="URL"):
        pull("postgresql://db:port/log", str(tmp_path / "x.db"))
    with pytest.raises(PullError, match=r"'log\.db' is not a PostgreSQL URL"):
        pull("log.db", str(tmp_path / "x.db"))  # a file given where the URL goes


def test_the_command(pg_url, tmp_path):
    write(pg_url, [("/a", 3600), ("/b", 10 * DAY)])
    out = str(tmp_path / "pulled.db")
    runner = CliRunner()
    result = runner.invoke(cli, ["pull", pg_url, out, "--since", "7d"])
    assert result.exit_code == 0, result.output
    assert "Pulled 1 new row(s)" in result.output
    result = runner.invoke(cli, ["pull", pg_url, out, "--since", "7d", "--instance", "web-1"])
    assert result.exit_code == 0 and "Pulled 0 new row(s)" in result.output
    result = runner.invoke(cli, ["pull", "postgresql://db:port/x", out])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
