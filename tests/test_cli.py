"""The serve, report, tail and demo commands, through click's runner and as real processes."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from support import BIN, Server, free_port

from asgi_log_to_sqlite import __version__
from asgi_log_to_sqlite.cli import cli
from asgi_log_to_sqlite.demo import synthetic_log
from asgi_log_to_sqlite.schema import connect, ensure_schema

EXE = str(BIN / "asgi-log-to-sqlite")
NOW = time.time()


def run(
    *args: str, cwd: str | Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "log.db"
    synthetic_log(path, 2000, end=NOW, days=2, seed=4)
    return str(path)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    junk = folder / "junk.db"
    junk.write_bytes(b"not sqlite " * 500)
    other = folder / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    empty = folder / "empty.db"
    conn = connect(str(empty))
    ensure_schema(conn)
    conn.close()
    return {
        "missing": (str(folder / "missing.db"), "no such file"),
        "junk": (str(junk), "not a SQLite database"),
        "other": (str(other), "not an asgi-log-to-sqlite log"),
        "empty": (str(empty), "no requests"),
    }


# ---- help and version ---------------------------------------------------------------------
@pytest.mark.parametrize("command", ["serve", "report", "tail", "demo"])
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    process = run(command, "--help")
    assert process.returncode == 0 and "Usage:" in process.stdout


def test_version():
    assert __version__ in CliRunner().invoke(cli, ["--version"]).output
    assert __version__ in run("--version").stdout


# ---- report -------------------------------------------------------------------------------
def test_report_text_json_html_in_process(log, tmp_path):
    runner = CliRunner()
    text = runner.invoke(cli, ["report", log])
    assert text.exit_code == 0, text.output
    assert "Top paths" in text.output and "2,000" in text.output
    data = runner.invoke(cli, ["report", log, "--format", "json", "--since", "24h"])
    assert data.exit_code == 0
    report = json.loads(data.output)
    assert 0 < report["summary"]["requests"] < 2000
    out = tmp_path / "r.html"
    html = runner.invoke(cli, ["report", log, "-f", "html", "-o", str(out)])
    assert html.exit_code == 0
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_report_as_a_process_over_several_files(log, tmp_path):
    older = tmp_path / "older.db"
    synthetic_log(older, 500, end=NOW - 3 * 86400, days=1, seed=9)
    process = run("report", log, str(older), "--format", "json")
    assert process.returncode == 0, process.stderr
    report = json.loads(process.stdout)
    assert report["summary"]["requests"] == 2500
    assert report["files"] == [log, str(older)]
    text = run("report", log, "--until", "1d", "--limit", "3")
    assert text.returncode == 0
    assert max(len(line) for line in text.stdout.splitlines()) <= 80
    out = tmp_path / "report.html"
    html = run("report", log, "--format", "html", "-o", str(out))
    assert html.returncode == 0 and out.stat().st_size > 5000


@pytest.mark.parametrize("kind", ["missing", "junk", "other", "empty"])
def test_report_bad_input_is_a_clear_error(bad_files, kind):
    path, message = bad_files[kind]
    result = CliRunner().invoke(cli, ["report", path])
    assert result.exit_code == 1
    assert message in result.output
    process = run("report", path)
    assert process.returncode == 1
    assert message in process.stderr and "Traceback" not in process.stderr


def test_report_to_an_unwritable_place_and_metadata_of_junk_are_clear_errors(log, bad_files,
                                                                            tmp_path):
    process = run("report", log, "-f", "html", "-o", str(tmp_path / "no" / "such" / "r.html"))
    assert process.returncode == 1
    assert "cannot write" in process.stderr and "Traceback" not in process.stderr
    junk, _ = bad_files["junk"]
    process = run("metadata", junk)
    assert process.returncode == 1
    assert "not a SQLite database" in process.stderr and "Traceback" not in process.stderr


@pytest.mark.parametrize("since", ["yesterday", "24x", "2024-99-01"])
def test_report_bad_since_is_a_usage_error(log, since):
    result = CliRunner().invoke(cli, ["report", log, "--since", since])
    assert result.exit_code == 2
    assert "--since" in result.output and "24h" in result.output
    process = run("report", log, "--since", since)
    assert process.returncode == 2 and "Traceback" not in process.stderr


# ---- tail ---------------------------------------------------------------------------------
def test_tail_filters_and_layout(log):
    runner = CliRunner()
    result = runner.invoke(cli, ["tail", log, "-n", "5"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 5
    # Combined log format plus the time taken.
    assert all(
        line.count('"') == 6 and " - - [" in line and line.endswith("s") for line in lines
    ), lines
    conn = sqlite3.connect(log)
    last = conn.execute(
        "SELECT rowid, client_ip FROM requests ORDER BY rowid DESC LIMIT 1"
    ).fetchone()
    assert lines[-1].startswith(f"{last[1]} - - [")

    errors = runner.invoke(cli, ["tail", log, "-n", "1000", "--status", "5xx"]).output.splitlines()
    expected = conn.execute("SELECT COUNT(*) FROM requests WHERE http_status >= 500").fetchone()[0]
    assert len(errors) == min(1000, expected)
    assert all('" 50' in line for line in errors)
    two = runner.invoke(cli, ["tail", log, "-n", "1000", "--status", "404,401"]).output.splitlines()
    assert two and all(('" 404 ' in line) or ('" 401 ' in line) for line in two)
    blog = runner.invoke(cli, ["tail", log, "-n", "1000", "--path", "/blog"]).output.splitlines()
    count = conn.execute(
        "SELECT COUNT(*) FROM requests_view WHERE path = '/blog' OR path LIKE '/blog/%'"
    ).fetchone()[0]
    assert len(blog) == count and all(" /blog" in line for line in blog)
    glob = runner.invoke(cli, ["tail", log, "-n", "1000", "--path", "/products/1*"]).output
    assert glob and all(" /products/1" in line for line in glob.splitlines())


def test_tail_bad_input(bad_files, log):
    runner = CliRunner()
    for kind in ("missing", "junk", "other"):
        path, message = bad_files[kind]
        result = runner.invoke(cli, ["tail", path])
        assert result.exit_code == 1 and message in result.output
    assert runner.invoke(cli, ["tail", bad_files["empty"][0]]).exit_code == 0
    for status in ("teapot", "9xx", "0xx", "999", "42"):
        bad = runner.invoke(cli, ["tail", log, "--status", status])
        assert bad.exit_code == 2 and "5xx" in bad.output, status
    process = run("tail", bad_files["junk"][0])
    assert process.returncode == 1 and "Traceback" not in process.stderr


def _insert(path: str, paths: list[str], status: int = 200) -> None:
    conn = connect(path)
    conn.execute("BEGIN IMMEDIATE")
    for name in paths:
        conn.execute("INSERT OR IGNORE INTO paths (name) VALUES (?)", (name,))
        pid = conn.execute("SELECT id FROM paths WHERE name = ?", (name,)).fetchone()[0]
        conn.execute(
            "INSERT INTO requests (start, method, path, http_status, client_ip, duration,"
            " body_size) VALUES (?, 'GET', ?, ?, '192.0.2.9', 0.002, 12)",
            (time.time(), pid, status),
        )
    conn.execute("COMMIT")
    conn.close()


@pytest.mark.timeout(60)
def test_tail_follow_as_a_process_prints_new_rows(tmp_path):
    path = str(tmp_path / "live.db")
    synthetic_log(path, 20, end=NOW, days=1)
    process = subprocess.Popen(
        [EXE, "tail", path, "-f", "-n", "2", "--interval", "0.05", "--status", "2xx"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True)
    reader.start()

    def next_line(timeout: float = 20) -> str:
        return lines.get(timeout=timeout)

    try:
        first = [next_line(), next_line()]
        assert all(" - - [" in line for line in first)
        _insert(path, ["/new/one", "/new/two"])
        _insert(path, ["/new/error"], status=500)  # filtered out
        _insert(path, ["/new/three"])
        seen = [next_line() for _ in range(3)]
        assert [line.split('"')[1] for line in seen] == [
            "GET /new/one HTTP/1.1", "GET /new/two HTTP/1.1", "GET /new/three HTTP/1.1",
        ]
        time.sleep(0.3)
        assert lines.empty()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        reader.join(10)
        errors = process.stderr.read()
        process.stdout.close()
        process.stderr.close()
    assert "Traceback" not in errors


@contextlib.contextmanager
def following(path: str):
    """``tail -f`` of ``path`` in a thread; yields the lines it printed, in a live list."""
    from asgi_log_to_sqlite.report.tail import tail

    lines: list[str] = []
    stop = threading.Event()
    follower = threading.Thread(
        target=tail, args=(path,),
        kwargs={"lines": 0, "follow": True, "interval": 0.02, "emit": lines.append,
                "should_stop": stop.is_set},
        daemon=True,
    )
    follower.start()
    try:
        time.sleep(0.2)
        yield lines
    finally:
        stop.set()
        follower.join(10)


def wait_for_lines(lines: list[str], count: int, timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(lines) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return [line.split('"')[1] for line in lines]


@pytest.mark.timeout(60)
def test_tail_follow_continues_into_a_rotated_log(tmp_path):
    path = str(tmp_path / "live.db")
    synthetic_log(path, 3, end=NOW, days=1)
    with following(path) as lines:
        _insert(path, ["/before/rotation"])
        (tmp_path / "live.db").rename(tmp_path / "live-old.db")
        for suffix in ("-wal", "-shm"):
            if (tmp_path / f"live.db{suffix}").exists():
                (tmp_path / f"live.db{suffix}").rename(tmp_path / f"live-old.db{suffix}")
        conn = connect(path)
        ensure_schema(conn)
        conn.close()
        _insert(path, ["/after/rotation"])
        seen = wait_for_lines(lines, 2)
    assert seen == ["GET /before/rotation HTTP/1.1", "GET /after/rotation HTTP/1.1"]


@pytest.mark.timeout(60)
def test_tail_follow_does_not_hold_back_a_rotation(tmp_path):
    from asgi_log_to_sqlite import maintenance

    path = str(tmp_path / "live.db")
    synthetic_log(path, 3, end=NOW, days=1)
    with following(path) as lines:
        _insert(path, ["/before/rotation"])
        rotated = maintenance.rotate_now(path)  # refused if the follower kept the file open
        _insert(path, ["/after/rotation"])
        seen = wait_for_lines(lines, 2)
    assert os.path.exists(rotated)
    assert seen == ["GET /before/rotation HTTP/1.1", "GET /after/rotation HTTP/1.1"]


# ---- serve --------------------------------------------------------------------------------
def _serve(tmp_path, *extra: str) -> tuple[Server, str]:
    port = free_port()
    db = str(tmp_path / "served.db")
    # An app in the current folder, as users run it; each worker must import it from there.
    (tmp_path / "site_app.py").write_text("from asgi_log_to_sqlite.demo import demo_app as app\n")
    server = Server(
        [EXE, "serve", "site_app:app", "--db", db, "--port", str(port),
         "--flush-interval", "0.05", *extra],
        port, cwd=tmp_path, log=tmp_path / "server.log",
    )
    return server, db


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_logs_every_request_of_a_real_server(tmp_path, workers):
    server, db = _serve(tmp_path, "--workers", str(workers), "-O", "max_queue=5000")
    with server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            # A local client's X-Forwarded-For is not trusted: no trusted_proxies given.
            spoof = {"X-Forwarded-For": "6.6.6.6"}
            statuses = [client.get(f"/blog/hello-world?n={i}", headers=spoof).status_code
                        for i in range(40)]
            statuses += [client.get("/wp-login.php").status_code for _ in range(5)]
        assert statuses.count(200) == 40 and statuses.count(404) == 5
        assert server.stop(signal.SIGTERM) is not None, server.output()
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT path, http_status, client_ip FROM requests_view ORDER BY id").fetchall()
    assert len(rows) == 45, server.output()
    assert sum(1 for r in rows if r[:2] == ("/blog/hello-world", 200)) == 40
    assert all(r[2] == "127.0.0.1" for r in rows)


def test_serve_bad_app_or_option_is_a_clear_error(tmp_path, monkeypatch):
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('broken at import')\n")
    (tmp_path / "typo_app.py").write_text("def app(:\n")
    os.mkfifo(tmp_path / "pipe.db")
    demo = "asgi_log_to_sqlite.demo:demo_app"
    for args, message in [
        (["no_such_module_here:app"], "cannot import module"),
        (["asgi_log_to_sqlite.demo"], "module:attribute"),
        (["asgi_log_to_sqlite.demo:nothing"], "has no attribute"),
        (["broken_app:app"], "cannot import module 'broken_app': RuntimeError: broken at import"),
        (["typo_app:app"], "cannot import module 'typo_app': SyntaxError"),
        ([demo, "-O", "nonsense=1"], "nonsense"),
        ([demo, "--flush-interval", "-1"], "flush_interval"),
        ([demo, "--db", "/no/such/folder/x.db"], "does not exist"),
        ([demo, "--db", "pipe.db"], "not a regular file (a named pipe)"),
        ([demo, "--db", os.devnull], "not a regular file (a character device)"),
        # A pattern too deeply nested for Python's regular expressions.
        ([demo, "-O", "redact_query=" + json.dumps(["re:" + "(" * 1000])], ""),
    ]:
        result = runner.invoke(cli, ["serve", *args])
        assert result.exit_code == 1, (args, result.output)
        assert isinstance(result.exception, SystemExit), (args, result.exception)
        assert message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1, (args, result.output)
    process = run("serve", "broken_app:app", cwd=tmp_path)
    assert process.returncode == 1
    assert "RuntimeError: broken at import" in process.stderr
    assert "Traceback" not in process.stderr


@pytest.mark.timeout(60)
def test_serve_on_an_address_in_use_exits_1(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = run("serve", "asgi_log_to_sqlite.demo:demo_app", "--db", str(tmp_path / "l.db"),
                      "--port", str(port), cwd=tmp_path)
    assert process.returncode == 1, process.stderr  # uvicorn's own status would be 3
    assert process.stderr.splitlines()[-1] == (
        "Error: the server did not start (uvicorn's error is above)")
    assert "Traceback" not in process.stderr


# ---- demo ---------------------------------------------------------------------------------
def test_demo_refuses_a_folder_and_leaves_it(tmp_path):
    db = tmp_path / "d.db"
    db.mkdir()
    result = CliRunner().invoke(cli, ["demo", "--db", str(db), "--requests", "5"])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == f"Error: {db}: a folder, not a log file"
    assert db.is_dir()


def test_demo_in_a_missing_folder_is_one_line(tmp_path):
    db = tmp_path / "no" / "such" / "d.db"
    result = CliRunner().invoke(cli, ["demo", "--db", str(db), "--requests", "5"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    assert str(db) in result.output


@pytest.mark.timeout(120)
def test_demo_in_process(tmp_path):
    db = tmp_path / "d.db"
    result = CliRunner().invoke(
        cli, ["demo", "--db", str(db), "--requests", "150", "--seconds", "0.2"]
    )
    assert result.exit_code == 0, result.output
    assert f"datasette {db}" in result.output
    assert "Top paths" in result.output
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 150


@pytest.mark.timeout(120)
def test_demo_never_replaces_a_special_file(tmp_path):
    """The demo starts its log afresh; given a named pipe (or, as root, /dev/null) it must
    refuse, not delete it."""
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    result = CliRunner().invoke(cli, ["demo", "--db", str(fifo), "--requests", "5"])
    assert result.exit_code == 1, result.output
    assert "a named pipe, not a log file" in result.output
    assert fifo.is_fifo()


def test_demo_as_a_process_writes_demo_db(tmp_path):
    (tmp_path / "demo.db").write_bytes(b"stale file from an earlier run")
    process = run("demo", "--requests", "300", "--seconds", "0.5", cwd=tmp_path, timeout=100)
    assert process.returncode == 0, process.stderr
    assert "datasette demo.db" in process.stdout
    assert "Requests" in process.stderr  # the progress bar
    conn = sqlite3.connect(tmp_path / "demo.db")
    assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 300
    kinds = dict(conn.execute(
        "SELECT http_status / 100, COUNT(*) FROM requests GROUP BY 1").fetchall())
    assert kinds[2] > 200 and kinds.get(4, 0) > 0


# ---- without the cli extra --------------------------------------------------------------------
WITHOUT = (
    "import sys\n"
    "class Blocked:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in {blocked!r}:\n"
    "            raise ImportError(f'No module named {{name!r}}')\n"
    "sys.meta_path.insert(0, Blocked())\n"
    "sys.argv = ['asgi-log-to-sqlite', *{argv!r}]\n"
    "from asgi_log_to_sqlite.console import main\n"
    "main()\n"
)


@pytest.mark.parametrize(
    "blocked, argv, expected",
    [
        ({"click"}, ["report", "x.db"], "pip install 'asgi-log-to-sqlite[cli]'"),
        ({"uvicorn"}, ["serve", "app:app"], "serve needs uvicorn"),
        # click installed, ua-parser or Jinja2 not: a report used to end in a traceback.
        ({"ua_parser"}, ["report", "x.db"], "report needs ua_parser"),
        ({"jinja2"}, ["report", "x.db", "-f", "html"], "needs jinja2"),
    ],
)
def test_missing_extras_are_a_message_not_a_traceback(tmp_path, blocked, argv, expected):
    script = WITHOUT.format(blocked=blocked, argv=argv)
    result = subprocess.run([str(BIN / "python"), "-c", script], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60, check=False)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_report_keeps_user_agent_answers_so_a_second_run_needs_no_parser(log, tmp_path,
                                                                       monkeypatch):
    import sys

    from asgi_log_to_sqlite.report import agents

    monkeypatch.setenv("ASGI_LOG_TO_SQLITE_CACHE_DIR", str(tmp_path / "cache"))
    first = CliRunner().invoke(cli, ["report", log, "-f", "json"])
    assert first.exit_code == 0
    (cached,) = (tmp_path / "cache").iterdir()
    assert cached.name.startswith("user-agents-") and json.loads(cached.read_text())
    agents.classify.cache_clear()
    monkeypatch.delitem(sys.modules, "ua_parser", raising=False)
    second = CliRunner().invoke(cli, ["report", log, "-f", "json"])
    assert "ua_parser" not in sys.modules
    assert json.loads(second.output)["user_agents"] == json.loads(first.output)["user_agents"]
    # A damaged cache file is a cache that is empty.
    cached.write_text("{not json")
    assert CliRunner().invoke(cli, ["report", log]).exit_code == 0
