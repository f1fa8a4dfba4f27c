"""The writer's "prepare" step: finished exchanges (or the records the writer process gets,
:mod:`asgi_log_to_sqlite.wire`) in, a batch of plain values out.

Everything that costs more than O(1) per request happens here, off the event loop: decoding
bytes, walking header lists, the privacy rules (exclusions, sampling, redaction, addresses, route
and actor), capping long values, and normalising every value to one a sink can store. Nothing
here writes back into the exchanges, and nothing here knows which sink will store the rows.

Paths, query strings, user agents, referers, hosts and addresses repeat endlessly in a log, so
what each distinct raw value becomes (decoded, redacted, capped, its exclusion verdict) is
computed once and then looked up. That is most of what keeps the writer's share of the CPU, and
so its cost to the app, small (see docs/benchmarks.md).
"""

from __future__ import annotations

import collections
import logging
import math
import os
import socket
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from .batch import Batch, Row
from .capture import CaptureBuilder
from .exchange import Exchange
from .headers import header_pairs, header_value, request_headers
from .privacy.addresses import ClientAddresses, VisitorHash, parse_ip
from .privacy.filters import RecordingFilter
from .privacy.frameworks import Detectors
from .privacy.redaction import Redactor
from .raw_path import readable_path
from .wire import (
    CAPTURED,
    EXTRA,
    KEY,
    PATH,
    QUERY_STRING,
    RAW_PATH,
    RESPONSE_KEPT,
    START,
    Encoder,
)

__all__ = ["Prepare", "hour_of", "instance_name", "text"]

logger = logging.getLogger("asgi_log_to_sqlite")

#: Integers a sink can store (SQLite's and PostgreSQL's 64-bit range).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
#: Distinct raw values remembered per column before a memo starts again (results stay exact).
MEMO_LIMIT = 20_000
#: Headers whose value is a URL, redacted like the referer when captured.
URL_HEADERS = frozenset({b"referer", b"location", b"content-location"})


# ---- values --------------------------------------------------------------------------------------
def text(value: Any, cap: int) -> str | None:
    """Valid text for any input: lossless for valid UTF-8, escapes for bad bytes, capped."""
    if value is None:
        return None
    kind = type(value)
    if kind is bytes:  # the common case first: this runs a dozen times per row
        value = value.decode("utf-8", "backslashreplace")
    elif kind is str:
        if not value.isascii():
            # Lone surrogates (from a server decoding with surrogateescape) cannot be stored.
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8", "backslashreplace")
    elif isinstance(value, str):
        value = str.encode(value, "utf-8", "backslashreplace").decode("utf-8")
    else:
        value = text(str(value), cap)
    if not value:
        return None
    return value[:cap]


def integer(value: Any) -> int | None:
    """An integer a sink can store, or None (out of range, not a number, or not finite)."""
    if type(value) is int:
        return value if INT_MIN <= value <= INT_MAX else None
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if INT_MIN <= number <= INT_MAX else None


def size(value: Any) -> int | None:
    """A byte count: a non-negative storable integer, or None."""
    number = integer(value)
    return number if number is not None and number >= 0 else None


def real(value: Any) -> float | None:
    """A finite float, or None."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def hour_of(start: Any) -> str:
    """The UTC hour a request arrived in, as the ``dropped`` and ``excluded`` counts key it."""
    try:
        return datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%dT%H:00")
    except (OverflowError, OSError, ValueError, TypeError):
        return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:00")


def instance_name(options: Any) -> str:
    """The ``instance`` stored with each row: the option, or this machine's host name."""
    return options.instance or socket.gethostname() or "unknown"


def _sent_file_size(pathsend: Any, response_headers: Any) -> int:
    """Bytes of a ``pathsend`` file: the response's Content-Length when it has one (Starlette's
    FileResponse always does), since by now the file may be gone (a temporary download removed
    by a background task); else the file's size now."""
    length = size(header_value(response_headers, b"content-length"))
    if length is not None:
        return length
    if not isinstance(pathsend, (str, bytes, os.PathLike)):
        return 0
    try:
        return os.path.getsize(pathsend)
    except (OSError, TypeError, ValueError, OverflowError):
        return 0  # gone, and no Content-Length said how big it was


def _peer_text(client: Any) -> str | None:
    if client:
        try:
            peer = client[0]
        except Exception:
            return None
        return peer if isinstance(peer, str) else None
    return None


