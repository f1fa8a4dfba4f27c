"""The writer: batching, the bounded queue, fork, exit, several processes, and failures.

Failures are real: a lock held by another connection, a file deleted under the writer, a file
that cannot be written (permission bits, or the immutable flag when the tests run as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from asgi_log_to_sqlite import AsgiLogToSqlite
from asgi_log_to_sqlite.exchange import Exchange, next_key
from asgi_log_to_sqlite.options import Options
from asgi_log_to_sqlite.prepare import Prepare
from asgi_log_to_sqlite.schema import connect, ensure_schema
from asgi_log_to_sqlite.sinks.sqlite import SQLiteSink
from asgi_log_to_sqlite.writer import ThreadWriter, Writer, start_writer

LOGGER = "asgi_log_to_sqlite"
SRC = str(Path(__file__).resolve().parent.parent / "src")


# ---- helpers -------------------------------------------------------------------------------
def exchange(
    path: str = "/", user_agent: bytes = b"ua", status: int = 200, **scope: Any
) -> Exchange:
    full = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": [(b"user-agent", user_agent), (b"host", b"example.com")],
        "client": ("127.0.0.1", 1),
    }
    full.update(scope)
    record = Exchange(full, time.time(), time.perf_counter())
    record.key = next_key()
    record.status = status
    record.duration = 0.001
    record.body_size = 10
    return record


def flush(writer: Writer, timeout: float = 20) -> None:
    done = threading.Event()
    writer.request_flush(done.set)
    assert done.wait(timeout), "flush did not complete"


def count(path: str, sql: str = "SELECT count(*) FROM requests") -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def dropped(path: str) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT reason, sum(count) FROM dropped GROUP BY reason"))
    finally:
        conn.close()


@pytest.fixture
def make_writer(log_path):
    made: list[Writer] = []

    def make(path: str | None = None, **options: Any) -> Writer:
        conn = connect(path or log_path)  # what the middleware does at construction
        ensure_schema(conn)
        conn.close()
        settings = Options.from_kwargs(options)
        writer = start_writer(
            settings.writer, SQLiteSink(path or log_path, settings), Prepare(settings), settings
        )
        made.append(writer)
        return writer

    yield make
    for writer in made:
        writer.stop(10)


async def ok_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def serve(log: AsgiLogToSqlite, path: str = "/", **scope: Any) -> list[dict[str, Any]]:
    """One request through the middleware; the messages the server received."""
    sent: list[dict[str, Any]] = []
    full = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
    full.update(scope)

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    asyncio.run(log(full, receive, send))
    return sent


def run_script(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


@contextlib.contextmanager
def read_only(path: str):
    """Make ``path`` unwritable for this process, even as root (immutable flag)."""
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", path], capture_output=True, check=False)
        if made.returncode:
            pytest.skip("cannot make a file read-only for root here")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", path], check=True)
    else:
        mode = os.stat(path).st_mode
        os.chmod(path, stat.S_IRUSR)
        try:
            yield
        finally:
            os.chmod(path, mode)


# ---- batching and the API ------------------------------------------------------------------
def test_records_are_written_in_batches_with_shared_lookups(make_writer, log_path):
    writer = make_writer(batch_size=7, flush_interval=60)
    for i in range(100):
        writer.put(exchange(f"/p{i % 10}", user_agent=f"agent {i % 3}".encode()))
    flush(writer)
    assert writer.stats()["written"] == 100
    assert writer.stats()["queued"] == 0
    assert count(log_path) == 100
    assert count(log_path, "SELECT count(*) FROM paths") == 10
    assert count(log_path, "SELECT count(*) FROM user_agents") == 3
    assert count(log_path, "SELECT count(*) FROM hosts") == 1
    assert count(log_path, "SELECT count(*) FROM requests_view WHERE path = '/p3'") == 10


def test_rows_become_visible_without_a_flush(make_writer, log_path):
    """With the default options the writer commits on its own, every ``flush_interval``."""
    writer = make_writer()
    writer.put(exchange())
    deadline = time.monotonic() + 10
    while count(log_path) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert count(log_path) == 1


def test_lookup_cache_survives_its_limit(make_writer, log_path, monkeypatch):
    import asgi_log_to_sqlite.sinks.sqlite as writer_module

    monkeypatch.setattr(writer_module, "CACHE_LIMIT", 5)
    writer = make_writer(batch_size=4, flush_interval=60)
    for i in range(60):
        writer.put(exchange(f"/p{i % 12}"))
    flush(writer)
    assert count(log_path, "SELECT count(*) FROM paths") == 12
    assert count(log_path, "SELECT count(DISTINCT path) FROM requests_view") == 12


def test_stop_drains_and_is_idempotent(make_writer, log_path):
    writer = make_writer(flush_interval=60)
    for _ in range(50):
        writer.put(exchange())
    assert writer.stop(10) is True
    assert writer.stop(10) is True
    assert not writer.alive
    assert count(log_path) == 50
    released = []
    writer.request_flush(lambda: released.append(True))  # no thread: released at once
    assert released == [True]


def test_a_flush_asked_while_the_thread_closes_the_sink_returns(make_writer, log_path):
    # The thread's last step (closing the sink: rollup sums written) waits for a lock another
    # connection holds; a flush asked meanwhile used to be queued behind a thread about to end,
    # and waited for ever.
    writer = make_writer(writer="thread", busy_timeout=1, flush_interval=60)
    for _ in range(5):
        writer.put(exchange())
    flush(writer)
    other = sqlite3.connect(log_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        stopper = threading.Thread(target=writer.stop, args=(30,))
        stopper.start()
        time.sleep(0.3)  # the thread is in its last sink.close()
        returned = []
        flusher = threading.Thread(target=lambda: returned.append(writer.flush(30) is None))
        flusher.start()
        stopper.join(30)
        flusher.join(10)
        assert returned == [True]
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert count(log_path) == 5


def test_flush_marker_waits_for_what_came_before(make_writer, log_path):
    writer = make_writer(flush_interval=60, batch_size=3)
    for _ in range(10):
        writer.put(exchange())
    flush(writer)
    assert count(log_path) == 10


# ---- the bounded queue ---------------------------------------------------------------------
def test_queue_bound_drops_are_counted_logged_and_stored(make_writer, log_path, caplog):
    writer = make_writer(max_queue=5, flush_interval=60)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(20):
            writer.put(exchange())
    assert writer.stats()["dropped_queue_full"] == 15
    assert len([r for r in caplog.records if "queue full" in r.getMessage()]) == 1
    flush(writer)
    assert count(log_path) == 5
    assert dropped(log_path) == {"queue_full": 15}
    # Once caught up, a queue that fills again is reported again.
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(7):
            writer.put(exchange())
    assert len([r for r in caplog.records if "queue full" in r.getMessage()]) == 2


def test_a_late_exception_lands_on_its_own_row_only(make_writer, log_path):
    writer = make_writer(flush_interval=60)
    late = exchange("/late")
    writer.put(late)
    flush(writer)
    # Every row deleted (retention does that on a quiet log): the next request gets row id 1 too.
    conn = sqlite3.connect(log_path)
    conn.execute("DELETE FROM requests")
    conn.commit()
    conn.close()
    writer.put(exchange("/new"))
    flush(writer)
    late.exception = "app.Late"
    writer.amend(late)
    flush(writer)
    still_there = exchange("/still-there")
    writer.put(still_there)
    flush(writer)
    still_there.exception = "app.Late"
    writer.amend(still_there)
    flush(writer)
    conn = sqlite3.connect(log_path)
    found = conn.execute("SELECT path, exception FROM requests_view ORDER BY id").fetchall()
    conn.close()
    assert found == [("/new", None), ("/still-there", "app.Late")]


def test_queue_bound_through_the_middleware(log_path):
    log = AsgiLogToSqlite(ok_app, log_path, max_queue=3, flush_interval=60, writer="thread")
    try:
        for _ in range(10):
            assert serve(log)[0]["status"] == 200
        assert log.stats()["dropped_queue_full"] == 7
        log.flush(10)
        assert count(log_path) == 3
        assert dropped(log_path) == {"queue_full": 7}
    finally:
        log.close(10)


# ---- processes: fork, exit, several writers ------------------------------------------------
FORK_SCRIPT = """
    import asyncio, os, sys
    from asgi_log_to_sqlite import AsgiLogToSqlite

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def hit(log, path):
        async def receive():
            return {"type": "http.request"}
        async def send(message):
            pass
        asyncio.run(log({"type": "http", "method": "GET", "path": path, "headers": []},
                        receive, send))

    log = AsgiLogToSqlite(app, sys.argv[1], flush_interval=60)
    hit(log, "/parent-before")  # the parent's writer starts; the row waits in its queue
    parent_writer = log._writer
    pid = os.fork()
    if pid == 0:
        try:
            hit(log, "/child")
            hit(log, "/child")
            assert log._writer is not parent_writer and log._writer.alive
            log.close(20)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
    hit(log, "/parent-after")
    log.close(20)
