"""A mock from a recording, with real parts: a real uvicorn service recorded through the real
``asgi-log-to-sqlite record`` program, the service stopped, then ``asgi-log-to-sqlite mock``
serving the log to a real HTTP client. Every server runs in its own process on 127.0.0.1 with a
free port, and is killed by PID.
"""

from __future__ import annotations

import signal
import sqlite3
import time

import httpx
import pytest
from apps.service_app import BIG
from support import BIN, Server, free_port, uvicorn

PROGRAM = str(BIN / "asgi-log-to-sqlite")
SECRET = "Zq8-MOCK-SECRET"
ENV = {"SERVICE_SECRET": SECRET, "SERVICE_EVENTS": "3", "SERVICE_GAP": "0.25"}


def raw_bytes(path) -> bytes:
    data = b""
    for suffix in ("", "-wal", "-journal"):
        try:
            with open(f"{path}{suffix}", "rb") as file:
                data += file.read()
        except FileNotFoundError:
            pass
    return data


def sse_events(text: str) -> list[str]:
    return [block for block in text.split("\n\n") if block.strip()]


#: (method, url, httpx keyword arguments): what the test client asks, recorded and mocked.
REQUESTS = [
    ("GET", "/items/1?page=1", {}),
    ("GET", "/items/2?page=7", {}),
    ("GET", "/binary", {}),
    ("GET", "/big", {}),
    ("GET", "/gone", {}),
    ("GET", "/go", {}),
    ("HEAD", "/items/1?page=1", {}),
    ("GET", f"/search?q=owls&api_key={SECRET}-key", {}),
    ("GET", "/private", {"headers": {"Authorization": f"Bearer {SECRET}-token"}}),
    ("POST", "/login", {"json": {"user": "ann", "password": f"{SECRET}-password"}}),
]


def ask(client: httpx.Client, method: str, url: str, kwargs: dict) -> httpx.Response:
    response = client.request(method, url, **kwargs)
    response.read()
    return response


def count_captures(path) -> int:
    conn = sqlite3.connect(path, timeout=10)
    try:
        return conn.execute("SELECT count(*) FROM captures").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


