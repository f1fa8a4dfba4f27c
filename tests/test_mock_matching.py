"""Which recordings answer a request: query and body comparisons, placeholders as wildcards."""

from __future__ import annotations

import hashlib
import json

import pytest

from asgi_log_to_sqlite.mock.matching import (
    EQUIVALENT,
    EXACT,
    Index,
    Match,
    Miss,
    body_score,
    query_score,
    shown,
)
from asgi_log_to_sqlite.mock.recordings import Recording


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def recording(rowid: int, method: str = "GET", path: bytes = b"/", query: bytes = b"",
              body: bytes | None = b"", content_type: str | None = None,
              response: bytes | None = b"ok", start: float | None = None,
              unservable: str | None = None) -> Recording:
    return Recording(
        rowid=rowid, start=float(rowid if start is None else start), method=method, path=path,
        query=query, request_content_type=content_type, request_body=body,
        request_body_sha256=sha(body) if body else None, status=200, ttfb=None,
        response_body=response, unservable=unservable,
    )


def find(index: Index, method: str, path: bytes, query: bytes = b"", body: bytes = b"",
         content_type: str | None = None) -> Match | Miss:
    return index.find(method, path, query, body, sha(body), content_type)


# ---- queries --------------------------------------------------------------------------------
@pytest.mark.parametrize("recorded, incoming, score", [
    (b"", b"", EXACT),
    (b"a=1&b=2", b"a=1&b=2", EXACT),
    (b"a=1&b=2", b"b=2&a=1", EQUIVALENT),  # keys in any order
    (b"q=a+b", b"q=a%20b", EQUIVALENT),  # the same value, encoded otherwise
    (b"a=1&a=2", b"a=2&a=1", 0),  # a key's values keep their order
    (b"a=1;b=2", b"a=1&b=2", EQUIVALENT),
    (b"a=1", b"a=2", 0),
    (b"a=1", b"a=1&b=2", 0),
    (b"a=1&b=2", b"a=1", 0),
    (b"", b"a=1", 0),
    # A redacted value matches any value, but its key must be there.
    (b"page=1&access_token={{access_token}}", b"access_token=xyz&page=1", EQUIVALENT),
    (b"access_token={{access_token}}", b"access_token=", EQUIVALENT),
    (b"page=1&access_token={{access_token}}", b"page=1", 0),
    (b"page=1&access_token={{access_token}}", b"page=2&access_token=xyz", 0),
    (b"note=x{{token}}", b"note=xy", 0),  # only a whole value is a placeholder
])
def test_query_scores(recorded, incoming, score):
    assert query_score(recorded, incoming) == score


# ---- bodies ---------------------------------------------------------------------------------
def test_the_same_bytes_are_exact():
    r = recording(1, body=b"plain text")
    assert body_score(r, b"plain text", sha(b"plain text"), "text/plain") == EXACT
    assert body_score(r, b"other text", sha(b"other text"), "text/plain") == 0


def test_a_body_too_large_to_keep_matches_by_its_hash():
    r = recording(1, body=None)
    r = Recording(**{**r.__dict__, "request_body_sha256": sha(b"x" * 100)})
    assert body_score(r, b"x" * 100, sha(b"x" * 100), None) == EXACT
    assert body_score(r, b"x" * 99, sha(b"x" * 99), None) == 0


def test_an_empty_body_matches_only_an_empty_body():
    assert body_score(recording(1, body=b""), b"", sha(b""), None) == EXACT
    assert body_score(recording(1, body=b""), b"{}", sha(b"{}"), "application/json") == 0
    assert body_score(recording(1, body=b"{}"), b"", sha(b""), None) == 0


def test_json_is_compared_as_a_document_with_placeholders_as_wildcards():
    stored = b'{"user":"ann","password":"{{password}}","opts":{"a":[1,2]}}'
    r = recording(1, body=stored, content_type="application/json")
    same = json.dumps({"opts": {"a": [1, 2]}, "password": "hunter2", "user": "ann"},
                      indent=2).encode()
    assert body_score(r, same, sha(same), "application/json") == EQUIVALENT
    # A secret-looking field redacted whatever it held, an object too.
    nested = b'{"user":"ann","password":{"old":"a","new":"b"},"opts":{"a":[1,2]}}'
    assert body_score(r, nested, sha(nested), "application/json") == EQUIVALENT
    for other in (b'{"user":"bob","password":"x","opts":{"a":[1,2]}}',
                  b'{"user":"ann","opts":{"a":[1,2]}}',
                  b'{"user":"ann","password":"x","opts":{"a":[2,1]}}',
                  b'{"user":"ann","password":"x","opts":{"a":[1,2.0]}}',
                  b"not json"):
        assert body_score(r, other, sha(other), "application/json") == 0, other
    untyped = recording(2, body=b'{"a": 1}')  # JSON without a content type is seen as JSON
    assert body_score(untyped, b'{"a":1}', sha(b'{"a":1}'), None) == EQUIVALENT


def test_forms_compare_their_fields():
    form = "application/x-www-form-urlencoded"
    r = recording(1, body=b"user=ann&api_key={{api_key}}", content_type=form)
    assert body_score(r, b"api_key=k&user=ann", sha(b"api_key=k&user=ann"), form) == EQUIVALENT
    assert body_score(r, b"user=bob&api_key=k", sha(b"user=bob&api_key=k"), form) == 0