def _server_host(server: Any) -> str | None:
    if not server:
        return None
    try:
        return f"{server[0]}:{server[1]}" if server[1] is not None else str(server[0])
    except Exception:
        return None


# ---- memos ---------------------------------------------------------------------------------------
class _Memo(dict):  # type: ignore[type-arg]
    """``memo[value]``: a dict hit in C for a str or bytes seen before, else ``compute(value)``."""

    __slots__ = ("compute",)

    def __init__(self, compute: Callable[[Any], Any]) -> None:
        super().__init__()
        self.compute = compute

    def __missing__(self, value: Any) -> Any:
        found = self.compute(value)
        kind = type(value)
        # Only text and bytes are remembered: 1, 1.0 and True are equal keys with other texts.
        if kind is str or kind is bytes:
            if len(self) >= MEMO_LIMIT:
                self.clear()
            self[value] = found
        return found


class _NoMemo:
    """The same interface without remembering: for values that cannot be dict keys."""

    __slots__ = ("compute",)

    def __init__(self, compute: Callable[[Any], Any]) -> None:
        self.compute = compute

    def __getitem__(self, value: Any) -> Any:
        return self.compute(value)


# ---- rows ----------------------------------------------------------------------------------------
class RowBuilder:
    """Turns one exchange into its ``requests`` row, or the reason it is left out of the log."""

    def __init__(self, options: Any, memo: type = _Memo, rules: RowBuilder | None = None) -> None:
        self.cap = cap = options.max_value_length
        if rules is None:
            self.redactor = Redactor(options.redact_query, options.keep_query)
            self.filter = RecordingFilter(options)
            self.addresses = ClientAddresses(options)
            self.visitor = VisitorHash(options.visitor_hash) if options.visitor_hash else None
            #: Exchanges become records as the writer process gets them: one way to build rows.
            #: The encoder runs the route and actor detection, and counts its errors.
            self.encode = Encoder(options)
            #: Values stored as NULL because no sink could store them, per column.
            self.nulled: collections.Counter[str] = collections.Counter()
        else:  # the same rules and counters as ``rules``, without its memos
            self.redactor, self.filter = rules.redactor, rules.filter
            self.addresses = rules.addresses
            self.visitor, self.nulled = rules.visitor, rules.nulled
            self.encode = rules.encode
        self._in_order = self.encode.in_order
        redactor, recording = self.redactor, self.filter
        self.client_ip = options.client_ip
        self.sample = options.sample
        self.instance = instance_name(options)
        self.capture_request = tuple(h.encode("latin-1") for h in options.capture_request_headers)
        self.capture_response = tuple(h.encode("latin-1") for h in options.capture_response_headers)
        self.captures = bool(self.capture_request or self.capture_response)
        self._method = memo(lambda value: text(value, 32))
        # Header values (bytes), paths and routes (str) apart: an ASCII bytes and str of the same
        # content hash alike, and comparing them fails under ``python -bb``.
        self._text = memo(lambda value: text(value, cap))
        self._path = memo(lambda value: text(value, cap))
        self._raw_path = memo(readable_path)
        self._route = memo(lambda value: text(value, cap))
        self._short = memo(lambda value: text(value, 16))
        self._query = memo(self._query_text)
        self._referer = memo(lambda value: text(redactor.url(text(value, 1 << 30)), cap))
        self._agent = memo(self._agent_facts)
        self._path_verdict = memo(recording.path_verdict)
        self._client = memo(lambda value: text(self.addresses.storable(value), cap))
        self._plain = RowBuilder(options, _NoMemo, self) if memo is _Memo else self
        self._trusted = bool(options.trusted_proxies)

    @property
    def detectors(self) -> Detectors:
        """The route and actor detection (the encoder's), with its error counts."""
        return self.encode.detectors

    def _normal(self, field: str, value: Any, normalise: Callable[[Any], Any]) -> Any:
        """``value`` as a sink can store it; a value that had to become NULL is counted."""
        found = normalise(value)
        if found is None and value is not None:
            self.nulled[field] += 1
        return found

    def _stored_path(self, raw_path: bytes, path: Any, path_text: str) -> str:
        """The path from the bytes the client sent, keeping the escapes the server's decoding
        loses (``%2F``, ``%25``, bytes that are not UTF-8: see raw_path.py), when they are the
        path the app saw; else the app's path as it is (a middleware rewrote it)."""
        stored, decoded = self._raw_path[raw_path]
        if isinstance(path, str) and path != decoded and not path.isascii():
            # A server that decodes with surrogateescape: its "\udce9" is our U+FFFD.
            try:
                path = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            except UnicodeEncodeError:
                return path_text
        if not isinstance(path, str) or path == decoded:
            return text(stored, self.cap) or path_text
        # Servers that put the mount point in ``path`` (uvicorn's --root-path) leave it out of
        # ``raw_path``: keep that prefix as the app saw it.
        prefix = path[: len(path) - len(decoded)]
        if path.endswith(decoded) and prefix.startswith("/") and decoded.startswith("/"):
            return text(prefix + stored, self.cap) or path_text
        return path_text

    def _query_text(self, query: Any) -> str | None:
        # Redact before capping: a cut could otherwise leave a secret's first characters behind.
        redacted = text(self.redactor.query(text(query, 1 << 30)), self.cap)
        return ("?" + redacted)[: self.cap] if redacted else None

    def _agent_facts(self, user_agent: Any) -> tuple[str | None, str | None]:
        """(stored text, exclusion verdict) of a user agent."""
        return text(user_agent, self.cap), self.filter.user_agent_verdict(text(user_agent, 4096))

    def build(self, record: Exchange | tuple[Any, ...]) -> Row | str:
        """The row, or the reason (a str) the request is left out of the log, of an exchange
        or of its encoded record (:mod:`asgi_log_to_sqlite.wire`)."""
        if type(record) is not tuple:
            record = self.encode(record)
        return self._build_memo_or_plain(record)

    def _build_memo_or_plain(self, record: tuple[Any, ...]) -> Row | str:
        try:
            return self._build(record)
        except TypeError:
            if self._plain is self:
                raise
            return self._plain._build(record)

    def _build(self, record: tuple[Any, ...]) -> Row | str:
        # Memo lookups first: only they raise TypeError (an unhashable value), and build() then
        # starts again without memos. Sampling and the visitor hash come after them, so that
        # they run once per request. The route and actor hooks ran when the record was encoded
        # (on the loop for a writer process, so excluded requests too).
        (_, start, duration, ttfb, status, body_size, request_body_size, exception, disconnected,
         kind, method, path, raw_path, query, user_agent, referer, accept_language, host, extra,
         client, server, scheme, http_version, content_type, response_kept, pathsend, route,
         actor, captured) = record
        if self._in_order:
            user_agent, referer, accept_language, host = request_headers(extra)
        user_agent_text, agent_verdict = (
            self._agent[user_agent] if user_agent is not None else (None, None)
        )
        path_verdict = self._path_verdict[path if type(path) is str else ""]
        websocket = kind == "websocket"
        if type(path) is not str or not path:
            path = raw_path or path
        path_text = self._path[path]
        if type(raw_path) is bytes and path_text and (b"%" in raw_path or not raw_path.isascii()):
            path_text = self._stored_path(raw_path, path, path_text)
        method = self._method[method] if not websocket else "GET"
        query_text = self._query[query] if query else None
        referer_text = self._referer[referer] if referer is not None else None
        language = self._text[accept_language] if accept_language is not None else None
        content_type_text = self._text[content_type] if content_type is not None else None
        if host is not None:
            host_text = self._text[host]
        else:
            host_text = text(_server_host(server), self.cap)
        scheme = self._short[scheme or ("ws" if websocket else "http")]
        http_version = self._short[http_version]
        peer = _peer_text(client)
        if self._trusted:
            address = self.addresses.resolve(peer, extra if captured is None else captured[1])
            client_ip = peer_ip = None
            if self.client_ip:
                client_ip = text(self.addresses.storable(address), self.cap)
                peer_ip = text(self.addresses.storable(parse_ip(peer) or peer), self.cap)
        else:
            address = peer
            peer_ip = None
            client_ip = self._client[peer] if self.client_ip and peer is not None else None

        recording = self.filter
        if path_verdict is not None or agent_verdict is not None or recording.every_request:
            reason = recording.reason(path_verdict, agent_verdict, method)
            if reason is not None:
                return reason
        visitor = None
        if self.visitor is not None:
            visitor = self.visitor(address, user_agent_text, host_text, start)
        if pathsend is not None:
            sent = _sent_file_size(pathsend, response_kept if captured is None else captured[4])
            body_size = body_size + sent if type(body_size) is int else None
        # Route and actor were found where the scope was live (the encoder), as text or None.
        if route is not None:
            route = self._route[route]
        if actor is not None:
            actor = text(actor, 200)
        if type(status) is not int or not 0 <= status < 1000:
            status = self._normal("http_status", status, integer)
        if type(duration) is not float or not 0 <= duration < math.inf:
            duration = self._normal("duration", duration, real)
        if ttfb is not None and (type(ttfb) is not float or not 0 <= ttfb < math.inf):
            ttfb = self._normal("ttfb", ttfb, real)
        if type(body_size) is not int or not 0 <= body_size <= INT_MAX:
            body_size = self._normal("body_size", body_size, size)
        if type(request_body_size) is not int or not 0 <= request_body_size <= INT_MAX:
            request_body_size = self._normal("request_body_size", request_body_size, size)
        if exception is not None and (type(exception) is not str or not exception.isascii()):
            exception = text(exception, 1000)
        return (
            start,
            method,
            path_text,
            query_text,
            user_agent_text,
            referer_text,
            language,
            status,
            content_type_text,
            client_ip,
            duration,
            body_size,
            host_text,
            scheme,
            http_version,
            request_body_size,
            ttfb,
            exception,
            1 if disconnected else 0,
            "websocket" if websocket else "http",
            peer_ip,
            route,
            actor,
            self.sample,
            visitor,
            self.instance,
        )

    def captured(self, record: tuple[Any, ...]) -> list[tuple[str, str | None, str | None]]:
        """(direction, name, value) of the headers the options ask to capture.

        Headers that hold a URL get the referer's treatment (no user:password@, sensitive query
        values redacted): capturing them must not store what the columns leave out.
        """
        cap = self.cap
        found = []
        for direction, wanted, headers in (
            ("request", self.capture_request, record[EXTRA]),
            ("response", self.capture_response, record[RESPONSE_KEPT]),
        ):
            if not wanted:
                continue
            for name, value in header_pairs(headers, wanted):
                if name in URL_HEADERS:
                    value = self.redactor.url(text(value, 1 << 30))
                found.append((direction, text(name, cap), text(value, cap)))
        return found


