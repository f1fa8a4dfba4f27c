"""Privacy under a real server: uvicorn in its own process, real HTTP, the log file's raw bytes.

The server runs with ``--no-proxy-headers`` so that the middleware's own ``trusted_proxies``
resolution is what decides the client address.
"""

from __future__ import annotations

import sqlite3
import sys
import textwrap
import time

import httpx
import pytest
from support import Server, free_port

SECRET = "Qx9-UVICORN-SECRET"

APP = textwrap.dedent(
    """
    import os
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from asgi_log_to_sqlite import AsgiLogToSqlite

    async def item(request):
        return PlainTextResponse("item", headers={"set-cookie": "sid=%s-set-cookie"})

    app = AsgiLogToSqlite(
        Starlette(routes=[Route("/items/{item_id}", item)]),
        os.environ["LOG_DB"],
        flush_interval=0.05,
        trusted_proxies=["127.0.0.1/32"],
        capture_request_headers=["X-Request-ID"],
    )
    """
    % SECRET
)


def raw_bytes(path: str) -> bytes:
    data = b""
    for suffix in ("", "-wal", "-journal"):
        try:
            with open(path + suffix, "rb") as f:
                data += f.read()
        except FileNotFoundError:
            pass
    return data


def count_rows(path: str) -> int:
    conn = sqlite3.connect(path, timeout=5)
    try:
        return conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    except sqlite3.OperationalError:
        return -1
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_secrets_never_reach_the_file_under_uvicorn(tmp_path):
    (tmp_path / "privacy_app.py").write_text(APP)
    db = str(tmp_path / "log.db")
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "privacy_app:app", "--app-dir", str(tmp_path)]
    args += ["--port", str(port), "--host", "127.0.0.1", "--no-proxy-headers", "--no-access-log"]
    with Server(args, port, env={"LOG_DB": db}, log=tmp_path / "server.log") as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i in range(5):
                response = client.get(
                    f"/items/{i}?access_token={SECRET}-q&page={i}",
                    headers={
                        "Authorization": f"Bearer {SECRET}-auth",
                        "Cookie": f"session={SECRET}-cookie",
                        "X-Api-Key": f"{SECRET}-key",
                        "X-Request-ID": f"rid-{i}",
                        "X-Forwarded-For": "6.6.6.6, 203.0.113.9",
                    },
                )
                assert response.status_code == 200
            assert client.get("/healthz").status_code == 404  # served, not recorded
        deadline = time.monotonic() + 30
        while count_rows(db) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count_rows(db) == 5
        live = raw_bytes(db)  # the server's writer still holds its connection
        assert b"rid-3" in live and b"REDACTED" in live
        assert SECRET.encode() not in live
        assert server.stop() is not None
    after = raw_bytes(db)
    assert SECRET.encode() not in after
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT route, query_string, client_ip, peer_ip FROM requests_view ORDER BY id"
    ).fetchall()
    excluded = conn.execute("SELECT reason, count FROM excluded_requests").fetchall()
    conn.close()
    assert rows == [
        ("/items/{item_id}", f"?access_token=REDACTED&page={i}", "203.0.113.9", "127.0.0.1")
        for i in range(5)
    ]
    assert excluded == [("health_check", 1)]
