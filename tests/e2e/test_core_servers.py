"""The wrapped app under real servers: every response the clients got is exactly one row.

Each server runs in its own process on 127.0.0.1, receives a few hundred requests (plain,
various statuses, streamed), and is stopped with SIGTERM, the way process managers stop it.
Every request carries a unique query string, so lost and duplicated rows are both visible.
"""

from __future__ import annotations

import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from support import ROOT, Server, free_port

REQUESTS = 300


def target(i: int) -> str:
    kind = i % 6
    if kind == 3:
        return f"/status/{(404, 500, 201)[i % 3]}?n={i}"
    if kind == 4:
        return f"/stream/{1 + i % 9}?n={i}"
    return f"/page/{i % 17}?n={i}"


def send_traffic(base_url: str) -> dict[str, tuple[int, int]]:
    """Send REQUESTS requests over 6 connections; query string -> (status, body bytes)."""

    def batch(numbers: range) -> dict[str, tuple[int, int]]:
        seen = {}
        with httpx.Client(base_url=base_url, timeout=30) as client:
            for i in numbers:
                response = client.get(target(i), headers={"user-agent": f"e2e-agent/{i % 5}"})
                seen[f"?n={i}"] = (response.status_code, len(response.content))
        return seen

    answered: dict[str, tuple[int, int]] = {}
    with ThreadPoolExecutor(6) as pool:
        for seen in pool.map(batch, [range(k, REQUESTS, 6) for k in range(6)]):
            answered.update(seen)
    return answered


def logged(path: str) -> list[tuple[str, int, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT query_string, http_status, body_size FROM requests_view ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def run_and_check(tmp_path, args: list[str], group: bool = False) -> None:
    """Serve, stop with SIGTERM (``group``: to every process of the server), compare. The writer
    commits only every 60 s here, so every row in the file got there through the flush at
    shutdown."""
    db = str(tmp_path / "log.db")
    port = free_port()
    argv = [arg.replace("{port}", str(port)) for arg in args]
    env = {"ASGI_LOG_DB": db, "ASGI_LOG_FLUSH_INTERVAL": "60"}
    server = Server(argv, port, env=env, log=tmp_path / "server.log")
    with server:
        answered = send_traffic(server.url)
        code = server.stop(group=group)
        output = server.output()
    assert code is not None, output
    assert len(answered) == REQUESTS
    rows = logged(db)
    queries = [row[0] for row in rows]
    assert len(queries) == len(set(queries)), "duplicate rows"
    assert {row[0]: (row[1], row[2]) for row in rows} == answered, output
    assert "Traceback" not in output, output


def uvicorn(app: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}",
            "--no-access-log", *extra]


@pytest.mark.timeout(120)
def test_uvicorn_one_worker(tmp_path):
    run_and_check(tmp_path, uvicorn("apps.core_app:app"))


@pytest.mark.timeout(180)
def test_uvicorn_three_workers(tmp_path):
    run_and_check(tmp_path, uvicorn("apps.core_app:app", "--workers", "3"))


@pytest.mark.timeout(120)
def test_uvicorn_app_without_lifespan(tmp_path):
    run_and_check(tmp_path, uvicorn("apps.core_app:no_lifespan_app"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("group", [False, True], ids=["main-pid", "process-group"])
def test_hypercorn(tmp_path, group):
    # Signalled as a group, hypercorn's worker process gets SIGTERM itself and has no handler.
    run_and_check(
        tmp_path,
        [sys.executable, "-m", "hypercorn", "apps.core_app:app", "--bind", "127.0.0.1:{port}"],
        group=group,
    )


@pytest.mark.timeout(180)
def test_hypercorn_two_workers_signalled_as_a_group(tmp_path):
    # When one worker ends, hypercorn terminates the others: a second SIGTERM mid-flush.
    run_and_check(
        tmp_path,
        [sys.executable, "-m", "hypercorn", "apps.core_app:app", "--bind", "127.0.0.1:{port}",
         "--workers", "2"],
        group=True,
    )


@pytest.mark.timeout(180)
def test_uvicorn_three_workers_signalled_as_a_group(tmp_path):
    run_and_check(tmp_path, uvicorn("apps.core_app:app", "--workers", "3"), group=True)


@pytest.mark.parametrize("wrapped", [True, False])
def test_uvicorn_refuses_to_start_when_startup_fails(tmp_path, wrapped):
    """``--lifespan on`` and an app whose startup raises: uvicorn must refuse to start, with the
    middleware as without it (a failed startup is never answered as a success)."""
    import subprocess

    code = (
        "import core_app\n"
        "async def bare(scope, receive, send):\n"
        "    await core_app._failing_startup(scope, receive, send)\n"
    )
    (tmp_path / "bare_app.py").write_text(code)
    target = "core_app:failing_startup_app" if wrapped else "bare_app:bare"
    port = free_port()
    env = {**__import__("os").environ, "ASGI_LOG_DB": str(tmp_path / "log.db"),
           "PYTHONPATH": f"{ROOT / 'tests' / 'apps'}:{tmp_path}"}
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--lifespan", "on"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert "Application startup failed" in result.stderr
    assert "the database is down" in result.stderr
