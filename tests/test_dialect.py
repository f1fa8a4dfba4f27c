"""The PostgreSQL dialect: each fragment means in PostgreSQL what the SQLite one means in a file."""

from __future__ import annotations

import sqlite3

import pytest

from asgi_log_to_sqlite.dialect import POSTGRESQL, SQLITE

psycopg = pytest.importorskip("psycopg")

VALUES = [1.5, -3.25, 0.0, None, 7200.0, -0.5]


@pytest.fixture
def both(pg_url):
    pg = psycopg.connect(pg_url, autocommit=True)
    pg.execute("CREATE TABLE t (i integer, x double precision, name text)")
    lite = sqlite3.connect(":memory:")
    lite.execute("CREATE TABLE t (i INTEGER, x FLOAT, name TEXT)")
    rows = [(n, x, name) for n, (x, name) in enumerate(zip(VALUES, [
        "/api/items", "/api/x_y", "/blog/2024", None, "/a%b", "/[x]"], strict=True))]
    with pg.cursor() as cur:
        cur.executemany("INSERT INTO t VALUES (%s, %s, %s)", rows)
    lite.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    yield pg, lite
    pg.close()
    lite.close()


def same(both, make):
    pg, lite = both
    ours = pg.execute(make(POSTGRESQL).replace("%", "%%")).fetchall()
    theirs = lite.execute(make(SQLITE)).fetchall()
    assert [tuple(r) for r in ours] == [tuple(r) for r in theirs], make(POSTGRESQL)


def test_fragments_agree(both):
    same(both, lambda d: f"SELECT i, {d.bucket('x', 60)} FROM t ORDER BY i")
    same(both, lambda d: f"SELECT i, {d.finite('x')} FROM t ORDER BY i")
    same(both, lambda d: f"SELECT i, {d.flag('x > 0')} FROM t ORDER BY i")
    same(both, lambda d: f"SELECT {d.total('x')} FROM t")
    same(both, lambda d: f"SELECT {d.total('x')} FROM t WHERE i < 0")
    same(both, lambda d: f"SELECT i, {d.greatest('x', '1.0')}, {d.least('x', '1.0')} FROM t "
                         "ORDER BY i")
    same(both, lambda d: f"SELECT i, {d.integer('i', 1, 3)} FROM t ORDER BY i")
    for pattern in ("/api/*", "/api/x?y", "/a%b", "/[[]x]", "/blog/20[0-9]4", "*"):
        same(both, lambda d, p=pattern: f"SELECT i FROM t WHERE {d.glob('name', d.literal(p))} "
                                        "ORDER BY i")