"""


@pytest.mark.timeout(60)
def test_writer_restarts_after_os_fork_without_duplicating_parent_rows(log_path):
    run_script(FORK_SCRIPT, log_path)
    conn = sqlite3.connect(log_path)
    found = conn.execute("SELECT path, count(*) FROM requests_view GROUP BY path").fetchall()
    assert dict(found) == {"/parent-before": 1, "/child": 2, "/parent-after": 1}


def _child_serves(log: AsgiLogToSqlite, n: int) -> None:
    for _ in range(n):
        serve(log, "/mp-child")
    log.close(20)  # multiprocessing children leave through os._exit: atexit does not run


MP_SCRIPT = """
    import multiprocessing, sys
    sys.path.insert(0, sys.argv[2])
    import test_writer as t
    from asgi_log_to_sqlite import AsgiLogToSqlite

    log = AsgiLogToSqlite(t.ok_app, sys.argv[1], flush_interval=60)
    t.serve(log, "/mp-parent")
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=t._child_serves, args=(log, 5)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
        assert child.exitcode == 0, child.exitcode
    log.close(20)
"""


@pytest.mark.timeout(60)
def test_writer_restarts_in_multiprocessing_fork_children(log_path):
    run_script(MP_SCRIPT, log_path, str(Path(__file__).parent))
    conn = sqlite3.connect(log_path)
    found = conn.execute("SELECT path, count(*) FROM requests_view GROUP BY path").fetchall()
    assert dict(found) == {"/mp-parent": 1, "/mp-child": 15}


# An app and 40 requests served through ``log``, queued with nothing committed yet.
SERVING = """
    import asyncio, gc, sys
    from asgi_log_to_sqlite import AsgiLogToSqlite

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main(log):
        async def receive():
            return {"type": "http.request"}
        async def send(message):
            pass
        for i in range(40):
            await log({"type": "http", "method": "GET", "path": f"/{i}", "headers": []},
                      receive, send)
