"""Reading a log's recordings for a mock, and the placeholders a replay or mock must fill."""

from __future__ import annotations

import os
import sqlite3

import pytest
from apps.replay_app import app_v1
from replay_support import make_log

from asgi_log_to_sqlite.mock import MockError, load, placeholders
from asgi_log_to_sqlite.schema import connect, ensure_schema

CAPTURE = {"capture_requests": True, "capture_responses": True, "writer": "thread"}


def test_recordings_hold_what_a_mock_serves(tmp_path):
    log = str(tmp_path / "log.db")
    make_log(log, app_v1, [
        ("GET", "/items/1?page=1&access_token=s3cr3t", {}),
        ("GET", "/stream", {}),
        ("POST", "/login", {"json": {"user": "ann", "password": "s3cr3t"}}),
        ("GET", "/a%20b/x", {}),
    ], **CAPTURE)
    item, stream, login, odd = load(log)
    assert (item.method, item.path, item.query) == (
        "GET", b"/items/1", b"page=1&access_token={{access_token}}")
    assert item.status == 200 and item.response_body == b'{"id":"1","page":"1"}'
    assert ("content-type", "application/json") in item.response_headers
    assert item.unservable is None and item.ttfb is not None and item.ttfb >= 0
    assert [size for _, size in stream.chunks] == [8] * 5
    assert stream.response_body == b"".join(b"chunk %d\n" % i for i in range(5))
    assert login.request_content_type == "application/json"
    assert login.request_body == b'{"user":"ann","password":"{{password}}"}'
    assert odd.path == b"/a b/x"  # percent-decoded
    assert [r.rowid for r in load(log, after=item.rowid)] == [stream.rowid, login.rowid, odd.rowid]


def test_recordings_without_a_response_body_say_why_they_cannot_be_served(tmp_path):
    log = str(tmp_path / "log.db")
    make_log(log, app_v1, [("GET", "/items/1", {}), ("GET", "/stream", {})],
             capture_requests=True, writer="thread")
    assert [r.unservable for r in load(log)] == ["it was logged without capture_responses"] * 2
    small = str(tmp_path / "small.db")
    make_log(small, app_v1, [("GET", "/items/1", {}), ("GET", "/stream", {})],
             **CAPTURE, capture_body_limit=30)
    kept, cut = load(small)
    assert kept.unservable is None
    assert cut.response_body is None and "40 bytes" in cut.unservable
    assert "larger than capture_body_limit" in cut.unservable


def test_placeholders_say_what_must_be_filled_and_where(tmp_path):
    log = str(tmp_path / "log.db")
    make_log(log, app_v1, [
        ("GET", "/private?access_token=s3cr3t", {"headers": {"Authorization": "Bearer s3cr3t"}}),
        ("POST", "/login", {"json": {"user": "ann", "password": "s3cr3t"}}),
        ("POST", "/upload", {"data": {"api_key": "s3cr3t"}, "files": {"f": ("f", b"x")}}),
    ], **CAPTURE)
    assert placeholders(log) == {
        "access_token": ["query"],
        "api_key": ["request body", "response body"],  # the app answers with that field
        "authorization": ["request header"],
        "password": ["request body"],
    }


def test_an_empty_log_has_no_recordings(tmp_path):
    path = str(tmp_path / "empty.db")
    conn = connect(path)
    ensure_schema(conn)
    conn.close()
    assert load(path) == [] and placeholders(path) == {}


@pytest.mark.parametrize("kind", ["missing", "folder", "pipe", "junk", "other", "old"])
def test_unusable_logs_are_one_clear_error(tmp_path, kind):
    path = tmp_path / "log.db"
    expected = {
        "missing": "no such file",
        "folder": "is a folder",
        "pipe": "is a named pipe",
        "junk": "not a SQLite database",
        "other": "not an asgi-log-to-sqlite log",
        "old": "has no captures",
    }[kind]
    if kind == "folder":
        path.mkdir()
    elif kind == "pipe":
        os.mkfifo(path)
    elif kind == "junk":
        path.write_bytes(b"not sqlite " * 500)
    elif kind in ("other", "old"):
        conn = sqlite3.connect(path)
        table = "t (x)" if kind == "other" else "requests (start, path, http_status, duration)"
        conn.execute(f"CREATE TABLE {table}")
        conn.commit()
        conn.close()
    for read in (load, placeholders):
        with pytest.raises(MockError, match=expected):
            read(str(path))
