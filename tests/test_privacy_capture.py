"""Redaction of captured requests and responses: placeholders where secrets were, all else kept."""

from __future__ import annotations

import json

import pytest

from asgi_log_to_sqlite.privacy.capture import (
    redact_body,
    redact_headers,
    redact_query,
    redact_url,
)
from asgi_log_to_sqlite.privacy.redaction import Redactor

sensitive = Redactor().sensitive  # the default rules of the query_string column


def test_headers_keep_order_and_duplicates_with_placeholders_for_secrets():
    headers = [
        (b"host", b"example.com"),
        (b"accept", b"text/html"),
        (b"Authorization", b"Bearer s3cr3t"),
        (b"cookie", b"a=1"),
        (b"cookie", b"session=s3cr3t"),
        (b"x-api-key", b"s3cr3t"),
        (b"referer", b"https://bob:pw@example.com/p?token=s3cr3t&page=2#access_token=s3cr3t"),
        (b"accept", b"application/json"),
        (b"user-agent", "caf\xe9".encode("latin-1")),
    ]
    assert redact_headers(headers, sensitive) == [
        ["host", "example.com"],
        ["accept", "text/html"],
        ["Authorization", "{{authorization}}"],
        ["cookie", "{{cookie}}"],
        ["cookie", "{{cookie}}"],
        ["x-api-key", "{{x-api-key}}"],
        ["referer", "https://example.com/p?token={{token}}&page=2#access_token={{access_token}}"],
        ["accept", "application/json"],
        ["user-agent", "caf\xe9"],
    ]


def test_broken_header_items_are_left_out():
    assert redact_headers([(b"a", b"1"), ("x",), None, (b"b", b"2")], sensitive) == [
        ["a", "1"], ["b", "2"]
    ]
    assert redact_headers(None, sensitive) == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("page=2&sort=asc", "page=2&sort=asc"),
        ("access_token=abc&page=2", "access_token={{access_token}}&page=2"),
        ("a=1;password=x", "a=1;password={{password}}"),
        ("user%5Bpassword%5D=x&q=1", "user%5Bpassword%5D={{user_password}}&q=1"),
        ("api_key=&x=1", "api_key=&x=1"),  # nothing to hide
        ("X-Amz-Signature=abc", "X-Amz-Signature={{x-amz-signature}}"),
        ("flag&code=1", "flag&code={{code}}"),
    ],
)
def test_query_values_become_named_placeholders(query, expected):
    assert redact_query(query, sensitive) == expected


def test_redact_query_honours_the_policy_given():
    assert redact_query("page=2&q=x", lambda key: key == "q") == "page=2&q={{q}}"


def test_url_loses_its_credentials():
    assert redact_url("https://u:p@h.example/x?sig=1", sensitive) == "https://h.example/x?sig={{sig}}"
    assert redact_url("/relative?state=abc", sensitive) == "/relative?state={{state}}"


def test_json_body_fields_with_secret_names_are_redacted_at_any_depth():
    body = json.dumps({
        "user": "bob",
        "password": "hunter2",
        "profile": {"api_key": "k", "tags": [{"client_secret": "s", "n": 1}]},
        "credentials": {"a": 1},
    }).encode()
    redacted = redact_body(body, "application/json; charset=utf-8", sensitive)
    assert json.loads(redacted) == {
        "user": "bob",
        "password": "{{password}}",
        "profile": {"api_key": "{{api_key}}", "tags": [{"client_secret": "{{client_secret}}",
                                                           "n": 1}]},
        "credentials": "{{credentials}}",
    }
    assert b"hunter2" not in redacted


def test_json_without_secrets_is_kept_byte_for_byte():
    body = b'{ "a" : 1,\n  "b": [1, 2] }'
    assert redact_body(body, "application/json", sensitive) is body
    assert redact_body(body, "application/vnd.api+json", sensitive) is body


def test_unparseable_json_is_not_kept():
    assert redact_body(b'{"password": "x"', "application/json", sensitive) is None
    deep = b"[" * 100 + b"]" * 100
    assert redact_body(deep, "application/json", sensitive) is None


def test_json_is_recognised_without_a_content_type():
    assert redact_body(b'{"token": "x"}', None, sensitive) == b'{"token":"{{token}}"}'
    assert redact_body(b"{not json", None, sensitive) == b"{not json"


def test_form_body_is_redacted_like_a_query():
    body = b"username=bob&password=hunter%202&remember=1"
    assert redact_body(body, "application/x-www-form-urlencoded", sensitive) == (
        b"username=bob&password={{password}}&remember=1"
    )


def multipart(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content
        out += b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_multipart_fields_are_redacted_and_files_kept():
    body = multipart("XyZ", [("user", None, b"bob"), ("password", None, b"hunter2"),
                             ("token", "token.txt", b"file content")])
    redacted = redact_body(body, 'multipart/form-data; boundary="XyZ"', sensitive)
    assert redacted == multipart("XyZ", [("user", None, b"bob"), ("password", None,
                                                                    b"{{password}}"),
                                         ("token", "token.txt", b"file content")])
    clean = multipart("b", [("user", None, b"bob")])
    assert redact_body(clean, "multipart/form-data; boundary=b", sensitive) is clean


def test_broken_multipart_is_not_kept():
    body = multipart("XyZ", [("password", None, b"hunter2")])
    assert redact_body(body[:-10], "multipart/form-data; boundary=XyZ", sensitive) is None
    assert redact_body(body, "multipart/form-data", sensitive) is None


def test_other_bodies_are_kept_as_they_are():
    binary = b"\x00\x01binary"
    assert redact_body(binary, "application/octet-stream", sensitive) == binary
    assert redact_body(b"password=x", "text/plain", sensitive) == b"password=x"
