"""Paths as real servers hand them over: escapes the server decodes away are kept in the row.

uvicorn, hypercorn and granian all decode ``/a%2Fb`` and ``/a/b`` to the same ``scope["path"]``;
the log must still tell them apart (and ``/100%25`` from ``/100%``), while ordinary escapes are
stored decoded and readable.
"""

from __future__ import annotations

import signal
import socket
import sqlite3

import pytest
from support import BIN, ROOT, Server, free_port

pytestmark = pytest.mark.timeout(120)

SERVERS = {
    "uvicorn": ("uvicorn", "apps.core_app:app", "--host", "127.0.0.1", "--port", "{port}"),
    "hypercorn": ("hypercorn", "apps.core_app:app", "--bind", "127.0.0.1:{port}"),
    "granian": ("granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}",
                "apps.core_app:app"),
}
# Request target as sent -> path stored.
TARGETS = {
    b"/a%2Fb": "/a%2Fb",
    b"/a/b": "/a/b",
    b"/100%25": "/100%25",
    b"/caf%C3%A9": "/caf\u00e9",
    b"/caf%E9": "/caf%E9",
    b"/x%20y": "/x y",
}


def get_raw(port: int, target: bytes) -> bytes:
    """One HTTP/1.1 request with the target exactly as given (clients normalise escapes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_escapes_a_server_decodes_away_are_stored(name, tmp_path):
    port = free_port()
    db = str(tmp_path / "log.db")
    command = SERVERS[name]
    args = [str(BIN / command[0]), *(a.replace("{port}", str(port)) for a in command[1:])]
    env = {"ASGI_LOG_DB": db, "PYTHONPATH": str(ROOT / "tests")}
    with Server(args, port, cwd=tmp_path, env=env, log=tmp_path / "server.log") as server:
        for target in TARGETS:
            assert b" 200 " in get_raw(port, target) + b" ", server.output()
        server.stop(signal.SIGTERM, timeout=30)
    conn = sqlite3.connect(db)
    stored = [row[0] for row in conn.execute("SELECT path FROM requests_view ORDER BY id")]
    conn.close()
    assert stored == list(TARGETS.values()), server.output()
