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


def test_a_target_nobody_listens_on(log):
    from support import free_port

    result = run(log, "--target", f"http://127.0.0.1:{free_port()}", "-f", "json", "--timeout", "5")
    report = json.loads(result.stdout)
    assert report["summary"]["status_changes"] == 3
    assert {c["to"] for r in report["routes"] for c in r["status_changes"]} == {"ConnectError"}
