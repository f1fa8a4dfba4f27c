"""Replay against real uvicorn servers: the pace holds, Ctrl-C is clean.

Servers run the two builds of ``tests/apps/replay_app.py`` in their own processes on 127.0.0.1;
the replay runs as the real ``asgi-log-to-sqlite`` program.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time

import httpx
import pytest
from apps.replay_app import app_v1
from replay_support import make_log
from support import BIN, ROOT, Server, free_port, uvicorn

PROGRAM = str(BIN / "asgi-log-to-sqlite")


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


SECRET = "Qz5-REPLAY-SECRET"
# /slow takes 100 ms in the first build, 300 ms in the second; the latency floor of the replay
# (50 ms) is far above what a loaded machine adds to the fast routes.
SECRETS_ENV = {"REPLAY_TOKEN": f"{SECRET}-token", "REPLAY_PASSWORD": f"{SECRET}-password",
               "REPLAY_SLOW_SECONDS": "0.1"}


def raw_bytes(path: str) -> bytes:
    data = b""
    for suffix in ("", "-wal", "-journal"):
        try:
            with open(path + suffix, "rb") as file:
                data += file.read()
        except FileNotFoundError:
            pass
    return data


def record_traffic(url: str, rounds: int) -> int:
    """Real traffic for the first build: JSON POSTs, uploads, streaming, HEAD, a redirect,
    secrets in the query, headers and bodies. Returns the number of requests sent."""
    sent = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(rounds):
            responses = [
                client.get(f"/items/{i}?page={i}&access_token={SECRET}-query",
                           headers={"Cookie": f"sid={SECRET}-cookie",
                                    "X-Api-Key": f"{SECRET}-key"}),
                client.head(f"/items/{i}"),
                client.get("/slow"),
                client.get("/boom"),
                client.get("/go"),
                client.get("/stream"),
                client.get("/noise"),
                client.get("/private", headers={"Authorization": f"Bearer {SECRET}-token"}),
                client.post("/login", json={"user": f"user{i}", "password": f"{SECRET}-password"}),
                client.post("/upload", data={"note": f"n{i}", "api_key": f"{SECRET}-form"},
                            files={"file": (f"f{i}.txt", b"upload " * (50 + i))}),
            ]
            assert [r.status_code for r in responses] == [200, 200, 200, 200, 302, 200, 200, 200,
                                                          200, 200]
            sent += len(responses)
    return sent


@pytest.mark.timeout(180)
def test_replay_of_captured_traffic_names_exactly_the_broken_and_the_slower_route(tmp_path):
    log = str(tmp_path / "log.db")
    options = {"capture_requests": True, "capture_responses": True, "flush_interval": 0.05}
    env = {"REPLAY_LOG_DB": log, "REPLAY_LOG_OPTIONS": json.dumps(options), **SECRETS_ENV}
    port = free_port()
    with Server(uvicorn("apps.replay_app:logged_v1", port), port, env=env,
                log=tmp_path / "v1.log") as server:
        sent = record_traffic(server.url, rounds=6)
        deadline = time.monotonic() + 30
        while count_rows(log) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count_rows(log) == sent
        live = raw_bytes(log)  # the server's writer still holds the file, its WAL beside it
        assert b"{{authorization}}" in live and SECRET.encode() not in live
        assert server.stop() is not None
    assert SECRET.encode() not in raw_bytes(log)
    conn = sqlite3.connect(log)
    assert conn.execute("SELECT count(*) FROM captures").fetchone()[0] == sent
    conn.close()

    port = free_port()
    with Server(uvicorn("apps.replay_app:app_v2", port), port, env=SECRETS_ENV,
                log=tmp_path / "v2.log") as server:
        result = subprocess.run(
            [PROGRAM, "replay", log, "--target", server.url, "--all-methods", "--check-noise",
             "--set", f"authorization=Bearer {SECRET}-token",
             "--set", f"password={SECRET}-password", "--set", f"api_key={SECRET}-form",
             "--concurrency", "4", "--latency-floor", "0.05",
             "--fail-on", "status", "--fail-on", "latency=1.5", "-f", "json"],
            capture_output=True, text=True, timeout=120, check=False,
        )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert sorted(r["route"] for r in report["changed_routes"]) == ["/boom", "/slow"], [
        r for r in report["routes"] if r["changed"]]
    assert {(f["route"], f["check"]) for f in report["failures"]} == {
        ("/boom", "status"), ("/slow", "latency")
    }
    assert [r["route"] for r in report["noisy_routes"]] == ["/noise"]
    summary = report["summary"]
    assert summary["replayed"] == sent and summary["from_access_log"] == 0
    assert summary["skipped"] == {}
    assert summary["bodies_compared"] == sent
    # Nobody gave the cookie, the API key or the query's token: reported, and left out.
    assert set(summary["unfilled_placeholders"]) == {"cookie", "x-api-key", "access_token"}
    routes = {r["route"]: r for r in report["routes"]}
    assert routes["/boom"]["status_changes"][0]["from"] == 200
    assert routes["/boom"]["status_changes"][0]["to"] == 500
    assert routes["/slow"]["latency"]["ratio_p50"] > 2
    for name in ("/login", "/upload", "/private", "/stream", "/go", "/items/{item_id}"):
        assert routes[name]["changed"] == [] and routes[name]["body"]["mismatches"] == 0, name
