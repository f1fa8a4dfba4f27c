"""Replay against real uvicorn servers: the pace holds, Ctrl-C is clean.

Servers run the two builds of ``tests/apps/replay_app.py`` in their own processes on 127.0.0.1;
the replay runs as the real ``asgi-log-to-sqlite`` program.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from apps.replay_app import app_v1
from replay_support import make_log
from support import BIN, ROOT, Server, free_port

PROGRAM = str(BIN / "asgi-log-to-sqlite")


def uvicorn(target: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--host", "127.0.0.1",
            "--no-access-log"]


def count_rows(path: str) -> int:
    conn = sqlite3.connect(path, timeout=10)
    try:
        return conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_a_fixed_rate_for_ten_seconds_sends_that_many_requests(tmp_path):
    source = str(tmp_path / "source.db")
    make_log(source, app_v1, [("GET", f"/items/{i}?page={i}", {}) for i in range(50)])
    arrived = str(tmp_path / "arrived.db")
    port = free_port()
    env = {"REPLAY_LOG_DB": arrived, "REPLAY_LOG_OPTIONS": json.dumps({"flush_interval": 0.05})}
    with Server(uvicorn("apps.replay_app:logged_v1", port), port, env=env,
                log=tmp_path / "server.log") as server:
        result = subprocess.run(
            [PROGRAM, "replay", source, "--target", server.url, "--rate", "200/s",
             "--duration", "10s", "--loop", "-f", "json"],
            capture_output=True, text=True, timeout=90, check=False,
        )
        assert result.returncode == 0, result.stderr
        assert server.stop() is not None  # SIGTERM: the rows are flushed at shutdown
    report = json.loads(result.stdout)
    sent = report["summary"]["replayed"]
    assert 1900 <= sent <= 2100, report["summary"]
    assert count_rows(arrived) == sent  # what the server logged, counted independently
    assert report["summary"]["status_changes"] == 0


@pytest.mark.timeout(120)
def test_ctrl_c_stops_cleanly_with_a_report_of_what_was_done(tmp_path):
    source = str(tmp_path / "source.db")
    make_log(source, app_v1, [("GET", "/slow", {}), ("GET", "/items/1", {})])
    arrived = str(tmp_path / "arrived.db")
    port = free_port()
    env = {"REPLAY_LOG_DB": arrived, "REPLAY_SLOW_SECONDS": "0.3",
           "REPLAY_LOG_OPTIONS": json.dumps({"flush_interval": 0.05})}
    with Server(uvicorn("apps.replay_app:logged_v1", port), port, env=env,
                log=tmp_path / "server.log") as server:
        replay = subprocess.Popen(
            [PROGRAM, "replay", source, "--target", server.url, "--rate", "20/s", "--loop",
             "--duration", "600s", "--progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 60
            while count_rows(arrived) < 10 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert count_rows(arrived) >= 10
            replay.send_signal(signal.SIGINT)
            out, err = replay.communicate(timeout=30)
        finally:
            if replay.poll() is None:
                replay.kill()
                replay.wait(10)
    assert replay.returncode == 130, err
    assert "Traceback" not in err
    assert "replayed " in err  # the progress line
    assert "INTERRUPTED" in out and "/slow" in out


@pytest.mark.timeout(120)
def test_a_replay_against_a_server_is_logged_into_a_second_log(tmp_path):
    source = str(tmp_path / "source.db")
    make_log(source, app_v1, [("GET", "/boom", {}), ("GET", "/stream", {}),
                              ("HEAD", "/items/3", {}), ("GET", "/go", {})])
    second = str(tmp_path / "replayed.db")
    port = free_port()
    args = uvicorn("apps.replay_app:app_v2", port)
    with Server(args, port, log=tmp_path / "server.log") as server:
        result = subprocess.run(
            [PROGRAM, "replay", source, "--target", server.url, "--log-to", second, "-f", "json",
             "--fail-on", "status"],
            capture_output=True, text=True, timeout=90, check=False,
        )
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["failures"] == [{"route": "/boom", "check": "status"}]
    conn = sqlite3.connect(second)
    rows = conn.execute(
        "SELECT method, path, http_status, body_size FROM requests_view ORDER BY path"
    ).fetchall()
    conn.close()
    assert rows == [("GET", "/boom", 500, 6), ("GET", "/go", 302, 0), ("HEAD", "/items/3", 200, 0),
                    ("GET", "/stream", 200, 40)]
