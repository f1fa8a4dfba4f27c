"""Every example app in ``examples/`` under a real uvicorn: each behaviour leaves the right row.

One server per framework (module scope): it serves a normal response, a streamed one, server-sent
events, a file, a view that raises, a response followed by background work, and a WebSocket where
the framework has one; then it is stopped with SIGTERM and the log is read.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from support import BIN, ROOT, Server, free_port
from websockets.sync.client import connect

EXAMPLES = ROOT / "examples"
SAMPLE_FILE = EXAMPLES / "files" / "sample.txt"
HELLO = b"Hello, world!"
STREAM_BODY = b"".join(f"chunk {i}\n".encode() for i in range(10))
BACKGROUND_SECONDS = 0.5

pytestmark = pytest.mark.timeout(120)

STANDARD_PATHS = {
    "hello": "/",
    "stream": "/stream",
    "sse": "/sse",
    "file": "/file",
    "error": "/error",
    "background": "/background",
}


@dataclass(frozen=True)
class Framework:
    target: str  # module:attribute for uvicorn (Datasette: its metadata file)
    paths: dict[str, str] = field(default_factory=lambda: dict(STANDARD_PATHS))
    websocket: bool = True
    # What the row for /error may hold in its exception column. Frameworks that render the 500
    # page and return normally leave it NULL. Starlette (and FastAPI) send their 500 page and then
    # re-raise: the row is queued at the page's last byte, the exception may come after it.
    exceptions: tuple[str | None, ...] = (None,)
    # True when the app sends nothing and the server writes the 500 page: the app's body is empty.
    server_error_page: bool = False
    # Another virtualenv's bin folder to run the server from (a framework version that needs a
    # newer Python than the main one); the case is skipped when ``make test`` could not make it.
    bin: Path = BIN


FRAMEWORKS = {
    "raw-asgi": Framework("raw_asgi:app", exceptions=("RuntimeError",), server_error_page=True),
    "starlette": Framework("starlette_app:app", exceptions=(None, "RuntimeError")),
    "fastapi": Framework("fastapi_app:app", exceptions=(None, "RuntimeError")),
    # Django 5.2 LTS here; Django 6.0 and the newest 6.x (they need Python 3.12+) from
    # .venv-django60 and .venv-django6.
    "django": Framework("django_example.asgi:application", websocket=False),
    "django-6.0": Framework(
        "django_example.asgi:application", websocket=False, bin=ROOT / ".venv-django60" / "bin"
    ),
    "django-6": Framework(
        "django_example.asgi:application", websocket=False, bin=ROOT / ".venv-django6" / "bin"
    ),
    "quart": Framework("quart_app:app"),
    "litestar": Framework("litestar_app:app"),
    # Datasette through this package's own plugin, and through datasette-configure-asgi.
    "datasette": Framework(
        "metadata.json",
        paths={
            "hello": "/-/versions.json",
            "stream": "/data/items.csv?_stream=on&_size=max",
            "sse": "/-/example/sse",
            "file": "/files/sample.txt",
            "error": "/-/example/error",
            "background": "/-/example/background",
        },
        websocket=False,
    ),
}
FRAMEWORKS["datasette-configure-asgi"] = dataclasses.replace(
    FRAMEWORKS["datasette"], target="configure-asgi.json"
)


@dataclass
class Served:
    framework: Framework
    responses: dict[str, httpx.Response]
    sizes: dict[str, int]  # body bytes as they came over the wire
    websocket_reply: str | None
    rows: dict[str, dict]
    all_rows: list[dict]
    outbox: str
    server_output: str


def _command(name: str, framework: Framework, port: int, workdir: Path) -> list[str]:
    if name.startswith("datasette"):
        data = workdir / "data.db"
        with sqlite3.connect(data) as conn:
            conn.execute("create table items (id integer primary key, name text)")
            conn.executemany(
                "insert into items (name) values (?)", [(f"item {i}",) for i in range(500)]
            )
        conn.close()
        return [
            str(BIN / "datasette"), "serve", str(data),
            "--metadata", str(EXAMPLES / "datasette" / framework.target),
            "--plugins-dir", str(EXAMPLES / "datasette" / "plugins"),
            "--static", f"files:{EXAMPLES / 'files'}",
            "-h", "127.0.0.1", "-p", str(port),
        ]  # fmt: skip
    return [
        str(framework.bin / "uvicorn"), framework.target, "--app-dir", str(EXAMPLES),
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
    ]  # fmt: skip


def _wait_for_file(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _read_rows(db: Path) -> list[dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("select * from requests_view order by id")]
    finally:
        conn.close()


@pytest.fixture(scope="module", params=sorted(FRAMEWORKS))
def served(request, tmp_path_factory) -> Served:
    name = request.param
    framework = FRAMEWORKS[name]
    if not (framework.bin / "uvicorn").exists():
        pytest.skip(f"{framework.bin.parent} is missing: `make test` creates it")
    workdir = tmp_path_factory.mktemp(name)
    db, outbox = workdir / "log.db", workdir / "outbox.txt"
    port = free_port()
    env = {
        "ASGI_LOG_FILE": str(db),
        "EXAMPLE_OUTBOX": str(outbox),
        "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(ROOT / "tests")]),
    }
    responses: dict[str, httpx.Response] = {}
    sizes: dict[str, int] = {}
    reply = None
    server = Server(_command(name, framework, port, workdir), port, cwd=workdir, env=env,
                    log=workdir / "server.log")  # fmt: skip
    with server:
        for kind, path in framework.paths.items():
            # A connection per request: after a view raised, uvicorn closes the connection.
            with httpx.Client(base_url=server.url, timeout=30) as client:
                with client.stream("GET", path) as response:
                    response.read()
                    sizes[kind] = response.num_bytes_downloaded
                responses[kind] = response
        if framework.websocket:
            with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10, close_timeout=5) as ws:
                ws.send("hi")
                reply = ws.recv(timeout=10)
        # The background work must have finished before the log is read (bounded wait).
        _wait_for_file(outbox)
        server.stop(signal.SIGTERM, timeout=30)
    all_rows = _read_rows(db)
    by_path = {row["path"]: row for row in all_rows}
    rows = {kind: by_path.get(path.split("?")[0]) for kind, path in framework.paths.items()}
    if framework.websocket:
        rows["websocket"] = by_path.get("/ws")
    return Served(
        framework, responses, sizes, reply, rows, all_rows,
        outbox.read_text() if outbox.exists() else "", server.output(),
    )  # fmt: skip


def test_one_row_per_response(served):
    expected = len(served.responses) + (1 if served.framework.websocket else 0)
    assert len(served.all_rows) == expected, served.server_output
    assert all(row is not None for row in served.rows.values()), served.rows


def test_normal_response(served):
    response, row = served.responses["hello"], served.rows["hello"]
    assert response.status_code == row["http_status"] == 200
    assert row["body_size"] == served.sizes["hello"] > 0
    assert row["content_type"] == response.headers["content-type"]
    assert row["method"] == "GET" and row["client_ip"] == "127.0.0.1"
    assert row["exception"] is None and row["disconnected"] == 0
    if served.framework.paths["hello"] == "/":
        assert response.content == HELLO


def test_streamed_response(served):
    response, row = served.responses["stream"], served.rows["stream"]
    assert response.status_code == row["http_status"] == 200
    assert row["body_size"] == served.sizes["stream"] == len(response.content)
    if served.framework.paths["stream"] == "/stream":
        assert response.content == STREAM_BODY
    else:  # Datasette's streamed CSV: a header line and every row
        assert response.content.count(b"\n") == 501
        assert row["query_string"] == "?_stream=on&_size=max"
    assert row["ttfb"] <= row["duration"]


def test_server_sent_events(served):
    response, row = served.responses["sse"], served.rows["sse"]
    assert response.status_code == row["http_status"] == 200
    assert row["content_type"].startswith("text/event-stream")
    assert response.text.count("tick") == 3
    assert row["body_size"] == served.sizes["sse"] == len(response.content)


def test_file_response(served):
    response, row = served.responses["file"], served.rows["file"]
    assert response.status_code == row["http_status"] == 200
    assert response.content == SAMPLE_FILE.read_bytes()
    assert row["body_size"] == SAMPLE_FILE.stat().st_size


def test_error_in_a_view(served):
    response, row = served.responses["error"], served.rows["error"]
    assert response.status_code == row["http_status"] == 500
    assert row["exception"] in served.framework.exceptions
    if served.framework.server_error_page:
        assert row["body_size"] == 0  # the server, not the app, wrote the page
    else:
        assert row["body_size"] == served.sizes["error"] > 0


def test_duration_ends_at_the_last_body_byte(served):
    """Work that runs after the response does not count towards the recorded duration."""
    response, row = served.responses["background"], served.rows["background"]
    assert response.status_code == row["http_status"] == 202
    assert response.content == b"Accepted" and row["body_size"] == len(b"Accepted")
    finished = [float(line.split()[0]) for line in served.outbox.splitlines()]
    assert len(finished) == 1, "the background work did not run"
    response_end = row["start"] + row["duration"]
    # The work sleeps BACKGROUND_SECONDS after the response; the row ends well before it does.
    assert response_end < finished[0] - BACKGROUND_SECONDS / 2


def test_websocket(served):
    if not served.framework.websocket:
        pytest.skip("this framework has no WebSocket support of its own")
    row = served.rows["websocket"]
    assert served.websocket_reply == "echo: hi"
    assert row["connection_type"] == "websocket" and row["http_status"] == 101
    assert row["scheme"] == "ws"
    assert row["body_size"] == len("echo: hi") and row["request_body_size"] == len("hi")
