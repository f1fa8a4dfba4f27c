"""Named placeholders: written by capture, found and filled by a replay."""

from __future__ import annotations

from urllib.parse import quote

from asgi_log_to_sqlite.placeholders import UNFILLED, fill, name_for, names_in, placeholder


def test_names():
    assert name_for("Authorization") == "authorization"
    assert name_for("user[password]") == "user_password"
    assert name_for(" !! ") == "value"
    assert placeholder("X-Api-Key") == "{{x-api-key}}"


def test_names_in_text_and_bytes():
    assert names_in("a={{token}}&b={{x.y}}&c={{Bad}}") == {"token", "x.y"}
    assert names_in(b'{"p":"{{password}}"}') == {"password"}
    assert names_in(None) == set()


def test_fill_encodes_given_values_and_reports_missing_ones():
    missing: set[str] = set()
    text = "a={{token}}&b={{other}}&c=1"
    assert fill(text, {"token": "x y&z"}, lambda v: quote(v, safe=""), missing) == (
        f"a=x%20y%26z&b={UNFILLED}&c=1"
    )
    assert missing == {"other"}
    assert fill("plain", {}) == "plain"
