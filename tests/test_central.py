"""report, tail and prune on a PostgreSQL log: the same output as for a file with the same rows."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest
from click.testing import CliRunner

from asgi_log_to_sqlite import central
from asgi_log_to_sqlite.cli import cli
from asgi_log_to_sqlite.dialect import glob_as_similar
from asgi_log_to_sqlite.exchange import Exchange, next_key
from asgi_log_to_sqlite.options import Options
from asgi_log_to_sqlite.prepare import Prepare
from asgi_log_to_sqlite.report import Filters, build_report
from asgi_log_to_sqlite.report.tail import tail as file_tail
from asgi_log_to_sqlite.sinks import open_sink
from asgi_log_to_sqlite.writer import ThreadWriter

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


def write(target: str, records: list[Exchange], instance: str = "web-1") -> None:
    options = Options.from_kwargs({"instance": instance, "flush_interval": 60})
    sink = open_sink(target, options)
    sink.prepare()
    writer = ThreadWriter(sink, Prepare(options), options)
    for record in records:
        writer.put(record)
    done = threading.Event()
    writer.request_flush(done.set)
    assert done.wait(60)
    writer.stop(10)


@pytest.fixture
def both(pg_url, tmp_path):
    """The same requests in a PostgreSQL log and in a SQLite file."""
    records = traffic(400)
    path = str(tmp_path / "log.db")
    write(path, records)
    write(pg_url, records)
    return pg_url, path


def comparable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("generated_at", "files")}


def test_the_report_is_the_files_report(both):
    url, path = both
    assert comparable(central.report(url)) == comparable(build_report([path]))
    since = time.time() - 3600
    assert comparable(central.report(url, since=since, limit=3)) == comparable(
        build_report([path], since=since, limit=3))
    assert central.report(url)["files"] == [central.parse_url(url).display]


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


def test_the_report_with_filters_and_a_comparison_is_the_files(both):
    url, path = both
    now = time.time()
    for options in ({"filters": Filters(statuses=((500, 599),), instances=("web-1",))},
                    {"since": now - 3 * 3600, "compare": "previous"},
                    {"since": now - 3600, "until": now, "compare": (now - 7200, now - 3600)}):
        assert comparable(central.report(url, **options)) == comparable(
            build_report([path], **options)), options


def test_tail_follows_new_rows_once(pg_url):
    write(pg_url, traffic(5))
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
    write(pg_url, traffic(7, seed=9))
    follower.join(30)
    assert not follower.is_alive()
    assert len(printed) == 2 + 7


def test_instances_grouped_and_filtered(pg_url):
    write(pg_url, traffic(30))
    write(pg_url, traffic(12, seed=5), instance="web-2")
    assert central.report(pg_url)["instances"] == [
        {"instance": "web-1", "requests": 30}, {"instance": "web-2", "requests": 12}]
    assert central.report(pg_url, filters=Filters(instances=("web-2",)))["summary"][
        "requests"] == 12
    from asgi_log_to_sqlite.report import render_text

    assert "Instances" in render_text(central.report(pg_url))
    lines: list[str] = []
    central.tail(pg_url, lines=100, emit=lines.append, filters=Filters(instances=("web-2",)))
    assert len(lines) == 12


def test_prune(pg_url):
    now = time.time()
    write(pg_url, traffic(10, now=now - 10 * DAY) + traffic(10, now=now))
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