@pytest.mark.timeout(180)
def test_a_recorded_service_is_mocked_byte_for_byte_without_its_secrets(tmp_path):
    log = tmp_path / "service.db"
    service_port, record_port = free_port(), free_port()
    with Server(uvicorn("apps.service_app:app", service_port), service_port, env=ENV,
                log=tmp_path / "service.log") as service:
        recorder = Server(
            [PROGRAM, "record", str(log), "--upstream", service.url, "--port", str(record_port),
             "-O", "flush_interval=0.05"],
            record_port, log=tmp_path / "record.log",
        )
        with recorder, httpx.Client(base_url=recorder.url, timeout=30) as client:
            originals = [ask(client, method, url, kwargs) for method, url, kwargs in REQUESTS]
            counted = [ask(client, "GET", "/counter", {}).text for _ in range(3)]
            started = time.monotonic()
            headers = {"Cookie": f"sid={SECRET}-cookie"}
            with client.stream("GET", "/events", headers=headers) as response:
                events = response.read().decode()
            recorded_pace = time.monotonic() - started
            sent = len(REQUESTS) + 4
            deadline = time.monotonic() + 30
            while count_captures(log) < sent and time.monotonic() < deadline:
                time.sleep(0.05)
            assert count_captures(log) == sent
            live = raw_bytes(log)  # the writer still holds the file, its WAL beside it
            assert b"{{authorization}}" in live and SECRET.encode() not in live
            assert recorder.stop(signal.SIGTERM) is not None
        summary = recorder.output()
    assert counted == ["1", "2", "3"]
    assert len(sse_events(events)) == 3 and recorded_pace >= 0.5
    login = originals[-1]
    assert login.status_code == 200 and SECRET in login.text  # the client got it all
    for original in originals:  # the proxy's server sets them, not the upstream's as well
        assert len(original.headers.get_list("date")) == 1, original.headers
        assert len(original.headers.get_list("server")) == 1, original.headers
    assert f"Recorded {sent} exchange(s)" in summary, summary
    for name in ("api_key", "authorization", "cookie", "password", "set-cookie", "token"):
        assert f"  {name} " in summary, (name, summary)
    assert SECRET.encode() not in raw_bytes(log)

    # The service is gone: the mock answers alone.
    mock_port = free_port()
    args = [PROGRAM, "mock", str(log), "--port", str(mock_port), "--timing",
            "--set", f"token={SECRET}-token"]
    with Server(args, mock_port, log=tmp_path / "mock.log") as mock, \
            httpx.Client(base_url=mock.url, timeout=30) as client:
        for (method, url, kwargs), original in zip(REQUESTS, originals, strict=True):
            answer = ask(client, method, url, kwargs)
            assert answer.status_code == original.status_code, url
            assert answer.content == original.content, url
            for name in ("content-type", "content-encoding", "location", "content-length"):
                assert answer.headers.get(name) == original.headers.get(name), (url, name)
            assert "asgi-log-to-sqlite-mock" not in answer.headers
            assert len(answer.headers.get_list("date")) == 1, (url, answer.headers)
            assert len(answer.headers.get_list("server")) == 1, (url, answer.headers)
        # The compressed body itself, as it went over the wire.
        with client.stream("GET", "/big") as answer:
            assert b"".join(answer.iter_raw()) == BIG
        # The log never held the key or the token: any key, any token matches.
        assert ask(client, "GET", "/search?api_key=other&q=owls", {}).json()["hits"] == [1, 2, 3]
        assert ask(client, "GET", "/private", {}).text == "welcome"
        # No value was given for the session cookie: that header is left out.
        assert "set-cookie" not in ask(client, "POST", "/login", REQUESTS[-1][2]).headers
        # Three recordings of one request answer in turn.
        assert [ask(client, "GET", "/counter", {}).text for _ in range(4)] == ["1", "2", "3", "1"]
        # The stream keeps its events, at their pace.
        started = time.monotonic()
        with client.stream("GET", "/events") as answer:
            assert answer.headers["content-type"].startswith("text/event-stream")
            received = "".join(answer.iter_text())
        assert sse_events(received) == sse_events(events)
        assert time.monotonic() - started >= 0.5  # two gaps of at least 0.25 s were recorded
        # Unmatched requests: a clear 404, told apart from a recorded one.
        for method, url in (("GET", "/nowhere"), ("GET", "/items/1?page=2"),
                            ("GET", "/items/1"), ("DELETE", "/items/1?page=1")):
            miss = ask(client, method, url, {})
            assert miss.status_code == 404, url
            assert miss.headers["asgi-log-to-sqlite-mock"] == "unmatched", url
            assert "no recording matches" in miss.text, url
    assert f"Serving {sent} recorded response(s)" in mock.output()

    # --last: the latest recording only.
    mock_port = free_port()
    with Server([PROGRAM, "mock", str(log), "--port", str(mock_port), "--last"], mock_port,
                log=tmp_path / "mock-last.log") as mock, \
            httpx.Client(base_url=mock.url, timeout=30) as client:
        assert [ask(client, "GET", "/counter", {}).text for _ in range(3)] == ["3", "3", "3"]
    assert SECRET.encode() not in raw_bytes(log)


@pytest.mark.timeout(120)
def test_a_mock_with_a_fallback_grows_by_use(tmp_path):
    log = tmp_path / "grown.db"  # not there yet
    service_port, mock_port = free_port(), free_port()
    args = [PROGRAM, "mock", str(log), "--port", str(mock_port), "--fallback",
            f"http://127.0.0.1:{service_port}"]
    with Server(args, mock_port, log=tmp_path / "mock.log") as mock, \
            httpx.Client(base_url=mock.url, timeout=30) as client:
        with Server(uvicorn("apps.service_app:app", service_port), service_port, env=ENV,
                    log=tmp_path / "service.log"):
            first = ask(client, "GET", "/counter", {})
            assert first.status_code == 200 and first.text == "1"
            # The next request comes after the answer: it is served from the log.
            assert ask(client, "GET", "/counter", {}).text == "1"
            login = ask(client, "POST", "/login", REQUESTS[-1][2])
            assert login.status_code == 200 and SECRET in login.text
        assert ask(client, "GET", "/counter", {}).text == "1"  # the service is gone
        assert ask(client, "POST", "/login", REQUESTS[-1][2]).json()["token"] == "{{token}}"
        down = ask(client, "GET", "/items/1?page=1", {})
        assert down.status_code == 502 and "asgi-log-to-sqlite-mock" not in down.headers
        assert mock.stop(signal.SIGTERM) is not None
    output = mock.output()
    assert "mock: GET /counter -> proxied to the fallback" in output
    assert "mock: GET /counter -> 200 (recorded request 1)" in output
    assert count_captures(log) == 3  # the counter, the login, the failed exchange
    assert SECRET.encode() not in raw_bytes(log)
