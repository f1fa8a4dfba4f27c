"""``report`` and ``tail`` on damaged, odd and hostile input: a report or one line and exit 1
(click's usage error, exit 2, for a bad option), never a traceback, never a hang.

The cases found by fuzzing are each a test here; then hypothesis damages small logs at random
(values of every type in every column, lookup tables dropped or holding blobs, ids pointing
nowhere, flipped bytes) and runs every format and ``tail`` on them.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import BIN

from asgi_log_to_sqlite.cli import cli
from asgi_log_to_sqlite.demo import synthetic_log
from asgi_log_to_sqlite.schema import connect, ensure_schema

EXE = str(BIN / "asgi-log-to-sqlite")
NOW = 1_750_000_000.0


def strict_json(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def check_all_commands(path: str, runner: CliRunner | None = None) -> None:
    """Every format and tail: output or one line and exit 1, never an exception."""
    runner = runner or CliRunner()
    for args in (["report", path], ["report", path, "-f", "json"], ["report", path, "-f", "html"],
                 ["report", path, "--since", "2000-01-01", "--path", "/", "--compare", "previous"],
                 ["tail", path, "-n", "50"]):
        result = runner.invoke(cli, args)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            args, result.exception)
        assert result.exit_code in (0, 1), (args, result.output)
        if result.exit_code == 1:
            assert result.output.startswith("Error: ") and result.output.count("\n") == 1, (
                args, result.output)
        elif args[-2:] == ["-f", "json"]:
            strict_json(result.output)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.db"
    synthetic_log(path, 600, end=NOW, days=2, seed=3)
    return path


def damaged(good: Path, folder: Path, name: str, sql: str) -> str:
    path = folder / f"{name}.db"
    shutil.copy(good, path)
    conn = sqlite3.connect(path)
    conn.executescript(sql)
    conn.commit()
    conn.close()
    return str(path)


DAMAGE = {
    "dates before year 1": "UPDATE requests SET start = -70000000000 WHERE rowid % 3 = 0",
    "dates after 9999": "UPDATE requests SET start = 300000000000 WHERE rowid % 3 = 0",
    "infinities": "UPDATE requests SET duration = 9e999, body_size = -9e999, "
                  "start = CASE WHEN rowid % 5 = 0 THEN -9e999 ELSE start END WHERE rowid % 2 = 0",
    "huge numbers": "UPDATE requests SET body_size = 9223372036854775807, duration = 1e308, "
                    "http_status = -9223372036854775808 WHERE rowid % 2 = 0",
    "text in numbers": "UPDATE requests SET start = 'abc', duration = 'slow', body_size = 'big', "
                       "http_status = 'ok', path = 'p', sample_rate = 'x' WHERE rowid % 4 = 0",
    "blobs in numbers": "UPDATE requests SET start = x'00ff', duration = x'01', body_size = x'02', "
                        "http_status = x'03', method = x'ff00', client_ip = x'fffe' "
                        "WHERE rowid % 4 = 0",
    "blob lookup names": "UPDATE paths SET name = CAST(name AS BLOB) || x'ff'; "
                         "UPDATE user_agents SET name = CAST(name AS BLOB) || x'fffe00'; "
                         "UPDATE referers SET name = CAST(name AS BLOB) || x'c328'",
    "dangling lookup ids": "UPDATE requests SET path = path + 100000, user_agent = 99999, "
                           "referer = 88888, host = 77777 WHERE rowid % 2 = 0",
    "a dropped lookup table": "DROP TABLE paths; DROP TABLE user_agents",
    "text that is not UTF-8": "UPDATE paths SET name = CAST(CAST(name AS BLOB) || x'c328ff' AS "
                              "TEXT); UPDATE requests SET client_ip = CAST(x'ff' AS TEXT)",
    "requests as a view": "ALTER TABLE requests RENAME TO r2; "
                          "CREATE VIEW requests AS SELECT * FROM r2",
    "dropped rollups": "DROP TABLE rollup_latency",
    "garbage rollups": "UPDATE rollups SET rows = 'x', requests = x'00', duration_max = 'slow', "
                       "start = start + 0.5 WHERE id % 2 = 0; "
                       "UPDATE rollups_state SET value = 'soon'; DELETE FROM requests "
                       "WHERE rowid % 3 = 0",
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damaged_logs_give_a_report_or_one_line(good, tmp_path, name):
    check_all_commands(damaged(good, tmp_path, name.replace(" ", "-"), DAMAGE[name]))


def test_garbage_rollups_of_pruned_rows_give_a_report(good, tmp_path):
    path = damaged(good, tmp_path, "pruned", "DELETE FROM requests WHERE rowid % 2 = 0; "
                   "UPDATE rollups SET status_5xx = 'x', bytes_sent = 9e999, timed = -5 "
                   "WHERE id % 3 = 0")
    check_all_commands(path)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--since", "0001-01-01"], 0, ""),
        (["--until", "9999-12-31T23:59:59"], 0, ""),
        (["--since", "99999999999d"], 2, "before the year 1"),
        (["--since", "9" * 400 + "s"], 2, "before the year 1"),
        (["--since", "0001-01-01T00:00:00+01:00"], 2, "outside the years 1 to 9999"),
        (["--limit", str(10**30)], 2, "1<=x<=100000"),
        (["--compare", "previous", "--since", "0001-01-02"], 1, "before year 1"),
        (["--compare", "2024-01-02..2024-01-01"], 2, "earlier than UNTIL"),
        (["--status", "9000"], 2, "not an HTTP status"),
        (["--method", "GET;DROP"], 2, "not an HTTP method"),
    ],
)
def test_odd_options_are_a_report_or_a_clear_error(good, args, code, message):
    result = CliRunner().invoke(cli, ["report", str(good), *args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "no such column" not in result.output and "datatype mismatch" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["report", "tail"])
def test_a_fifo_or_a_device_is_refused_at_once(tmp_path, command):
    fifo = tmp_path / "log.db"
    os.mkfifo(fifo)
    for target, kind in ((str(fifo), "named pipe"), ("/dev/null", "device")):
        started = time.monotonic()
        result = subprocess.run([EXE, command, target], capture_output=True, text=True,
                                timeout=30, check=False)
        assert time.monotonic() - started < 20
        assert result.returncode == 1
        assert kind in result.stderr and result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("option", ["--path", "--route", "--host", "--instance"])
def test_filters_that_are_not_utf8_match_what_the_log_stores(tmp_path, option):
    """A filter holding bytes that are not UTF-8 (``/caf\\xe9``) compares with the text the
    middleware stores for such bytes: ``%E9`` in a path, ``\\xe9`` in a header."""
    from asgi_log_to_sqlite import AsgiLogToSqlite

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    path = str(tmp_path / "log.db")
    log = AsgiLogToSqlite(app, path, writer="thread", instance="caf\\xe9",
                          route=lambda scope: scope["path"])

    async def serve():
        async def receive():
            return {"type": "http.request"}

        async def send(message):
            pass

        for raw in (b"/caf\xe9", b"/plain"):
            scope = {"type": "http", "method": "GET",
                     "path": raw.decode("utf-8", "surrogateescape"),
                     "raw_path": raw, "query_string": b"", "headers": [(b"host", b"caf\xe9")]}
            await log(scope, receive, send)
        await log.aflush(10)

    asyncio.run(serve())
    log.close()
    value = {"--path": b"/caf\xe9", "--route": b"/caf\xe9", "--host": b"caf\xe9",
             "--instance": b"caf\xe9"}[option]
    # A route is text from the app: one with lone surrogates is stored as "\\udce9", so the
    # bytes given here need not match it; but the command still answers.
    expected = {"--path": 1, "--route": None}.get(option, 2)
    for args in ([b"report", b"-f", b"json", b"--since", b"1000d"], [b"tail", b"-n", b"5"]):
        result = subprocess.run([EXE.encode(), *args, option.encode(), value, path.encode()],
                                capture_output=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert b"Traceback" not in result.stderr
        if args[0] == b"report":
            found = json.loads(result.stdout)["summary"]["requests"]
        else:
            found = result.stdout.count(b"\n")
        assert found == expected or expected is None


def test_file_names_that_are_not_utf8(good, tmp_path):
    odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9 \xff.db")
    shutil.copy(good, odd)
    for args in (["report", "-f", "json"], ["tail", "-n", "3"]):
        result = subprocess.run([EXE.encode(), *(a.encode() for a in args), odd],
                                capture_output=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
    missing = os.path.join(os.fsencode(tmp_path), b"nowhere-\xe9.db")
    result = subprocess.run([EXE.encode(), b"report", missing], capture_output=True, timeout=60,
                            check=False)
    assert result.returncode == 1
    assert b"no such file" in result.stderr and b"Traceback" not in result.stderr
    assert b"nowhere-\\xe9.db" in result.stderr


def test_reading_leaves_no_wal_or_shm_beside_a_quiet_log(good, tmp_path):
    path = tmp_path / "quiet.db"
    shutil.copy(good, path)
    assert not (tmp_path / "quiet.db-wal").exists()
    runner = CliRunner()
    for args in (["report", str(path)], ["tail", str(path)]):
        assert runner.invoke(cli, args).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quiet.db"]
    # A log a writer has open is read the ordinary way, with what it committed.
    writer = connect(str(path))
    ensure_schema(writer)
    writer.execute("INSERT INTO requests (start, http_status, duration) VALUES (?, 200, 0.1)",
                   (NOW,))
    try:
        report = strict_json(runner.invoke(cli, ["report", str(path), "-f", "json"]).output)
        assert report["summary"]["requests"] == 601
    finally:
        writer.close()


# ---- random damage ------------------------------------------------------------------------------
COLUMNS = ["start", "method", "path", "query_string", "user_agent", "referer", "http_status",
           "client_ip", "duration", "body_size", "host", "http_version", "route",
           "sample_rate", "visitor", "request_body_size"]
VALUES = st.one_of(
    st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=12),
    st.sampled_from([0, -1, 1e308, -1e308, float("inf"), float("-inf"), 2**62, "1e999",
                     NOW, "GET", "/", 404, 0.5]),
)
DAMAGES = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(COLUMNS), VALUES, st.integers(1, 7)),
        st.tuples(st.just("drop"), st.sampled_from(
            ["paths", "user_agents", "referers", "hosts", "routes", "rollups", "rollup_latency",
             "rollups_state", "latency_buckets", "requests_view"])),
        st.tuples(st.just("name"), st.sampled_from(["paths", "user_agents", "referers", "hosts"]),
                  VALUES),
        st.tuples(st.just("flip"), st.integers(0, 10**9), st.integers(1, 255)),
        st.tuples(st.just("truncate"), st.integers(0, 10**9)),
    ),
    min_size=1, max_size=4,
)


def apply(path: Path, damages: list) -> None:
    for damage in damages:
        kind = damage[0]
        if kind in ("flip", "truncate"):
            data = bytearray(path.read_bytes())
            if not data:
                continue
            at = damage[1] % len(data)
            if kind == "flip":
                data[at] ^= damage[2]
            else:
                del data[at:]
            path.write_bytes(bytes(data))
            continue
        try:
            conn = sqlite3.connect(path)
            if kind == "set":
                _, column, value, every = damage
                if isinstance(value, float) and math.isinf(value):
                    conn.execute(f"UPDATE requests SET [{column}] = ? WHERE rowid % ? = 0",
                                 (value, every))
                else:
                    conn.execute(f"UPDATE requests SET [{column}] = ? WHERE rowid % ? = 0",
                                 (value, every))
            elif kind == "drop":
                conn.execute(f"DROP TABLE IF EXISTS [{damage[1]}]")
                conn.execute(f"DROP VIEW IF EXISTS [{damage[1]}]")
            elif kind == "name":
                conn.execute(f"UPDATE OR IGNORE [{damage[1]}] SET name = ? WHERE id % 2 = 0",
                             (damage[2],))
            conn.commit()
            conn.close()
        except sqlite3.Error:
            pass  # an earlier flip made it unreadable: the commands must still cope


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "small.db"
    synthetic_log(path, 120, end=NOW, days=1, seed=8)
    return path


@pytest.mark.timeout(120)
@settings(max_examples=int(os.environ.get("DAMAGE_EXAMPLES", "40")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(DAMAGES, st.randoms(use_true_random=False))
def test_random_damage_never_gives_a_traceback(small, tmp_path, damages, rng: random.Random):
    path = tmp_path / f"damaged-{rng.randrange(10**9)}.db"
    shutil.copy(small, path)
    apply(path, damages)
    check_all_commands(str(path))


def test_no_status_at_all(good, tmp_path):
    """Found by the random damage above: rows without any status."""
    path = damaged(good, tmp_path, "no-status", "UPDATE requests SET http_status = NULL")
    check_all_commands(path)


def test_a_schema_name_that_is_not_utf8(good, tmp_path):
    """SQLite's message then quotes bytes that are not UTF-8: sqlite3 raised UnicodeDecodeError,
    which escaped as a traceback (found by flipping bits in a merge input)."""
    path = tmp_path / "schema.db"
    data = bytearray(good.read_bytes())
    at = data.find(b"sqlite_autoindex_paths_1")
    assert at > 0
    data[at + 3] = 0xE9  # "sql\xe9te_autoindex_paths_1": an orphan index, named in bad UTF-8
    path.write_bytes(bytes(data))
    runner = CliRunner()
    for args in (["report", str(path)], ["tail", str(path)], ["report", str(path), "-f", "html"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), args
        assert "malformed database schema" in result.output
        assert result.output.count("\n") == 1
