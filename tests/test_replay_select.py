"""Which rows a replay sends: the filters, in SQL, over real log files."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from apps.replay_app import app_v1
from replay_support import add_capture, make_log

from asgi_log_to_sqlite.replay.select import ReplayError, Selection, count_rows, read_rows

SEED_DB = Path(__file__).parent / "fixtures" / "seed-0.1.1.db"


def rows(path, **selection):
    return [r for chunk in read_rows(path, Selection(**selection)) for r in chunk]


@pytest.fixture
def log(tmp_path):
    path = str(tmp_path / "log.db")
    make_log(path, app_v1, [
        ("GET", "/items/1?page=2", {}),
        ("GET", "/items/2", {}),
        ("HEAD", "/items/3", {}),
        ("GET", "/boom", {}),
        ("GET", "/nowhere", {}),
        ("POST", "/login", {"json": {"user": "bob", "password": "x"}}),
        ("GET", "/go", {}),
    ])
    conn = sqlite3.connect(path, isolation_level=None)
    # Spread the rows an hour apart, so that --since and --until have something to cut.
    conn.execute("UPDATE requests SET start = 1000000 + rowid * 3600")
    conn.close()
    return path


def test_default_selection_is_get_and_head_in_order(log):
    found = rows(log)
    assert [(r.method, r.path) for r in found] == [
        ("GET", "/items/1"), ("GET", "/items/2"), ("HEAD", "/items/3"), ("GET", "/boom"),
        ("GET", "/nowhere"), ("GET", "/go"),
    ]
    first = found[0]
    assert first.query_string == "?page=2"
    assert first.route == "/items/{item_id}" and first.key == "/items/{item_id}"
    assert first.status == 200 and first.duration > 0 and first.host == "testserver"
    assert not first.captured
    assert found[4].route is None and found[4].key == "/nowhere"
    assert count_rows(log, Selection()) == 6


def test_all_methods(log):
    assert [r.method for r in rows(log, all_methods=True)].count("POST") == 1


def test_time_window(log):
    found = rows(log, since=1000000 + 2 * 3600, until=1000000 + 4 * 3600)
    assert [r.path for r in found] == ["/items/2", "/items/3"]


def test_paths_routes_and_statuses(log):
    assert [r.path for r in rows(log, paths=["/items"])] == ["/items/1", "/items/2", "/items/3"]
    assert [r.path for r in rows(log, paths=["/b*", "/g?"])] == ["/boom", "/go"]
    assert [r.path for r in rows(log, routes=["/items/{item_id}"])] == [
        "/items/1", "/items/2", "/items/3"]
    assert [r.path for r in rows(log, routes=["/item*"])] == ["/items/1", "/items/2", "/items/3"]
    assert [r.path for r in rows(log, statuses=[(300, 399), (404, 404)])] == ["/nowhere", "/go"]


def test_captured_rows_carry_their_capture(log):
    add_capture(log, 1, raw_path=b"/items/1", raw_query=b"page=2",
                headers=[["accept", "*/*"]], response_body=b"x")
    first = rows(log)[0]
    assert first.captured and first.raw_path == b"/items/1" and first.raw_query == b"page=2"
    assert first.request_headers == '[["accept", "*/*"]]'
    assert first.request_body_kept and first.response_body_sha256


def test_a_0_1_1_log_is_selected_from_its_columns(tmp_path):
    path = str(tmp_path / "old.db")
    shutil.copy(SEED_DB, path)
    found = rows(path)
    assert found and all(r.route is None and r.host is None and not r.captured for r in found)


def test_bad_files(tmp_path):
    with pytest.raises(ReplayError, match="no such file"):
        rows(str(tmp_path / "missing.db"))
    (tmp_path / "notes.txt").write_text("hello " * 1000)
    with pytest.raises(ReplayError, match="not a SQLite database"):
        rows(str(tmp_path / "notes.txt"))
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ReplayError, match="not an asgi-log-to-sqlite log"):
        rows(str(tmp_path / "other.db"))
