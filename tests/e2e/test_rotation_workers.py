"""Rotation under uvicorn with three worker processes writing one log path.

A small ``max_rows`` makes the workers cross many rotation boundaries under load. After SIGTERM,
every answered request must be in exactly one file (each request carries a unique query string),
every rotated file must be complete, and no boundary may be rotated twice nor crossed (a
rotated file holds exactly ``max_rows`` rows). ``asgi-log-to-sqlite rotate`` run while the workers
serve takes its turn with them. Merging all files reproduces the total; pruning the merged file
removes exactly the rows before the cut.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from support import Server, free_port

from asgi_log_to_sqlite import maintenance, rotation

REQUESTS = 1200
MAX_ROWS = 60
PROGRAM = Path(sys.executable).parent / "asgi-log-to-sqlite"

APP = textwrap.dedent(
    """
    import os
    from asgi_log_to_sqlite import AsgiLogToSqlite

    async def inner(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(os.getpid()).encode()})

    app = AsgiLogToSqlite(
        inner, os.environ["ASGI_LOG_DB"], max_rows=int(os.environ["ASGI_LOG_MAX_ROWS"]),
        flush_interval=0.02, batch_size=25,
    )
    """
)


def send_traffic(base_url: str, first: int = 0, count: int = REQUESTS) -> tuple[set, set]:
    """``count`` requests over 6 threads, 20 per connection; the query strings answered, the
    worker pids."""

    def batch(numbers: range) -> list[tuple[str, str]]:
        # A fresh connection every 20 requests, so that the kernel hands connections to every
        # worker rather than keeping all six on whichever accepted first.
        seen = []
        for start in range(0, len(numbers), 20):
            with httpx.Client(base_url=base_url, timeout=30) as client:
                for i in numbers[start:start + 20]:
                    response = client.get(f"/item?n={i}")
                    assert response.status_code == 200
                    seen.append((f"?n={i}", response.text))
        return seen

    queries, pids = set(), set()
    with ThreadPoolExecutor(6) as pool:
        for seen in pool.map(batch, [range(k, first + count, 6) for k in range(first, first + 6)]):
            queries.update(q for q, _ in seen)
            pids.update(p for _, p in seen)
    return queries, pids


def queries_in(path: str) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT query_string FROM requests_view")]
    finally:
        conn.close()


@pytest.mark.timeout(180)
def test_three_workers_rotate_without_losing_or_doubling_a_row(tmp_path):
    (tmp_path / "rotating_app.py").write_text(APP)
    db = str(tmp_path / "logs" / "log.db")
    os.mkdir(tmp_path / "logs")
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "rotating_app:app", "--app-dir", str(tmp_path),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "3", "--no-access-log"]
    env = {"ASGI_LOG_DB": db, "ASGI_LOG_MAX_ROWS": str(MAX_ROWS)}
    server = Server(args, port, env=env, log=tmp_path / "server.log")
    with server:
        answered, pids = send_traffic(server.url)
        # A rotation by hand while the workers run: they take turns with it through the lock.
        by_hand = subprocess.run([str(PROGRAM), "rotate", db], capture_output=True, text=True,
                                 timeout=60, check=False)
        more, _ = send_traffic(server.url, REQUESTS, 60)
        answered |= more
        code = server.stop()
        output = server.output()
    assert code is not None, output
    assert "Traceback" not in output, output
    assert by_hand.returncode == 0, by_hand.stderr
    assert len(answered) == REQUESTS + 60
    assert len(pids) > 1, "the load should reach several workers"

    rotated = rotation.rotated_files(db)
    assert len(rotated) >= 5, output  # several boundaries crossed
    logged = [q for f in [*rotated, db] for q in queries_in(f)]
    assert len(logged) == len(set(logged)), "a row was written twice"
    assert set(logged) == answered, "a row was lost"
    for name in rotated:
        for suffix in ("-wal", "-shm", "-journal"):
            assert not os.path.exists(name + suffix)
        # One rotation per boundary, and a batch split at it: a file is rotated once it holds
        # max_rows rows, and never holds more (except the one rotated by hand).
        if name not in by_hand.stdout:
            assert len(queries_in(name)) == MAX_ROWS, name

    # Merge everything with the real program: the total comes back, once.
    merged = str(tmp_path / "merged.db")
    run = subprocess.run([str(PROGRAM), "merge", merged, *rotated, db], capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert f"{len(answered)} row(s)" in run.stdout
    again = subprocess.run([str(PROGRAM), "merge", merged, *rotated, db], capture_output=True,
                           text=True, timeout=120, check=False)
    assert again.returncode == 0 and "Merged 0 file(s)" in again.stdout
    merged_queries = queries_in(merged)
    assert sorted(merged_queries) == sorted(answered)

    # Prune the merged file at the median start: exactly the earlier rows go.
    conn = sqlite3.connect(merged)
    starts = sorted(r[0] for r in conn.execute("SELECT start FROM requests"))
    conn.close()
    cut = starts[len(starts) // 2]
    older = sum(1 for s in starts if s < cut)
    result = maintenance.prune(merged, older_than=1.0, now=cut + 1.0)
    assert (result.deleted, result.remaining) == (older, len(answered) - older)
    conn = sqlite3.connect(merged)
    assert conn.execute("SELECT min(start) FROM requests").fetchone()[0] == cut
    conn.close()
