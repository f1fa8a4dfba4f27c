"""The JSON-lines sink: one line per row on standard output, values as the SQLite log stores
them; never blocks on a full pipe, never raises into a request."""

from __future__ import annotations

import asyncio
import fcntl
import gc
import json
import os
import threading
import time

import pytest
from support import stored_rows, untimed

from asgi_log_to_sqlite import AsgiLogToSqlite, jsonlines
from asgi_log_to_sqlite.batch import Batch
from asgi_log_to_sqlite.exchange import Amend
from asgi_log_to_sqlite.options import Options
from asgi_log_to_sqlite.schema import REQUEST_COLUMNS
from asgi_log_to_sqlite.sinks import open_sink
from asgi_log_to_sqlite.sinks.base import DataError
from asgi_log_to_sqlite.sinks.jsonlines import JSONLinesSink, StdoutFull


@pytest.fixture(autouse=True)
def no_lambda(monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    status = 404 if scope["path"].startswith("/missing") else 200
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/html; charset=utf-8")]})
    await send({"type": "http.response.body", "body": b"x" * len(scope["path"])})
    if scope["path"] == "/late":
        raise KeyError("late")


REQUESTS = [
    ("/", b"", [(b"user-agent", b"Mozilla/5.0 \xe2\x9c\x93")]),
    ("/search", b"q=caf%C3%A9&token=s3cret&page=2", [(b"referer", b"https://ex.com/a?b=1")]),
    ("/missing/\u00e9t\u00e9", b"", [(b"authorization", b"Bearer secret"),
                                   (b"cookie", b"session=abc"),
                                   (b"accept-language", b"fr-CH, fr;q=0.9")]),
    ("/late", b"password=hunter2", []),
]


async def serve(log) -> None:
    for path, query, headers in REQUESTS:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "https", "path": path, "raw_path": path.encode(),
            "query_string": query, "headers": [(b"host", b"example.com"), *headers],
            "client": ("203.0.113.7", 4000), "server": ("10.0.0.1", 443),
        }

        async def receive():
            return {"type": "http.request", "body": b""}

        async def send(message):
            pass

        try:
            await log(scope, receive, send)
        except KeyError:
            pass


def test_lines_hold_what_the_sqlite_log_stores(capfd, log_path):
    # One batch at close: the late exception of /late reaches its line before it is printed.
    options = dict(flush="batch", flush_interval=60, writer="thread",
                   visitor_hash="a shared secret for both logs")
    to_file = AsgiLogToSqlite(app, log_path, **options)
    to_stdout = AsgiLogToSqlite(app, "-", **options)
    try:
        capfd.readouterr()
        asyncio.run(serve(to_file))
        asyncio.run(serve(to_stdout))
    finally:
        to_file.close(10)
        to_stdout.close(10)
    out = capfd.readouterr().out
    lines = out.splitlines()
    assert len(lines) == len(REQUESTS)
    for line in lines:
        document = json.loads(line)
        assert list(document)[:2] == ["asgi_log_to_sqlite", "time"]
        assert list(document)[2:] == list(REQUEST_COLUMNS)
        assert line.isascii()
    decoded = [jsonlines.decode(line) for line in lines]
    stored = stored_rows(log_path)
    assert [untimed(r) for r in decoded] == [untimed(r) for r in stored]
    # Privacy applied as for the file: no secret in any line.
    assert "s3cret" not in out and "hunter2" not in out and "Bearer" not in out
    assert "abc" not in out
    by_path = {row[2]: row for row in decoded}
    assert by_path["/search"][3] == "?q=caf%C3%A9&token=REDACTED&page=2"
    assert by_path["/late"][COLUMNS_INDEX["exception"]] == "KeyError"
    assert to_stdout.stats()["writer"] == "thread"  # a writer process cannot reach stdout


COLUMNS_INDEX = {name: i for i, name in enumerate(REQUEST_COLUMNS)}


def test_a_line_printed_before_a_late_exception_stays_as_it_is(capfd):
    log = AsgiLogToSqlite(app, "-", flush="response")
    try:
        capfd.readouterr()
        asyncio.run(serve(log))
    finally:
        log.close(10)
    late = jsonlines.decode(capfd.readouterr().out.splitlines()[-1])
    assert late[2] == "/late" and late[COLUMNS_INDEX["exception"]] is None


