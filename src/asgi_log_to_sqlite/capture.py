"""Capture for replay: what the event loop keeps of bodies, and the ``captures`` row built from it.

Two halves, on the two sides of the queue. On the event loop, a :class:`BodyTap` (made with
a request's first body chunk) does O(1) work per chunk besides hashing it: it keeps a
*reference* to each chunk while the body is within ``capture_body_limit`` (no copy, no join),
and past the limit hashes what it kept once, drops it, and from then on only updates a SHA-256
and a byte count. A :class:`ResponseTap` (made at ``http.response.start``) hashes every chunk
as it is sent (the log compares replayed bodies with that hash) and, with
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
from collections.abc import Callable
from typing import Any

from .privacy.capture import redact_body, redact_headers, redact_query

__all__ = ["BodyTap", "CaptureBuilder", "ResponseTap", "TapSnapshot", "capture_row"]

#: Chunk timings kept per response at most; later chunks are added to the last one.
MAX_CHUNK_TIMINGS = 10_000


class BodyTap:
    """A request body: kept by reference up to ``limit`` bytes, else its size and SHA-256."""

    __slots__ = ("chunks", "digest", "limit", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.chunks: list[bytes] | None = []
        self.digest: Any = None

    def add(self, chunk: Any) -> None:
        if type(chunk) is not bytes:
            chunk = bytes(chunk)  # a bytearray the app may reuse must not change under us
        self.size += len(chunk)
        if self.chunks is None:
            self.digest.update(chunk)
        elif self.size <= self.limit:
            self.chunks.append(chunk)
        else:
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

    def freeze(self) -> TapSnapshot:
        return TapSnapshot(self.kept, self.body(), self.sha256(), self.size, None)


class TapSnapshot:
    """A tap's result as plain values, for a writer process (a hash object cannot be pickled);
    it answers what :func:`capture_row` asks of a tap."""

    __slots__ = ("_body", "_sha256", "_timings", "kept", "size")

    def __init__(self, kept: bool, body: bytes | None, sha256: str | None, size: int,
                 timings: str | None) -> None:
        self.kept, self._body, self._sha256, self.size, self._timings = (
            kept, body, sha256, size, timings
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (TapSnapshot, (self.kept, self._body, self._sha256, self.size, self._timings))

    def body(self) -> bytes | None:
        return self._body

    def sha256(self) -> str | None:
        return self._sha256

    def chunk_timings(self) -> str | None:
        return self._timings


class ResponseTap:
    """A response body, from ``http.response.start`` on: hashed as it streams; with ``keep``
    (``capture_responses``), also kept within the limit, and each chunk's time recorded."""

    __slots__ = ("chunks", "digest", "limit", "size", "started", "timings")

    def __init__(self, limit: int, keep: bool) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        self.limit = limit
        self.chunks: list[bytes] | None = [] if keep else None
        # One flat list, time and size after time, not a list of pairs: no container per chunk
        # for the garbage collector to walk.
        self.timings: list[float] = []
        self.started = time.perf_counter() if keep else 0.0

    def add(self, chunk: Any) -> None:
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)
        chunks = self.chunks
        if chunks is None or not chunk:
            return
        if self.size <= self.limit:
            chunks.append(chunk)
        elif chunks:
            chunks.clear()  # past the limit: nothing of the body is kept
        timings = self.timings
        if len(timings) < 2 * MAX_CHUNK_TIMINGS:
            timings.append(time.perf_counter())
            timings.append(len(chunk))
        else:
            timings[-1] += len(chunk)

    @property
    def kept(self) -> bool:
        return self.chunks is not None and self.size <= self.limit

    def body(self) -> bytes | None:
        return b"".join(self.chunks) if self.kept and self.chunks is not None else None

    def sha256(self) -> str:
        return self.digest.hexdigest()

    def freeze(self) -> TapSnapshot:
        return TapSnapshot(self.kept, self.body(), self.sha256(), self.size, self.chunk_timings())

    def chunk_timings(self) -> str | None:
        """JSON ``[[seconds after the start, bytes], ...]``, for a mock to keep the pace."""
        if self.chunks is None:
            return None
        timings, started = self.timings, self.started
        return json.dumps([
            [round(timings[i] - started, 6), int(timings[i + 1])]
            for i in range(0, len(timings), 2)
        ])


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


