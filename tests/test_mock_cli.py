"""The ``mock`` and ``record`` commands: help, listing, one-line errors, stopping cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess

import httpx
import pytest
from apps import service_app
from click.testing import CliRunner
from replay_support import make_log
from support import BIN, Server, free_port, uvicorn, wait_for_port

from asgi_log_to_sqlite.cli import cli

PROGRAM = str(BIN / "asgi-log-to-sqlite")
CAPTURE = {"capture_requests": True, "capture_responses": True, "writer": "thread"}


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("cli") / "service.db")
    make_log(path, service_app.build(), [
        ("GET", "/items/1?page=1&api_key=k", {}), ("GET", "/counter", {}), ("GET", "/counter", {}),
        ("POST", "/login", {"json": {"user": "ann", "password": f"{service_app.SECRET}-password"}}),
    ], **CAPTURE)
    return path


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([PROGRAM, *args], capture_output=True, text=True, timeout=60,
                          check=False, **kwargs)


@pytest.mark.parametrize("command", ["mock", "record"])
def test_help(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
    assert run(command, "--help").returncode == 0


def test_list_shows_what_the_mock_serves_and_what_to_fill(log):
    result = CliRunner().invoke(cli, ["mock", log, "--list", "--set", "token=x"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:3] == [
        "GET     /counter  -> 200  (2 recordings)",
        "GET     /items/1?page=1&api_key={{api_key}}  -> 200",
        "POST    /login  -> 200",
    ]
    assert lines[3].startswith("Placeholders where secrets were redacted")
    assert [line.split() for line in lines[4:]] == [
        ["api_key", "query"], ["password", "request", "body"],
        ["set-cookie", "response", "header"], ["token", "response", "body", "(given)"],
    ]


def test_mock_errors_are_one_line(log, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli, ["mock", str(tmp_path / "missing.db")])
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines() == [
        f"Error: {tmp_path / 'missing.db'}: no such file"]
    bare = str(tmp_path / "bare.db")
    make_log(bare, service_app.build(), [("GET", "/counter", {})], capture_requests=True,
             writer="thread")
    result = runner.invoke(cli, ["mock", bare])
    assert result.exit_code == 1 and "no recorded response to serve" in result.output
    assert runner.invoke(cli, ["mock", log, "--set", "no-equals"]).exit_code == 2
    assert runner.invoke(cli, ["mock", log, "--body-limit", "lots"]).exit_code == 2
    result = runner.invoke(cli, ["mock", log, "--fallback", "localhost:1"])
    assert result.exit_code == 1 and "must be a URL" in result.output


def test_record_errors_are_one_line(tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["record", str(tmp_path / "a.db")]).exit_code == 2  # no --upstream
    result = runner.invoke(cli, ["record", str(tmp_path / "a.db"), "--upstream", "nowhere"])
    assert result.exit_code == 1 and "must be a URL" in result.output
    result = runner.invoke(cli, ["record", str(tmp_path / "a.db"), "--upstream",
                                 "http://127.0.0.1:1", "-O", "flush_interval=-1"])
    assert result.exit_code == 1 and "flush_interval" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.timeout(60)
def test_an_address_in_use_is_one_line(log):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("mock", log, "--port", str(port))
    assert result.returncode == 1
    assert "Error: the server did not start" in result.stderr
    assert "Traceback" not in result.stderr


WITHOUT_HTTPX = (
    "import sys\n"
    "class Blocked:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] == 'httpx':\n"
    "            raise ImportError(f'No module named {name!r}')\n"
    "sys.meta_path.insert(0, Blocked())\n"
    "sys.argv = ['asgi-log-to-sqlite', *sys.argv[1:]]\n"
    "from asgi_log_to_sqlite.console import main\n"
    "main()\n"
)


@pytest.mark.parametrize("argv, expected", [
    (["record", "x.db", "--upstream", "http://127.0.0.1:1"], "record needs httpx"),
    (["mock", "x.db", "--fallback", "http://127.0.0.1:1"], "mock --fallback needs httpx"),
])
def test_without_httpx_the_commands_say_what_to_install(tmp_path, argv, expected):
    result = subprocess.run([str(BIN / "python"), "-c", WITHOUT_HTTPX, *argv],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    assert result.returncode == 1
    assert expected in result.stderr and "asgi-log-to-sqlite[replay]" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(120)
def test_ctrl_c_stops_record_and_mock_cleanly(tmp_path):
    service_port, record_port = free_port(), free_port()
    log = tmp_path / "rec.db"
    with Server(uvicorn("apps.service_app:app", service_port), service_port,
                log=tmp_path / "service.log") as service:
        recorder = subprocess.Popen(
            [PROGRAM, "record", str(log), "--upstream", service.url, "--port", str(record_port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        try:
            wait_for_port(record_port, recorder)
            answer = httpx.get(f"http://127.0.0.1:{record_port}/items/3?page=1&token=t0k3n",
                               timeout=30)
            assert answer.json() == {"id": "3", "page": "1"}
            recorder.send_signal(signal.SIGINT)
            out, err = recorder.communicate(timeout=30)
        finally:
            if recorder.poll() is None:
                recorder.kill()
                recorder.wait(10)
    assert recorder.returncode == 0, err
    assert "Traceback" not in err and "t0k3n" not in err + out  # no access log with secrets
    assert "Recorded 1 exchange(s)" in err and "  token  query" in err

    mock_port = free_port()
    mock = subprocess.Popen([PROGRAM, "mock", str(log), "--port", str(mock_port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_for_port(mock_port, mock)
        base = f"http://127.0.0.1:{mock_port}"
        assert httpx.get(f"{base}/items/3?page=1&token=other", timeout=30).status_code == 200
        assert httpx.get(f"{base}/items/4?token=s3cr3t", timeout=30).status_code == 404
        mock.send_signal(signal.SIGINT)
        out, err = mock.communicate(timeout=30)
    finally:
        if mock.poll() is None:
            mock.kill()
            mock.wait(10)
    assert mock.returncode == 0 and "Traceback" not in err
    assert "Serving 1 recorded response(s)" in err
    assert "mock: GET /items/3?page=1&token={{token}} -> 200 (recorded request 1)" in err
    assert "mock: 404 unmatched: no recording matches GET /items/4?token={{token}}" in err
    assert "s3cr3t" not in err + out