"""

EXIT_SCRIPT = SERVING + """
    log = AsgiLogToSqlite(app, sys.argv[1], flush_interval=60)
    asyncio.run(main(log))
    if sys.argv[2] == "exit":
        sys.exit(0)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("ending", ["return", "exit"])
def test_rows_are_flushed_at_interpreter_exit(log_path, ending):
    run_script(EXIT_SCRIPT, log_path, ending)
    assert count(log_path) == 40


LOCAL_APP_SCRIPT = SERVING + """
    async def serve_with_a_local_app():
        # The app object lives only here: collected when this returns.
        await main(AsgiLogToSqlite(app, sys.argv[1], writer=sys.argv[2], flush_interval=60))

    asyncio.run(serve_with_a_local_app())
    gc.collect()
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("writer", ["thread", "inline", "process"])
def test_rows_of_an_app_object_gone_before_exit_are_flushed_at_exit(log_path, writer):
    run_script(LOCAL_APP_SCRIPT, log_path, writer)
    assert count(log_path) == 40


SIGTERM_SCRIPT = EXIT_SCRIPT + """
    import os, signal
    if sys.argv[2] == "handled":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))  # someone else's: left alone
    os.kill(os.getpid(), signal.SIGTERM)
    signal.pause()
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("handler", ["none", "handled"])
def test_sigterm_with_no_handler_flushes_then_terminates(log_path, handler):
    # A process nothing handles SIGTERM in would die with its queue (a hypercorn worker when
    # the whole process group is signalled): it commits first, and still dies of SIGTERM.
    env = {**os.environ, "PYTHONPATH": SRC}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SIGTERM_SCRIPT), log_path, handler],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    if handler == "none":
        assert result.returncode == -signal.SIGTERM
    else:
        assert result.returncode == 3  # the app's own handler ran, and atexit flushed
    assert count(log_path) == 40