#: Distinct header lists remembered per writer before the memo starts again.
MEMO_LIMIT = 20_000


class CaptureBuilder:
    """Builds ``captures`` rows for one writer. Header lists repeat (the same client sends the
    same headers), so what each list becomes (redacted, as JSON) is computed once."""

    def __init__(self, sensitive: Callable[[str], bool], keep_responses: bool) -> None:
        self.sensitive = sensitive
        self.keep_responses = keep_responses
        self._lists: dict[Any, str] = {}
        self._pairs: dict[Any, str | None] = {}

    def headers_json(self, headers: Any) -> str:
        """The list as :func:`_headers_json` writes it; built from each header's JSON, which is
        remembered too (a new list is mostly headers seen before, in another combination)."""
        try:
            key = tuple(headers or ())
            found = self._lists.get(key)
            if found is None:
                found = "[" + ", ".join(filter(None, map(self._pair, key))) + "]"
                if len(self._lists) >= MEMO_LIMIT:
                    self._lists.clear()
                self._lists[key] = found
            return found
        except TypeError:  # headers the server built as lists: not dict keys
            return _headers_json(headers, self.sensitive)

    def _pair(self, item: Any) -> str | None:
        pairs = self._pairs
        found = pairs.get(item, False)
        if found is False:
            redacted = redact_headers((item,), self.sensitive)
            found = json.dumps(redacted[0], ensure_ascii=False) if redacted else None
            if len(pairs) >= MEMO_LIMIT:
                pairs.clear()
            pairs[item] = found
        return found  # type: ignore[return-value]

    def row(
        self,
        scope: Any,
        request_tap: BodyTap | None,
        response_tap: ResponseTap | None,
        response_headers: Any,
    ) -> tuple[Any, ...]:
        return capture_row(scope, request_tap, response_tap, response_headers, self.sensitive,
                           self.keep_responses, self.headers_json)


def capture_row(
    scope: Any,
    request_tap: BodyTap | None,
    response_tap: ResponseTap | None,
    response_headers: Any,
    sensitive: Callable[[str], bool],
    keep_responses: bool,
    headers_json: Callable[[Any], str] | None = None,
) -> tuple[Any, ...]:
    """The ``captures`` columns after ``request`` (see schema.py), secrets as placeholders.

    A kept request body's SHA-256 is of the bytes stored (redacted): a hash of a short secret
    could be reversed by guessing. A body too large to keep has the SHA-256 of what was sent;
    one whose type announced JSON or a form but that does not parse is neither kept nor hashed;
    an empty body is kept (``b""``) and not hashed.
    """
    if headers_json is None:
        def headers_json(headers: Any) -> str:
            return _headers_json(headers, sensitive)

    raw_path = scope.get("raw_path")
    if type(raw_path) is not bytes:
        raw_path = str(scope.get("path") or "").encode("utf-8")
    query = scope.get("query_string")
    raw_query = b""
    if query:
        raw_query = redact_query(bytes(query).decode("latin-1"), sensitive).encode("latin-1")
    request_headers = headers_json(scope.get("headers"))

    body: bytes | None = b""
    request_sha: str | None = None  # for no body (the usual GET): 64 bytes a row saved
    kept = 1
    if request_tap is None:
        pass
    elif request_tap.kept:
        body = redact_body(
            request_tap.body() or b"", _header(scope.get("headers"), b"content-type"), sensitive
        )
        request_sha = hashlib.sha256(body).hexdigest() if body else None
        kept = int(body is not None)
    else:
        body, request_sha, kept = None, request_tap.sha256(), 0

    response_headers_json = response_body = response_sha = chunks = None
    response_kept = 0
    if response_tap is not None:
        response_sha = response_tap.sha256()
    if keep_responses:
        response_headers_json = headers_json(response_headers)
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
