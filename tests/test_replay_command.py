"""The ``replay`` command: options, output formats, exit statuses, one-line errors."""

from __future__ import annotations

import json

import pytest
from apps.replay_app import app_v1
from click.testing import CliRunner
from replay_support import make_log

from asgi_log_to_sqlite.cli import cli


@pytest.fixture
def log(tmp_path):
    path = str(tmp_path / "log.db")
    make_log(path, app_v1, [("GET", "/items/1", {}), ("GET", "/boom", {}), ("GET", "/go", {})])
    return path


def run(*args):
    return CliRunner().invoke(cli, ["replay", *args], catch_exceptions=False)


def test_json_report_and_fail_on(log):
    result = run(log, "--app", "apps.replay_app:app_v2", "-f", "json", "--fail-on", "status",
                 "--rate", "1000/s", "--header", "X-Replay: 1", "--set", "token=x")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["failures"] == [{"route": "/boom", "check": "status"}]
    assert report["mode"] == {"pace": "fixed rate", "rate": 1000.0, "concurrency": 16}
    assert report["target"] == "app 'apps.replay_app:app_v2'"
    assert "replay: changed beyond --fail-on: /boom (status)" in result.stderr


def test_text_and_html(log, tmp_path):
    result = run(log, "--app", "apps.replay_app:app_v2", "--speed", "100")
    assert result.exit_code == 0, result.output
    assert "Changed routes\n  /boom\n    status: 200 -> 500 (1)" in result.stdout
    assert "3 replayed from the access-log columns only" in result.stdout
    out = tmp_path / "replay.html"
    result = run(log, "--app", "apps.replay_app:app_v2", "-f", "html", "-o", str(out))
    assert result.exit_code == 0
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "<code>/boom</code>" in page


def test_html_says_what_text_says(tmp_path):
    path = str(tmp_path / "captured.db")
    make_log(path, app_v1, [("GET", "/boom?token=s3cret", {}), ("GET", "/items/1", {})],
             capture_requests=True)
    out = tmp_path / "replay.html"
    result = run(path, "--app", "apps.replay_app:app_v2", "-f", "html", "-o", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text()
    text = run(path, "--app", "apps.replay_app:app_v2").stdout
    assert "body differs: GET /boom?token=REDACTED" in text
    assert "body differs: <code>GET /boom?token=REDACTED</code>" in page
    assert "placeholders without a value (sent as REDACTED or left out): token (1)" in text
    assert "Placeholders without a value" in page and "<code>token</code> (1)" in page
    assert "median latency" in page


def test_selection_and_bounds(log):
    result = run(log, "--app", "apps.replay_app:app_v2", "-f", "json", "--path", "/items",
                 "--status", "2xx")
    assert json.loads(result.stdout)["summary"]["replayed"] == 1
    result = run(log, "--app", "apps.replay_app:app_v1", "-f", "json", "--loop", "--limit", "7")
    assert json.loads(result.stdout)["summary"]["replayed"] == 7



@pytest.mark.parametrize(
    ("args", "concurrency"),
    [
        ([], 1),  # unpaced: one at a time, so that each latency is the target's, not a queue's
        (["--speed", "100"], 16),
        (["--rate", "1000/s"], 16),
        (["-c", "4"], 4),
        (["--rate", "1000/s", "-c", "2"], 2),
    ],
)
def test_concurrency_defaults_to_one_request_at_a_time_without_a_pace(log, args, concurrency):
    result = run(log, "--app", "apps.replay_app:app_v1", "-f", "json", *args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mode"]["concurrency"] == concurrency

@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of --target URL and --app"),
        (["--target", "http://x", "--app", "a:b"], "exactly one of --target URL and --app"),
        (["--app", "a:b", "--speed", "2", "--rate", "5/s"], "--speed and --rate"),
        (["--app", "a:b", "--loop"], "--loop needs a bound"),
        (["--app", "a:b", "--rate", "fast"], "is not a rate"),
        (["--app", "a:b", "--fail-on", "latency=0.5"], "ratio must be above 1"),
        (["--app", "a:b", "--header", "nocolon"], "is not a header"),
        (["--app", "a:b", "--set", "novalue"], "is not NAME=VALUE"),
        (["--app", "a:b", "--status", "99"], "is not an HTTP status"),
    ],
)
def test_usage_errors(log, args, message):
    result = run(log, *args)
    assert result.exit_code == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--app", "no_such_module_here:app"], "cannot import 'no_such_module_here'"),
        (["--app", "apps.replay_app:nothing"], "has no 'nothing'"),
        (["--app", "apps.replay_app"], "is not module:attribute"),
        (["--target", "ftp://x"], "must be a URL"),
    ],
)
def test_errors_are_one_line(log, args, message):
    result = run(log, *args)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_missing_log(tmp_path):
    result = run(str(tmp_path / "missing.db"), "--app", "apps.replay_app:app_v1")
    assert result.exit_code == 1 and "no such file" in result.stderr


