"""rotate_now, prune, vacuum, merge: as functions, as click commands, and as the real program."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from asgi_log_to_sqlite import AsgiLogToSqlite, maintenance, rotation
from asgi_log_to_sqlite.cli import cli
from asgi_log_to_sqlite.schema import latest_version

SEED_DB = Path(__file__).parent / "fixtures" / "seed-0.1.1.db"
PROGRAM = Path(sys.executable).parent / "asgi-log-to-sqlite"
DAY = 86400.0

# A program that keeps the log open (as Datasette does) until it reads a line.
READER = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
    "c.execute('select count(*) from requests').fetchall(); print('open', flush=True);"
    "sys.stdin.readline()"
)


async def hello(scope, receive, send):  # pragma: no cover - never served here
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def make_log(path: str, rows: list[tuple[float, str, str]]) -> None:
    """A log file holding ``(start, path, user_agent)`` rows, lookups filled the usual way."""
    AsgiLogToSqlite(hello, path)  # creates the schema
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for start, path_text, agent in rows:
            ids = []
            for table, name in (("paths", path_text), ("user_agents", agent)):
                conn.execute(f"INSERT OR IGNORE INTO {table} (name) VALUES (?)", (name,))
                ids.append(conn.execute(f"SELECT id FROM {table} WHERE name = ?", (name,))
                           .fetchone()[0])
            conn.execute(
                "INSERT INTO requests (start, method, path, user_agent, http_status, duration,"
                " body_size) VALUES (?, 'GET', ?, ?, 200, 0.01, 5)",
                (start, *ids),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


def content(path: str) -> list[tuple]:
    """Rows as a reader sees them: names, not ids (ids differ from file to file)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return sorted(conn.execute("SELECT start, path, user_agent FROM requests_view"))
    finally:
        conn.close()


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def bad_inputs(tmp_path) -> dict[str, str]:
    text = tmp_path / "notes.db"
    text.write_text("this is not a database, just some words that are long enough" * 20)
    other = str(tmp_path / "other.db")
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE things (x)")
    conn.commit()
    conn.close()
    newer = str(tmp_path / "newer.db")
    make_log(newer, [(1.0, "/", "a")])
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version={latest_version() + 1}")
    conn.close()
    return {
        "not SQLite": str(text),
        "not a log": other,
        "newer": newer,
        "missing": str(tmp_path / "missing.db"),
    }


MESSAGES = {
    "not SQLite": "not a SQLite database",
    "not a log": "not a log database",
    "newer": "is newer than this asgi-log-to-sqlite supports",
    "missing": "no such file",
}


# ---- rotate_now ------------------------------------------------------------------------------
def test_rotate_now(log_path):
    make_log(log_path, [(1000.0, "/a", "x"), (2000.0, "/b", "y")])
    first = maintenance.rotate_now(log_path)
    assert os.path.basename(first) == "log-1970-01-01T00-16-40.db"  # when the file started
    assert content(first) == [(1000.0, "/a", "x"), (2000.0, "/b", "y")]
    assert not os.path.exists(first + "-wal")
    assert content(log_path) == []  # a fresh, empty log with the full schema
    second = maintenance.rotate_now(log_path, keep=1)
    assert rotation.rotated_files(log_path) == [second]
    assert not os.path.exists(first)


def test_rotate_now_refuses_while_the_file_is_open_elsewhere(log_path):
    make_log(log_path, [(1.0, "/a", "x")])
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, log_path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "open"
        with pytest.raises(maintenance.MaintenanceError, match="open in another program"):
            maintenance.rotate_now(log_path, timeout=1)
    finally:
        reader.communicate("bye\n", timeout=10)
    assert rotation.rotated_files(log_path) == []
    assert content(log_path) == [(1.0, "/a", "x")]


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_maintenance_refuses_bad_files(bad_inputs, kind):
    path = bad_inputs[kind]
    before = digest(path) if os.path.exists(path) else None
    for call in (maintenance.rotate_now, maintenance.vacuum,
                 lambda p: maintenance.prune(p, DAY)):
        with pytest.raises(maintenance.MaintenanceError, match=MESSAGES[kind]):
            call(path)
    assert (digest(path) if os.path.exists(path) else None) == before


