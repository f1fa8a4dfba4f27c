"""``import``: real files (plain and gzip) and standard input into real log databases.

Most tests run the installed ``asgi-log-to-sqlite`` program, as a user would; a few call
:func:`import_logs` to reach what the program does not show (an import stopped halfway).
"""

from __future__ import annotations

import gzip
import json
import os
import pty
import select
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from accesslogs import generate, write_log
from support import BIN

from asgi_log_to_sqlite import AsgiLogToSqlite, importer, jsonlines
from asgi_log_to_sqlite.importer import ImportFailed, ImportOptions, import_logs
from asgi_log_to_sqlite.schema import REQUEST_COLUMNS

EXE = str(BIN / "asgi-log-to-sqlite")
LINE = '{ip} - - [07/Dec/2026:10:00:{s:02d} +0000] "GET {path} HTTP/1.1" {status} 12 "-" "{agent}"'


def run(*args: str, input: bytes | None = None, timeout: float = 120):
    process = subprocess.run(
        [EXE, "import", *map(str, args)], input=input, capture_output=True, timeout=timeout,
        check=False,
    )
    process.out = process.stdout.decode()  # type: ignore[attr-defined]
    process.err = process.stderr.decode()  # type: ignore[attr-defined]
    return process


def view(db: str | Path) -> list[dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM requests_view ORDER BY id")]
    finally:
        conn.close()


def query(db: str | Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def lines(n: int, first: int = 0, path: str = "/p{i}") -> str:
    return "".join(
        LINE.format(ip=f"203.0.113.{i % 200}", s=i % 60, path=path.format(i=i), status=200,
                    agent="curl/8") + "\n"
        for i in range(first, first + n)
    )


@pytest.fixture(scope="module")
def entries():
    return generate(3000, seed=7, health_checks=0.02)


# ---- files, gzip, standard input ---------------------------------------------------------------
def test_a_combined_log_plain_and_gzip_give_the_same_rows(tmp_path, entries):
    plain, packed = tmp_path / "access.log", tmp_path / "access.log.1.gz"
    write_log(plain, entries)
    write_log(packed, entries, compress=True)
    first = run(plain, tmp_path / "a.db")
    second = run(packed, tmp_path / "b.db")
    assert first.returncode == 0 and second.returncode == 0, first.err + second.err
    kept = [e for e in entries if e.path != "/healthz"]
    assert f"{len(kept):,} row(s) from 3,000 line(s) (combined)" in first.out
    health = len(entries) - len(kept)
    assert f"left out: {health:,} health check(s)" in first.out
    rows = view(tmp_path / "a.db")
    assert rows == view(tmp_path / "b.db")
    assert [(r["start"], r["http_status"], r["body_size"]) for r in rows] == [
        (e.start, e.status, e.size) for e in kept
    ]
    assert query(tmp_path / "a.db", "SELECT sum(count) FROM excluded_requests") == [(health,)]


def test_gzip_is_recognised_by_its_bytes_not_its_name(tmp_path):
    data = lines(50).encode()
    (tmp_path / "looks-plain.log").write_bytes(gzip.compress(data))
    (tmp_path / "looks-packed.gz").write_bytes(data)
    result = run(tmp_path / "looks-plain.log", tmp_path / "looks-packed.gz", tmp_path / "log.db")
    assert result.returncode == 0, result.err
    assert "looks-plain.log: 50 row(s)" in result.out
    # the same content: the second file is recognised as already imported
    assert "looks-packed.gz: already imported (50 lines), nothing new" in result.out


def test_standard_input_plain_and_gzip_and_read_once(tmp_path):
    db = tmp_path / "log.db"
    data = lines(40).encode()
    first = run("-", db, input=data)
    assert first.returncode == 0, first.err
    assert "-: 40 row(s) from 40 line(s) (combined)" in first.out
    again = run("-", db, input=gzip.compress(data))
    assert "-: already imported (40 lines), nothing new" in again.out
    grown = run("-", db, input=gzip.compress(data + lines(5, first=40).encode()))
    assert "-: 5 new row(s) from 5 new line(s)" in grown.out
    assert query(db, "SELECT count(*) FROM requests") == [(45,)]
    parallel = run("-", db, "--parallel", input=lines(3, first=100).encode())
    assert "-: 3 row(s) from 3 line(s)" in parallel.out  # read here, not in a second process
    twice = run("-", "-", db, input=data)
    assert twice.returncode == 1 and "standard input can be read only once" in twice.err


# ---- each line once -----------------------------------------------------------------------------
def test_importing_again_adds_nothing_whatever_the_name(tmp_path, entries):
    log = tmp_path / "access.log"
    write_log(log, entries)
    db = tmp_path / "log.db"
    assert run(log, db).returncode == 0
    before = view(db)
    copy = tmp_path / "renamed.log"
    copy.write_bytes(log.read_bytes())
    write_log(tmp_path / "access.log.2.gz", entries, compress=True)
    again = run(log, copy, tmp_path / "access.log.2.gz", db)
    assert again.returncode == 0, again.err
    assert again.out.count("already imported (3,000 lines), nothing new") == 3
    assert view(db) == before
    assert query(db, "SELECT count(*), sum(rows), max(lines) FROM imported_files") == [
        (1, len(before), 3000)
    ]


def test_a_grown_file_adds_only_its_new_lines(tmp_path):
    log, db = tmp_path / "access.log", tmp_path / "log.db"
    log.write_text(lines(1000))
    assert "1,000 row(s)" in run(log, db).out
    with open(log, "a") as file:
        file.write(lines(300, first=1000))
        file.write("not a log line\n")
    grown = run(log, db)
    assert ("300 new row(s) from 301 new line(s) (combined; 1,000 lines imported before)"
            in grown.out)
    assert f"{log}:1301: not parsed: not a log line" in grown.err  # numbered in the whole file
    paths = [row[0] for row in query(db, "SELECT path FROM requests_view ORDER BY id")]
    assert paths == [f"/p{i}" for i in range(1300)]
    # the rotated, compressed copy of the same log that grew a little more is the same file
    rotated = tmp_path / "access.log.1.gz"
    rotated.write_bytes(gzip.compress(log.read_bytes() + lines(20, first=1300).encode()))
    result = run(rotated, db)
    assert "20 new row(s) from 20 new line(s)" in result.out
    assert query(db, "SELECT count(*) FROM requests") == [(1320,)]


def test_a_last_line_still_being_written_is_left_for_the_next_import(tmp_path):
    log, db = tmp_path / "live.log", tmp_path / "log.db"
    full = lines(3)
    log.write_text(full + full.splitlines()[0][:40])  # half a line, no line end
    first = run(log, db)
    assert "3 row(s) from 3 line(s)" in first.out
    assert "left for the next import" in first.out
    log.write_text(full + lines(1, first=3) + lines(1, first=4).rstrip("\n"))
    second = run(log, db)
    # the completed line and the last one (complete, though without its line end) are read
    assert "2 new row(s) from 2 new line(s)" in second.out
    assert "left for the next" not in second.out
    assert query(db, "SELECT count(*) FROM requests") == [(5,)]


def test_a_file_that_is_not_the_one_imported_is_read_whole(tmp_path):
    """Same first bytes, different content further on (a log rewritten from the start)."""
    log, db = tmp_path / "access.log", tmp_path / "log.db"
    start = lines(100)  # far more than the 4 KiB that find earlier imports
    log.write_text(start + lines(10, first=100))
    run(log, db)
    log.write_text(start + lines(10, first=100, path="/other{i}") + lines(5, first=110))
    result = run(log, db)
    assert "115 row(s) from 115 line(s)" in result.out  # a new content: read whole
    assert query(db, "SELECT count(*) FROM imported_files") == [(2,)]


def test_an_import_stopped_halfway_goes_on_where_it_stopped(tmp_path, monkeypatch, entries):
    log, db = tmp_path / "access.log", tmp_path / "log.db"
    write_log(log, entries)
    expected = tmp_path / "expected.db"
    import_logs(str(expected), [str(log)])
    monkeypatch.setattr(importer, "BATCH_ROWS", 500)
    monkeypatch.setattr("asgi_log_to_sqlite.logsources.CHUNK_BYTES", 20_000)
    calls = {"n": 0}
    insert = importer.Store.insert

    def failing(self, columns):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return insert(self, columns)

    monkeypatch.setattr(importer.Store, "insert", failing)
    with pytest.raises(KeyboardInterrupt):
        import_logs(str(db), [str(log)], ImportOptions(parallel=False))
    done = query(db, "SELECT count(*) FROM requests")[0][0]
    assert 0 < done < len(entries)
    monkeypatch.setattr(importer.Store, "insert", insert)
    (result,) = import_logs(str(db), [str(log)], ImportOptions(parallel=False))
    assert result.status == "grown"
    assert view(db) == view(expected)


def test_the_second_process_reads_the_same(tmp_path):
    entries = generate(20_000, seed=3, health_checks=0.01)
    log = tmp_path / "access.log"
    write_log(log, entries)
    one = run(log, tmp_path / "one.db", "--no-parallel")
    two = run(log, tmp_path / "two.db", "--parallel")
    assert one.returncode == 0 and two.returncode == 0, one.err + two.err
    assert one.out.replace("one.db", "") == two.out.replace("two.db", "")
    assert view(tmp_path / "one.db") == view(tmp_path / "two.db")
    bookkeeping = "SELECT bytes, sha256, lines, rows, excluded, unparsed FROM imported_files"
    assert query(tmp_path / "one.db", bookkeeping) == query(tmp_path / "two.db", bookkeeping)
    again = run(log, tmp_path / "two.db", "--parallel")
    assert "already imported" in again.out


# ---- every format ------------------------------------------------------------------------------
def test_common_format_and_fields_it_does_not_have(tmp_path):
    log = tmp_path / "common.log"
    log.write_text('10.1.2.3 - bob [07/Dec/2026:11:00:00 +0100] "GET /a?x=1 HTTP/1.0" 200 -\n')
    assert run(log, tmp_path / "log.db").returncode == 0
    (row,) = view(tmp_path / "log.db")
    assert row["start"] == 1796637600.0  # 10:00 UTC
    assert row["time"] == "2026-12-07T10:00:00.000Z"
    assert (row["path"], row["query_string"], row["actor"]) == ("/a", "?x=1", "bob")
    assert row["body_size"] == 0  # "-": no body
    for absent in ("duration", "ttfb", "user_agent", "referer", "content_type", "host",
                   "accept_language", "route", "visitor", "sample_rate", "connection_type"):
        assert row[absent] is None, absent


def test_uvicorn_lines_with_and_without_colours(tmp_path):
    log = tmp_path / "uvicorn.log"
    log.write_text(
        "INFO:     Started server process [1]\n"
        "INFO:     Waiting for application startup.\n"
        'INFO:     127.0.0.1:52134 - "GET /path?x=1 HTTP/1.1" 200 OK\n'
        '\x1b[32mINFO\x1b[0m:     [::1]:52135 - "\x1b[1mPOST /api HTTP/1.1\x1b[0m" '
        "\x1b[31m404 Not Found\x1b[0m\n"
        '127.0.0.1:52136 - "GET /healthz HTTP/1.1" 200 OK\n'
    )
    result = run(log, tmp_path / "log.db")
    assert "2 row(s) from 5 line(s) (uvicorn); left out: 1 health check(s); 2 line(s) not parsed" \
        in result.out
    assert f"{log}:1: not parsed: INFO:     Started server process [1]" in result.err
    rows = view(tmp_path / "log.db")
    assert [(r["method"], r["path"], r["query_string"], r["http_status"], r["client_ip"])
            for r in rows] == [("GET", "/path", "?x=1", 200, "127.0.0.1"),
                               ("POST", "/api", None, 404, "::1")]
    assert rows[0]["start"] is None  # uvicorn's lines carry no time


def test_json_lines_from_cloudwatch_and_cloud_logging(tmp_path):
    row = dict.fromkeys(REQUEST_COLUMNS)
    row.update(start=1796637600.25, method="GET", path="/a", http_status=201, duration=0.5)
    line = jsonlines.encode(row)
    log = tmp_path / "export.log"
    log.write_text(
        f"2026-12-07T10:00:00.250Z {line}\n"
        + json.dumps({"jsonPayload": json.loads(line), "severity": "INFO"}) + "\n"
        + json.dumps({"textPayload": line}) + "\n"
    )
    result = run(log, tmp_path / "log.db")
    assert "3 row(s) from 3 line(s) (jsonlines)" in result.out
    rows = view(tmp_path / "log.db")
    assert {(r["start"], r["path"], r["http_status"], r["duration"]) for r in rows} == {
        (1796637600.25, "/a", 201, 0.5)}


def test_several_formats_in_one_file(tmp_path):
    log = tmp_path / "mixed.log"
    log.write_text(
        lines(2)
        + 'INFO:     127.0.0.1:1 - "GET /u HTTP/1.1" 200 OK\n'
        + jsonlines.encode({"start": 1.0, "path": "/j"}) + "\n"
    )
    result = run(log, tmp_path / "log.db")
    assert "4 row(s) from 4 line(s) (combined)" in result.out
    assert sorted(r[0] for r in query(tmp_path / "log.db", "SELECT path FROM requests_view")) \
        == ["/j", "/p0", "/p1", "/u"]


def test_lines_that_do_not_parse_are_counted_shown_and_never_fatal(tmp_path):
    log = tmp_path / "odd.log"
    body = lines(3).splitlines()
    odd = [
        body[0],
        "",
        "garbage",
        "\x00\x01 binary \x1b[2J \udcff",  # a byte that is not UTF-8
        body[1].replace("07/Dec", "07/Dex"),
        "x" * 5000,
        body[2].replace(" 200 ", " OK "),
        body[2] + "\r",  # a Windows line end
        "more garbage",
    ]
    log.write_bytes("\n".join(odd).encode("utf-8", "surrogateescape") + b"\n")
    result = run(log, tmp_path / "log.db")
    assert result.returncode == 0
    assert "2 row(s) from 9 line(s) (combined); 6 line(s) not parsed" in result.out
    shown = [line for line in result.err.splitlines() if ": not parsed: " in line]
    assert [line.split(": not parsed:")[0] for line in shown] == [
        f"{log}:{n}" for n in (3, 4, 5, 6, 7)]  # the first five, numbered
    assert shown[3].endswith("x" * 200 + "...")
    assert shown[1].endswith(r"not parsed: \x00\x01 binary \x1b[2J \xff")  # never raw
    assert "\x1b" not in result.err and "\x00" not in result.err


def test_a_file_with_no_log_lines_at_all(tmp_path):
    log = tmp_path / "notes.txt"
    log.write_text("hello\nworld\n")
    result = run(log, tmp_path / "log.db")
    assert result.returncode == 0
    assert "0 row(s) from 2 line(s) (no format recognised); 2 line(s) not parsed" in result.out


# ---- privacy --------------------------------------------------------------------------------
def privacy_log(tmp_path) -> Path:
    log = tmp_path / "access.log"
    log.write_text(
        '203.0.113.77 - - [07/Dec/2026:10:00:00 +0000] "GET /login?next=/a&token=abc&code=1 '
        'HTTP/1.1" 302 0 "https://u:pw@ref.example/x?session=s&q=1#access_token=t" "curl/8"\n'
        '2001:db8::1234 - - [07/Dec/2026:10:00:01 +0000] "GET /healthz HTTP/1.1" 200 2 "-" '
        '"kube-probe/1.29"\n'
        '203.0.113.78 - - [07/Dec/2026:10:00:02 +0000] "GET /ready HTTP/1.1" 200 2 "-" "curl/8"\n'
        '203.0.113.79 - - [07/Dec/2026:10:00:03 +0000] "GET /admin/x?page=2&id=9 HTTP/1.1" 200 5 '
        '"-" "BadBot/1.0"\n'
    )
    return log


def test_privacy_defaults_redact_secrets_and_leave_out_health_checks(tmp_path):
    db = tmp_path / "log.db"
    result = run(privacy_log(tmp_path), db)
    assert "2 row(s) from 4 line(s) (combined); left out: 2 health check(s)" in result.out
    first = view(db)[0]
    assert first["query_string"] == "?next=/a&token=REDACTED&code=REDACTED"
    assert first["referer"] == "https://ref.example/x?session=REDACTED&q=1#access_token=REDACTED"
    assert first["client_ip"] == "203.0.113.77"
    assert query(db, "SELECT hour, reason, count FROM excluded_requests") == [
        ("2026-12-07T10:00", "health_check", 2)]


def test_privacy_options(tmp_path):
    db = tmp_path / "log.db"
    result = run(privacy_log(tmp_path), db, "--keep-health-checks", "--anonymize-ip",
                 "--redact-query", "id", "--keep-query", "code", "--exclude", "/admin")
    assert "3 row(s) from 4 line(s) (combined); left out: 1 excluded path(s)" in result.out
    rows = view(db)
    assert [r["client_ip"] for r in rows] == ["203.0.113.0", "2001:db8::", "203.0.113.0"]
    assert rows[0]["query_string"] == "?next=/a&token=REDACTED&code=1"
    other = tmp_path / "other.db"
    run(privacy_log(tmp_path), other, "--no-client-ip", "--exclude-user-agent", "badbot",
        "--redact-query", "page")
    assert [r["client_ip"] for r in view(other)] == [None]
    assert query(other, "SELECT reason, count FROM excluded_requests ORDER BY reason") == [
        ("excluded_user_agent", 1), ("health_check", 2)]


def test_a_bad_option_value_is_one_line(tmp_path):
    result = run(privacy_log(tmp_path), tmp_path / "log.db", "--exclude", "admin")
    assert result.returncode == 1
    assert result.err.strip() == "Error: option 'exclude': path prefix 'admin' must start with '/'"
    assert not (tmp_path / "log.db").exists()


# ---- the round trip of JSON lines --------------------------------------------------------------
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    items = scope["path"].startswith("/items")
    scope["asgi_log_to_sqlite.route"] = "/items/{id}" if items else None
    scope["user"] = {"id": "u-42"} if b"auth" in scope["query_string"] else None
    status = 404 if scope["path"] == "/missing" else 200
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/html; charset=utf-8")]})
    await send({"type": "http.response.body", "body": b"x" * len(scope["path"])})


async def drive(log: AsgiLogToSqlite) -> None:
    transport = httpx.ASGITransport(app=log, raise_app_exceptions=False, client=("10.0.0.9", 123))
    async with httpx.AsyncClient(transport=transport, base_url="http://example.com") as client:
        for i in range(60):
            headers = {
                "user-agent": f"agent/{i % 4}",
                "referer": f"https://ref.example/p?token=t{i}&q={i}#x",
                "accept-language": "fr-FR,fr;q=0.9",
                "x-forwarded-for": f"198.51.100.{i % 7}",
            }
            path = ["/", "/items/7", "/caf\u00e9", "/missing", "/boom", "/a b"][i % 6]
            await client.get(path, params={"page": i, "token": "s", "auth": i % 2},
                             headers=headers)
            await client.post("/items/1", content=b"data" * i, headers=headers)


def test_json_lines_round_trip_to_identical_rows(tmp_path):
    import asyncio

    source = tmp_path / "source.db"
    log = AsgiLogToSqlite(app, str(source), trusted_proxies=["10.0.0.0/8"], visitor_hash=True)
    try:
        asyncio.run(drive(log))
    finally:
        log.close(timeout=10)
    names = ", ".join(REQUEST_COLUMNS)
    rows = query(source, f"SELECT {names} FROM requests_view ORDER BY id")
    assert len(rows) == 120
    assert {r[REQUEST_COLUMNS_INDEX["exception"]] for r in rows} >= {None, "RuntimeError"}
    encoded = [jsonlines.encode(row) for row in rows]
    # as a platform stores them: some plain, some behind CloudWatch's prefix; gzip
    text = "".join(
        (f"2026-12-07T10:00:00.000Z {line}" if i % 2 else line) + "\n"
        for i, line in enumerate(encoded)
    )
    export = tmp_path / "export.jsonl.gz"
    export.write_bytes(gzip.compress(text.encode()))
    result = run(export, tmp_path / "copy.db")
    assert "120 row(s) from 120 line(s) (jsonlines)" in result.out, result.out + result.err
    assert view(tmp_path / "copy.db") == view(source)


REQUEST_COLUMNS_INDEX = {name: i for i, name in enumerate(REQUEST_COLUMNS)}


def test_imported_rows_share_lookups_with_the_servers_rows(tmp_path):
    """Importing into a log a server writes to: the same paths, the same lookup rows."""
    db = tmp_path / "log.db"
    log = tmp_path / "access.log"
    log.write_text(lines(3, path="/same"))
    run(log, db)
    log2 = tmp_path / "uvicorn.log"
    log2.write_text('INFO:     127.0.0.1:1 - "GET /same HTTP/1.1" 200 OK\n')
    run(log2, db)
    assert query(db, "SELECT count(*) FROM paths") == [(1,)]
    assert query(db, "SELECT count(DISTINCT path) FROM requests") == [(1,)]


# ---- errors -----------------------------------------------------------------------------------
def test_a_damaged_gzip_keeps_what_was_read_and_the_rest_comes_later(tmp_path):
    data = lines(5000).encode()
    packed = gzip.compress(data)
    log, db = tmp_path / "access.log.gz", tmp_path / "log.db"
    log.write_bytes(packed[: len(packed) // 2])  # still being written
    result = run(log, db)
    assert result.returncode == 1
    assert f"Error: {log}: " in result.err
    done = query(db, "SELECT count(*) FROM requests")[0][0]
    assert 0 < done < 5000
    log.write_bytes(packed)
    assert run(log, db).returncode == 0
    assert query(db, "SELECT count(*), count(DISTINCT path) FROM requests") == [(5000, 5000)]


def test_sources_are_checked_before_anything_is_written(tmp_path):
    good = tmp_path / "good.log"
    good.write_text(lines(1))
    result = run(good, tmp_path / "missing.log", tmp_path / "log.db")
    assert result.returncode == 1
    assert result.err.strip() == f"Error: {tmp_path / 'missing.log'}: no such file"
    assert not (tmp_path / "log.db").exists()
    folder = run(tmp_path, tmp_path / "log.db")
    assert folder.returncode == 2 and "is a directory" in folder.err  # click's usage error
    with pytest.raises(ImportFailed, match="is a folder"):
        import_logs(str(tmp_path / "log.db"), [str(tmp_path)])


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not sqlite at all " * 100, "not a SQLite database"), (None, "not a log database")],
)
def test_the_target_must_be_a_log_database(tmp_path, content, message):
    target = tmp_path / "target.db"
    if content is None:
        sqlite3.connect(target).execute("CREATE TABLE t (x)").connection.close()
    else:
        target.write_bytes(content)
    log = tmp_path / "access.log"
    log.write_text(lines(1))
    result = run(log, target)
    assert result.returncode == 1
    assert message in result.err and "Traceback" not in result.err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        # A column's type that is not UTF-8: reading the table's columns fails.
        ((b"start FLOAT", 8), "cannot be read"),
        # A table's name that SQLite cannot parse, and quotes undecodable in its own message.
        ((b"[actors]", 7), "not a SQLite database (malformed database schema (actors)"),
    ],
)
def test_a_log_whose_schema_is_damaged_is_one_line(tmp_path, damage, message):
    """A byte of a declaration flipped to one that is not UTF-8 (a damaged page)."""
    target = tmp_path / "target.db"
    conn = sqlite3.connect(target)
    conn.execute("CREATE TABLE requests (start FLOAT, path TEXT)")
    conn.execute("CREATE TABLE [actors] (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
    conn.close()
    data = bytearray(target.read_bytes())
    found, offset = damage
    data[data.find(found) + offset] ^= 0x80
    target.write_bytes(bytes(data))
    log = tmp_path / "access.log"
    log.write_text(lines(1))
    result = run(log, target)
    assert result.returncode == 1
    assert message in result.err and "Traceback" not in result.err


def test_import_logs_rejects_an_unknown_format(tmp_path):
    with pytest.raises(ImportFailed, match="unknown format"):
        import_logs(str(tmp_path / "log.db"), [], ImportOptions(format="xml"))


def test_a_forced_format_reads_nothing_else(tmp_path):
    log = tmp_path / "mixed.log"
    log.write_text(lines(2) + 'INFO:     127.0.0.1:1 - "GET /u HTTP/1.1" 200 OK\n')
    result = run(log, tmp_path / "log.db", "--format", "uvicorn")
    assert "1 row(s) from 3 line(s) (uvicorn); 2 line(s) not parsed" in result.out


# ---- progress --------------------------------------------------------------------------------
def test_progress_is_shown_on_a_terminal_only(tmp_path):
    log = tmp_path / "big.log"
    write_log(log, generate(30_000, seed=2))
    assert os.path.getsize(log) > importer_progress_bytes()
    quiet = run(log, tmp_path / "quiet.db")
    assert quiet.err == ""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [EXE, "import", str(log), str(tmp_path / "tty.db")], stdout=subprocess.DEVNULL,
            stderr=follower, stdin=subprocess.DEVNULL,
        )
        os.close(follower)
        seen = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1)
            if ready:
                try:
                    data = os.read(leader, 4096)
                except OSError:  # the terminal closed: the program ended
                    break
                if not data:
                    break
                seen += data
            elif process.poll() is not None:
                break
        assert process.wait(timeout=60) == 0
    finally:
        os.close(leader)
    assert str(log).encode() in seen and b"100%" in seen


