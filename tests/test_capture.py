"""Capture: the event loop's body taps, and the ``captures`` row the writer builds from them."""

from __future__ import annotations

import hashlib
import json

import pytest

from asgi_log_to_sqlite.capture import BodyTap, ResponseTap, body_limit, capture_row
from asgi_log_to_sqlite.privacy.redaction import Redactor

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
    plain.start()
    for chunk in (b"he", b"llo"):
        plain.add(chunk)
    assert plain.sha256() == sha(b"hello") and not plain.kept and plain.chunk_timings() is None
    kept = ResponseTap(100, keep=True)
    kept.start()
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
    response.start()
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


def test_body_limit_option():
    assert body_limit("capture_body_limit", 0) == 0
    assert body_limit("capture_body_limit", 1024) == 1024
    assert body_limit("capture_body_limit", "64KB") == 65536
    with pytest.raises(ValueError, match="capture_body_limit"):
        body_limit("capture_body_limit", "lots")
    with pytest.raises(TypeError, match="capture_body_limit"):
        body_limit("capture_body_limit", True)
