"""Rebuilding a logged request: captured ones as they came, others from the access-log columns."""

from __future__ import annotations

import json

import pytest

from asgi_log_to_sqlite.replay.plan import Planner, parse_header, parse_setting
from asgi_log_to_sqlite.replay.select import Recorded


def recorded(**fields) -> Recorded:
    fields = {"rowid": 1, "start": 1.0, "method": "GET", "path": "/p", "query_string": None,
              "host": "h", "scheme": "http", "user_agent": None, "referer": None,
              "accept_language": None, "status": 200, "duration": 0.01, "route": None,
              "request_body_size": 0, **fields}
    return Recorded(**fields)


def captured(headers, body=b"", kept=True, **fields) -> Recorded:
    fields.setdefault("request_body_size", len(body or b""))
    return recorded(captured=True, request_headers=json.dumps(headers), request_body=body,
                    request_body_kept=kept, **fields)


def test_a_captured_request_is_sent_as_it_came():
    headers = [["host", "example.com"], ["accept", "a"], ["x-dup", "1"], ["X-Dup", "2"],
               ["content-length", "9"], ["connection", "keep-alive"], ["content-type", "text/x"]]
    out = Planner().plan(captured(headers, b"some body", method="POST",
                                  raw_path=b"/a%20b/%E9", raw_query=b"x=1&y=%2F"))
    assert out.source == "captured" and out.skip is None and out.unfilled == set()
    assert out.method == "POST"
    assert out.target == "/a%20b/%E9?x=1&y=%2F"
    assert out.headers == [("accept", "a"), ("x-dup", "1"), ("X-Dup", "2"),
                           ("content-type", "text/x")]
    assert out.body == b"some body"


def test_placeholders_are_filled_from_settings():
    headers = [["authorization", "{{authorization}}"], ["cookie", "{{cookie}}"],
               ["content-type", "application/json"]]
    body = b'{"user":"bob","password":"{{password}}"}'
    planner = Planner({"authorization": "Bearer t0k", "password": 'p"w', "access_token": "a b"})
    out = planner.plan(captured(headers, body, method="POST", raw_path=b"/login",
                                raw_query=b"access_token={{access_token}}&page=1"))
    assert out.target == "/login?access_token=a%20b&page=1"
    assert out.headers == [("authorization", "Bearer t0k"), ("content-type", "application/json")]
    assert json.loads(out.body) == {"user": "bob", "password": 'p"w'}
    assert out.unfilled == {"cookie"}  # that header is not sent at all


def test_form_bodies_are_filled_urlencoded():
    headers = [["content-type", "application/x-www-form-urlencoded"]]
    out = Planner({"password": "a&b c"}).plan(
        captured(headers, b"user=bob&password={{password}}", method="POST", raw_path=b"/f"))
    assert out.body == b"user=bob&password=a%26b+c"


def test_unfilled_body_and_query_values_become_redacted():
    headers = [["content-type", "application/json"]]
    out = Planner().plan(captured(headers, b'{"password":"{{password}}"}', method="POST",
                                  raw_path=b"/l", raw_query=b"token={{token}}"))
    assert out.target == "/l?token=REDACTED"
    assert out.body == b'{"password":"REDACTED"}'
    assert out.unfilled == {"password", "token"}


def test_header_option_sets_a_header_on_every_request():
    planner = Planner(headers=[("Authorization", "Bearer x"), ("X-Replay", "1")])
    out = planner.plan(captured([["authorization", "{{authorization}}"], ["accept", "*/*"]],
                                raw_path=b"/"))
    assert out.headers == [("accept", "*/*"), ("Authorization", "Bearer x"), ("X-Replay", "1")]
    assert out.unfilled == set()
    plain = planner.plan(recorded(user_agent="ua"))
    assert plain.headers == [("user-agent", "ua"), ("Authorization", "Bearer x"), ("X-Replay", "1")]


def test_a_body_beyond_the_capture_limit_is_skipped():
    out = Planner().plan(captured([], None, kept=False, method="POST", raw_path=b"/up",
                                  request_body_size=100_000))
    assert out.skip and "capture_body_limit" in out.skip
    out = Planner().plan(captured([], None, kept=False, method="GET", raw_path=b"/"))
    assert out.skip is None  # nothing was sent in the first place


def test_requests_without_capture_replay_from_the_access_log():
    out = Planner({"access_token": "T"}).plan(recorded(
        path="/a b/ü", query_string="?access_token=REDACTED&page=2&sig=REDACTED",
        user_agent="Mozilla/5.0 ü", referer="https://r.example/", accept_language="fr"))
    assert out.source == "access-log"
    assert out.target == "/a%20b/%C3%BC?access_token=T&page=2&sig=REDACTED"
    assert out.headers == [("user-agent", "Mozilla/5.0 ü".encode().decode("latin-1")),
                           ("referer", "https://r.example/"), ("accept-language", "fr")]
    assert out.unfilled == {"sig"}
    post = Planner().plan(recorded(method="POST", request_body_size=12))
    assert post.skip and "without capture_requests" in post.skip


def test_parsers():
    assert parse_header("Authorization: Bearer a:b") == ("Authorization", "Bearer a:b")
    assert parse_setting("Token=a=b") == ("token", "a=b")
    for bad in ("no colon", ": v", "bad name: v"):
        with pytest.raises(ValueError):
            parse_header(bad)
    for bad in ("novalue", "=x", "a b=c"):
        with pytest.raises(ValueError):
            parse_setting(bad)
