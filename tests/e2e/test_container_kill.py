"""A container stopped the hard way: a real uvicorn process serves, and the moment the clients
have their last response the whole process group is SIGKILLed (no lifespan shutdown, no
``atexit``, the writer process killed too). Under ``flush="response"`` every response the
clients got is a row; with the writer's batches alone (the control) the rows are lost."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from support import Server, free_port

from asgi_log_to_sqlite import jsonlines

REQUESTS = 240
CONNECTIONS = 6


def send_traffic(base_url: str) -> dict[str, int]:
    """REQUESTS requests over CONNECTIONS keep-alive connections; query -> body bytes."""

    def batch(numbers: range) -> dict[str, int]:
        seen = {}
        with httpx.Client(base_url=base_url, timeout=30) as client:
            for i in numbers:
                path = f"/stream/{1 + i % 5}" if i % 3 == 0 else f"/page/{i % 7}"
                response = client.get(f"{path}?n={i}")
                assert response.status_code == 200
                seen[f"?n={i}"] = len(response.content)
        return seen

    answered: dict[str, int] = {}
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        for seen in pool.map(batch, [range(k, REQUESTS, CONNECTIONS) for k in range(CONNECTIONS)]):
            answered.update(seen)
    return answered


def serve_and_kill(tmp_path, target: str, flush: str, writer: str) -> tuple[dict, Server]:
    port = free_port()
    server = Server(
        [sys.executable, "-m", "uvicorn", "apps.container_app:app", "--port", str(port),
         "--host", "127.0.0.1", "--no-access-log", "--log-level", "warning"],
        port,
        cwd=tmp_path,
        env={"ASGI_LOG_TARGET": target, "ASGI_LOG_FLUSH": flush, "ASGI_LOG_WRITER": writer},
        log=tmp_path / "server.out",
    )
    with server:
        answered = send_traffic(server.url)
        server.stop(signal.SIGKILL, group=True)  # the platform reclaims the container
    return answered, server


def logged(path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT query_string, body_size FROM requests_view").fetchall()
    finally:
        conn.close()
    assert len(rows) == len({query for query, _ in rows}), "duplicate rows"
    return dict(rows)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("writer", ["auto", "thread", "inline"])
def test_sigkill_after_the_last_response_loses_nothing(tmp_path, writer):
    db = tmp_path / "log.db"
    answered, server = serve_and_kill(tmp_path, str(db), "response", writer)
    assert len(answered) == REQUESTS
    assert logged(db) == answered, server.output()


@pytest.mark.timeout(120)
def test_the_control_batched_rows_die_with_the_process(tmp_path):
    db = tmp_path / "log.db"
    answered, _ = serve_and_kill(tmp_path, str(db), "batch", "thread")
    assert len(answered) == REQUESTS
    assert logged(db) == {}  # the writer's next batch was 60 s away


@pytest.mark.timeout(120)
def test_json_lines_on_stdout_are_all_out_before_the_kill(tmp_path):
    answered, server = serve_and_kill(tmp_path, "-", "response", "auto")
    lines = [line for line in server.output().splitlines() if line.startswith("{")]
    rows = [jsonlines.decode(line) for line in lines]
    assert all(json.loads(line)["asgi_log_to_sqlite"] == 1 for line in lines)
    query, size = jsonlines.COLUMNS.index("query_string"), jsonlines.COLUMNS.index("body_size")
    assert {row[query]: row[size] for row in rows} == answered
    assert len(rows) == REQUESTS