TWO_SIGTERMS_SCRIPT = EXIT_SCRIPT + """
    import os, signal, time
    print("served", flush=True)
    sys.stdin.readline()  # the test holds the database's write lock now
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.3)
    asyncio.run(main(log))  # responses keep completing while the flush waits: logged too
    os.kill(os.getpid(), signal.SIGTERM)  # while the first one's flush still waits
    while True:
        time.sleep(0.05)
"""


@pytest.mark.timeout(60)
def test_a_second_sigterm_waits_for_the_flush_of_the_first(log_path):
    # hypercorn's parent terminates its other workers as soon as one ends: a worker still
    # committing gets a second SIGTERM, which must not cut the flush short; and the responses
    # it completes meanwhile are logged as well.
    env = {**os.environ, "PYTHONPATH": SRC}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(TWO_SIGTERMS_SCRIPT), log_path, "return"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert child.stdout.readline().strip() == "served"
        blocker = sqlite3.connect(log_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        child.stdin.write("go\n")
        child.stdin.flush()
        time.sleep(1.5)
        assert child.poll() is None  # still waiting for the lock, not killed by the second one
        blocker.execute("COMMIT")
        blocker.close()
        assert child.wait(30) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=10)  # reaps it and closes its pipes
    assert count(log_path) == 80


def _share_one_file(path: str, worker: int, n: int) -> None:
    options = Options.from_kwargs({"batch_size": 10, "flush_interval": 0.01})
    writer = ThreadWriter(SQLiteSink(path, options), Prepare(options), options)
    for i in range(n):
        # Shared lookups (the same agents and paths in every process) race on insert.
        writer.put(exchange(f"/shared/{i % 25}", user_agent=f"agent {i % 7}".encode(),
                            query_string=f"w={worker}&i={i}".encode()))
        if i % 50 == 0:
            time.sleep(0.001)
    assert writer.stop(30)
    assert writer.stats()["written"] == n, writer.stats()


