"""The writer process: records shipped from the event loop, stored by another process."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import shutil
import signal
import sqlite3
import sys
import threading
import time
from typing import Any

import pytest
from test_writer import dropped

from asgi_log_to_sqlite import AsgiLogToSqlite
from asgi_log_to_sqlite.exchange import Exchange
from asgi_log_to_sqlite.options import Options
from asgi_log_to_sqlite.prepare import Prepare
from asgi_log_to_sqlite.wire import FIELDS, Encoder
from asgi_log_to_sqlite.writer_process import ProcessWriter

SECRET = "Zq7-SECRET-VALUE"


async def ok_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"Content-Type", b"text/plain"), (b"set-cookie", SECRET.encode())]})
    await send({"type": "http.response.body", "body": b"ok"})


def scope(path: str = "/", **extra: Any) -> dict[str, Any]:
    full = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"page=2&token=" + SECRET.encode(),
        "headers": [
            (b"host", b"example.com"),
            (b"user-agent", b"ua/1"),
            (b"authorization", b"Bearer " + SECRET.encode()),
            (b"cookie", b"session=" + SECRET.encode()),
            (b"Referer", b"https://ref.example/?sid=" + SECRET.encode()),
        ],
        "client": ("192.0.2.1", 1234),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
        "http_version": "1.1",
    }
    full.update(extra)
    return full


async def request(log: AsgiLogToSqlite, path: str, **extra: Any) -> None:
    """One GET of ``path`` through the middleware, as a server would send it."""
    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        pass

    await log(scope(path, **extra), receive, send)


def serve(log: AsgiLogToSqlite, paths: list[str], flush_each: bool = False,
          **extra: Any) -> None:
    """Serve ``paths``, then flush; ``flush_each``: after each request (each request's record
    then travels in a frame of its own)."""
    async def main() -> None:
        for path in paths:
            await request(log, path, **extra)
            if flush_each:
                await log.aflush(30)
        await log.aflush(30)

    asyncio.run(main())


def rows(path: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM requests_view ORDER BY id")]
    finally:
        conn.close()


@pytest.fixture
def make_log(log_path):
    made: list[AsgiLogToSqlite] = []

    def make(app=ok_app, **options: Any) -> AsgiLogToSqlite:
        log = AsgiLogToSqlite(app, log_path, **options)
        made.append(log)
        return log

    yield make
    for log in made:
        log.close(30)


def test_the_default_writer_is_a_process(make_log, log_path):
    log = make_log()
    serve(log, ["/a", "/b", "/c"])
    assert log.stats()["writer"] == "process"
    assert log.stats()["written"] == 3
    found = rows(log_path)
    assert [r["path"] for r in found] == ["/a", "/b", "/c"]
    assert found[0]["query_string"] == "?page=2&token=REDACTED"
    assert found[0]["content_type"] == "text/plain"
    assert found[0]["referer"] == "https://ref.example/?sid=REDACTED"


def test_only_what_a_row_stores_crosses_the_pipe():
    """Authorization, cookies and other headers a row never stores stay in the app process."""
    exchange = Exchange(scope("/x"), time.time(), 0.0)
    exchange.response_headers = [(b"set-cookie", SECRET.encode()), (b"content-type", b"text/html")]
    exchange.status = 200
    shipped = pickle.dumps(Encoder(Options())(exchange))
    assert b"authorization" not in shipped.lower()
    assert b"session=" not in shipped
    assert b"set-cookie" not in shipped
    # What does cross is the four headers a row stores (redacted by the writer process before
    # anything is stored), and no other.
    record = dict(zip(FIELDS, Encoder(Options())(exchange), strict=True))
    assert record["extra"] is None and record["captured"] is None
    assert record["response_kept"] is None
    assert {name for name in ("user_agent", "referer", "accept_language", "host")
            if record[name] is not None} == {"user_agent", "referer", "host"}


ODD_HEADERS = [
    # An odd-case name before its lower-case twin: the first value is the row's.
    [(b"User-Agent", b"first"), (b"user-agent", b"second"), (b"host", b"a.example")],
    [(b"user-agent", b"first"), (b"USER-AGENT", b"second"), (b"Referer", b"https://r.example/")],
    # Repeated names, no host (the server's address then), names that are not lower-case.
    [(b"referer", b"https://one.example/"), (b"referer", b"https://two.example/")],
    [(b"Accept-Language", b"fr"), (b"HOST", b"b.example"), (b"x-forwarded-for", b"198.51.100.7")],
    [(b"x-request-id", b"r1"), (b"X-Forwarded-For", b"203.0.113.9, 198.51.100.7")],
    # Items that are not pairs of bytes are skipped, the others kept.
    [(b"user-agent",), ("x-request-id", "r2"), (b"x-request-id", b"r3", b""),
     (b"host", b"c.example"), (b"x-request-id", b"r4"), (b"x-forwarded-for", b"203.0.113.5")],
    [],
]


@pytest.mark.parametrize("headers", ODD_HEADERS)
@pytest.mark.parametrize("given", [
    {},
    {"trusted_proxies": ["192.0.2.0/24"], "capture_request_headers": ["x-request-id"]},
    {"capture_request_headers": ["user-agent", "Host"]},
])
def test_a_shipped_record_makes_the_row_of_the_live_one(headers, given):
    """The row the writer process builds from a shipped record is the row any other strategy
    builds from the live exchange, captured headers included, whatever the header list holds."""
    options = Options.from_kwargs(given)
    exchange = Exchange(scope("/x", headers=headers), 1_700_000_000.0, 0.0)
    exchange.response_headers = [(b"content-type", b"text/html")]
    exchange.status, exchange.duration, exchange.body_size = 200, 0.01, 5
    live, shipped = (Prepare(options)([found]) for found in
                     (exchange, pickle.loads(pickle.dumps(Encoder(options)(exchange)))))
    assert shipped.rows == live.rows
    assert shipped.captured == live.captured


def test_a_captured_response_header_the_row_also_reads_is_captured_once():
    """Content-Type is a column and may be captured too: the shipped record carries it once."""
    options = Options.from_kwargs({"capture_response_headers": ["Content-Type", "x-served-by"]})
    exchange = Exchange(scope("/x"), 1_700_000_000.0, 0.0)
    exchange.response_headers = [(b"Content-Type", b"text/html"), (b"x-served-by", b"a")]
    exchange.status, exchange.duration = 200, 0.01
    shipped = pickle.loads(pickle.dumps(Encoder(options)(exchange)))
    batch = Prepare(options)([shipped])
    assert batch.rows[0][8] == "text/html"
    assert batch.captured == [(0, [("response", "content-type", "text/html"),
                                   ("response", "x-served-by", "a")])]


class _UserName(str):
    """A str subclass, as an app's user model may return (markupsafe's Markup keeps its type
    through slicing too)."""

    def __getitem__(self, key):
        return _UserName(str.__getitem__(self, key))


def _built(options, exchange, shipped):
    """The batch any writer makes of ``exchange``: from the live exchange (thread, inline), or
    from its record after the pipe (writer process)."""
    if shipped:
        exchange = pickle.loads(pickle.dumps(Encoder(options)(exchange)))
    return Prepare(options)([exchange])


@pytest.mark.parametrize("shipped", [False, True])
def test_an_actor_of_a_str_subclass_is_stored_as_text(shipped):
    options = Options.from_kwargs({"actor": lambda scope: _UserName("alice")})
    exchange = Exchange(scope("/x"), 1_700_000_000.0, 0.0)
    exchange.status, exchange.duration = 200, 0.01
    assert _built(options, exchange, shipped).rows[0][22] == "alice"
    assert type(Encoder(options)(exchange)[FIELDS.index("actor")]) is str


@pytest.mark.parametrize("shipped", [False, True])
def test_a_response_header_item_that_is_not_a_pair_of_bytes_loses_only_itself(shipped):
    options = Options.from_kwargs({"capture_response_headers": ["x-served-by"]})
    exchange = Exchange(scope("/x"), 1_700_000_000.0, 0.0)
    exchange.response_headers = [(b"x-served-by", b"a"), ("x-odd", "v"), (b"x",),
                                 (b"content-length", b"1234")]
    exchange.status, exchange.duration = 200, 0.01
    exchange.pathsend = "/gone/for/good"  # deleted after the response: Content-Length counts
    batch = _built(options, exchange, shipped)
    assert batch.captured == [(0, [("response", "x-served-by", "a")])]
    assert batch.rows[0][11] == 1234  # body_size


@pytest.mark.parametrize("shipped", [False, True])
@pytest.mark.parametrize("broken", ["request", "response"])
def test_captured_requests_with_header_lists_that_are_not_lists_keep_their_rows(
        shipped, broken):
    options = Options.from_kwargs({"capture_requests": True})
    exchange = Exchange(scope("/x"), 1_700_000_000.0, 0.0)
    exchange.capture = (options.capture_body_limit, options.capture_responses)
    exchange.status, exchange.duration = 200, 0.01
    exchange.response_headers = [(b"content-type", b"text/plain")]
    if broken == "request":
        exchange.scope["headers"] = 5
    else:
        exchange.response_headers = 7
    batch = _built(options, exchange, shipped)
    assert len(batch.rows) == 1 and len(batch.captures) == 1


def _status_app(status):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "headers": [],
                    "status": status if scope["path"] == "/odd" else 200})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


def test_a_value_the_writer_process_cannot_import_costs_its_record_not_the_log(
        make_log, log_path, tmp_path, monkeypatch, caplog):
    """A status of the app's own class, from a module the writer process cannot import (not on
    its path): that record is dropped and counted, the process keeps writing the others."""
    (tmp_path / "odd_status_module.py").write_text("class OddStatus(int):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import odd_status_module

    log = make_log(_status_app(odd_status_module.OddStatus(201)))
    log.startup()
    process = log._writer._process
    serve(log, ["/a", "/odd", "/b"], flush_each=True)
    assert [r["path"] for r in rows(log_path)] == ["/a", "/b"]
    assert log._writer._process is process and process.poll() is None
    assert log.stats()["dropped_bad_record"] == 1
    log.close(30)
    assert dropped(log_path) == {"bad_record": 1}


def test_a_value_that_cannot_be_pickled_costs_its_record_not_its_frame(make_log, log_path):
    class LocalStatus(int):  # a local class: pickle cannot name it
        pass

    log = make_log(_status_app(LocalStatus(201)))
    serve(log, ["/a", "/odd", "/b"])  # one frame, most likely: the other two are kept anyway
    assert sorted(r["path"] for r in rows(log_path)) == ["/a", "/b"]
    assert log.stats()["dropped_bad_record"] == 1
    log.close(30)
    assert dropped(log_path) == {"bad_record": 1}


def test_route_and_actor_callables_run_on_the_app_side(make_log, log_path):
    seen_pids = []

    def route(scope):
        seen_pids.append(os.getpid())
        return "/items/{id}"

    def actor(scope):
        return scope.get("me")

    log = make_log(route=route, actor=actor)
    serve(log, ["/items/1", "/items/2"], me="alice")
    assert set(seen_pids) == {os.getpid()}
    assert [(r["route"], r["actor"]) for r in rows(log_path)] == [("/items/{id}", "alice")] * 2


def test_a_killed_writer_process_loses_no_row(make_log, log_path):
    log = make_log()

    async def main() -> None:
        for i in range(600):
            await request(log, f"/k/{i}")
            if i == 300:
                await asyncio.sleep(0.05)
                os.kill(log._writer._process.pid, signal.SIGKILL)
            await asyncio.sleep(0)
        await log.aflush(60)

    asyncio.run(main())
    assert sorted(r["path"] for r in rows(log_path)) == sorted(f"/k/{i}" for i in range(600))


def test_a_new_writer_process_stores_no_row_or_drop_twice_and_counts_on(make_log, log_path):
    log = make_log(max_queue=10)

    def committed() -> int:
        conn = sqlite3.connect(log_path)
        try:
            return conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        finally:
            conn.close()

    async def main() -> None:
        for i in range(50):  # no pause: the queue takes 10, and 40 are dropped (counted)
            await request(log, f"/burst/{i}")
        await log.aflush(30)
        for i in range(100):
            await request(log, f"/paced/{i}")
            await asyncio.sleep(0.002)
        for _ in range(3000):  # committed every 0.2 s; 15 s at most
            if committed() >= 110:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        # Committed without a flush: acknowledged right after the commit, so the process that
        # takes over is not sent those rows again (it used to store them a second time).
        os.kill(log._writer._process.pid, signal.SIGKILL)
        await asyncio.sleep(0.3)
        await request(log, "/after")
        await log.aflush(30)

    asyncio.run(main())
    expected = [f"/burst/{i}" for i in range(10)] + [f"/paced/{i}" for i in range(100)]
    assert sorted(r["path"] for r in rows(log_path)) == sorted([*expected, "/after"])
    assert dropped(log_path) == {"queue_full": 40}  # not stored again by the new process
    stats = log.stats()
    assert stats["written"] == 111  # the first process's rows still count
    assert stats["dropped_queue_full"] == 40


def test_the_writer_process_outlives_sigterm_to_its_group(make_log, log_path):
    """systemd, ``docker stop`` and Ctrl-C signal the whole group: the writer process must
    still commit what the app hands it while the app shuts down."""
    log = make_log()
    serve(log, ["/before"])
    child = log._writer._process
    os.kill(child.pid, signal.SIGTERM)
    os.kill(child.pid, signal.SIGINT)
    time.sleep(0.2)
    assert child.poll() is None
    serve(log, ["/after"])
    assert [r["path"] for r in rows(log_path)] == ["/before", "/after"]
    log.close(30)
    assert child.wait(10) == 0  # its input ended: it committed and left


def test_no_writer_process_means_a_thread(make_log, log_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    log = make_log()
    serve(log, ["/threaded"])
    assert log.stats()["writer"] == "thread"
    assert [r["path"] for r in rows(log_path)] == ["/threaded"]


def _writer_process_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in set(threading.enumerate()) - before
            if t.name.startswith(("asgi-log-to-sqlite-watch", "asgi-log-to-sqlite-answers"))]


def test_a_writer_process_that_ends_at_start_is_not_restarted_behind_the_thread(
    make_log, log_path, monkeypatch, caplog
):
    # A Python that cannot run the writer (a broken environment): the middleware writes from a
    # thread, and the process writer it gave up on must not go on starting processes.
    monkeypatch.setattr(ProcessWriter, "COMMAND", ("-c", "import sys; sys.exit(3)"))
    before = set(threading.enumerate())
    log = make_log()
    with caplog.at_level(logging.INFO, logger="asgi_log_to_sqlite"):
        serve(log, ["/threaded"])
        time.sleep(0.3)  # the old watch replaced a dead process every 50 ms
    assert log.stats()["writer"] == "thread"
    assert [r["path"] for r in rows(log_path)] == ["/threaded"]
    assert _writer_process_threads(before) == []
    assert "ended at start (exit status 3)" in caplog.text
    assert "takes over" not in caplog.text


def test_a_closed_writer_process_leaves_no_thread_behind(make_log, log_path):
    before = set(threading.enumerate())
    log = make_log()
    serve(log, ["/one"])
    threads = _writer_process_threads(before)
    assert len(threads) == 2
    log.close(30)
    assert [t.name for t in threads if t.is_alive()] == []


def test_the_writer_process_keeps_every_record_it_was_sent(make_log, log_path):
    # max_queue bounds what waits on the app's side. The writer process, which commits every
    # flush_interval, used to apply it again to what it had read, and dropped records it had
    # received (6,200 of these 7,200), uncounted by stats().
    log = make_log(max_queue=1000, flush_interval=0.5)

    async def main() -> None:
        for chunk in range(8):
            for i in range(900):
                await request(log, f"/{chunk}/{i}")
            # The loop ships them (32 a millisecond): 900 more in the pipe. Waiting for a set
            # time instead let a busy machine leave some queued, and the next chunk overflow.
            for _ in range(2000):
                if not log._writer.queue:
                    break
                await asyncio.sleep(0.005)
        await log.aflush(30)

    asyncio.run(main())
    assert len(rows(log_path)) == 7200
    assert dropped(log_path) == {}
    assert log.stats()["dropped_queue_full"] == 0


def test_replacements_that_die_at_start_are_retried_less_often_and_drop_in_time(tmp_path):
    # The log's volume went away and the writer process was killed: every replacement dies at
    # start. They used to be started every 50 ms for ever, retry_for never ran out (each start
    # reset it), and the rows waited for ever, uncounted.
    folder = tmp_path / "volume"
    folder.mkdir()
    log = AsgiLogToSqlite(ok_app, str(folder / "log.db"), retry_for=1)
    replaced: list[str] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "takes over" in record.getMessage():
                replaced.append(record.getMessage())

    handler = Count()
    logging.getLogger("asgi_log_to_sqlite").addHandler(handler)
    try:
        serve(log, ["/before"])
        shutil.rmtree(folder)
        os.kill(log._writer._process.pid, signal.SIGKILL)

        async def more() -> None:
            for i in range(5):
                await request(log, f"/lost/{i}")

        asyncio.run(more())
        time.sleep(2.5)
        stats = log.stats()
        assert stats["queued"] == 0 and stats["dropped_write_failed"] == 5
        # Started at once, then after 0.1, 0.2, 0.4, 0.8 s... (every 50 ms: about 50)
        assert 2 <= len(replaced) <= 7, replaced
        log.close(10)
        assert log._writer._process.poll() is not None
    finally:
        logging.getLogger("asgi_log_to_sqlite").removeHandler(handler)
        log.close(10)


def test_no_process_is_started_once_the_writer_is_stopped(make_log, log_path):
    # A flush racing close() could find the pipe just closed, take the process for dead and
    # start another one, left running after close() returned.
    log = make_log()
    serve(log, ["/one"])
    writer = log._writer
    log.close(30)
    first = writer._process
    writer._dead_since = time.monotonic()
    writer._ship(None)
    assert writer._process is first and first.poll() is not None


def test_close_from_a_signal_handler_that_interrupted_the_shipping_returns(make_log, caplog):
    # A signal handler runs on the thread it interrupts: there, close() waited for the lock
    # that the interrupted shipping held, for ever. Simulated by closing from the encoder.
    log = make_log()
    serve(log, ["/first"])
    writer = log._writer
    encode = writer.encode

    def encode_then_close(record):
        if record.scope["path"] == "/r/5":
            log.close(5)
        return encode(record)

    writer.encode = encode_then_close
    runner = threading.Thread(target=serve, args=(log, [f"/r/{i}" for i in range(10)]),
                              daemon=True)
    with caplog.at_level(logging.WARNING, logger="asgi_log_to_sqlite"):
        runner.start()
        runner.join(30)
    assert not runner.is_alive()
    assert "did not finish in time" in caplog.text
    assert writer._process.poll() is not None  # the process committed what it had and left


def test_drops_counted_on_the_app_side_are_stored(make_log, log_path):
    log = make_log(max_queue=5, flush_interval=60)

    async def main() -> None:
        log.startup()  # as lifespan would: the process is up before the first request
        for i in range(50):  # no await in between: the loop never gets to ship
            await request(log, f"/d/{i}")
        await log.aflush(30)

    asyncio.run(main())
    stats = log.stats()
    assert stats["dropped_queue_full"] == 45
    assert dropped(log_path) == {"queue_full": 45}
    assert len(rows(log_path)) == 5
