"""The path as it is stored: readable like the server's decoded ``path``, but without losing what
that decoding throws away.

Servers decode percent-escapes into ``scope["path"]``, so ``/a%2Fb`` and ``/a/b`` arrive as the
same string, ``/100%25`` as ``/100%`` and a byte that is not UTF-8 as U+FFFD. The stored path is
decoded from ``scope["raw_path"]`` (the bytes the client sent) instead, keeping an escape where
decoding it would change what the path means or lose a byte:

- ``%2F`` (``/``), ``%3F`` (``?``), ``%23`` (``#``) and ``%25`` (``%``; a ``%`` sent without
  two hex digits after it becomes ``%25`` too): every ``%`` in a stored path starts an escape,
  and a stored ``/`` always separates segments;
- control characters (``%00``-``%1F``, ``%7F``) and bytes that are not UTF-8 (``%E9``, or a raw
  ``\\xe9``), written ``%XX``.

Everything else is decoded (``/caf%C3%A9`` is stored ``/café``, ``/a%20b`` as ``/a b``), and
escapes are written in upper case. Standard library only, as the core is.
"""

from __future__ import annotations

import re

__all__ = ["readable_path"]

_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
# Characters that stay escaped when they were sent escaped.
_KEEP_ESCAPED = frozenset("%/?#\x7f") | frozenset(chr(c) for c in range(32))


def readable_path(raw_path: bytes) -> tuple[str, str]:
    """``(stored, decoded)`` for the bytes of a raw path.

    ``decoded`` is what a server makes of them (every escape decoded, bad UTF-8 replaced by
    U+FFFD): it lets the caller check that ``raw_path`` is the path the app saw before using
    ``stored`` in its place.
    """
    if b"%" not in raw_path:
        if raw_path.isascii():
            text = raw_path.decode("ascii")
            return text, text
        decoded = raw_path.decode("utf-8", "replace")
        return _escape_bad_bytes(raw_path, frozenset()), decoded
    parts = _ESCAPE.split(raw_path)
    # parts: literal, hex, literal, hex, ... ; escaped bytes are remembered by position.
    data = bytearray()
    escaped: set[int] = set()
    for index, part in enumerate(parts):
        if index % 2:
            escaped.add(len(data))
            data.append(int(part, 16))
        else:
            data += part
    decoded = bytes(data).decode("utf-8", "replace")
    return _escape_bad_bytes(bytes(data), frozenset(escaped)), decoded


def _escape_bad_bytes(data: bytes, escaped: frozenset[int]) -> str:
    """UTF-8 text of ``data``; bytes that are not UTF-8, and the kept characters that were sent
    escaped, as ``%XX``."""
    out: list[str] = []
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        if byte < 0x80:
            char = chr(byte)
            if char == "%" or (i in escaped and char in _KEEP_ESCAPED):
                char = f"%{byte:02X}"
            out.append(char)
            i += 1
            continue
        size = (
            2 if 0xC2 <= byte <= 0xDF else 3 if 0xE0 <= byte <= 0xEF else 4 if 0xF0 <= byte <= 0xF4
            else 0
        )
        if size:
            try:
                out.append(data[i : i + size].decode("utf-8"))
                i += size
                continue
            except UnicodeDecodeError:
                pass
        out.append(f"%{byte:02X}")
        i += 1
    return "".join(out)
