"""The schema: a fresh file, the upgrade of a real 0.1.1 log, and many processes at once."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
from pathlib import Path

import pytest

from asgi_log_to_sqlite import AsgiLogToSqlite
from asgi_log_to_sqlite.schema import (
    LOOKUP_TABLES,
    REQUEST_COLUMNS,
    SEED_LOOKUP_TABLES,
    SchemaError,
    connect,
    ensure_schema,
    latest_version,
)

SEED_DB = Path(__file__).parent / "fixtures" / "seed-0.1.1.db"
SEED_COLUMNS = [
    "start", "method", "path", "query_string", "user_agent", "referer", "accept_language",
    "http_status", "content_type", "client_ip", "duration", "body_size",
]


def fresh(path) -> sqlite3.Connection:
    conn = connect(str(path))
    ensure_schema(conn)
    return conn


def columns(conn, table):
    return {row[1]: row[2] for row in conn.execute(f"PRAGMA table_info([{table}])")}


def foreign_keys(conn, table):
    return {row[3]: (row[2], row[4]) for row in conn.execute(f"PRAGMA foreign_key_list([{table}])")}


def test_fresh_database(tmp_path):
    conn = fresh(tmp_path / "log.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for table in LOOKUP_TABLES:
        assert columns(conn, table) == {"id": "INTEGER", "name": "TEXT"}
        conn.execute(f"INSERT INTO [{table}] (name) VALUES ('x')")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(f"INSERT INTO [{table}] (name) VALUES ('x')")
    request_columns = columns(conn, "requests")
    assert list(request_columns)[: len(SEED_COLUMNS)] == SEED_COLUMNS
    assert set(REQUEST_COLUMNS) <= set(request_columns)
    assert request_columns["start"] == "FLOAT"
    assert request_columns["path"] == "INTEGER"
    fks = foreign_keys(conn, "requests")
    for column, table in REQUEST_COLUMNS.items():
        if table:
            assert fks[column] == (table, "id")
    indexes = {row[0]: row[1] for row in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'requests'")}
    assert any("(start)" in (sql or "") for sql in indexes.values())
    plan = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM requests WHERE start BETWEEN 1 AND 2"))
    assert "USING INDEX" in plan
    assert columns(conn, "dropped")


def test_ensure_schema_twice_is_a_no_op(tmp_path):
    conn = fresh(tmp_path / "log.db")
    before = conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    ensure_schema(conn)
    assert conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == before


def test_view_joins_every_lookup(tmp_path):
    path = str(tmp_path / "log.db")
    conn = fresh(path)
    ids = {}
    for table in LOOKUP_TABLES:
        ids[table] = conn.execute(
            f"INSERT INTO [{table}] (name) VALUES (?)", (f"{table}-value",)).lastrowid
    values = {c: ids[t] if t else None for c, t in REQUEST_COLUMNS.items()}
    values.update(start=0.5, method="GET", http_status=200, connection_type="http")
    conn.execute(
        f"INSERT INTO requests ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
        list(values.values()),
    )
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM requests_view").fetchone())
    assert row["time"] == "1970-01-01T00:00:00.500Z"
    for column, table in REQUEST_COLUMNS.items():
        if table:
            assert row[column] == f"{table}-value"


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "log.db"
    conn = fresh(path)
    conn.execute(f"PRAGMA user_version={latest_version() + 1}")
    with pytest.raises(SchemaError):
        ensure_schema(connect(str(path)))

    async def app(scope, receive, send):  # pragma: no cover
        pass

    with pytest.raises(ValueError, match="newer"):
        AsgiLogToSqlite(app, str(path))


def seed_rows(conn):
    return conn.execute(f"SELECT {', '.join(SEED_COLUMNS)} FROM requests ORDER BY rowid").fetchall()


def seed_labels(conn):
    """The seed rows as a reader sees them: every lookup id replaced by its text."""
    joins = " ".join(
        f"LEFT JOIN [{t}] ON [{t}].id = requests.[{c}]"
        for c, t in REQUEST_COLUMNS.items() if t in SEED_LOOKUP_TABLES
    )
    select = ", ".join(
        f"[{REQUEST_COLUMNS[c]}].name" if REQUEST_COLUMNS.get(c) else f"requests.[{c}]"
        for c in SEED_COLUMNS
    )
    return conn.execute(f"SELECT {select} FROM requests {joins} ORDER BY requests.rowid").fetchall()


def test_upgrade_of_a_real_0_1_1_log(tmp_path):
    path = tmp_path / "old.db"
    shutil.copy(SEED_DB, path)
    old = sqlite3.connect(str(path))
    assert old.execute("PRAGMA user_version").fetchone()[0] == 0
    rows_before, labels_before = seed_rows(old), seed_labels(old)
    assert len(rows_before) == 8
    old.close()

    conn = fresh(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    assert seed_rows(conn) == rows_before
    assert seed_labels(conn) == labels_before
    new_columns = [c for c in REQUEST_COLUMNS if c not in SEED_COLUMNS]
    assert conn.execute(
        "SELECT count(*) FROM requests WHERE "
        + " OR ".join(f"{c} IS NOT NULL" for c in new_columns)
    ).fetchone()[0] == 0
    # accept_languages was never used by the 0.1.1 run, so it had no index: now it is unique.
    conn.execute("INSERT INTO accept_languages (name) VALUES ('en')")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO accept_languages (name) VALUES ('en')")
    assert conn.execute("SELECT count(*) FROM requests_view").fetchone()[0] == 8
    assert conn.execute(
        "SELECT path, query_string FROM requests_view ORDER BY id LIMIT 2").fetchall() == [
        ("/", None), ("/blog/2019/", "?page=2")]


def test_upgraded_log_receives_new_rows_with_the_old_lookups(tmp_path):
    import httpx

    path = tmp_path / "old.db"
    shutil.copy(SEED_DB, path)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8")]})
        await send({"type": "http.response.body", "body": b"hi"})

    import asyncio

    async def main():
        log = AsgiLogToSqlite(app, str(path))
        transport = httpx.ASGITransport(app=log)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.get("/blog/2019/?page=2", headers={"user-agent": "curl/7.64.0"})
        await log.aclose()

    asyncio.run(main())
    conn = sqlite3.connect(str(path))
    assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 9
    last = conn.execute(
        "SELECT path, query_string, user_agent, content_type FROM requests ORDER BY rowid DESC"
    ).fetchone()
    first_blog = conn.execute(
        "SELECT path, query_string, user_agent FROM requests WHERE rowid = 2").fetchone()
    assert last[:3] == first_blog  # the same lookup rows, not duplicates
    assert conn.execute("SELECT count(*) FROM paths WHERE name = '/blog/2019/'").fetchone()[0] == 1


def _open_concurrently(path: str, barrier) -> None:
    barrier.wait(10)
    conn = connect(path)
    ensure_schema(conn)
    conn.close()


@pytest.mark.timeout(60)
def test_concurrent_schema_creation_from_several_processes(tmp_path):
    path = str(tmp_path / "log.db")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(6)
    processes = [ctx.Process(target=_open_concurrently, args=(path, barrier)) for _ in range(6)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(30)
        assert [p.exitcode for p in processes] == [0] * 6
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'view'").fetchone()[0] >= 1


def test_capture_tables(tmp_path):
    conn = fresh(tmp_path / "log.db")
    assert list(columns(conn, "captures")) == [
        "request", "raw_path", "raw_query", "request_headers", "request_body",
        "request_body_sha256", "request_body_kept", "response_headers", "response_body",
        "response_body_sha256", "response_body_kept", "response_chunks",
    ]
    assert foreign_keys(conn, "captures") == {
        "request_headers": ("header_lists", "id"), "response_headers": ("header_lists", "id"),
    }
    assert "header_lists" in LOOKUP_TABLES or columns(conn, "header_lists") == {
        "id": "INTEGER", "name": "TEXT"
    }
    conn.execute("INSERT INTO header_lists (name) VALUES ('[[\"accept\", \"*/*\"]]')")
    conn.execute("INSERT INTO captures (request, raw_path, raw_query, request_headers) "
                 "VALUES (7, x'2f61', x'713d31', 1)")
    assert conn.execute(
        "SELECT request, raw_path, raw_query, request_headers FROM captures_view"
    ).fetchall() == [(7, "/a", "q=1", '[["accept", "*/*"]]')]
