"""The JSON-lines form of a log row: one JSON object per line, for logs shipped as text.

Where a local SQLite file does not outlive the process (AWS Lambda, scale-to-zero containers),
rows go to standard output and the platform keeps them (CloudWatch, Cloud Logging, Fly, Vercel);
``asgi-log-to-sqlite import`` reads them back into a log database. This module is that format's
one definition, shared by both sides, and depends on nothing but the schema's column list.

A line holds:

- ``"asgi_log_to_sqlite": 1``, the marker and version of this format. It comes first, names the
  package unambiguously (a key such as ``"log"`` is already taken by Docker's and Fluent Bit's
  envelopes), and lets the format change later without guessing;
- ``"time"``: ``start`` as ISO 8601 UTC with milliseconds (``2026-12-07T10:00:00.123Z``), for
  people reading the platform's console (it is not read back: ``start`` is exact);
- every column of the ``requests`` table (:data:`~.schema.REQUEST_COLUMNS`, in order), with the
  value the SQLite log stores: lookup columns as their text, ``start`` as unix seconds (a float),
  ``duration`` and ``ttfb`` in seconds, missing values as ``null`` (``start`` is never
  missing: a line without one is not a row).

The line is plain ASCII (other characters as ``\\u`` escapes), so no console or log shipper
along the way can mangle it. Reading is lenient where it is safe: unknown keys are ignored (a
newer writer's columns, a platform's additions), missing keys are NULL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from .schema import REQUEST_COLUMNS

__all__ = ["COLUMNS", "MARKER", "VERSION", "decode", "decode_object", "encode", "is_ours"]

#: The key that marks a line as this format, and the version it holds.
MARKER = "asgi_log_to_sqlite"
VERSION = 1

#: The columns a line carries, in the order of the ``requests`` table.
COLUMNS: tuple[str, ...] = tuple(REQUEST_COLUMNS)
_START = COLUMNS.index("start")

# Numeric columns, checked on reading (any other column holds text).
FLOAT_COLUMNS = frozenset({"start", "duration", "ttfb", "sample_rate"})
INTEGER_COLUMNS = frozenset({"http_status", "body_size", "request_body_size", "disconnected"})

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _iso(start: Any) -> str | None:
    try:
        moment = datetime.fromtimestamp(start, timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _finite(value: Any) -> Any:
    # SQLite stores NaN as NULL; JSON has no infinities. Both become null.
    if type(value) is float and not math.isfinite(value):
        return None
    return value


def encode(row: Sequence[Any] | Mapping[str, Any]) -> str:
    """One line (without its newline) for a row: a tuple in ``REQUEST_COLUMNS`` order, or a
    mapping from column names (missing ones are null)."""
    if isinstance(row, Mapping):
        values = [row.get(name) for name in COLUMNS]
    else:
        values = list(row)
        if len(values) != len(COLUMNS):
            raise ValueError(f"a row has {len(COLUMNS)} values, got {len(values)}")
    document: dict[str, Any] = {MARKER: VERSION, "time": _iso(values[_START])}
    for name, value in zip(COLUMNS, values, strict=True):
        if type(value) is bytes:
            value = value.decode("utf-8", "backslashreplace")
        document[name] = _finite(value)
    return _dumps(document)


def is_ours(document: Any) -> bool:
    """True for a decoded JSON object written by :func:`encode` (any version)."""
    if not isinstance(document, dict):
        return False
    version = document.get(MARKER)
    return type(version) is int and version >= 1


def _number(name: str, value: Any, integer: bool) -> Any:
    if value is None:
        return None
    if type(value) is bool or not isinstance(value, (int, float)):
        raise ValueError(f"{name!r} must be a number, got {value!r}")
    if integer:
        if type(value) is float:
            if not value.is_integer():
                raise ValueError(f"{name!r} must be an integer, got {value!r}")
            return int(value)
        return value
    return float(value)


def decode_object(document: Mapping[str, Any]) -> tuple[Any, ...]:
    """The row (a tuple in ``REQUEST_COLUMNS`` order) of a decoded line; ValueError if the
    object is not one of ours or holds a value of the wrong kind."""
    if not is_ours(document):
        raise ValueError(f"not an asgi-log-to-sqlite line (no {MARKER!r} key)")
    row = []
    get = document.get
    for name in COLUMNS:
        value = get(name)
        if name in FLOAT_COLUMNS:
            value = _number(name, value, integer=False)
            if value is not None and not math.isfinite(value):
                value = None
        elif name in INTEGER_COLUMNS:
            value = _number(name, value, integer=True)
        elif value is not None and type(value) is not str:
            if isinstance(value, (dict, list)):
                raise ValueError(f"{name!r} must be text, got {value!r}")
            value = json.dumps(value) if type(value) is bool else str(value)
        if value == "":
            value = None  # empty values are NULL, as the log stores them
        row.append(value)
    if row[_START] is None:
        # Every row the log stores has a start; without one there is no request to place.
        raise ValueError("'start' is missing")
    return tuple(row)


def decode(line: str | bytes) -> tuple[Any, ...]:
    """The row of one line written by :func:`encode`; ValueError if it is not one."""
    try:
        document = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"not JSON: {error}") from None
    return decode_object(document)
