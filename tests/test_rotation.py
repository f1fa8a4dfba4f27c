"""Rotation and retention in the writer: policies, file names, keep, safety checks.

The middleware runs in-process behind HTTPX's ASGI transport; time-based policies use the
``clock`` option so that a test can cross a day boundary without waiting for one.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest

from asgi_log_to_sqlite import AsgiLogToSqlite, rotation
from asgi_log_to_sqlite.options import Options, parse_duration, parse_size
from asgi_log_to_sqlite.schema import latest_version
from asgi_log_to_sqlite.sinks import sqlite as sqlite_sink

# A program that keeps the log open (as Datasette does) until it reads a line.
READER = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
    "c.execute('select count(*) from requests').fetchall(); print('open', flush=True);"
    "sys.stdin.readline()"
)


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def serve(log: AsgiLogToSqlite, paths: list[str], flush_every: int = 1) -> None:
    """Send GETs for ``paths``, committing a batch after every ``flush_every`` requests."""

    async def go() -> None:
        transport = httpx.ASGITransport(app=log)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for i, path in enumerate(paths, 1):
                assert (await client.get(path)).status_code == 200
                if i % flush_every == 0:
                    await log.aflush(10)
            await log.aflush(10)

    asyncio.run(go())


def paths_in(path: str) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT path FROM requests_view ORDER BY id")]
    finally:
        conn.close()


def all_files(log_path: str) -> list[str]:
    return [*rotation.rotated_files(log_path), log_path]


def assert_complete(path: str) -> None:
    """A rotated file stands alone: no -wal/-shm beside it, intact, not in WAL mode."""
    for suffix in ("-wal", "-shm", "-journal"):
        assert not os.path.exists(path + suffix), path + suffix
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    finally:
        conn.close()


def tables(path: str) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type != 'index'")}
    finally:
        conn.close()


class Clock:
    def __init__(self, when: datetime.datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now


# ---- options ----------------------------------------------------------------------------
def test_durations_and_sizes():
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("90m") == 5400
    assert parse_duration("2w") == 14 * 86400
    assert parse_duration(45) == 45.0
    assert parse_duration(datetime.timedelta(hours=1)) == 3600
    assert parse_size("100MB") == 100 * 1024**2
    assert parse_size("512k") == 512 * 1024
    assert parse_size(1000) == 1000


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"rotate": "weekly"}, ValueError, "rotate"),
        ({"rotate": 1}, TypeError, "rotate"),
        ({"max_bytes": "lots"}, ValueError, "max_bytes"),
        ({"max_bytes": 0}, ValueError, "max_bytes"),
        ({"max_rows": 0}, ValueError, "max_rows"),
        ({"max_rows": "10"}, TypeError, "max_rows"),
        ({"keep": 3}, ValueError, "keep"),
        ({"keep": 0, "max_rows": 5}, ValueError, "keep"),
        ({"retain": "soon"}, ValueError, "retain"),
        ({"retain": "-3d"}, ValueError, "retain"),
        ({"retain": "30d", "rotate": "daily"}, ValueError, "retain"),
        ({"clock": 12}, TypeError, "clock"),
    ],
)
def test_bad_options_fail_at_construction(log_path, options, error, name):
    with pytest.raises(error, match=repr(name)):
        AsgiLogToSqlite(hello, log_path, **options)


def test_good_options_are_normalised():
    options = Options.from_kwargs({"rotate": "Daily", "max_bytes": "1MB", "keep": 7})
    assert (options.rotate, options.max_bytes, options.keep) == ("daily", 1024**2, 7)
    assert Options.from_kwargs({"retain": "1d"}).retain == 86400


def test_period_labels():
    when = datetime.datetime(2026, 11, 22, 13, 45, 7, tzinfo=datetime.timezone.utc).timestamp()
    assert rotation.period_label("hourly", when) == "2026-11-22T13"
    assert rotation.period_label("daily", when) == "2026-11-22"
    assert rotation.period_label("monthly", when) == "2026-11"
    assert rotation.time_label(when) == "2026-11-22T13-45-07"


def test_rotated_files_sort_oldest_first(tmp_path):
    base = tmp_path / "log.db"
    for name in ("log-2026-11-22_001.db", "log-2026-11-21.db", "log-2026-11-22.db",
                 "log-extra.db", "other-2026-11-20.db", "log-2026-11-22.db-wal"):
        (tmp_path / name).write_bytes(b"")
    assert [os.path.basename(p) for p in rotation.rotated_files(str(base))] == [
        "log-2026-11-21.db", "log-2026-11-22.db", "log-2026-11-22_001.db"
    ]


# ---- rotation in the writer ------------------------------------------------------------------
def test_max_rows_rotation_keeps_every_row(log_path):
    log = AsgiLogToSqlite(hello, log_path, max_rows=5, flush_interval=0.05)
    sent = [f"/r/{i}" for i in range(40)]
    serve(log, sent, flush_every=3)
    log.close(10)
    files = all_files(log_path)
    assert len(files) >= 6
    found = [p for f in files for p in paths_in(f)]
    assert sorted(found) == sorted(sent)  # every row once, none twice
    for rotated in files[:-1]:
        assert_complete(rotated)
        assert len(paths_in(rotated)) == 5  # a batch is split at the boundary
        assert tables(rotated) == tables(log_path)  # the fresh file has the same schema
    # Oldest first by name is oldest first by content.
    firsts = [int(paths_in(f)[0].rsplit("/", 1)[1]) for f in files if paths_in(f)]
    assert firsts == sorted(firsts)
    assert os.path.exists(rotation.lock_path(log_path))


def test_daily_rotation_names_the_day(log_path):
    clock = Clock(datetime.datetime(2026, 11, 22, 23, 0, tzinfo=datetime.timezone.utc))
    log = AsgiLogToSqlite(hello, log_path, rotate="daily", clock=clock, flush_interval=0.05)
    serve(log, ["/day1/a", "/day1/b"])
    clock.now += 3600  # past midnight, UTC
    serve(log, ["/day2/a"])
    clock.now += 3600  # same day: no rotation
    serve(log, ["/day2/b"])
    log.close(10)
    rotated = os.path.join(os.path.dirname(log_path), "log-2026-11-22.db")
    assert rotation.rotated_files(log_path) == [rotated]
    assert_complete(rotated)
    assert paths_in(rotated) == ["/day1/a", "/day1/b"]
    assert paths_in(log_path) == ["/day2/a", "/day2/b"]


def test_hourly_and_monthly_names(tmp_path):
    for period, expected in (("hourly", "log-2026-11-22T23.db"), ("monthly", "log-2026-11.db")):
        path = str(tmp_path / period / "log.db")
        os.mkdir(os.path.dirname(path))
        clock = Clock(datetime.datetime(2026, 11, 30, 23, 30, tzinfo=datetime.timezone.utc))
        if period == "hourly":
            clock.now -= 8 * 86400
        log = AsgiLogToSqlite(hello, path, rotate=period, clock=clock, flush_interval=0.05)
        serve(log, ["/old"])
        clock.now += 3600
        serve(log, ["/new"])
        log.close(10)
        assert [os.path.basename(p) for p in rotation.rotated_files(path)] == [expected]


def test_an_empty_file_is_not_rotated_across_periods(log_path):
    clock = Clock(datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.timezone.utc))
    log = AsgiLogToSqlite(hello, log_path, rotate="daily", clock=clock, flush_interval=0.05)
    clock.now += 3 * 86400
    serve(log, ["/first"])
    log.close(10)
    assert rotation.rotated_files(log_path) == []
    assert paths_in(log_path) == ["/first"]


def test_keep_deletes_the_oldest(log_path):
    log = AsgiLogToSqlite(hello, log_path, max_rows=2, keep=2, flush_interval=0.05)
    serve(log, [f"/k/{i}" for i in range(12)], flush_every=2)
    log.close(10)
    rotated = rotation.rotated_files(log_path)
    assert len(rotated) == 2
    kept = [p for f in [*rotated, log_path] for p in paths_in(f)]
    assert kept == [f"/k/{i}" for i in range(12 - len(kept), 12)]  # the newest survive


def test_max_bytes(log_path):
    log = AsgiLogToSqlite(hello, log_path, max_bytes=200_000, flush_interval=0.05)
    serve(log, [f"/{'x' * 3000}/{i}" for i in range(120)], flush_every=10)
    log.close(10)
    rotated = rotation.rotated_files(log_path)
    assert rotated
    for name in rotated:
        assert_complete(name)
    assert sum(len(paths_in(f)) for f in [*rotated, log_path]) == 120


def test_rotation_waits_while_another_program_has_the_file_open(log_path, monkeypatch):
    """A reader that does not take part in the lock (e.g. Datasette) holds the file: renaming it
    then could strand its -wal, so rotation waits; rows keep going to the live file."""
    monkeypatch.setattr(sqlite_sink, "BUSY_BACKOFF", 0.0)
    log = AsgiLogToSqlite(hello, log_path, max_rows=3, flush_interval=0.05, writer="thread")
    serve(log, ["/a", "/b", "/c"])
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, log_path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "open"
        serve(log, ["/d", "/e"])
        assert rotation.rotated_files(log_path) == []
        assert len(paths_in(log_path)) == 5
    finally:
        reader.communicate("bye\n", timeout=10)
    serve(log, ["/f"])
    log.close(10)
    rotated = rotation.rotated_files(log_path)
    assert len(rotated) == 1
    assert_complete(rotated[0])
    assert paths_in(rotated[0]) == ["/a", "/b", "/c", "/d", "/e"]
    assert paths_in(log_path) == ["/f"]


def test_two_middlewares_on_one_file_rotate_once_per_boundary(log_path):
    """Two writers (threads here, processes in the e2e test) share the file and the lock."""
    one = AsgiLogToSqlite(hello, log_path, max_rows=10, flush_interval=0.02)
    two = AsgiLogToSqlite(hello, log_path, max_rows=10, flush_interval=0.02)

    async def go() -> None:
        async def client(log: AsgiLogToSqlite, tag: str) -> None:
            transport = httpx.ASGITransport(app=log)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                for i in range(60):
                    await c.get(f"/{tag}/{i}")
                    if i % 4 == 0:
                        await log.aflush(10)
            await log.aflush(10)

        await asyncio.gather(client(one, "one"), client(two, "two"))

    asyncio.run(go())
    one.close(10)
    two.close(10)
    files = all_files(log_path)
    found = [p for f in files for p in paths_in(f)]
    assert len(found) == 120 and len(set(found)) == 120
    for rotated in files[:-1]:
        assert_complete(rotated)
        # Had both writers rotated at one boundary, a file would hold a single small batch; had
        # one written into a file the other filled since it looked, more than max_rows.
        assert len(paths_in(rotated)) == 10


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_two_writers_filling_one_file_never_put_more_than_max_rows_in_it(tmp_path, writer):
    """Batches of both writers cross the boundaries: one that finds the file filled by the
    other since it looked rotates it first, rather than writing the rest of its batch there."""

    async def request(log: AsgiLogToSqlite, path: str) -> None:
        async def receive():
            return {"type": "http.request", "body": b""}

        async def send(message):
            pass

        await log({"type": "http", "method": "GET", "path": path, "headers": [],
                   "query_string": b"", "client": ("127.0.0.1", 1)}, receive, send)

    for attempt in range(2):  # the race needs both writers' batches to meet at a boundary
        log_path = str(tmp_path / f"{attempt}" / "log.db")
        os.makedirs(os.path.dirname(log_path))
        one, two = (AsgiLogToSqlite(hello, log_path, writer=writer, max_rows=200,
                                    flush_interval=0.05) for _ in range(2))

        async def go(one=one, two=two, attempt=attempt) -> None:
            for i in range(1000):
                await request(one, f"/{attempt}/one/{i}")
                await request(two, f"/{attempt}/two/{i}")
                if i % 50 == 0:
                    await asyncio.sleep(0.01)
            await one.aflush(30)
            await two.aflush(30)

        asyncio.run(go())
        one.close(30)
        two.close(30)
        files = all_files(log_path)
        counts = [len(paths_in(f)) for f in files]
        assert sum(counts) == 2000 and max(counts) == 200, counts
        assert len({p for f in files for p in paths_in(f)}) == 2000


# ---- retention --------------------------------------------------------------------------------
def test_retention_deletes_old_rows_in_place(log_path):
    clock = Clock(datetime.datetime.now(datetime.timezone.utc))
    log = AsgiLogToSqlite(hello, log_path, retain="1h", clock=clock, flush_interval=0.05)
    serve(log, [f"/old/{i}" for i in range(30)])
    clock.now += 2 * 3600  # the rows above are now two hours old
    serve(log, ["/new/0"])
    log.close(10)
    assert paths_in(log_path) == ["/new/0"]
    assert rotation.rotated_files(log_path) == []
    assert not os.path.exists(rotation.lock_path(log_path))  # no lock needed without rotation


def wait_until(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_quiet_server_still_deletes_old_rows_and_rotates(log_path, tmp_path, monkeypatch):
    # No request after the clock moves on: the writer checks now and then between batches.
    monkeypatch.setattr(sqlite_sink, "IDLE_CHECK_EVERY", 0.05)
    clock = Clock(datetime.datetime.now(datetime.timezone.utc))  # rows start by the wall clock
    log = AsgiLogToSqlite(hello, log_path, retain="1h", clock=clock, flush_interval=0.05)
    serve(log, [f"/old/{i}" for i in range(5)])
    clock.now += 2 * 3600
    try:
        assert wait_until(lambda: paths_in(log_path) == [])
    finally:
        log.close(10)
    daily = str(tmp_path / "daily" / "log.db")
    os.mkdir(os.path.dirname(daily))
    clock = Clock(datetime.datetime(2026, 11, 22, 23, 0, tzinfo=datetime.timezone.utc))
    log = AsgiLogToSqlite(hello, daily, rotate="daily", clock=clock, flush_interval=0.05)
    serve(log, ["/day1"])
    clock.now += 86400
    try:
        assert wait_until(lambda: rotation.rotated_files(daily) != [])
        assert [paths_in(f) for f in rotation.rotated_files(daily)] == [["/day1"]]
    finally:
        log.close(10)
    assert paths_in(daily) == []


def test_delete_older_than_in_small_transactions(log_path):
    AsgiLogToSqlite(hello, log_path)  # creates the schema
    conn = sqlite3.connect(log_path, isolation_level=None)
    conn.executemany("INSERT INTO requests (start, method) VALUES (?, 'GET')",
                     [(float(i),) for i in range(2500)])
    calls = []
    deleted, finished = rotation.delete_older_than(conn, 2000.0, batch=300, progress=calls.append)
    assert (deleted, finished) == (2000, True)
    assert sum(calls) == 2000 and max(calls) == 300
    assert conn.execute("SELECT min(start), count(*) FROM requests").fetchone() == (2000.0, 500)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental, from creation
    assert rotation.reclaim_space(conn) >= 0
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    conn.close()


def test_rotated_files_open_in_datasette(log_path):
    """Rotated files are served as they are, read-only, with labels from the lookups."""
    from datasette.app import Datasette

    log = AsgiLogToSqlite(hello, log_path, max_rows=3, flush_interval=0.05, writer="thread")
    serve(log, [f"/ds/{i}" for i in range(8)], flush_every=4)
    log.close(10)
    rotated = rotation.rotated_files(log_path)
    assert rotated

    async def go() -> list:
        ds = Datasette(immutables=rotated)
        await ds.invoke_startup()
        found = []
        for name in rotated:
            db = os.path.splitext(os.path.basename(name))[0]
            response = await ds.client.get(f"/{db}/requests_view.json?_shape=array")
            assert response.status_code == 200, response.text
            found += [row["path"] for row in response.json()]
        return found

    found = asyncio.run(go())
    assert sorted(found) == sorted(p for f in rotated for p in paths_in(f))
    for name in rotated:
        assert_complete(name)  # reading left nothing behind


def test_keep_deletes_by_rotation_order_when_by_hand_and_daily_names_mix(log_path):
    # A by-hand rotation names the file by time (log-<day>T<time>.db); the rest of that day,
    # rotated at midnight, gets the day's name, which sorts before it.
    clock = Clock(datetime.datetime(2026, 11, 24, 10, 0, tzinfo=datetime.timezone.utc))
    log = AsgiLogToSqlite(hello, log_path, rotate="daily", keep=1, clock=clock,
                          flush_interval=0.05)
    serve(log, ["/morning"])
    log.close(10)
    clock.now += 3600
    with rotation.FileLock(rotation.lock_path(log_path)).held(True, 10):
        by_hand = rotation.rotate_file(log_path, now=clock.now, force=True)
    log = AsgiLogToSqlite(hello, log_path, rotate="daily", keep=1, clock=clock,
                          flush_interval=0.05)
    serve(log, ["/afternoon"])
    clock.now += 86400
    serve(log, ["/tomorrow"])
    log.close(10)
    rotated = rotation.rotated_files(log_path)
    assert by_hand not in rotated  # the older one went
    assert [paths_in(f) for f in rotated] == [["/afternoon"]]
    assert paths_in(log_path) == ["/tomorrow"]
