"""Capture: the event loop's body taps, and the ``captures`` row the writer builds from them."""

from __future__ import annotations

import hashlib
import json
import sqlite3

from apps.replay_app import app_v1
from replay_support import make_log

from asgi_log_to_sqlite.capture import BodyTap, ResponseTap, capture_row
from asgi_log_to_sqlite.privacy.redaction import Redactor
from asgi_log_to_sqlite.rotation import rotated_files

sensitive = Redactor().sensitive  # the default rules of the query_string column


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_body_within_the_limit_is_kept_by_reference():
    tap = BodyTap(10)
    first = b"abcd"
    tap.add(first)
    tap.add(bytearray(b"efgh"))
    assert tap.chunks[0] is first  # no copy of bytes
    assert tap.kept and tap.body() == b"abcdefgh" and tap.size == 8
    assert tap.sha256() is None  # hashed in the writer, after redaction


def test_past_the_limit_only_size_and_hash_remain():
    tap = BodyTap(10)
    for chunk in (b"abcd", b"efgh", b"ijkl", b"mnop"):
        tap.add(chunk)
    assert not tap.kept and tap.body() is None and tap.chunks is None
    assert tap.size == 16 and tap.sha256() == sha(b"abcdefghijklmnop")


def test_a_mutable_chunk_is_copied_before_it_is_kept():
    buffer = bytearray(b"1234")
    tap = BodyTap(100)
    tap.add(buffer)
    buffer[:] = b"xxxx"
    assert tap.body() == b"1234"


def test_a_response_is_hashed_as_it_streams_and_kept_only_when_asked():
    plain = ResponseTap(100, keep=False)
    for chunk in (b"he", b"llo"):
        plain.add(chunk)
    assert plain.sha256() == sha(b"hello") and not plain.kept and plain.chunk_timings() is None
    kept = ResponseTap(100, keep=True)
    for chunk in (b"he", b"", b"llo"):
        kept.add(chunk)
    assert kept.sha256() == sha(b"hello") and kept.body() == b"hello"
    timings = json.loads(kept.chunk_timings())
    assert [n for _, n in timings] == [2, 3]
    assert all(0 <= t < 60 for t, _ in timings) and timings == sorted(timings)
    big = ResponseTap(3, keep=True)
    big.add(b"hello")
    assert not big.kept and big.sha256() == sha(b"hello")


def test_chunk_timings_are_bounded(monkeypatch):
    monkeypatch.setattr("asgi_log_to_sqlite.capture.MAX_CHUNK_TIMINGS", 3)
    tap = ResponseTap(1000, keep=True)
    for _ in range(10):
        tap.add(b"ab")
    assert [n for _, n in json.loads(tap.chunk_timings())] == [2, 2, 16]


SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/login",
    "raw_path": b"/login",
    "query_string": b"next=%2F&access_token=s3cr3t",
    "headers": [
        (b"host", b"example.com"),
        (b"authorization", b"Bearer s3cr3t"),
        (b"content-type", b"application/json"),
        (b"accept", b"a"),
        (b"accept", b"b"),
    ],
}


def test_the_row_holds_placeholders_not_secrets():
    request = BodyTap(1000)
    request.add(b'{"user": "bob", "password": "s3cr3t"}')
    response = ResponseTap(1000, keep=True)
    response.add(b'{"token": "s3cr3t", "ok": true}')
    response_headers = [(b"content-type", b"application/json"), (b"set-cookie", b"sid=s3cr3t")]
    row = capture_row(SCOPE, request, response, response_headers, sensitive, keep_responses=True)
    (raw_path, raw_query, headers, body, body_sha, kept, response_headers_json, response_body,
     response_sha, response_kept, chunks) = row
    assert b"s3cr3t" not in repr(row).encode()
    assert raw_path == b"/login" and raw_query == b"next=%2F&access_token={{access_token}}"
    assert json.loads(headers) == [["host", "example.com"], ["authorization", "{{authorization}}"],
                                   ["content-type", "application/json"], ["accept", "a"],
                                   ["accept", "b"]]
    assert json.loads(body) == {"user": "bob", "password": "{{password}}"}
    assert kept == 1 and body_sha == sha(body)
    assert json.loads(response_headers_json)[1] == ["set-cookie", "{{set-cookie}}"]
    assert json.loads(response_body) == {"token": "{{token}}", "ok": True} and response_kept == 1
    assert response_sha == sha(b'{"token": "s3cr3t", "ok": true}')  # what was sent
    assert len(json.loads(chunks)) == 1


def test_without_response_capture_only_the_hash_is_kept():
    response = ResponseTap(1000, keep=False)
    response.add(b"page")
    row = capture_row(SCOPE, None, response, [(b"content-type", b"text/plain")], sensitive, False)
    assert row[3] == b"" and row[5] == 1  # no request body: an empty one, kept
    assert row[6:] == (None, None, sha(b"page"), 0, None)


def test_a_large_or_unparseable_request_body():
    large = BodyTap(4)
    large.add(b'{"a": 1}')
    row = capture_row(SCOPE, large, None, None, sensitive, False)
    assert row[3:6] == (None, sha(b'{"a": 1}'), 0)
    broken = BodyTap(100)
    broken.add(b'{"password": "s3cr3t"')
    row = capture_row(SCOPE, broken, None, None, sensitive, False)
    assert row[3:6] == (None, None, 0)


