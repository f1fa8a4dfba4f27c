"""Capture for replay: what the event loop keeps of bodies, and the ``captures`` row built from it.

Two halves, on the two sides of the queue. On the event loop, a :class:`BodyTap` per body does
O(1) work per chunk besides hashing it: it keeps a *reference* to each chunk while the body is
within ``capture_body_limit`` (no copy, no join), and past the limit hashes what it kept once,
drops it, and from then on only updates a SHA-256 and a byte count. A response's tap hashes from
the first byte (the log compares replayed bodies with that hash) and, with
``capture_responses=True``, also keeps the body within the limit and when each chunk left.

In the writer thread, :func:`capture_row` turns the taps and the scope into the row stored in
``captures``: raw path, query with sensitive values as placeholders, every header in order with
secret ones as placeholders, the body redacted (:mod:`.privacy.capture`), SHA-256s and the
response's chunk timings. Nothing here touches SQLite.
"""

from __future__ import annotations

import hashlib
import json
import time
from array import array
from collections.abc import Callable
from typing import Any

from .privacy.capture import redact_body, redact_headers, redact_query

__all__ = ["BodyTap", "ResponseTap", "capture_row"]

#: Chunk timings kept per response at most; later chunks are added to the last one.
MAX_CHUNK_TIMINGS = 10_000


class BodyTap:
    """One streamed body: kept by reference up to ``limit`` bytes, else its size and SHA-256."""

    __slots__ = ("chunks", "digest", "limit", "size")

    def __init__(self, limit: int, hash_from_start: bool = False) -> None:
        self.limit = limit
        self.size = 0
        self.chunks: list[bytes] | None = []
        self.digest: Any = hashlib.sha256() if hash_from_start else None

    def add(self, chunk: Any) -> None:
        if type(chunk) is not bytes:
            chunk = bytes(chunk)  # a bytearray the app may reuse must not change under us
        self.size += len(chunk)
        if self.digest is not None:
            self.digest.update(chunk)
        if self.chunks is not None:
            if self.size <= self.limit:
                self.chunks.append(chunk)
            else:
                if self.digest is None:
                    # Past the limit: hash what was kept (once), keep nothing more.
                    self.digest = hashlib.sha256()
                    for kept in self.chunks:
                        self.digest.update(kept)
                    self.digest.update(chunk)
                self.chunks = None

    @property
    def kept(self) -> bool:
        return self.chunks is not None

    def body(self) -> bytes | None:
        """The whole body if it was kept (joined here, in the writer thread)."""
        return b"".join(self.chunks) if self.chunks is not None else None

    def sha256(self) -> str | None:
        return self.digest.hexdigest() if self.digest is not None else None


class ResponseTap(BodyTap):
    """A response body: hashed as it streams; with ``keep``, kept within the limit and timed."""

    __slots__ = ("started", "timings")

    def __init__(self, limit: int, keep: bool) -> None:
        super().__init__(limit if keep else 0, hash_from_start=True)
        if not keep:
            self.chunks = None
        # Two flat arrays, not a list of pairs: no object per chunk for the garbage collector.
        self.timings: tuple[array[float], array[int]] | None = (
            (array("d"), array("q")) if keep else None
        )
        self.started = 0.0

    def start(self) -> None:
        """``http.response.start`` was sent: chunk times count from here."""
        self.started = time.perf_counter()

    def add(self, chunk: Any) -> None:
        super().add(chunk)
        timings = self.timings
        if timings is not None and chunk:
            times, sizes = timings
            if len(times) < MAX_CHUNK_TIMINGS:
                times.append(time.perf_counter())
                sizes.append(len(chunk))
            else:
                sizes[-1] += len(chunk)

    def chunk_timings(self) -> str | None:
        """JSON ``[[seconds after the start, bytes], ...]``, for a mock to keep the pace."""
        if self.timings is None:
            return None
        times, sizes = self.timings
        started = self.started
        return json.dumps([[round(t - started, 6), n] for t, n in zip(times, sizes, strict=True)])


def _header(headers: Any, wanted: bytes) -> str | None:
    for item in headers or ():
        try:
            name, value = item
            if bytes(name).lower() == wanted:
                return bytes(value).decode("latin-1")
        except Exception:  # noqa: BLE001, S112 (a broken header is skipped, never raised)
            continue
    return None


def _headers_json(headers: Any, sensitive: Callable[[str], bool]) -> str:
    return json.dumps(redact_headers(headers, sensitive), ensure_ascii=False)


def capture_row(
    scope: Any,
    request_tap: BodyTap | None,
    response_tap: ResponseTap | None,
    response_headers: Any,
    sensitive: Callable[[str], bool],
    keep_responses: bool,
) -> tuple[Any, ...]:
    """The ``captures`` columns after ``request`` (see schema.py), secrets as placeholders.

    A kept request body's SHA-256 is of the bytes stored (redacted): a hash of a short secret
    could be reversed by guessing. A body too large to keep has the SHA-256 of what was sent;
    one whose type announced JSON or a form but that does not parse is neither kept nor hashed.
    """
    raw_path = scope.get("raw_path")
    if not isinstance(raw_path, bytes):
        raw_path = str(scope.get("path") or "").encode("utf-8")
    query = scope.get("query_string") or b""
    raw_query = redact_query(bytes(query).decode("latin-1"), sensitive).encode("latin-1")
    request_headers = _headers_json(scope.get("headers"), sensitive)

    body = request_sha = None
    kept = 0
    if request_tap is None or request_tap.kept:
        data = request_tap.body() if request_tap is not None else b""
        body = redact_body(data or b"", _header(scope.get("headers"), b"content-type"), sensitive)
        if body is not None:
            kept = 1
            request_sha = hashlib.sha256(body).hexdigest()
    else:
        request_sha = request_tap.sha256()

    response_headers_json = response_body = response_sha = chunks = None
    response_kept = 0
    if response_tap is not None:
        response_sha = response_tap.sha256()
    if keep_responses:
        response_headers_json = _headers_json(response_headers, sensitive)
        if response_tap is not None:
            chunks = response_tap.chunk_timings()
            if response_tap.kept:
                response_body = redact_body(
                    response_tap.body() or b"", _header(response_headers, b"content-type"),
                    sensitive,
                )
                response_kept = int(response_body is not None)
    return (
        raw_path,
        raw_query,
        request_headers,
        body,
        request_sha,
        kept,
        response_headers_json,
        response_body,
        response_sha,
        response_kept,
        chunks,
    )
