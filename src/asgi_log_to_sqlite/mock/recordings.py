"""What a mock can serve: the captured exchanges of a log, read once (and again as it grows).

A row is a recording when it was logged with capture on (``capture_requests=True``). It can be
*served* when the response was kept too (``capture_responses=True``, body within
``capture_body_limit``); the others are still read, so that a request matching only them gets a
404 that says why. WebSocket connections are left out. The log is opened read-only.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from ..filekind import special_file_kind
from ..placeholders import names_in
from ..schema import open_readonly

__all__ = ["MockError", "Recording", "load", "placeholders", "readable_log"]


class MockError(Exception):
    """The mock cannot start (missing or unusable log); the message says why."""


@dataclass(frozen=True)
class Recording:
    """One captured exchange: the request as matched, the response as served."""

    rowid: int
    start: float
    method: str
    #: The path, percent-decoded: ``/a%20b`` and ``/a b`` are one path.
    path: bytes
    #: The query as captured: raw bytes, sensitive values as ``{{name}}`` placeholders.
    query: bytes
    request_content_type: str | None
    #: The request body as stored (redacted); None when it was too large to keep.
    request_body: bytes | None
    #: SHA-256 of the stored body when kept (None for an empty one), else of the bytes sent.
    request_body_sha256: str | None
    status: int
    #: Seconds from the request's arrival until the response started.
    ttfb: float | None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    #: The response body as stored; None when it cannot be served (why: ``unservable``).
    response_body: bytes | None = None
    #: ``(seconds after the response started, bytes)`` per chunk sent.
    chunks: list[tuple[float, int]] = field(default_factory=list)
    unservable: str | None = None

    @property
    def body_key(self) -> tuple[bool, str | None]:
        """Equal for recordings whose request bodies were stored alike."""
        return self.request_body is not None, self.request_body_sha256


def readable_log(path: str) -> sqlite3.Connection:
    """A read-only connection to a log with captures, or MockError saying what is wrong."""
    if not os.path.exists(path):
        raise MockError(f"{path}: no such file")
    kind = special_file_kind(path)
    if kind is not None:  # SQLite would wait forever on a named pipe
        raise MockError(f"{path}: is {kind}, not a log database")
    try:
        conn = open_readonly(path)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as error:
        raise MockError(f"{path}: not a SQLite database ({error})") from None
    if "requests" not in tables:
        conn.close()
        raise MockError(f"{path}: not an asgi-log-to-sqlite log (no 'requests' table)")
    if "captures" not in tables or "header_lists" not in tables:
        conn.close()
        raise MockError(
            f"{path}: has no captures; log with capture_requests=True and "
            "capture_responses=True (or record with 'asgi-log-to-sqlite record')"
        )
    return conn


_SQL = """SELECT requests.rowid, requests.start, requests.method, requests.http_status,
    requests.ttfb, requests.body_size, requests.exception,
    captures.raw_path, captures.raw_query, request_lists.name, captures.request_body,
    captures.request_body_sha256, captures.request_body_kept, response_lists.name,
    captures.response_body, captures.response_body_kept, captures.response_chunks
FROM captures
JOIN requests ON requests.rowid = captures.request
LEFT JOIN header_lists AS request_lists ON request_lists.id = captures.request_headers
LEFT JOIN header_lists AS response_lists ON response_lists.id = captures.response_headers
WHERE captures.request > ?
    AND (requests.connection_type IS NULL OR requests.connection_type = 'http')
ORDER BY requests.start, requests.rowid"""


def load(path: str, after: int = 0) -> list[Recording]:
    """The recordings of ``path`` whose row id is above ``after``, oldest first."""
    conn = readable_log(path)
    try:
        return [_recording(row) for row in conn.execute(_SQL, (after,))]
    except sqlite3.DatabaseError as error:
        raise MockError(f"{path}: cannot read its captures ({error})") from None
    finally:
        conn.close()


def _pairs(text: str | None) -> list[tuple[str, str]]:
    try:
        return [(str(name), str(value)) for name, value in json.loads(text or "[]")]
    except (TypeError, ValueError):
        return []


def _header(headers: Iterable[tuple[str, str]], wanted: str) -> str | None:
    for name, value in headers:
        if name.lower() == wanted:
            return value
    return None


def _recording(row: tuple) -> Recording:
    (rowid, start, method, status, ttfb, body_size, exception, raw_path, raw_query,
     request_headers, request_body, request_sha, request_kept, response_headers,
     response_body, response_kept, chunks) = row
    unservable = None
    if response_headers is None:
        unservable = "it was logged without capture_responses"
    elif not response_kept or response_body is None:
        if exception and not body_size:
            unservable = f"the service gave no response ({exception})"
        else:
            unservable = (
                f"its response body ({body_size or 0:,} bytes) was not kept: larger than "
                "capture_body_limit, sent as a file, or announced as JSON or a form without "
                "being one"
            )
    try:
        timings = [(float(t), int(n)) for t, n in json.loads(chunks or "[]")]
    except (TypeError, ValueError):
        timings = []
    return Recording(
        rowid=rowid,
        start=float(start or 0.0),
        method=(method or "GET").upper(),
        path=unquote_to_bytes(bytes(raw_path or b"/")),
        query=bytes(raw_query or b""),
        request_content_type=_header(_pairs(request_headers), "content-type"),
        request_body=bytes(request_body) if request_kept and request_body is not None else None,
        request_body_sha256=request_sha,
        status=int(status or 500),
        ttfb=ttfb,
        response_headers=_pairs(response_headers),
        response_body=None if unservable else bytes(response_body),
        chunks=timings,
        unservable=unservable,
    )


#: Where a placeholder can be, in the order they are listed.
PLACES = ("query", "request header", "request body", "response header", "response body")


def placeholders(path: str) -> dict[str, list[str]]:
    """Every ``{{name}}`` in the captures of ``path``, and where: what a replay (``--set``)
    or a mock of it has to be given for the requests or answers to be complete."""
    found: dict[str, set[str]] = defaultdict(set)
    conn = readable_log(path)
    try:
        for (text,) in conn.execute(
            "SELECT name FROM header_lists WHERE id IN (SELECT request_headers FROM captures)"
        ):
            for name in names_in(text):
                found[name].add("request header")
        for (text,) in conn.execute(
            "SELECT name FROM header_lists WHERE id IN (SELECT response_headers FROM captures)"
        ):
            for name in names_in(text):
                found[name].add("response header")
        for query, request_body, response_body in conn.execute(
            "SELECT raw_query, request_body, response_body FROM captures "
            "WHERE instr(raw_query, X'7B7B') OR instr(request_body, X'7B7B') "
            "OR instr(response_body, X'7B7B')"
        ):
            for place, value in (("query", query), ("request body", request_body),
                                 ("response body", response_body)):
                for name in names_in(bytes(value) if value is not None else None):
                    found[name].add(place)
    except sqlite3.DatabaseError as error:
        raise MockError(f"{path}: cannot read its captures ({error})") from None
    finally:
        conn.close()
    return {name: [p for p in PLACES if p in places] for name, places in sorted(found.items())}