# ---- through the middleware, into SQLite ---------------------------------------------------------
SECRET = "Kx7-CAPTURE-SECRET"


def raw_bytes(path: str) -> bytes:
    data = b""
    for suffix in ("", "-wal", "-journal"):
        try:
            with open(path + suffix, "rb") as file:
                data += file.read()
        except FileNotFoundError:
            pass
    return data


def captures(path: str) -> list[dict]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(
            "SELECT requests_view.method, requests_view.path, requests_view.http_status, "
            "requests_view.request_body_size, requests_view.body_size, captures_view.* "
            "FROM requests_view JOIN captures_view ON captures_view.request = requests_view.id "
            "ORDER BY requests_view.id"
        )]
    finally:
        conn.close()


TRAFFIC = [
    ("GET", f"/items/1?page=2&access_token={SECRET}",
     {"headers": [("Authorization", f"Bearer {SECRET}"), ("Cookie", f"sid={SECRET}"),
                  ("X-Dup", "1"), ("X-Dup", "2")]}),
    ("POST", "/login", {"json": {"user": "bob", "password": SECRET}}),
    ("POST", "/upload", {"data": {"note": "hi", "api_key": SECRET},
                         "files": {"file": ("a.bin", b"x" * 2000)}}),
    ("POST", "/upload", {"data": {"note": "small", "api_key": SECRET}}),
    ("HEAD", "/items/2", {}),
    ("GET", "/stream", {}),
    ("GET", "/healthz", {}),
]


def test_capture_through_the_middleware(log_path):
    make_log(log_path, app_v1, TRAFFIC, capture_requests=True, capture_responses=True,
             capture_body_limit=1024, flush_interval=0.05)
    assert SECRET.encode() not in raw_bytes(log_path)
    found = captures(log_path)
    assert [(r["method"], r["path"]) for r in found] == [
        ("GET", "/items/1"), ("POST", "/login"), ("POST", "/upload"), ("POST", "/upload"),
        ("HEAD", "/items/2"), ("GET", "/stream"),
    ]  # the health check is not recorded, so not captured either
    item, login, upload, small, head, stream = found
    assert item["raw_path"] == "/items/1"
    assert item["raw_query"] == "page=2&access_token={{access_token}}"
    headers = json.loads(item["request_headers"])
    assert ["authorization", "{{authorization}}"] in headers
    assert ["cookie", "{{cookie}}"] in headers
    assert [h for h in headers if h[0] == "x-dup"] == [["x-dup", "1"], ["x-dup", "2"]]
    assert item["request_body"] == b"" and item["request_body_kept"] == 1
    assert item["response_body"] == b'{"id":"1","page":"2"}' and item["response_body_kept"] == 1
    assert item["response_body_sha256"] == sha(b'{"id":"1","page":"2"}')
    assert ["content-type", "application/json"] in json.loads(item["response_headers"])

    assert json.loads(login["request_body"]) == {"user": "bob", "password": "{{password}}"}
    assert login["request_body_sha256"] == sha(login["request_body"])

    assert upload["request_body"] is None and upload["request_body_kept"] == 0
    assert upload["request_body_size"] > 2000 and len(upload["request_body_sha256"]) == 64
    assert b"{{api_key}}" in small["request_body"] and b"small" in small["request_body"]

    assert head["response_body"] == b"" and head["response_body_sha256"] == sha(b"")
    assert head["body_size"] == 0

    body = b"".join(f"chunk {i}\n".encode() for i in range(5))
    assert stream["response_body"] == body and stream["response_body_sha256"] == sha(body)
    assert [n for _, n in json.loads(stream["response_chunks"])] == [8] * 5


def test_without_capture_nothing_is_captured(log_path):
    make_log(log_path, app_v1, TRAFFIC[:2], flush_interval=0.05)
    assert captures(log_path) == []


def test_capture_requests_alone_keeps_the_response_hash_only(log_path):
    make_log(log_path, app_v1, TRAFFIC[:2], capture_requests=True, flush_interval=0.05)
    item, login = captures(log_path)
    assert item["response_body"] is None and item["response_headers"] is None
    assert item["response_chunks"] is None and item["response_body_kept"] == 0
    assert item["response_body_sha256"] == sha(b'{"id":"1","page":"2"}')
    assert json.loads(login["request_body"])["password"] == "{{password}}"


def test_captures_follow_their_rows_when_rotation_splits_a_batch(tmp_path):
    path = str(tmp_path / "log.db")
    requests = [("GET", f"/items/{i}", {}) for i in range(7)]
    make_log(path, app_v1, requests, capture_requests=True, max_rows=3, flush_interval=60)
    files = [*rotated_files(path), path]
    assert len(files) == 3
    seen = []
    for file in files:
        rows = captures(file)
        assert all(r["raw_path"] == r["path"] for r in rows)
        seen += [r["path"] for r in rows]
    assert sorted(seen) == sorted(f"/items/{i}" for i in range(7))


def test_a_capture_that_fails_leaves_the_request_logged(log_path, monkeypatch):
    def broken(self, *args):
        raise RuntimeError("capture bug")

    monkeypatch.setattr("asgi_log_to_sqlite.capture.CaptureBuilder.row", broken)
    make_log(log_path, app_v1, TRAFFIC[:1], capture_requests=True, flush_interval=0.05,
             writer="thread")  # the patch is of this process
    conn = sqlite3.connect(log_path)
    try:
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM captures").fetchone()[0] == 0
    finally:
        conn.close()
