"""merge into a PostgreSQL URL: per-host SQLite log files loaded into the central log, each row
once (again, after an interruption, or once a file has grown)."""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner
from pg_support import serve_paths

from asgi_log_to_sqlite import AsgiLogToSqlite
from asgi_log_to_sqlite.cli import cli
from asgi_log_to_sqlite.load import LoadError, load_files
from asgi_log_to_sqlite.sinks import spill

psycopg = pytest.importorskip("psycopg")


async def ok_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def make_log(path, paths, **options):
    log = AsgiLogToSqlite(ok_app, str(path), writer="thread", **options)

    serve_paths(log, paths, **{"user-agent": "ua"})
    log.close(20)


def central(url):
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT instance, path, start FROM requests_view ORDER BY id"
                            ).fetchall()


def test_files_are_loaded_once_and_grown_files_only_add(pg_url, tmp_path, monkeypatch):
    monkeypatch.setattr(spill, "SHIP_CHUNK", 7)
    one, two = tmp_path / "web-1.db", tmp_path / "web-2.db"
    make_log(one, [f"/one/{i}" for i in range(20)])
    make_log(two, [f"/two/{i}" for i in range(5)], instance="box-2")
    # A file from before the instance column: its rows are named after the file.
    conn = sqlite3.connect(one)
    conn.execute("UPDATE requests SET instance = NULL")
    conn.commit()
    starts = [row[0] for row in conn.execute("SELECT start FROM requests ORDER BY rowid")]
    conn.close()
    result = load_files(pg_url, [str(one), str(two)])
    assert result.loaded == {str(one): 20, str(two): 5}
    rows = central(pg_url)
    assert [r[0] for r in rows] == ["web-1"] * 20 + ["box-2"] * 5
    assert [r[2] for r in rows[:20]] == starts
    again = load_files(pg_url, [str(one), str(two)])
    assert again.skipped == [str(one), str(two)]
    make_log(two, ["/two/late"], instance="box-2")
    assert load_files(pg_url, [str(two)]).loaded == {str(two): 1}
    assert len(central(pg_url)) == 26


def test_the_command_and_its_errors(pg_url, tmp_path, pg_cluster):
    one = tmp_path / "web-1.db"
    make_log(one, ["/a", "/b"])
    runner = CliRunner()
    result = runner.invoke(cli, ["merge", pg_url, str(one)])
    assert result.exit_code == 0, result.output
    assert "Loaded 1 file(s), 2 row(s)" in result.output
    result = runner.invoke(cli, ["merge", pg_url, str(one)])
    assert "already loaded" in result.output
    result = runner.invoke(cli, ["merge", pg_url, str(tmp_path / "missing.db")])
    assert result.exit_code == 1 and "no such file" in result.output
    result = runner.invoke(cli, ["merge", pg_cluster.url("no_such_database"), str(one)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    with pytest.raises(LoadError, match="'file'"):
        load_files("postgresql://db:port/x", [str(one)])