def test_stdout_is_also_spelled_out(capfd):
    log = AsgiLogToSqlite(app, "stdout", writer="inline", flush="response")
    try:
        capfd.readouterr()
        asyncio.run(serve(log))
    finally:
        log.close(10)
    assert len(capfd.readouterr().out.splitlines()) == len(REQUESTS)
    assert log.file == "<stdout>"


@pytest.mark.parametrize(
    "option",
    [{"rotate": "daily"}, {"max_rows": 10}, {"retain": "30d"}, {"capture_requests": True},
     {"capture_request_headers": ["x-request-id"]}],
)
def test_options_of_sqlite_logs_are_refused(option):
    name = next(iter(option))
    with pytest.raises(ValueError, match=f"option '{name}' needs a SQLite log file"):
        AsgiLogToSqlite(app, "-", **option)


def test_a_writer_process_is_refused():
    with pytest.raises(ValueError, match="option 'writer': a writer process cannot write"):
        AsgiLogToSqlite(app, "-", writer="process")


def test_a_closed_stdout_fails_at_construction():
    read, write = os.pipe()
    os.close(read)
    os.close(write)
    sink = JSONLinesSink(Options(), fd=write)
    with pytest.raises(OSError, match="it is closed"):
        sink.prepare()


def row(path: str, size: int = 0, exception: str | None = None) -> tuple:
    values = dict.fromkeys(REQUEST_COLUMNS)
    values.update(start=1_800_000_000.25, method="GET", path=path + "x" * size,
                  http_status=200, exception=exception, sample_rate=1.0)
    return tuple(values.values())


def small_pipe() -> tuple[int, int]:
    # Objects other tests left behind are finalized first: one that still believed it owned a
    # descriptor number this pipe then reused could write into it or close it.
    gc.collect()
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 4096)  # the smallest pipe: one page
    os.set_blocking(read, False)
    return read, write


def drain(read: int) -> bytes:
    try:
        return os.read(read, 1 << 16)
    except BlockingIOError:
        return b""


def test_a_full_pipe_never_blocks_the_event_loop_and_no_line_is_cut_or_repeated():
    read, write = small_pipe()
    rows = [row(f"/r{i}", size=900) for i in range(12)] + [row("/long", size=9000)]

    async def inline_writer() -> tuple[bytes, int]:
        # On the event loop, as the inline writer writes: a full pipe is never waited for.
        sink = JSONLinesSink(Options(), fd=write, name="<pipe>")
        batch = Batch(rows=rows, keys=list(range(len(rows))))
        received = b""
        attempts = 0
        while batch.done < len(rows) or sink._partial:
            attempts += 1
            assert attempts < 1000
            try:
                sink.write(batch)
            except StdoutFull:
                pass
            received += drain(read)  # the reader catches up a little
        return received + drain(read), attempts

    try:
        received, attempts = asyncio.run(inline_writer())
    finally:
        os.close(read)
        os.close(write)
    assert attempts > 1
    lines = received.decode("ascii").splitlines()
    assert [jsonlines.decode(line)[2] for line in lines] == [r[2] for r in rows]


def test_off_the_loop_a_slow_reader_is_waited_for():
    read, write = small_pipe()
    rows = [row(f"/r{i}", size=900) for i in range(40)]
    received = bytearray()
    stop = threading.Event()

    def slow_reader():
        while not stop.is_set():
            received.extend(drain(read))
            time.sleep(0.005)

    reader = threading.Thread(target=slow_reader)
    reader.start()
    try:
        sink = JSONLinesSink(Options(), fd=write, name="<pipe>")
        batch = Batch(rows=rows, keys=list(range(len(rows))))
        sink.write(batch)  # the writer thread's way: waits for the reader, no error
        assert batch.done == len(rows)
        deadline = time.monotonic() + 10
        while received.count(b"\n") < len(rows) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        reader.join(10)
        os.close(read)
        os.close(write)
    assert [jsonlines.decode(line)[2] for line in bytes(received).splitlines()] == [
        r[2] for r in rows]