def test_rotate_waits_a_moment_for_a_fresh_file_a_server_is_setting_up(tmp_path):
    # Right after a server rotates, the fresh file can exist a moment before its tables do.
    import threading

    from asgi_log_to_sqlite.schema import connect, ensure_schema

    path = str(tmp_path / "log.db")
    sqlite3.connect(path).close()
    with open(path, "wb"):
        pass  # an empty file: a SQLite database without tables

    def set_up() -> None:
        conn = connect(path)
        ensure_schema(conn)
        conn.close()

    timer = threading.Timer(0.3, set_up)
    timer.start()
    try:
        rotated = maintenance.rotate_now(path)
    finally:
        timer.join(10)
    assert os.path.exists(rotated)
    with pytest.raises(maintenance.MaintenanceError, match="not a log database"):
        other = tmp_path / "other.db"
        sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
        maintenance.rotate_now(str(other))


# ---- prune and vacuum ----------------------------------------------------------------------
def test_prune_removes_exactly_the_old_rows(log_path):
    now = time.time()
    ages = [40, 31, 30.5, 29.9, 10, 1, 0]
    make_log(log_path, [(now - age * DAY, f"/p/{age}", "agent") for age in ages])
    result = maintenance.prune(log_path, 30 * DAY, now=now)
    assert (result.deleted, result.remaining) == (3, 4)
    assert [row[1] for row in sorted(content(log_path))] == ["/p/29.9", "/p/10", "/p/1", "/p/0"]
    again = maintenance.prune(log_path, 30 * DAY, now=now)
    assert again.deleted == 0


def test_prune_takes_captured_headers_and_old_counts_with_the_rows(log_path):
    now = time.time()
    make_log(log_path, [(now - age * DAY, f"/p/{age}", "agent") for age in (40, 35, 1)])
    conn = sqlite3.connect(log_path, isolation_level=None)
    conn.execute("INSERT INTO header_names (name) VALUES ('x-request-id')")
    for rowid, path in conn.execute("SELECT id, path FROM requests_view").fetchall():
        conn.execute("INSERT INTO header_values (name) VALUES (?)", (f"rid{path}",))
        conn.execute(
            "INSERT INTO captured_headers VALUES (?, 'request', 1, last_insert_rowid())", (rowid,)
        )
    conn.execute("INSERT INTO captured_headers VALUES (999, 'request', 1, 1)")  # an orphan
    for days, reason in ((40, "health_check"), (0, "sampled_out")):
        hour = time.strftime("%Y-%m-%dT%H:00", time.gmtime(now - days * DAY))
        conn.execute("INSERT INTO excluded_requests VALUES (?, ?, 3)", (hour, reason))
    conn.close()

    maintenance.prune(log_path, 30 * DAY, now=now)
    conn = sqlite3.connect(log_path, isolation_level=None)
    assert conn.execute("SELECT request, value FROM captured_headers_view").fetchall() == [
        (3, "rid/p/1")
    ]
    assert [r[0] for r in conn.execute("SELECT reason FROM excluded_requests")] == ["sampled_out"]
    conn.close()

    # With every row gone, row ids start again: a new request must not inherit old headers.
    maintenance.prune(log_path, 0, now=now + 1)
    make_log(log_path, [(now + 2, "/new", "agent")])
    conn = sqlite3.connect(log_path)
    assert conn.execute("SELECT count(*) FROM captured_headers").fetchone()[0] == 0
    conn.close()


