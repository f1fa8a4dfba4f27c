"""JSON lines printed by a real server round-trip through ``asgi-log-to-sqlite import``: the
rows imported are the rows the lines hold, and the rows the SQLite sink stored for the same
requests (timings aside: the two middlewares time the request at different depths)."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest
from support import BIN, Server, free_port, stored_rows, untimed

from asgi_log_to_sqlite import jsonlines

ORDER = "requests.start, requests.rowid"



def send_traffic(base_url: str) -> int:
    sent = 0
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for i in range(40):
            headers = {"user-agent": f"agent/{i % 4} \u00e9".encode(), "accept-language": "fr-CH"}
            if i % 3 == 0:
                headers["referer"] = f"https://example.org/from/{i}?session=secret{i}"
            if i % 5 == 0:
                headers["authorization"] = "Bearer do-not-log-this"
            client.get(f"/caf\u00e9/{i % 7}", params={"q": f"x{i}", "token": "t0p-secret"},
                       headers=headers)
            sent += 1
        for status in (201, 404, 500):
            client.get(f"/status/{status}")
            sent += 1
        client.post("/api/items", content=b'{"name": "x"}')
        client.get("/healthz", headers={"user-agent": "kube-probe/1.29"})
        client.get("/boom")
        sent += 3
    return sent


@pytest.mark.timeout(180)
def test_printed_lines_import_to_the_same_rows(tmp_path):
    file_log = tmp_path / "file.db"
    port = free_port()
    server = Server(
        [sys.executable, "-m", "uvicorn", "apps.stdout_app:app", "--port", str(port),
         "--host", "127.0.0.1", "--no-access-log", "--log-level", "critical"],
        port, cwd=tmp_path, env={"ASGI_LOG_DB": str(file_log)}, log=tmp_path / "stdout.txt",
    )
    with server:
        sent = send_traffic(server.url)
        server.stop(signal.SIGTERM)
    output = tmp_path / "stdout.txt"
    lines = [line for line in output.read_text().splitlines() if line.startswith("{")]
    assert len(lines) == sent
    printed = sorted((jsonlines.decode(line) for line in lines), key=lambda row: row[0])

    imported_log = tmp_path / "imported.db"
    done = subprocess.run(
        [str(BIN / "asgi-log-to-sqlite"), "import", str(output), str(imported_log),
         "--keep-health-checks"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    imported = stored_rows(imported_log, ORDER)

    assert imported == printed  # every column, exactly
    assert [untimed(r) for r in imported] == [untimed(r) for r in stored_rows(file_log, ORDER)]
    text = output.read_text()
    assert "t0p-secret" not in text and "do-not-log-this" not in text and "secret1" not in text

    again = subprocess.run(
        [str(BIN / "asgi-log-to-sqlite"), "import", str(output), str(imported_log)],
        capture_output=True, text=True, timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert len(stored_rows(imported_log, ORDER)) == sent  # the same file adds nothing twice
