"""``readable_path``: decoding the raw path keeps every distinction the bytes make."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from hypothesis import given
from hypothesis import strategies as st

from asgi_log_to_sqlite.raw_path import readable_path

# Raw paths made of the pieces that matter: escapes (valid, lower/upper case, of reserved and
# non-UTF-8 bytes), stray %, UTF-8 and bytes that are not UTF-8.
PIECES = st.one_of(
    st.sampled_from([b"/", b"a", b"%", b"%2F", b"%2f", b"%25", b"%3F", b"%23", b"%00", b"%E9",
                     b"%C3%A9", b"%zz", b"\xc3\xa9", b"\xe9", b"\xff", b" ", b"~", b"%7E"]),
    st.binary(max_size=3),
)
RAW = st.lists(PIECES, max_size=12).map(b"".join)


@given(RAW)
def test_stored_path_decodes_to_the_same_bytes(raw):
    stored, decoded = readable_path(raw)
    stored.encode("utf-8")  # valid text: SQLite can store it
    assert unquote_to_bytes(stored.encode("utf-8")) == unquote_to_bytes(raw)
    assert decoded == unquote_to_bytes(raw).decode("utf-8", "replace")


@given(RAW, RAW)
def test_different_paths_are_stored_differently(one, two):
    if unquote_to_bytes(one) != unquote_to_bytes(two):
        assert readable_path(one)[0] != readable_path(two)[0]


def test_every_percent_starts_an_escape():
    for raw in (b"/a%zz", b"/%%35", b"/100%", b"/%2"):
        stored = readable_path(raw)[0]
        assert all(stored[i + 1 : i + 3].isalnum() and len(stored[i + 1 : i + 3]) == 2
                   for i, c in enumerate(stored) if c == "%")