def importer_progress_bytes() -> int:
    from asgi_log_to_sqlite.cli import PROGRESS_BYTES

    return PROGRESS_BYTES


def test_two_imports_of_the_same_new_file_at_once_add_it_once(tmp_path, monkeypatch):
    """The second one to commit finds the first one's bookkeeping row and stops."""
    log, db = tmp_path / "access.log", tmp_path / "log.db"
    log.write_text(lines(50))
    import_logs(str(db), [])  # the database, empty
    records = importer._records
    other = []

    def stale(conn):  # as if read just before the other import committed
        found = records(conn)
        if not other:
            other.append(True)
            import_logs(str(db), [str(log)], ImportOptions(parallel=False))
        return found

    monkeypatch.setattr(importer, "_records", stale)
    with pytest.raises(ImportFailed, match="being imported by another process"):
        import_logs(str(db), [str(log)], ImportOptions(parallel=False))
    assert query(db, "SELECT count(*) FROM requests") == [(50,)]


def test_the_log_cannot_import_itself(tmp_path):
    db = tmp_path / "log.db"
    log = tmp_path / "access.log"
    log.write_text(lines(1))
    run(log, db)
    result = run(db, db)
    assert result.returncode == 1 and "is the log database itself" in result.err


def test_importing_into_a_log_a_server_writes_to_at_the_same_time(tmp_path):
    import asyncio
    import threading

    db = tmp_path / "log.db"
    log = tmp_path / "access.log"
    write_log(log, generate(20_000, seed=5))
    middleware = AsgiLogToSqlite(app, str(db), flush_interval=0.01)
    done = threading.Event()

    async def serve() -> None:
        transport = httpx.ASGITransport(app=middleware, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            for i in range(400):
                await client.get(f"/served/{i}")
                if i % 20 == 0:
                    await asyncio.sleep(0.01)
        done.set()

    thread = threading.Thread(target=lambda: asyncio.run(serve()))
    thread.start()
    try:
        (result,) = import_logs(str(db), [str(log)], ImportOptions(parallel=False))
    finally:
        thread.join(timeout=120)
        middleware.close(timeout=30)
    assert done.is_set()
    assert result.rows == 20_000
    assert query(db, "SELECT count(*) FROM requests") == [(20_400,)]
    assert query(db, "SELECT count(*) FROM requests_view WHERE path LIKE '/served/%'") == [(400,)]


def test_named_pipes_and_devices_are_refused_at_once(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    log = tmp_path / "access.log"
    log.write_text(lines(1))
    result = run(pipe, tmp_path / "log.db", timeout=30)
    assert result.returncode == 1
    assert "not a regular file (a named pipe); pipe it into - instead" in result.err
    device = run(log, "/dev/null", timeout=30)
    assert device.returncode == 1 and "/dev/null: not a regular file" in device.err


def test_imported_rows_are_in_the_hourly_rollups(tmp_path, entries):
    """As the middleware's rows are: reports read them once the rows are pruned."""
    log, db = tmp_path / "access.log", tmp_path / "log.db"
    write_log(log, entries[:2000])
    run(log, db)
    with open(log, "a") as file:
        file.write("".join(entry.line + "\n" for entry in entries[2000:]))
    run(log, db)  # a second import, into the same hours
    assert query(db, "SELECT sum(requests), sum(bytes_sent), sum(not_found) FROM rollups "
                     "WHERE period = 3600") == query(
        db, "SELECT count(*), sum(body_size), sum(http_status = 404) FROM requests")
    # Hour by hour and path by path.
    hours = """SELECT start, path, rows, bytes_sent, status_2xx, status_4xx, timed,
                      round(duration_total, 9), duration_max FROM rollups WHERE period = 3600
               ORDER BY start, path"""
    from_rows = """SELECT CAST(start AS INTEGER) / 3600 * 3600 AS hour, path, count(*),
                          total(body_size), sum(http_status BETWEEN 200 AND 299),
                          sum(http_status BETWEEN 400 AND 499), count(duration),
                          round(total(duration), 9), max(duration)
                   FROM requests GROUP BY hour, path ORDER BY hour, path"""
    assert query(db, hours) == query(db, from_rows)
