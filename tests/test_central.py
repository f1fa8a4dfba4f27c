"""tail and prune on a PostgreSQL log: the same lines as for a file with the same rows (the report
on a PostgreSQL log: test_report_postgresql.py)."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest
from click.testing import CliRunner
from pg_support import write_records

from asgi_log_to_sqlite import central
from asgi_log_to_sqlite.cli import cli
from asgi_log_to_sqlite.dialect import glob_as_similar
from asgi_log_to_sqlite.exchange import Exchange, next_key
from asgi_log_to_sqlite.report import Filters, build_report
from asgi_log_to_sqlite.report.tail import tail as file_tail

pytest.importorskip("psycopg")

DAY = 86400.0


def traffic(n: int, seed: int = 3, now: float | None = None) -> list[Exchange]:
    rng = random.Random(seed)
    now = time.time() if now is None else now
    found = []
    for i in range(n):
        scope = {"type": "http", "method": rng.choice(["GET", "GET", "POST"]),
                 "path": rng.choice(["/", "/api/items", "/api/items/7", "/blog/x", "/missing"]),
                 "query_string": rng.choice([b"", b"page=2"]),
                 "headers": [(b"user-agent", rng.choice([b"curl/8", b"Mozilla/5.0 Firefox/120"])),
                             (b"referer", rng.choice([b"", b"https://example.com/"])),
                             (b"host", b"example.com")],
                 "client": (f"10.0.0.{rng.randrange(20)}", 1)}
        record = Exchange(scope, now - (n - i) * 30.0, 0.0)
        record.key = next_key()
        record.status = 404 if scope["path"] == "/missing" else rng.choice([200, 200, 500])
        record.duration = rng.uniform(0.001, 0.5)
        record.body_size = rng.randrange(10, 5000)
        found.append(record)
    return found


@pytest.fixture
def both(pg_url, tmp_path):
    """The same requests in a PostgreSQL log and in a SQLite file."""
    records = traffic(400)
    path = str(tmp_path / "log.db")
    write_records(path, records)
    write_records(pg_url, records)
    return pg_url, path


def test_tail_prints_the_files_lines(both):
    url, path = both
    for options in ({}, {"filters": Filters(statuses=((500, 599),))},
                    {"filters": Filters(paths=("/api",))},
                    {"filters": Filters(paths=("/api/*/7",), methods=("GET",))},
                    {"filters": Filters(hosts=("*.com",), instances=("web-*",))},
                    {"filters": Filters(paths=("/b[l]og/?",))},
                    {"lines": 0}, {"lines": 1000}):
        ours, theirs = [], []
        central.tail(url, emit=ours.append, **options)
        file_tail(path, emit=theirs.append, **options)
        assert ours == theirs, options


def test_tail_follows_new_rows_once(pg_url):
    write_records(pg_url, traffic(5))
    printed: list[str] = []
    polls = []

    def stop() -> bool:
        polls.append(1)
        return len(polls) > 30

    follower = threading.Thread(target=central.tail, args=(pg_url,), kwargs={
        "lines": 2, "follow": True, "interval": 0.05, "emit": printed.append,
        "should_stop": stop})
    follower.start()
    time.sleep(0.3)
    write_records(pg_url, traffic(7, seed=9))
    follower.join(30)
    assert not follower.is_alive()
    assert len(printed) == 2 + 7


def test_instances_grouped_and_filtered(pg_url):
    write_records(pg_url, traffic(30))
    write_records(pg_url, traffic(12, seed=5), instance="web-2")
    assert build_report([pg_url])["instances"] == [
        {"instance": "web-1", "requests": 30}, {"instance": "web-2", "requests": 12}]
    assert build_report([pg_url], filters=Filters(instances=("web-2",)))["summary"][
        "requests"] == 12
    from asgi_log_to_sqlite.report import render_text

    assert "Instances" in render_text(build_report([pg_url]))
    lines: list[str] = []
    central.tail(pg_url, lines=100, emit=lines.append, filters=Filters(instances=("web-2",)))
    assert len(lines) == 12


def test_prune(pg_url):
    now = time.time()
    write_records(pg_url, traffic(10, now=now - 10 * DAY) + traffic(10, now=now))
    result = central.prune(pg_url, 5 * DAY)
    assert (result.deleted, result.remaining) == (10, 10)
    assert "postgres" in result.name


def test_glob_as_similar():
    assert glob_as_similar("/api/*") == "/api/%"
    assert glob_as_similar("/a?c_d%") == "/a_c\\_d\\%"
    assert glob_as_similar("/[ab]x") == "/[ab]x"


def test_the_commands(both, pg_cluster, tmp_path):
    url, path = both
    runner = CliRunner()
    result = runner.invoke(cli, ["report", url, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["summary"]["requests"] == 400
    assert runner.invoke(cli, ["report", url]).exit_code == 0
    result = runner.invoke(cli, ["tail", url, "-n", "3"])
    assert result.exit_code == 0 and result.output.count("\n") == 3
    result = runner.invoke(cli, ["report", url, path])
    assert result.exit_code == 2
    result = runner.invoke(cli, ["tail", path, "--instance", "web-1", "-n", "1000"])
    assert result.exit_code == 0 and result.output.count("\n") == 400
    result = runner.invoke(cli, ["report", url, "--instance", "nobody", "--format", "json"])
    assert result.exit_code == 0 and json.loads(result.output)["summary"]["requests"] == 0
    result = runner.invoke(cli, ["prune", url, "--older-than", "30d"])
    assert result.exit_code == 0 and "Deleted 0 row(s)" in result.output
    for command in (["report"], ["tail"], ["prune", "--older-than", "1d"]):
        result = runner.invoke(cli, [*command, pg_cluster.url("no_such_database")])
        assert result.exit_code == 1, command
        assert "Traceback" not in result.output and result.output.count("\n") == 1