def multipart(boundary: str, note: str, secret: str) -> bytes:
    return (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n{note}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"api_key\"\r\n\r\n{secret}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\n"
        f"Content-Type: text/plain\r\n\r\nfile content\r\n--{boundary}--\r\n"
    ).encode()


def test_multipart_bodies_compare_their_parts_whatever_the_boundary():
    stored = multipart("aaa111", "hello", "{{api_key}}")
    r = recording(1, body=stored, content_type="multipart/form-data; boundary=aaa111")
    sent = multipart("zz99", "hello", "the-key")
    assert body_score(r, sent, sha(sent), "multipart/form-data; boundary=zz99") == EQUIVALENT
    other = multipart("zz99", "bye", "the-key")
    assert body_score(r, other, sha(other), "multipart/form-data; boundary=zz99") == 0


def test_other_bodies_match_around_their_placeholders():
    r = recording(1, body=b"<login><token>{{token}}</token></login>",
                  content_type="application/xml")
    sent = b"<login><token>a\nb</token></login>"
    assert body_score(r, sent, sha(sent), "application/xml") == EQUIVALENT
    assert body_score(r, b"<login></login>", sha(b"<login></login>"), "application/xml") == 0


# ---- the index ------------------------------------------------------------------------------
def test_method_path_and_query_choose_the_recordings():
    index = Index([
        recording(1, path=b"/items", query=b"page=1"),
        recording(2, path=b"/items", query=b"page=2"),
        recording(3, path=b"/items", query=b"page=1"),
        recording(4, "POST", b"/items"),
    ])
    found = find(index, "GET", b"/items", b"page=1")
    assert isinstance(found, Match) and [r.rowid for r in found.recordings] == [1, 3]
    assert found.key == (1, 3)
    assert [r.rowid for r in find(index, "POST", b"/items").recordings] == [4]


def test_an_exact_query_is_preferred_to_an_equivalent_one():
    index = Index([recording(1, query=b"b=2&a=1"), recording(2, query=b"a=1&b=2")])
    assert [r.rowid for r in find(index, "GET", b"/", b"a=1&b=2").recordings] == [2]
    assert [r.rowid for r in find(index, "GET", b"/", b"a=1&b=2&").recordings] == [1, 2]


def test_misses_say_why():
    index = Index([recording(1, path=b"/items", query=b"page=1"),
                   recording(2, "POST", b"/items", query=b"page=1")])
    miss = find(index, "GET", b"/other")
    assert isinstance(miss, Miss) and miss.reason == "no recording matches GET /other"
    miss = find(index, "DELETE", b"/items")
    assert "recorded for GET, POST" in miss.reason
    miss = find(index, "GET", b"/items", b"page=3&token=abc")
    assert miss.reason == ("no recording matches GET /items?page=3&token={{token}}: the queries "
                           "recorded for GET /items are page=1")


def test_the_body_decides_only_where_the_recordings_differ_by_body():
    form = "application/x-www-form-urlencoded"
    alike = Index([recording(1, "POST", b"/login", body=b"user=ann", content_type=form),
                   recording(2, "POST", b"/login", body=b"user=ann", content_type=form)])
    # One body recorded: any body gets it (a timestamp in it does not make a mock fail).
    assert [r.rowid for r in find(alike, "POST", b"/login", body=b"user=zed").recordings] == [1, 2]
    index = Index([
        recording(1, "POST", b"/login", body=b"user=ann", content_type=form),
        recording(2, "POST", b"/login", body=b"user=bob", content_type=form),
        recording(3, "POST", b"/login", body=b"user=bob&x={{password}}", content_type=form),
    ])
    assert [r.rowid for r in find(index, "POST", b"/login", body=b"user=bob").recordings] == [2]
    found = find(index, "POST", b"/login", body=b"x=pw&user=bob", content_type=form)
    assert [r.rowid for r in found.recordings] == [3]
    miss = find(index, "POST", b"/login", body=b"user=cat", content_type=form)
    assert isinstance(miss, Miss) and "with this request body" in miss.reason


def test_recordings_without_a_response_to_serve_are_a_miss_that_says_why():
    index = Index([recording(1, response=None, unservable="its response body was not kept")])
    miss = find(index, "GET", b"/")
    assert isinstance(miss, Miss)
    assert miss.reason == "GET / was recorded, but cannot be served: its response body was not kept"
    index.add([recording(2)])
    assert [r.rowid for r in find(index, "GET", b"/").recordings] == [2]


def test_head_is_answered_from_get_recordings_when_it_has_none():
    index = Index([recording(1, path=b"/a"), recording(2, "HEAD", b"/b"), recording(3, path=b"/b")])
    assert [r.rowid for r in find(index, "HEAD", b"/a").recordings] == [1]
    assert [r.rowid for r in find(index, "HEAD", b"/b").recordings] == [2]


def test_recordings_are_kept_oldest_first_as_they_are_added():
    index = Index([recording(5, start=50.0), recording(2, start=20.0)])
    index.add([recording(9, start=30.0)])
    assert [r.rowid for r in find(index, "GET", b"/").recordings] == [2, 9, 5]
    assert index.last_rowid == 9 and len(index) == 3


def test_shown_requests_hide_sensitive_query_values():
    assert shown("GET", b"/a", b"page=2&api_key=s3cr3t") == "GET /a?page=2&api_key={{api_key}}"
    assert shown("GET", b"/a") == "GET /a"
