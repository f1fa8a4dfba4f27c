"""The recording proxy in-process, in front of a real uvicorn server: every exchange logged with
capture on, secrets redacted, and a summary of the placeholders once everything is committed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from support import Server, free_port, uvicorn

from asgi_log_to_sqlite.record import count_captures, recorder_app, summary

SECRET = "Kx7-RECORD-SECRET"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("record") / "service.log"
    with Server(uvicorn("apps.service_app:app", port), port, env={"SERVICE_SECRET": SECRET},
                log=log) as server:
        yield server.url


def raw_bytes(log: str) -> bytes:
    return b"".join(Path(log + s).read_bytes() for s in ("", "-wal") if Path(log + s).exists())


def test_every_exchange_is_recorded_without_its_secrets(upstream, tmp_path):
    log = str(tmp_path / "rec.db")
    at_shutdown: list[int] = []
    app = recorder_app(upstream, log, on_shutdown=lambda: at_shutdown.append(count_captures(log)),
                       options={"redact_query": ["q"]})

    async def run() -> list[httpx.Response]:
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://rec") as client:
                login = {"user": "a", "password": f"{SECRET}-password"}
                bearer = {"Authorization": f"Bearer {SECRET}-token"}
                return [
                    await client.get(f"/search?q=owls&api_key={SECRET}-key"),
                    await client.post("/login", json=login),
                    await client.get("/private", headers=bearer),  # and the session cookie
                    await client.get("/events"),
                ]

    answers = asyncio.run(run())
    assert [a.status_code for a in answers] == [200, 200, 200, 200]
    assert SECRET in answers[1].text  # the client got the token; the log does not hold it
    assert at_shutdown == [4]  # called once, after the last exchange was committed
    assert SECRET.encode() not in raw_bytes(log)
    conn = sqlite3.connect(log)
    queries = [r[0] for r in conn.execute("SELECT raw_query FROM captures_view ORDER BY 1")]
    chunks, body = conn.execute(
        "SELECT response_chunks, response_body FROM captures_view WHERE raw_path = '/events'"
    ).fetchone()
    conn.close()
    assert "q={{q}}&api_key={{api_key}}" in queries  # the middleware's options were used
    assert body == answers[3].content and b"data: tick 2" in body
    assert sum(size for _, size in json.loads(chunks)) == len(body)
    lines = summary(log, before=1)
    assert lines[0] == f"Recorded 3 exchange(s) into {log} (4 in all)."
    assert [line.split()[0] for line in lines[2:]] == [
        "api_key", "authorization", "cookie", "password", "q", "set-cookie", "token"]
    assert lines[2].split()[1:] == ["query"]


def test_a_summary_of_a_log_without_captures(tmp_path):
    assert summary(str(tmp_path / "none.db")) == [
        f"Recorded 0 exchange(s) into {tmp_path / 'none.db'} (0 in all)."]


def test_bad_upstreams_and_options_fail_up_front(tmp_path):
    with pytest.raises(ValueError, match="must be a URL"):
        recorder_app("localhost:8000", str(tmp_path / "a.db"))
    with pytest.raises(ValueError, match="capture_body_limit"):
        recorder_app("http://127.0.0.1:1", str(tmp_path / "a.db"), body_limit="lots")
    with pytest.raises(TypeError):
        recorder_app("http://127.0.0.1:1", str(tmp_path / "a.db"), options={"nonsense": 1})