@pytest.mark.timeout(120)
def test_several_processes_share_one_file(log_path):
    ctx = multiprocessing.get_context("spawn")
    workers, n = 4, 400
    processes = [ctx.Process(target=_share_one_file, args=(log_path, w, n)) for w in range(workers)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(90)
        assert [p.exitcode for p in processes] == [0] * workers
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    assert count(log_path) == workers * n
    assert count(log_path, "SELECT count(DISTINCT query_string) FROM requests") == workers * n
    assert count(log_path, "SELECT count(*) FROM paths") == 25
    assert count(log_path, "SELECT count(*) FROM user_agents") == 7
    assert count(log_path, "SELECT count(*) FROM requests WHERE path IS NULL") == 0
    assert dropped(log_path) == {}


# ---- failures never reach the app ----------------------------------------------------------
def test_file_deleted_while_running_is_recreated(make_writer, log_path, caplog):
    writer = make_writer(flush_interval=60)
    writer.put(exchange("/before"))
    flush(writer)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(log_path + suffix)
    writer.put(exchange("/after"))
    writer.put(exchange("/after"))
    flush(writer)
    assert os.path.exists(log_path)
    conn = sqlite3.connect(log_path)
    assert conn.execute("SELECT path FROM requests_view").fetchall() == [("/after",), ("/after",)]


def test_lock_held_by_another_process_is_retried(log_path, caplog):
    log = AsgiLogToSqlite(
        ok_app, log_path, busy_timeout=0.05, flush_interval=0.05, writer="thread"
    )
    try:
        serve(log, "/first")
        log.flush(10)
        blocker = sqlite3.connect(log_path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with caplog.at_level(logging.WARNING, logger=LOGGER):
                for _ in range(5):
                    sent = serve(log, "/while-locked")
                    kinds = [m["type"] for m in sent]
                    assert kinds == ["http.response.start", "http.response.body"]
                deadline = time.monotonic() + 10
                while log.stats()["write_errors"] == 0 and time.monotonic() < deadline:
                    time.sleep(0.02)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        log.flush(20)
        assert count(log_path) == 6
        stats = log.stats()
        assert stats["write_errors"] >= 1 and stats["dropped_write_failed"] == 0
        messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
        assert any("retrying" in m for m in messages)
    finally:
        log.close(10)


def test_lock_held_too_long_drops_counts_and_logs(log_path, caplog):
    log = AsgiLogToSqlite(
        ok_app, log_path, busy_timeout=0.05, flush_interval=0.05, retry_for=0.3, writer="thread"
    )
    try:
        serve(log, "/first")
        log.flush(10)
        blocker = sqlite3.connect(log_path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with caplog.at_level(logging.WARNING, logger=LOGGER):
                for _ in range(4):
                    serve(log, "/lost")
                deadline = time.monotonic() + 15
                while log.stats()["dropped_write_failed"] < 4 and time.monotonic() < deadline:
                    time.sleep(0.05)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert log.stats()["dropped_write_failed"] == 4
        serve(log, "/later")
        log.flush(20)
        assert count(log_path, "SELECT count(*) FROM requests_view WHERE path = '/lost'") == 0
        assert count(log_path, "SELECT count(*) FROM requests_view WHERE path = '/later'") == 1
        assert dropped(log_path) == {"write_failed": 4}
        errors = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]
        assert any("dropped 4" in r.getMessage() for r in errors)
    finally:
        log.close(10)


def test_read_only_file_request_unaffected_then_retried(log_path, caplog):
    log = AsgiLogToSqlite(
        ok_app, log_path, busy_timeout=0.05, flush_interval=0.05, writer="thread"
    )
    try:
        # The writer opens its connection with the first request: the file is read-only by then.
        with read_only(log_path), caplog.at_level(logging.WARNING, logger=LOGGER):
            for _ in range(3):
                assert serve(log, "/ro")[1] == {"type": "http.response.body", "body": b"ok"}
            deadline = time.monotonic() + 10
            while log.stats()["write_errors"] == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert log.stats()["write_errors"] >= 1
            assert count(log_path) == 0
        log.flush(20)
        assert count(log_path) == 3
        assert any("could not write" in r.getMessage() for r in caplog.records)
    finally:
        log.close(10)


def test_read_only_file_for_too_long_is_counted(log_path, caplog):
    log = AsgiLogToSqlite(
        ok_app, log_path, busy_timeout=0.05, flush_interval=0.05, retry_for=0.2, writer="thread"
    )
    try:
        with read_only(log_path), caplog.at_level(logging.WARNING, logger=LOGGER):
            serve(log, "/ro")
            serve(log, "/ro")
            deadline = time.monotonic() + 10
            while log.stats()["dropped_write_failed"] < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
        assert log.stats()["dropped_write_failed"] == 2
        serve(log, "/rw")
        log.flush(20)
        assert dropped(log_path) == {"write_failed": 2}
        assert count(log_path) == 1
    finally:
        log.close(10)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("a bug while building the row")


def test_bug_in_row_building_is_logged_counted_and_skipped(log_path, caplog):
    log = AsgiLogToSqlite(ok_app, log_path, flush_interval=60, writer="thread")
    try:
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            serve(log, "/good")
            sent = serve(log, "/bad", method=Unprintable())
            serve(log, "/good")
            log.flush(10)
        assert sent[0]["status"] == 200 and sent[1]["body"] == b"ok"
        assert log.stats()["dropped_bad_record"] == 1
        assert log.stats()["written"] == 2
        assert count(log_path) == 2
        assert dropped(log_path) == {"bad_record": 1}
        assert any("could not record" in r.getMessage() and r.exc_info for r in caplog.records)
    finally:
        log.close(10)


def test_bug_in_the_writer_loop_is_logged_counted_and_writing_goes_on(log_path, caplog):
    log = AsgiLogToSqlite(ok_app, log_path, flush_interval=60, writer="thread")
    try:
        serve(log, "/first")
        writer = log._writer
        write_pending = writer._write_pending
        failures = []

        def broken_once(give_up):
            pending = writer._pending
            if pending and pending[0].rows and not failures:
                failures.append(len(pending[0].rows))
                raise RuntimeError("a bug of ours")
            return write_pending(give_up)

        writer._write_pending = broken_once
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            log.flush(10)  # released, not left hanging
            serve(log, "/after")
            log.flush(10)
        assert writer.alive
        assert count(log_path) == 1  # /after; /first was in hand when the bug struck
        assert log.stats()["dropped_bad_record"] == failures[0] == 1
        assert dropped(log_path) == {"bad_record": 1}
        assert any("unexpected error" in r.getMessage() and r.exc_info for r in caplog.records)
    finally:
        log.close(10)


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "512k"):
    """A real, tiny filesystem (tmpfs) that can fill up; needs root, skipped otherwise."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, check=False)
    if mounted.returncode:
        pytest.skip("cannot mount a small filesystem here")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def fill(path: Path) -> None:
    """Take every free block of the filesystem holding ``path``."""
    with open(path, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)


@pytest.mark.timeout(60)
def test_disk_full_request_unaffected_then_retried(tmp_path, caplog):
    with small_disk(tmp_path / "small") as disk:
        db = str(disk / "log.db")
        log = AsgiLogToSqlite(ok_app, db, flush_interval=0.05, writer="thread")
        try:
            serve(log, "/before")
            log.flush(10)
            filler = disk / "filler"
            fill(filler)
            with caplog.at_level(logging.WARNING, logger=LOGGER):
                for i in range(300):  # enough rows to need new pages
                    sent = serve(log, f"/full/{i}", headers=[(b"user-agent", b"x" * 200)])
                    assert sent[1] == {"type": "http.response.body", "body": b"ok"}
                deadline = time.monotonic() + 10
                while log.stats()["write_errors"] == 0 and time.monotonic() < deadline:
                    time.sleep(0.02)
            assert log.stats()["write_errors"] >= 1
            assert any("could not write" in r.getMessage() for r in caplog.records)
            filler.unlink()
            log.flush(20)
            assert count(db) == 301
            assert log.stats()["dropped_write_failed"] == 0
        finally:
            log.close(10)


# ---- values the sink refuses: set apart, the rest written at once ---------------------------
class _Poisoning:
    """A prepare step that lets values through that SQLite cannot store (as a row building bug
    would): the writer must still write every other row at once."""

    def __init__(self, options: Options, poisoned: set[str]) -> None:
        self.inner = Prepare(options)
        self.poisoned = poisoned
        self.bad_records = 0

    def __call__(self, records):
        batch = self.inner(records)
        position = list(schema_columns()).index("http_status")
        batch.rows = [
            (*row[:position], 2**64, *row[position + 1 :]) if row[2] in self.poisoned else row
            for row in batch.rows
        ]
        return batch


def schema_columns():
    from asgi_log_to_sqlite.schema import REQUEST_COLUMNS

    return REQUEST_COLUMNS


@pytest.mark.parametrize(
    "bad", [{"/p7"}, {"/p0", "/p1999"}, {f"/p{i}" for i in range(0, 2000, 97)}]
)
def test_rows_the_sink_refuses_are_set_apart_and_the_rest_written_at_once(log_path, bad, caplog):
    conn = connect(log_path)
    ensure_schema(conn)
    conn.close()
    options = Options.from_kwargs({"flush_interval": 60, "batch_size": 5000})
    writer = ThreadWriter(SQLiteSink(log_path, options), _Poisoning(options, bad), options)
    try:
        for i in range(2000):
            writer.put(exchange(f"/p{i}"))
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            flush(writer, 10)
        assert time.monotonic() - started < 5
        assert count(log_path) == 2000 - len(bad)
        assert count(log_path, "SELECT count(DISTINCT path) FROM requests") == 2000 - len(bad)
        stats = writer.stats()
        assert stats["dropped_bad_record"] == len(bad)
        assert stats["dropped_write_failed"] == 0
        assert stats["written"] == 2000 - len(bad)
    finally:
        writer.stop(10)
    assert dropped(log_path) == {"bad_record": len(bad)}


# ---- rotation precision ----------------------------------------------------------------------
def test_max_rows_splits_a_batch_at_the_boundary(make_writer, log_path):
    from asgi_log_to_sqlite import rotation

    writer = make_writer(max_rows=200, flush_interval=60, batch_size=2000)
    for i in range(2000):
        writer.put(exchange(f"/r{i}"))
    flush(writer)
    for i in range(150):
        writer.put(exchange(f"/s{i}"))
    flush(writer)
    files = [*rotation.rotated_files(log_path), log_path]
    counts = [count(path) for path in files]
    assert max(counts) <= 200
    assert sum(counts) == 2150
    assert counts[:-1] == [200] * (len(files) - 1)
