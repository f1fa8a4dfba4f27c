"""Three uvicorn servers standing for three hosts log into one PostgreSQL database.

Each server is its own process group with its own ``instance`` and spill file; the clients
count every response. Stopped with SIGTERM, the database must hold exactly one row per
response (every request has a unique path, so lost and duplicated rows both show). Then the
database is stopped for 20 seconds mid-load and started again: the servers keep answering,
rows wait in the spill files and are shipped once the database is back. ``report`` on the
central log adds up to the responses, and ``pull`` then Datasette shows the same rows.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from support import BIN, Server, free_port, wait_for_port

psycopg = pytest.importorskip("psycopg")

HOSTS = ("web-1", "web-2", "web-3")


def start_servers(url: str, tmp_path, label: str) -> list[Server]:
    servers = []
    for host in HOSTS:
        port = free_port()
        server = Server(
            [sys.executable, "-m", "uvicorn", "pg_app:app", "--port", str(port),
             "--log-level", "warning", "--app-dir", str(_apps())],
            port,
            env={"ASGI_LOG_URL": url, "ASGI_LOG_INSTANCE": host,
                 "ASGI_LOG_SPILL": str(tmp_path / f"spill-{host}.db")},
            log=tmp_path / f"{label}-{host}.log",
        )
        servers.append(server.__enter__())
    return servers


def _apps():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "apps"


class Load:
    """Clients sending to every server until stopped (or ``limit`` requests each), counting
    the 200 answers per host; each request has a unique path."""

    def __init__(self, servers: list[Server], label: str, limit: int) -> None:
        self.servers, self.label, self.limit = servers, label, limit
        self.answered = {host: 0 for host in HOSTS}
        self.failed = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(6)
        self._futures = [self._pool.submit(self._client, host, server, k)
                         for host, server in zip(HOSTS, servers, strict=True) for k in range(2)]

    def _client(self, host: str, server: Server, k: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i in range(self.limit // 2):
                if self.stop.is_set():
                    return
                try:
                    response = client.get(f"/{self.label}/{host}/{k}/{i}")
                except httpx.HTTPError:
                    with self._lock:
                        self.failed += 1
                    continue
                if response.status_code == 200:
                    with self._lock:
                        self.answered[host] += 1

    def total(self) -> int:
        with self._lock:
            return sum(self.answered.values())

    def finish(self, timeout: float = 120, stop: bool = True) -> None:
        """Stop the clients (or, ``stop=False``, let them send all of ``limit``) and wait."""
        if stop:
            self.stop.set()
        for future in self._futures:
            future.result(timeout)
        self._pool.shutdown()


def stop_all(servers: list[Server]) -> None:
    for server in servers:
        server.process.send_signal(15)
    for server in servers:
        try:
            server.process.wait(60)
        finally:
            server.kill()


def central(url: str, label: str) -> list[tuple[str, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT instance, path FROM requests_view WHERE path LIKE %s", (f"/{label}/%",)
        ).fetchall()


def spilled(tmp_path) -> int:
    total = 0
    for host in HOSTS:
        path = tmp_path / f"spill-{host}.db"
        if path.exists():
            conn = sqlite3.connect(path)
            try:
                total += conn.execute("SELECT count(*) FROM requests").fetchone()[0]
            finally:
                conn.close()
    return total


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def assert_one_row_per_response(url: str, label: str, load: Load) -> None:
    rows = central(url, label)
    assert len(rows) == len(set(rows)), "a row was stored twice"
    per_host = {host: 0 for host in HOSTS}
    for instance, path in rows:
        assert path.split("/")[2] == instance
        per_host[instance] += 1
    assert per_host == load.answered


@pytest.mark.timeout(600)
def test_three_hosts_one_database(pg_cluster, pg_url, tmp_path):
    # 1. Under load, then SIGTERM to every server: one row per response.
    servers = start_servers(pg_url, tmp_path, "steady")
    try:
        load = Load(servers, "steady", limit=1200)
        load.finish(300, stop=False)
        stop_all(servers)
    finally:
        for server in servers:
            server.kill()
    assert load.total() == 3 * 1200 and load.failed == 0
    assert_one_row_per_response(pg_url, "steady", load)

    # 2. The database stopped for 20 s mid-load, then started again.
    if not pg_cluster.owned:
        pytest.skip("the database is not ours to stop (ASGI_LOG_TO_SQLITE_TEST_POSTGRESQL)")
    servers = start_servers(pg_url, tmp_path, "outage")
    try:
        load = Load(servers, "outage", limit=10**9)
        wait_until(lambda: load.total() >= 600, 60, "no load before the outage")
        pg_cluster.stop("fast")
        down_at = load.total()
        time.sleep(20)
        served_while_down = load.total() - down_at
        pg_cluster.start()
        wait_until(lambda: load.total() >= down_at + served_while_down + 600, 60,
                   "no load after the outage")
        load.finish()
        assert served_while_down > 0, "the servers stopped answering while the database was down"
        wait_until(lambda: spilled(tmp_path) == 0, 90, "the spill files were not shipped")
        stop_all(servers)
    finally:
        load.stop.set()
        for server in servers:
            server.kill()
    assert load.failed == 0
    assert_one_row_per_response(pg_url, "outage", load)

    # 3. The report on the central log adds up to every response of both runs.
    responses = 3 * 1200 + load.total()
    report = subprocess.run(
        [str(BIN / "asgi-log-to-sqlite"), "report", pg_url, "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["summary"]["requests"] == responses

    # 4. pull into a SQLite file, then Datasette shows the same rows.
    out = tmp_path / "central.db"
    pulled = subprocess.run([str(BIN / "asgi-log-to-sqlite"), "pull", pg_url, str(out)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert pulled.returncode == 0, pulled.stderr
    port = free_port()
    with Server([str(BIN / "datasette"), str(out), "--port", str(port)], port,
                log=tmp_path / "datasette.log") as datasette:
        wait_for_port(port)
        answer = httpx.get(
            f"{datasette.url}/central.json",
            params={"sql": "select instance, count(*) from requests_view group by instance "
                           "order by instance", "_shape": "array"},
            timeout=30,
        ).json()
    counts = {row["instance"]: row["count(*)"] for row in answer}
    assert sum(counts.values()) == responses
    assert set(counts) == set(HOSTS)