@pytest.mark.timeout(20, method="thread")
@pytest.mark.parametrize("special", ["named pipe", "/dev/null"])
def test_a_file_that_is_no_regular_file_is_refused_at_once(tmp_path, special):
    """SQLite would wait forever on a named pipe: the command says what the path is instead."""
    import os

    if special == "named pipe":
        path = str(tmp_path / "log.db")
        os.mkfifo(path)
        kind = "a named pipe"
    else:
        path, kind = special, "a character device"
    result = run(path, "--app", "apps.replay_app:app_v1")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {path}: is {kind}, not a log database\n"


@pytest.mark.parametrize("column", ["start", "method", "http_status", "duration",
                                    "request_body_size"])
@pytest.mark.parametrize("value", ["±\x8d", b"\xff\x00", 9e999, 2**63 - 1, -1])
def test_odd_values_in_a_column_are_replayed_or_one_line(log, column, value):
    import sqlite3

    conn = sqlite3.connect(log, isolation_level=None)
    conn.execute(f"UPDATE requests SET {column} = ?", (value,))
    conn.close()
    result = CliRunner().invoke(cli, ["replay", log, "--app", "apps.replay_app:app_v1",
                                      "-f", "json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 1), result.output
    if result.exit_code:
        assert result.stderr.startswith("Error: ")
        assert len(result.stderr.strip().splitlines()) == 1
    else:
        json.loads(result.stdout)


@pytest.mark.parametrize("target", ["paths SET name", "requests SET method",
                                    "requests SET client_ip", "hosts SET name"])
def test_text_that_is_not_utf8_is_replayed(log, target):
    import sqlite3

    conn = sqlite3.connect(log, isolation_level=None)
    conn.execute(f"UPDATE {target} = CAST(? AS TEXT) WHERE rowid = 1", (b"/a\xff",))
    conn.close()
    result = CliRunner().invoke(cli, ["replay", log, "--app", "apps.replay_app:app_v1",
                                      "-f", "json"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert json.loads(result.stdout)["summary"]


def test_a_file_name_that_is_not_utf8(log, tmp_path):
    import shutil

    odd = str(tmp_path / "l\udcffg.db")
    shutil.copy(log, odd)
    for fmt in ("json", "text", "html"):
        result = CliRunner().invoke(cli, ["replay", odd, "--app", "apps.replay_app:app_v1",
                                          "-f", fmt])
        assert result.exit_code == 0, (fmt, result.output, result.exception)
        assert "l\\xffg.db" in result.stdout.replace("\\\\", "\\")
    result = CliRunner().invoke(cli, ["replay", odd, "--target", "http://bad\udcff", "--timeout",
                                      "5"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "http://bad\\xff" in result.stdout


def test_a_target_nobody_listens_on(log):
    from support import free_port

    result = run(log, "--target", f"http://127.0.0.1:{free_port()}", "-f", "json", "--timeout", "5")
    report = json.loads(result.stdout)
    assert report["summary"]["status_changes"] == 3
    assert {c["to"] for r in report["routes"] for c in r["status_changes"]} == {"ConnectError"}
