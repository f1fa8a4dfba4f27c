"""The raw ASGI example under every supported server and protocol: rows == responses.

Each case starts one real server process on 127.0.0.1, sends a bounded burst of concurrent
requests (normal, streamed, file, not found; each with a unique query string), one WebSocket
connection and one refused WebSocket, stops the server with SIGTERM and compares the log with
what the client received. gunicorn runs two uvicorn workers forked from a ``--preload``-ed
master. The ASGI extensions a server offers keep working through the middleware: granian's
``http.response.pathsend`` (recorded with the file's size), hypercorn's HTTP/2 trailers and
early hints, and the WebSocket denial response (``websocket.http.response``) of every server but
daphne.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from dataclasses import dataclass

import httpx
import pytest
from support import BIN, ROOT, Server, free_port
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

EXAMPLES = ROOT / "examples"
SAMPLE_FILE = EXAMPLES / "files" / "sample.txt"
APP = "raw_asgi:app"
BURST = 100
CONCURRENCY = 10

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]  # the command; {port} is replaced
    http2: bool = False  # the client speaks HTTP/2 with prior knowledge (h2c)
    pathsend: bool = False  # the server offers http.response.pathsend
    denial: bool = True  # the server offers websocket.http.response (WebSocket denial pages)


CASES = {
    "uvicorn-httptools": Case(
        ("uvicorn", APP, "--http", "httptools", "--host", "127.0.0.1", "--port", "{port}")
    ),
    "uvicorn-h11": Case(
        ("uvicorn", APP, "--http", "h11", "--host", "127.0.0.1", "--port", "{port}")
    ),
    "hypercorn-http1": Case(("hypercorn", APP, "--bind", "127.0.0.1:{port}")),
    "hypercorn-h2c": Case(("hypercorn", APP, "--bind", "127.0.0.1:{port}"), http2=True),
    "granian": Case(
        ("granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}", APP),
        pathsend=True,
    ),
    "daphne": Case(("daphne", "-b", "127.0.0.1", "-p", "{port}", APP), denial=False),
    # The app (and the middleware) built once in the master, then forked into two workers.
    "gunicorn-uvicorn-worker-preload": Case(
        (
            "gunicorn",
            "-k",
            "uvicorn_worker.UvicornWorker",
            "-w",
            "2",
            "--preload",
            "-b",
            "127.0.0.1:{port}",
            APP,
        )
    ),
}


def target(i: int) -> str:
    return ("/", "/stream", "/file", "/missing")[i % 4] + f"?n={i}"


async def burst(base_url: str, http2: bool) -> dict[str, httpx.Response]:
    """BURST requests, CONCURRENCY at a time; query string -> response (body read)."""
    limit = asyncio.Semaphore(CONCURRENCY)
    http_options = {"http1": False, "http2": True} if http2 else {}
    async with httpx.AsyncClient(base_url=base_url, timeout=30, **http_options) as client:

        async def one(i: int) -> tuple[str, httpx.Response]:
            async with limit:
                return f"?n={i}", await client.get(target(i))

        answered = dict(await asyncio.gather(*(one(i) for i in range(BURST))))
        if http2:
            answered["/trailers"] = await client.get("/trailers")
    return answered


def websocket_echo(port: int) -> str:
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10, close_timeout=5) as ws:
        ws.send("hi")
        return ws.recv(timeout=10)


def websocket_refused(port: int) -> tuple[int, bytes]:
    """Open a WebSocket on a path the app refuses: the HTTP status and body the client got."""
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{port}/nope", open_timeout=10, close_timeout=5)
    return refused.value.response.status_code, refused.value.response.body or b""


def read_rows(db: str) -> list[dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("select * from requests_view order by id")]
    finally:
        conn.close()


@pytest.mark.parametrize("name", sorted(CASES))
def test_rows_equal_responses(name, tmp_path):
    case = CASES[name]
    port = free_port()
    db = str(tmp_path / "log.db")
    args = [str(BIN / case.args[0]), *(a.replace("{port}", str(port)) for a in case.args[1:])]
    env = {
        "ASGI_LOG_FILE": db,
        "EXAMPLE_OUTBOX": str(tmp_path / "outbox.txt"),
        "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(ROOT / "tests")]),
    }
    with Server(args, port, cwd=tmp_path, env=env, log=tmp_path / "server.log") as server:
        responses = asyncio.run(burst(server.url, case.http2))
        reply = websocket_echo(port)
        denied_status, denied_body = websocket_refused(port)
        server.stop(signal.SIGTERM, timeout=30)
        exited = server.process.poll() is not None
    assert exited, "the server did not stop within 30 s of SIGTERM"
    output = server.output()

    rows = read_rows(db)
    http_rows = {
        row["query_string"] or row["path"]: row for row in rows if row["connection_type"] == "http"
    }
    ws_rows = [row for row in rows if row["path"] == "/ws"]
    # Every response is exactly one row, and nothing else is.
    assert len(rows) == len(responses) + 2, output
    assert set(http_rows) == set(responses), output
    assert reply == "echo: hi" and len(ws_rows) == 1
    assert ws_rows[0]["connection_type"] == "websocket" and ws_rows[0]["http_status"] == 101
    # A refused WebSocket: the app's denial page where the server offers the extension, else the
    # server's bare 403; the row has what the client got.
    (denied,) = [row for row in rows if row["path"] == "/nope"]
    if case.denial:
        assert (denied_status, denied_body) == (404, b"No WebSocket here")
    else:
        assert denied_status == 403
    assert denied["http_status"] == denied_status and denied["body_size"] == len(denied_body)

    version = "2" if case.http2 else "1.1"
    for key, response in responses.items():
        row = http_rows[key]
        assert response.http_version == f"HTTP/{version}"
        assert row["http_status"] == response.status_code, key
        assert row["body_size"] == len(response.content), key
        assert row["http_version"] == version, key
        assert row["exception"] is None and row["disconnected"] == 0, key

    files = [r for key, r in responses.items() if r.url.path == "/file"]
    assert files and all(r.content == SAMPLE_FILE.read_bytes() for r in files)
    # The app uses pathsend exactly when the server offers it; the row has the file's size.
    expected = "pathsend" if case.pathsend else "body"
    assert {r.headers["x-sent-with"] for r in files} == {expected}
    assert {http_rows[k]["body_size"] for k, r in responses.items() if r.url.path == "/file"} == {
        SAMPLE_FILE.stat().st_size
    }

    if case.http2:
        # Early hint first, trailers last: both pass through; the row ends after the trailers.
        row = http_rows["/trailers"]
        assert responses["/trailers"].text == "Hello, world!"
        assert row["http_status"] == 200 and row["body_size"] == len(b"Hello, world!")


def test_starlette_file_response_uses_pathsend_under_granian(tmp_path):
    """Starlette's FileResponse switches to ``http.response.pathsend`` when the server offers it:
    through the middleware too, and the row still has the file's size."""
    port = free_port()
    db = str(tmp_path / "log.db")
    args = [str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1"]
    args += ["--port", str(port), "starlette_app:app"]
    env = {
        "ASGI_LOG_FILE": db,
        "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(ROOT / "tests")]),
    }
    with Server(args, port, cwd=tmp_path, env=env, log=tmp_path / "server.log") as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            files = [client.get(f"/file?n={i}") for i in range(5)]
            streamed = client.get("/stream")
        server.stop(signal.SIGTERM, timeout=30)
    rows = read_rows(db)
    assert len(rows) == 6, server.output()
    size = SAMPLE_FILE.stat().st_size
    assert all(r.status_code == 200 and r.content == SAMPLE_FILE.read_bytes() for r in files)
    assert [(r["path"], r["body_size"]) for r in rows[:5]] == [("/file", size)] * 5
    assert rows[5]["path"] == "/stream" and rows[5]["body_size"] == len(streamed.content)