def test_off_the_loop_a_reader_that_never_reads_is_waited_for_busy_timeout():
    read, write = small_pipe()
    try:
        sink = JSONLinesSink(Options(busy_timeout=0.2), fd=write, name="<pipe>")
        batch = Batch(rows=[row(f"/r{i}", size=900) for i in range(20)], keys=list(range(20)))
        began = time.monotonic()
        with pytest.raises(StdoutFull):
            sink.write(batch)
        assert time.monotonic() - began >= 0.2
        assert 0 < batch.done < 20
    finally:
        os.close(read)
        os.close(write)


def test_late_exceptions_reach_rows_not_printed_yet(capfd):
    sink = JSONLinesSink(Options())
    batch = Batch(rows=[row("/a"), row("/b")], keys=[7, 8],
                  amends=[Amend(8, 1.0, "ValueError"), Amend(3, 1.0, "OSError")])
    capfd.readouterr()
    sink.write(batch)
    lines = capfd.readouterr().out.splitlines()
    assert [jsonlines.decode(line)[COLUMNS_INDEX["exception"]] for line in lines] == [
        None, "ValueError"]
    assert batch.done == 2 and batch.amends == []


def test_a_late_exception_reaches_a_row_printed_after_the_pipe_was_full():
    read, write = small_pipe()
    exception = COLUMNS_INDEX["exception"]

    async def inline_writer() -> bytes:
        sink = JSONLinesSink(Options(), fd=write, name="<pipe>")
        rows = [row(f"/r{i}", size=900) for i in range(6)]
        batch = Batch(rows=rows, keys=[1, 2, 3, 4, 5, 6], amends=[Amend(6, 1.0, "ValueError")])
        received = b""
        for _ in range(100):
            try:
                sink.write(batch)
            except StdoutFull:
                pass
            received += drain(read)
            if batch.done == len(rows) and not sink._partial:
                break
        return received + drain(read)

    try:
        received = asyncio.run(inline_writer())
    finally:
        os.close(read)
        os.close(write)
    found = [jsonlines.decode(line) for line in received.decode("ascii").splitlines()]
    assert [r[exception] for r in found] == [None] * 5 + ["ValueError"]


def test_a_line_cut_by_a_write_error_is_finished_not_written_again():
    # A disk that fills up (or a reader gone) in the middle of a line: what went out stays,
    # and the rest of that line goes first on the next attempt, not the whole line again.
    read, write = small_pipe()
    sink = JSONLinesSink(Options(busy_timeout=5), fd=write, name="<pipe>")
    batch = Batch(rows=[row("/long", size=9000), row("/next")], keys=[1, 2])

    def reader_leaves():
        time.sleep(0.3)
        os.close(read)  # the next write fails with EPIPE

    leaving = threading.Thread(target=reader_leaves)
    leaving.start()
    try:
        with pytest.raises(BrokenPipeError):
            sink.write(batch)  # 4 KiB of the 9 KiB line went out before the reader left
        leaving.join(10)
        assert batch.done == 1  # that row is out, its rest waits to go first
        assert sink._partial and not sink._partial.startswith(b"{")
    finally:
        os.close(write)


def test_a_value_json_cannot_hold_is_a_data_error():
    sink = JSONLinesSink(Options())
    bad = list(row("/a"))
    bad[COLUMNS_INDEX["method"]] = object()
    with pytest.raises(DataError):
        sink.write(Batch(rows=[tuple(bad)], keys=[1]))


def test_drops_are_logged(caplog, capfd):
    sink = JSONLinesSink(Options())
    with caplog.at_level("WARNING", "asgi_log_to_sqlite"):
        sink.write(Batch(dropped={"queue_full": 3}))
    assert "3 request(s) not logged to <stdout> (queue full)" in caplog.text


def test_open_sink_picks_by_target(tmp_path):
    assert isinstance(open_sink("-", Options()), JSONLinesSink)
    assert isinstance(open_sink("stdout", Options()), JSONLinesSink)
    assert not isinstance(open_sink(str(tmp_path / "stdout"), Options()), JSONLinesSink)


def test_options_of_postgresql_logs_are_refused():
    with pytest.raises(ValueError, match="option 'schema' applies to a PostgreSQL log only"):
        AsgiLogToSqlite(app, "-", schema="weblogs")