class Prepare:
    """The injected step of the writer: exchanges in, one :class:`~.batch.Batch` out.

    A request whose row cannot be built at all is dropped and counted (``bad_record``); a field
    that cannot be stored (an out-of-range status, a non-finite duration...) is stored as NULL
    by :class:`RowBuilder`, and the row kept.
    """

    def __init__(self, options: Any) -> None:
        self.builder = RowBuilder(options)
        self.bad_records = 0
        self.bad_captures = 0
        self.captures = CaptureBuilder(self.builder.redactor.sensitive, options.capture_responses)

    def __call__(self, records: list[Any]) -> Batch:
        """``records``: exchanges, or records encoded from them (what the writer process gets)."""
        builder = self.builder
        encode, build = builder.encode, builder._build_memo_or_plain
        captures = builder.captures
        batch = Batch()
        rows, keys, excluded = batch.rows, batch.keys, batch.excluded
        for record in records:
            try:
                if type(record) is not tuple:
                    record = encode(record)
                row = build(record)
                if type(row) is str:
                    excluded[(hour_of(record[START]), row)] += 1
                    continue
                if captures:
                    found = builder.captured(record)
                    if found:
                        batch.captured.append((len(rows), found))
                if record[CAPTURED] is not None:  # capture_requests, an HTTP request
                    captured_row = self._capture(record)
                    if captured_row is not None:
                        batch.captures.append((len(rows), captured_row))
                rows.append(row)
                keys.append(record[KEY])
            except Exception:
                self.bad_records += 1
                logger.exception("asgi-log-to-sqlite: could not record a request; skipped")
        return batch

    def _capture(self, record: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The request's ``captures`` row; None (the access-log row is still written) if it
        cannot be built."""
        try:
            _, headers, request_tap, response_tap, response_headers = record[CAPTURED]
            scope = {"raw_path": record[RAW_PATH], "path": record[PATH],
                     "query_string": record[QUERY_STRING], "headers": headers}
            return self.captures.row(scope, request_tap, response_tap, response_headers)
        except Exception:
            self.bad_captures += 1
            logger.exception("asgi-log-to-sqlite: could not capture a request; logged without")
            return None

    def stats(self) -> dict[str, Any]:
        builder = self.builder
        return {**builder.detectors.errors, "nulled_fields": dict(builder.nulled)}

