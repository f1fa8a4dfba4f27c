"""Redaction of captured requests and responses: what may be kept of headers, query and bodies.

Capture (``capture_requests=True``) keeps enough of each request to send it again, and that is
exactly what a log must not leak. These pure functions run in the writer thread, before anything
reaches SQLite: secret headers (the same list that ``capture_request_headers`` refuses) become
named placeholders (:mod:`.placeholders`), sensitive query values become placeholders by the
rules that redact the ``query_string`` column (``redact_query``/``keep_query`` included), and
JSON, urlencoded-form and multipart-form bodies have the values of secret-looking fields replaced
the same way. A body whose type says JSON or form but that cannot be parsed is not kept at all:
what is secret in it cannot be told.

``sensitive(name)`` is the policy's verdict on a lower-cased query key or field name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_plus

from ..placeholders import placeholder
from ..validators import is_secret_header
from . import redaction

__all__ = [
    "redact_body",
    "redact_headers",
    "redact_query",
    "redact_url",
]

Sensitive = Callable[[str], bool]

#: Headers whose value is a URL: the user:password@ part goes, sensitive query values too.
URL_HEADERS = frozenset({"referer", "location", "content-location", "origin"})

_SEPARATORS = re.compile(r"([&;])")
_BRACKETS = re.compile(r"[\[\]]+")
#: Nested JSON deeper than this is not walked (and so not kept).
MAX_JSON_DEPTH = 64


def _is_sensitive(name: str, sensitive: Sensitive) -> bool:
    # Bracketed names (``key[]``, ``user[password]``) are sensitive if any part is.
    return sensitive(name) or ("[" in name and any(map(sensitive, _BRACKETS.split(name))))


def redact_query(query: str, sensitive: Sensitive) -> str:
    """The query with each sensitive value replaced by ``{{key}}``; keys, order and the rest
    kept byte for byte. ``&`` and ``;`` both separate parameters (some servers split on either).
    Also used for urlencoded form bodies."""
    if "=" not in query:
        return query
    parts = _SEPARATORS.split(query)
    changed = False
    for index in range(0, len(parts), 2):
        key, equals, value = parts[index].partition("=")
        if not equals or not value:
            continue
        decoded = key
        if "%" in key or "+" in key:
            decoded = unquote_plus(key, errors="replace")
        name = decoded.strip().lower()
        if _is_sensitive(name, sensitive):
            parts[index] = key + "=" + placeholder(name)
            changed = True
    return "".join(parts) if changed else query


def redact_url(url: str, sensitive: Sensitive) -> str:
    """A URL as the referer column keeps it, sensitive values as named placeholders."""
    return redaction.redact_url(url, lambda query: redact_query(query, sensitive))


_SECRET_NAMES: dict[str, bool] = {}


def _secret(name: str) -> bool:
    """:func:`is_secret_header`, remembered per name: header names repeat endlessly, and the
    glob patterns cost tens of microseconds per header."""
    verdict = _SECRET_NAMES.get(name)
    if verdict is None:
        verdict = is_secret_header(name)
        if len(_SECRET_NAMES) >= 10_000:
            _SECRET_NAMES.clear()
        _SECRET_NAMES[name] = verdict
    return verdict


def redact_headers(headers: Iterable[Any], sensitive: Sensitive) -> list[list[str]]:
    """Every header in order, duplicates kept, as ``[name, value]`` text (bytes read as
    latin-1, which is lossless); a secret header's value is ``{{its lower-case name}}``."""
    kept: list[list[str]] = []
    for item in headers or ():
        try:
            name, value = item
            name = bytes(name).decode("latin-1")
            value = bytes(value).decode("latin-1")
        except Exception:
            continue
        lowered = name.lower()
        if _secret(lowered):
            value = placeholder(lowered)
        elif lowered in URL_HEADERS:
            value = redact_url(value, sensitive)
        kept.append([name, value])
    return kept


# ---- bodies --------------------------------------------------------------------------------------
def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _parameter(content_type: str, wanted: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == wanted:
            return value.strip().strip('"')
    return None


def _redact_json(value: Any, sensitive: Sensitive, depth: int = 0) -> tuple[Any, bool]:
    if depth > MAX_JSON_DEPTH:
        raise ValueError("JSON nested too deeply to be checked")
    changed = False
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if _is_sensitive(str(key).strip().lower(), sensitive):
                result[key] = placeholder(str(key))
                changed = True
            else:
                result[key], inner = _redact_json(item, sensitive, depth + 1)
                changed = changed or inner
        return result, changed
    if isinstance(value, list):
        items = []
        for item in value:
            redacted, inner = _redact_json(item, sensitive, depth + 1)
            items.append(redacted)
            changed = changed or inner
        return items, changed
    return value, False


def _json_body(body: bytes, sensitive: Sensitive) -> bytes | None:
    try:
        document = json.loads(body)
        redacted, changed = _redact_json(document, sensitive)
    except (ValueError, RecursionError):
        return None
    if not changed:
        return body  # byte for byte, so that it replays exactly
    return json.dumps(redacted, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _multipart_body(body: bytes, boundary: str | None, sensitive: Sensitive) -> bytes | None:
    """Parts whose field name looks secret (and that are not files) get a placeholder; every
    other byte is kept. None for a body that does not have the structure its type announces."""
    if not boundary:
        return None
    delimiter = b"--" + boundary.encode("latin-1")
    pieces = body.split(delimiter)
    if len(pieces) < 3:
        return None
    changed = False
    for index in range(1, len(pieces) - 1):  # pieces[0] is the preamble, the last the epilogue
        piece = pieces[index]
        head, sep, content = piece.partition(b"\r\n\r\n")
        if not sep:
            return None
        name = filename = None
        for line in head.split(b"\r\n"):
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-disposition":
                disposition = value.decode("latin-1")
                name = _parameter(disposition, "name")
                filename = _parameter(disposition, "filename")
        if name is not None and filename is None and _is_sensitive(name.lower(), sensitive):
            ending = b"\r\n" if content.endswith(b"\r\n") else b""
            pieces[index] = head + sep + placeholder(name).encode("ascii") + ending
            changed = True
    if not pieces[-1].startswith(b"--"):
        return None  # no closing delimiter: cut short
    return delimiter.join(pieces) if changed else body


def redact_body(body: bytes, content_type: str | None, sensitive: Sensitive) -> bytes | None:
    """The body as it may be stored, or None when it must not be (announced as JSON or a form,
    but not parseable as such). JSON is also recognised without a content type."""
    if not body:
        return body
    media = _media_type(content_type)
    if media == "application/json" or media.endswith("+json"):
        return _json_body(body, sensitive)
    if media == "application/x-www-form-urlencoded":
        return redact_query(body.decode("latin-1"), sensitive).encode("latin-1")
    if media == "multipart/form-data":
        return _multipart_body(body, _parameter(content_type or "", "boundary"), sensitive)
    if not media or media == "text/plain":
        start = body.lstrip()[:1]
        if start in (b"{", b"["):
            redacted = _json_body(body, sensitive)
            if redacted is not None:
                return redacted
    return body
