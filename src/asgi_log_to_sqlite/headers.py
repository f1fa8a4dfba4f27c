"""The request and response headers a row reads, found in ASGI header lists of any shape.

Servers give lower-case bytes names in pairs; apps, middlewares and tests give anything: odd
case, str names, items that are not pairs. Each lookup here tries the cheap walk of the usual
case first and falls back to a careful one, so that a broken item loses only itself. Shared by
the encoder on the event loop (:mod:`asgi_log_to_sqlite.wire`) and the row builder.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import Any

__all__ = ["header_items", "header_pairs", "header_value", "request_headers"]

#: The request headers a row stores, and their positions in :func:`request_headers`.
REQUEST_HEADERS = {b"user-agent": 0, b"referer": 1, b"accept-language": 2, b"host": 3}


def request_headers(headers: Any) -> list[Any]:
    """user-agent, referer, accept-language, host: the first value of each, as given."""
    if not headers:
        return [None, None, None, None]
    # The usual case: lower-case bytes names, compared by equality (no hashing of fresh bytes).
    user_agent = referer = language = host = None
    try:
        for name, value in headers:
            if name == b"user-agent":
                if user_agent is None:
                    user_agent = value
            elif name == b"referer":
                if referer is None:
                    referer = value
            elif name == b"accept-language":
                if language is None:
                    language = value
            elif name == b"host":
                if host is None:
                    host = value
            elif not name.islower():
                break  # odd case or type: the careful walk below
        else:
            return [user_agent, referer, language, host]
    except Exception:
        pass
    return _walk_request_headers(headers)


def header_items(headers: Any) -> Iterable[Any]:
    """The items of a header list, or none at all when it is not a list of pairs."""
    try:
        return list(headers or ())
    except Exception:
        return ()


def header_pairs(headers: Any, names: Container[bytes]) -> list[tuple[bytes, Any]]:
    """The (lower-case name, value) pairs of ``names`` in ``headers``, in order; items that are
    not pairs are skipped."""
    found = []
    for item in header_items(headers):
        try:
            name, value = item
            name = bytes(name).lower()
        except Exception:
            continue
        if name in names:
            found.append((name, value))
    return found


def _walk_request_headers(headers: Any) -> list[Any]:
    """:func:`request_headers` for anything else: odd case, odd types, broken items."""
    found: list[Any] = [None, None, None, None]
    get = REQUEST_HEADERS.get
    for item in header_items(headers):
        try:
            name, value = item
            index = get(bytes(name).lower())
        except Exception:
            continue
        if index is not None and found[index] is None:
            found[index] = value
    return found


def header_value(headers: Any, wanted: bytes) -> Any:
    """The first value of header ``wanted`` (lower-case bytes), whatever case the app used."""
    try:
        for name, value in headers or ():
            if name == wanted:
                return value
            if type(name) is not bytes or not name.islower():
                break  # odd case or type: the careful walk below
        else:
            return None
    except Exception:
        pass
    for item in header_items(headers):
        try:
            name, value = item
            if bytes(name).lower() == wanted:
                return value
        except Exception:
            continue
    return None