def test_prune_gives_space_back(log_path):
    now = time.time()
    make_log(log_path, [(now - 90 * DAY + i, f"/{'x' * 500}/{i}", "a") for i in range(3000)])
    before = os.path.getsize(log_path)
    result = maintenance.prune(log_path, 30 * DAY, now=now)
    assert result.deleted == 3000 and result.pages_released > 0
    conn = sqlite3.connect(log_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert os.path.getsize(log_path) <= before  # lookups stay; freed request pages go back


def test_vacuum_switches_an_old_file_to_incremental(tmp_path):
    path = str(tmp_path / "old.db")
    shutil.copy(SEED_DB, path)
    rows = content_count(path)
    result = maintenance.vacuum(path)
    assert result.bytes_after > 0
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert content_count(path) == rows


def content_count(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    finally:
        conn.close()


# ---- merge --------------------------------------------------------------------------------------
def test_merge_remaps_lookup_ids_and_is_idempotent(tmp_path):
    a, b, out = (str(tmp_path / n) for n in ("a.db", "b.db", "out.db"))
    make_log(a, [(1.0, "/shared", "firefox"), (2.0, "/only-a", "curl")])
    # Same names in another order: other ids in b than in a.
    make_log(b, [(3.0, "/only-b", "curl"), (4.0, "/shared", "safari"), (5.0, "/shared", "curl")])
    progress = []
    result = maintenance.merge(out, [b, a], progress=lambda done, total: progress.append(done))
    assert (result.merged, result.skipped, result.rows) == ([a, b], [], 5)  # oldest first
    assert progress[0] == 0 and progress[-1] == 5
    assert content(out) == sorted(content(a) + content(b))
    conn = sqlite3.connect(out)
    assert conn.execute("SELECT count(*) FROM paths").fetchone()[0] == 3
    conn.close()
    before = digest(out)
    again = maintenance.merge(out, [a, b])
    assert (again.merged, again.skipped, again.rows) == ([], [a, b], 0)
    assert content(out) == sorted(content(a) + content(b))
    # A renamed copy is the same content: skipped as well.
    shutil.copy(a, tmp_path / "copy-of-a.db")
    assert maintenance.merge(out, [str(tmp_path / "copy-of-a.db")]).skipped
    assert content_count(out) == 5
    assert before  # the file was there all along


def capture_request_ids(path: str, hour: str) -> None:
    """Give every row of ``path`` a captured ``x-request-id`` header, and an excluded count."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT OR IGNORE INTO header_names (name) VALUES ('zz-unused')")
    conn.execute("INSERT OR IGNORE INTO header_names (name) VALUES ('x-request-id')")
    name = conn.execute("SELECT id FROM header_names WHERE name = 'x-request-id'").fetchone()[0]
    for rowid, row_path in conn.execute("SELECT id, path FROM requests_view").fetchall():
        conn.execute("INSERT INTO header_values (name) VALUES (?)", (f"{path[-4:]}{row_path}",))
        conn.execute("INSERT INTO captured_headers VALUES (?, 'request', ?, last_insert_rowid())",
                     (rowid, name))
    conn.execute("INSERT INTO excluded_requests VALUES (?, 'health_check', 2)", (hour,))
    conn.close()


def test_merge_keeps_captured_headers_with_their_rows_and_sums_excluded_counts(tmp_path):
    a, b, out = (str(tmp_path / n) for n in ("a.db", "b.db", "out.db"))
    make_log(a, [(1.0, "/a1", "x"), (2.0, "/a2", "x")])
    make_log(b, [(3.0, "/b1", "x"), (4.0, "/b2", "x"), (5.0, "/b3", "x")])
    capture_request_ids(a, "2026-11-24T10:00")
    capture_request_ids(b, "2026-11-24T10:00")
    make_log(out, [(0.5, "/already-there", "x")])
    maintenance.merge(out, [a, b])
    conn = sqlite3.connect(out)
    joined = conn.execute(
        "SELECT r.path, h.name, h.value FROM captured_headers_view h "
        "JOIN requests_view r ON r.id = h.request ORDER BY r.start"
    ).fetchall()
    assert joined == [
        (p, "x-request-id", f"{db}{p}")
        for db, p in (("a.db", "/a1"), ("a.db", "/a2"), ("b.db", "/b1"), ("b.db", "/b2"),
                      ("b.db", "/b3"))
    ]
    assert conn.execute("SELECT * FROM excluded_requests").fetchall() == [
        ("2026-11-24T10:00", "health_check", 4)
    ]
    conn.close()


def test_merge_of_a_0_1_1_log(tmp_path):
    seed = str(tmp_path / "seed.db")
    shutil.copy(SEED_DB, seed)
    out = str(tmp_path / "out.db")
    make_log(out, [(1.0, "/mine", "me")])
    result = maintenance.merge(out, [seed])
    assert result.rows == content_count(seed)
    conn = sqlite3.connect(seed)
    expected = sorted(conn.execute(
        "SELECT r.start, p.name FROM requests r LEFT JOIN paths p ON p.id = r.path"))
    conn.close()
    conn = sqlite3.connect(out)
    got = sorted(conn.execute(
        "SELECT start, path FROM requests_view WHERE path IS NOT '/mine'"))
    conn.close()
    assert got == expected


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_merge_refuses_bad_input_without_writing(tmp_path, bad_inputs, kind):
    good = str(tmp_path / "good.db")
    make_log(good, [(1.0, "/a", "x")])
    out = str(tmp_path / "out.db")
    with pytest.raises(maintenance.MaintenanceError, match=MESSAGES[kind]):
        maintenance.merge(out, [good, bad_inputs[kind]])
    assert not os.path.exists(out)  # not even created
    make_log(out, [(2.0, "/b", "y")])
    before = digest(out)
    with pytest.raises(maintenance.MaintenanceError, match="nothing was merged"):
        maintenance.merge(out, [good, bad_inputs[kind]])
    assert digest(out) == before


def test_merge_refuses_a_bad_output(tmp_path, bad_inputs):
    good = str(tmp_path / "good.db")
    make_log(good, [(1.0, "/a", "x")])
    for kind in ("not SQLite", "not a log", "newer"):
        before = digest(bad_inputs[kind])
        with pytest.raises(maintenance.MaintenanceError, match=MESSAGES[kind]):
            maintenance.merge(bad_inputs[kind], [good])
        assert digest(bad_inputs[kind]) == before
    with pytest.raises(maintenance.MaintenanceError, match="output file itself"):
        maintenance.merge(good, [good])


# ---- damaged and odd files ---------------------------------------------------------------------
# What a log can hold after a crash, a bad disk or a hand edit. Every command either works on it
# or says in one line why not; none prints a traceback, hangs, or leaves half a merge behind.
ODD = {
    "a lookup table dropped": "DROP TABLE paths; DROP TABLE header_values",
    "requests a view": "ALTER TABLE requests RENAME TO old_requests;"
                       " CREATE VIEW requests AS SELECT rowid AS id, * FROM old_requests",
    "non-UTF-8 text": "UPDATE paths SET name = CAST(x'2fff' AS TEXT) WHERE id = 1;"
                      " UPDATE requests SET method = CAST(x'c3' AS TEXT)",
    "text and blobs in numeric columns": "UPDATE requests SET start = 'soon' WHERE rowid = 1;"
        " UPDATE requests SET duration = x'00', body_size = 'big', path = 'p', user_agent = x'01'"
        " WHERE rowid = 2",
    "every start is text": "UPDATE requests SET start = 'at ' || rowid",
    "blob lookup names": "UPDATE paths SET name = x'ff00' WHERE id = 1",
    "dangling lookup ids": "UPDATE requests SET path = 999, user_agent = -1",
    "infinities": "UPDATE requests SET start = 9e999 WHERE rowid = 1;"
                  " UPDATE requests SET start = -9e999, duration = 9e999 WHERE rowid = 2",
    "huge integers": "UPDATE requests SET start = 9223372036854775807,"
                     " body_size = -9223372036854775808",
    "dates before year 1": "UPDATE requests SET start = -62135596801 - rowid",
    "dates after year 9999": "UPDATE requests SET start = 253402300800 + rowid",
    "garbage log_meta": "CREATE TABLE log_meta (key TEXT PRIMARY KEY, value TEXT);"
                        " INSERT INTO log_meta VALUES ('started', 'garbage'), ('rotated', x'00')",
    "log_meta out of range": "CREATE TABLE log_meta (key TEXT PRIMARY KEY, value TEXT);"
                             " INSERT INTO log_meta VALUES ('started', '1e300')",
    "log_meta infinite": "CREATE TABLE log_meta (key TEXT PRIMARY KEY, value);"
                         " INSERT INTO log_meta VALUES ('started', 9e999)",
    "log_meta null": "CREATE TABLE log_meta (key TEXT PRIMARY KEY, value TEXT);"
                     " INSERT INTO log_meta VALUES ('started', NULL)",
    "log_meta of another shape": "CREATE TABLE log_meta (x)",
    "log_meta a view": "CREATE VIEW log_meta AS SELECT 'started' AS key, 'zz' AS value",
}

# (kind, command) -> what the one-line error says; every other pair works.
ODD_FAILURES = {
    ("requests a view", "prune"): "'requests' is a view",
    ("a lookup table dropped", "metadata"): "cannot be read (no such table",
    ("log_meta of another shape", "rotate"): "cannot rotate",
    ("log_meta a view", "rotate"): "cannot rotate",
}


def odd_log(path: str, sql: str, first: float = 1_700_000_000.0) -> str:
    make_log(path, [(first + i, f"/p/{i % 3}", f"agent {i % 2}") for i in range(6)])
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(sql)
    conn.close()
    return path


def one_line_error(result) -> str:
    """The message of a command that failed as the house style says: one line, exit 1."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines()
             if not line.startswith("Merging rows")]  # merge's progress bar
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def command_line(command: str, path: str, tmp_path) -> list[str]:
    if command == "merge":
        good = str(tmp_path / "good.db")
        if not os.path.exists(good):
            make_log(good, [(1.0, "/good", "x")])
        return ["merge", str(tmp_path / "out.db"), good, path]
    if command == "prune":
        return ["prune", path, "--older-than", "1d"]
    return [command, path]


@pytest.mark.parametrize("command", ["merge", "prune", "rotate", "vacuum", "metadata"])
@pytest.mark.parametrize("kind", sorted(ODD))
def test_odd_logs_work_or_fail_in_one_line(tmp_path, kind, command):
    path = odd_log(str(tmp_path / "log.db"), ODD[kind])
    result = CliRunner().invoke(cli, command_line(command, path, tmp_path))
    expected = ODD_FAILURES.get((kind, command))
    if expected is None:
        assert result.exit_code == 0, result.output
        assert result.exception is None, result.exception
    else:
        assert expected in one_line_error(result)
        assert not os.path.exists(tmp_path / "out.db")


def test_merge_keeps_what_an_odd_input_still_holds(tmp_path):
    out = str(tmp_path / "out.db")
    make_log(out, [(0.5, "/p/2", "agent 1"), (0.6, "/other", "someone")])  # other ids than inputs
    inputs = [
        odd_log(str(tmp_path / f"{n}.db"), ODD[kind], first=1000.0 * n)
        for n, kind in enumerate(["a lookup table dropped", "requests a view", "non-UTF-8 text",
                                  "dangling lookup ids"], start=1)
    ]
    assert maintenance.merge(out, inputs).rows == 24
    conn = sqlite3.connect(out)
    rows = conn.execute(
        "SELECT path, user_agent, method, count(*) FROM requests_view WHERE start > 1"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    ).fetchall()
    conn.close()
    bad = "\ufffd"  # what undecodable text becomes
    assert rows == [
        (None, None, "GET", 6),  # dangling ids: the requests, without names
        (None, "agent 0", "GET", 3),  # the paths table is gone: paths unknown
        (None, "agent 1", "GET", 3),
        # requests as a view: ids translated by name all the same
        ("/p/0", "agent 0", "GET", 1), ("/p/0", "agent 1", "GET", 1),
        ("/p/1", "agent 0", "GET", 1), ("/p/1", "agent 0", bad, 1),
        ("/p/1", "agent 1", "GET", 1), ("/p/1", "agent 1", bad, 1),
        ("/p/2", "agent 0", "GET", 1), ("/p/2", "agent 0", bad, 1),
        ("/p/2", "agent 1", "GET", 1), ("/p/2", "agent 1", bad, 1),
        ("/" + bad, "agent 0", bad, 1), ("/" + bad, "agent 1", bad, 1),
    ]


def corrupt_root_page(path: str, table: str) -> None:
    """Damage the first page of ``table`` as a bad disk would: the file still opens and its
    schema reads, but reading the table's rows fails."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    conn.close()
    with open(path, "r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\x00" * 16)  # no valid page type, no cells


@pytest.mark.parametrize("table", ["requests", "paths"])
@pytest.mark.parametrize("command", ["merge", "prune", "vacuum"])
def test_damaged_pages_are_one_line_errors(tmp_path, table, command):
    path = str(tmp_path / "log.db")
    make_log(path, [(1.0 + i, f"/p/{i}", "x") for i in range(20)])
    corrupt_root_page(path, table)
    out = tmp_path / "out.db"
    if command == "merge" and table == "paths":
        make_log(str(out), [(0.5, "/mine", "me")])  # an output that must stay as it was
        before = content(str(out))
    result = CliRunner().invoke(cli, command_line(command, path, tmp_path))
    if command == "prune" and table == "paths":  # prune never reads lookup names
        assert result.exit_code == 0, result.output
        return
    message = one_line_error(result)
    assert "malformed" in message and path in message
    if command == "merge" and table == "paths":
        assert content(str(out)) == before and "nothing was merged" in message
    elif command == "merge":
        assert not out.exists()


@pytest.mark.parametrize("command", ["merge", "prune", "rotate", "vacuum", "metadata"])
def test_a_damaged_schema_quoted_over_several_lines_is_still_one_line(tmp_path, command):
    path = odd_log(str(tmp_path / "log.db"), "PRAGMA writable_schema = ON; UPDATE sqlite_master"
                   " SET sql = 'CREATE TABLE requests (start FLOAT, \"path' || char(10) ||"
                   " '  INTEGER)' WHERE name = 'requests'")
    result = CliRunner().invoke(cli, command_line(command, path, tmp_path))
    assert "unrecognized token" in one_line_error(result)


def test_rotate_says_when_its_lock_file_cannot_be_made(tmp_path):
    path = odd_log(str(tmp_path / "log.db"), "")
    os.mkdir(path + ".lock")
    message = one_line_error(CliRunner().invoke(cli, ["rotate", path]))
    assert message == f"Error: {path}.lock: Is a directory"


def test_rotate_names_a_file_whose_stamps_are_damaged_after_its_first_request(tmp_path):
    path = odd_log(str(tmp_path / "log.db"), ODD["garbage log_meta"])
    rotated = maintenance.rotate_now(path)
    assert os.path.basename(rotated) == "log-2023-11-14T22-13-20.db"  # the first row's start
    (tmp_path / "far").mkdir()
    path = odd_log(str(tmp_path / "far" / "log.db"),
                   ODD["dates before year 1"] + "; " + ODD["log_meta null"])
    rotated = maintenance.rotate_now(path, now=86400.0)
    assert os.path.basename(rotated) == "log-1970-01-02T00-00-00.db"  # no date at all: now


def test_a_log_from_before_year_1000_rotates_to_a_name_keep_counts(tmp_path):
    from datetime import datetime, timezone

    first = datetime(999, 12, 31, tzinfo=timezone.utc).timestamp()
    path = odd_log(str(tmp_path / "log.db"), "", first=first)
    rotated = maintenance.rotate_now(path)
    assert os.path.basename(rotated) == "log-0999-12-31T00-00-00.db"
    assert rotation.rotated_files(path) == [rotated]


def test_prune_with_an_age_beyond_the_calendar_deletes_nothing(tmp_path):
    path = odd_log(str(tmp_path / "log.db"), "")
    assert maintenance.prune(path, 1e15).deleted == 0  # thirty million years
    result = CliRunner().invoke(cli, ["prune", path, "--older-than", "99999999999d"])
    assert result.exit_code == 2 and "at most" in result.output  # the command says so first


@pytest.mark.timeout(30, method="thread")
def test_special_files_are_refused_at_once(tmp_path):
    fifo = str(tmp_path / "pipe.db")
    os.mkfifo(fifo)
    good = str(tmp_path / "good.db")
    make_log(good, [(1.0, "/", "x")])
    runner = CliRunner()
    for special, kind in ((fifo, "a named pipe"), (os.devnull, "a character device")):
        for args in (["prune", special, "--older-than", "1d"], ["rotate", special],
                     ["vacuum", special], ["metadata", special],
                     ["merge", str(tmp_path / "out.db"), special]):
            message = one_line_error(runner.invoke(cli, args))
            assert special in message and f"not a regular file ({kind})" in message, args
        assert not os.path.exists(tmp_path / "out.db")
        message = one_line_error(runner.invoke(cli, ["merge", special, good]))
        assert f"{special}: not a regular file ({kind})" in message


@pytest.mark.timeout(30, method="thread")
def test_rotate_passes_over_a_named_pipe_that_looks_like_a_rotated_file(tmp_path):
    path = str(tmp_path / "log.db")
    make_log(path, [(1.0, "/", "x")])
    os.mkfifo(tmp_path / "log-1970-01-01.db")
    rotated = maintenance.rotate_now(path, keep=5)
    assert rotation.rotated_files(path) == [rotated]


def test_file_names_that_are_not_utf_8(tmp_path):
    folder = os.fsencode(tmp_path)
    name = os.fsdecode(folder + b"/l\xffg.db")
    out = os.fsdecode(folder + b"/\xfeout.db")
    make_log(name, [(time.time() - 3 * DAY, "/a", "x"), (time.time(), "/b", "x")])
    runner = CliRunner()
    for args in (["merge", out, name], ["prune", name, "--older-than", "1d"], ["vacuum", name],
                 ["metadata", name], ["rotate", name]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
        assert result.exception is None, result.exception
    assert content_count(out) == 2


# ---- the command line ------------------------------------------------------------------------
def test_help_lists_the_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("rotate", "prune", "vacuum", "merge"):
        assert command in result.output


def test_cli_commands(tmp_path):
    runner = CliRunner()
    log = str(tmp_path / "log.db")
    now = time.time()
    make_log(log, [(now - 40 * DAY, "/old", "a"), (now, "/new", "a")])
    result = runner.invoke(cli, ["prune", log, "--older-than", "30d"])
    assert result.exit_code == 0, result.output
    assert "Deleted 1 row(s)" in result.output
    result = runner.invoke(cli, ["prune", log, "--older-than", "soon"])
    assert result.exit_code == 2 and "not a duration" in result.output
    result = runner.invoke(cli, ["vacuum", log])
    assert result.exit_code == 0 and "Vacuumed" in result.output
    result = runner.invoke(cli, ["rotate", log])
    assert result.exit_code == 0, result.output
    rotated = rotation.rotated_files(log)
    assert len(rotated) == 1 and rotated[0] in result.output
    out = str(tmp_path / "all.db")
    result = runner.invoke(cli, ["merge", out, rotated[0], log])
    assert result.exit_code == 0, result.output
    assert "Merged 2 file(s), 1 row(s)" in result.output
    result = runner.invoke(cli, ["merge", out, rotated[0]])
    assert "Skipped" in result.output and "Merged 0 file(s)" in result.output


def test_cli_bad_input(tmp_path, bad_inputs):
    runner = CliRunner()
    out = str(tmp_path / "out.db")
    for kind, path in bad_inputs.items():
        result = runner.invoke(cli, ["merge", out, path])
        assert result.exit_code == 1, result.output
        assert MESSAGES[kind] in result.output
        assert "Traceback" not in result.output
        assert not os.path.exists(out)
        result = runner.invoke(cli, ["rotate", path])
        assert result.exit_code == 1 and MESSAGES[kind] in result.output


def test_the_real_program(tmp_path, bad_inputs):
    a, b, out = (str(tmp_path / n) for n in ("a.db", "b.db", "out.db"))
    make_log(a, [(float(i), f"/a/{i % 7}", "x") for i in range(6000)])
    make_log(b, [(float(i), f"/b/{i % 5}", "y") for i in range(6000, 9000)])
    run = subprocess.run([str(PROGRAM), "merge", out, a, b], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert "Merged 2 file(s), 9000 row(s)" in run.stdout
    assert "Merging rows" in run.stderr  # the progress bar
    assert content_count(out) == 9000
    run = subprocess.run([str(PROGRAM), "merge", out, a, bad_inputs["not SQLite"]],
                         capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 1
    assert "not a SQLite database" in run.stderr and "Traceback" not in run.stderr
    assert content_count(out) == 9000
    run = subprocess.run([str(PROGRAM), "--help"], capture_output=True, text=True, timeout=60,
                         check=False)
    assert all(c in run.stdout for c in ("rotate", "prune", "vacuum", "merge"))


def add_captures(path: str, tag: str) -> None:
    """A capture row for every request: its header list names ``tag`` and the request's path."""
    conn = sqlite3.connect(path, isolation_level=None)
    for rowid, row_path in conn.execute("SELECT id, path FROM requests_view").fetchall():
        headers = f'[["x-tag", "{tag}{row_path}"]]'
        conn.execute("INSERT OR IGNORE INTO header_lists (name) VALUES (?)", (headers,))
        list_id = conn.execute("SELECT id FROM header_lists WHERE name = ?", (headers,)).fetchone()
        conn.execute(
            "INSERT INTO captures (request, raw_path, request_headers, request_body, "
            "request_body_kept, response_headers, response_body_sha256) "
            "VALUES (?, ?, ?, ?, 1, ?, ?)",
            (rowid, row_path.encode(), list_id[0], b"body" + row_path.encode(), list_id[0],
             "h" + row_path),
        )
    conn.close()


def test_prune_takes_captures_with_their_rows(log_path):
    now = time.time()
    make_log(log_path, [(now - age * DAY, f"/p/{age}", "agent") for age in (40, 35, 1)])
    add_captures(log_path, "t")
    conn = sqlite3.connect(log_path, isolation_level=None)
    conn.execute("INSERT INTO captures (request, raw_path) VALUES (999, x'2f')")  # an orphan
    conn.close()
    maintenance.prune(log_path, 30 * DAY, now=now)
    conn = sqlite3.connect(log_path)
    assert conn.execute(
        "SELECT request, raw_path, request_headers, request_body FROM captures_view"
    ).fetchall() == [(3, "/p/1", '[["x-tag", "t/p/1"]]', b"body/p/1")]
    conn.close()


def test_merge_keeps_captures_with_their_rows(tmp_path):
    a, b, out = (str(tmp_path / n) for n in ("a.db", "b.db", "out.db"))
    make_log(a, [(1.0, "/a1", "x"), (2.0, "/a2", "x")])
    make_log(b, [(3.0, "/b1", "x"), (4.0, "/b2", "x")])
    add_captures(a, "a")
    add_captures(b, "b")
    make_log(out, [(0.5, "/already-there", "x")])
    add_captures(out, "o")
    maintenance.merge(out, [a, b])
    conn = sqlite3.connect(out)
    rows = conn.execute(
        "SELECT requests_view.path, captures_view.raw_path, captures_view.request_headers, "
        "captures_view.response_headers, captures_view.response_body_sha256 "
        "FROM requests_view JOIN captures_view ON captures_view.request = requests_view.id "
        "ORDER BY requests_view.start"
    ).fetchall()
    conn.close()
    assert rows == [
        (p, p, f'[["x-tag", "{tag}{p}"]]', f'[["x-tag", "{tag}{p}"]]', "h" + p)
        for tag, p in (("o", "/already-there"), ("a", "/a1"), ("a", "/a2"), ("b", "/b1"),
                       ("b", "/b2"))
    ]


def test_a_damaged_schema_whose_message_does_not_decode_is_one_line(tmp_path):
    """SQLite's message quotes the damaged schema text, which Python may fail to decode."""
    from asgi_log_to_sqlite import maintenance
    from asgi_log_to_sqlite.schema import connect, ensure_schema

    path = str(tmp_path / "log.db")
    conn = connect(path)
    ensure_schema(conn)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    data = bytearray(Path(path).read_bytes())
    data[data.find(b"(", data.find(b"CREATE TABLE excluded_requests"))] = 0xA9
    Path(path).write_bytes(data)
    with pytest.raises(maintenance.MaintenanceError, match=r"cannot be read .*near"):
        maintenance.prune(path, 1.0)
