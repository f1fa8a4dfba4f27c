"""The writer's "prepare" step: finished exchanges in, a batch of plain values out.

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
from collections.abc import Callable, Container, Iterable
from datetime import datetime, timezone
from typing import Any

from .batch import Batch, Row
from .capture import CaptureBuilder
from .exchange import Exchange
from .privacy.addresses import ClientAddresses, VisitorHash, parse_ip
from .privacy.filters import RecordingFilter
from .privacy.frameworks import Detectors
from .privacy.redaction import Redactor
from .raw_path import readable_path

__all__ = ["Prepare", "hour_of", "instance_name", "text"]

logger = logging.getLogger("asgi_log_to_sqlite")

#: Integers a sink can store (SQLite's and PostgreSQL's 64-bit range).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
#: Distinct raw values remembered per column before a memo starts again (results stay exact).
MEMO_LIMIT = 20_000
#: Headers whose value is a URL, redacted like the referer when captured.
URL_HEADERS = frozenset({b"referer", b"location", b"content-location"})
REQUEST_HEADERS = {b"user-agent": 0, b"referer": 1, b"accept-language": 2, b"host": 3}


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


# ---- headers -------------------------------------------------------------------------------------
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


def _items(headers: Any) -> Iterable[Any]:
    """The items of a header list, or none at all when it is not a list of pairs."""
    try:
        return list(headers or ())
    except Exception:
        return ()


def header_pairs(headers: Any, names: Container[bytes]) -> list[tuple[bytes, Any]]:
    """The (lower-case name, value) pairs of ``names`` in ``headers``, in order; items that are
    not pairs are skipped."""
    found = []
    for item in _items(headers):
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
    for item in _items(headers):
        try:
            name, value = item
            index = get(bytes(name).lower())
        except Exception:
            continue
        if index is not None and found[index] is None:
            found[index] = value
    return found


def response_header(headers: Any, wanted: bytes) -> Any:
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
    for item in _items(headers):
        try:
            name, value = item
            if bytes(name).lower() == wanted:
                return value
        except Exception:
            continue
    return None


def _sent_file_size(exchange: Exchange) -> int:
    """Bytes of a ``pathsend`` file: the response's Content-Length when it has one (Starlette's
    FileResponse always does), since by now the file may be gone (a temporary download removed
    by a background task); else the file's size now."""
    length = size(response_header(exchange.response_headers, b"content-length"))
    if length is not None:
        return length
    path = exchange.pathsend
    if not isinstance(path, (str, bytes, os.PathLike)):
        return 0
    try:
        return os.path.getsize(path)
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
            self.detectors = Detectors(options.route, options.actor)
            #: Values stored as NULL because no sink could store them, per column.
            self.nulled: collections.Counter[str] = collections.Counter()
        else:  # the same rules and counters as ``rules``, without its memos
            self.redactor, self.filter = rules.redactor, rules.filter
            self.addresses = rules.addresses
            self.visitor, self.detectors, self.nulled = rules.visitor, rules.detectors, rules.nulled
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

    def build(self, exchange: Exchange) -> Row | str:
        """The row, or the reason (a str) the request is left out of the log."""
        try:
            return self._build(exchange)
        except TypeError:
            if self._plain is self:
                raise
            return self._plain._build(exchange)

    def _build(self, exchange: Exchange) -> Row | str:
        # Memo lookups first: only they raise TypeError (an unhashable value), and build() then
        # starts again without memos. Sampling and the user's hooks come after them, so that
        # they run once per request.
        scope = exchange.scope
        get = scope.get
        user_agent, referer, accept_language, host = request_headers(get("headers"))
        user_agent_text, agent_verdict = (
            self._agent[user_agent] if user_agent is not None else (None, None)
        )
        path = get("path")
        path_verdict = self._path_verdict[path if type(path) is str else ""]
        websocket = get("type") == "websocket"
        raw_path = get("raw_path")
        if type(path) is not str or not path:
            path = raw_path or path
        path_text = self._path[path]
        if type(raw_path) is bytes and path_text and (b"%" in raw_path or not raw_path.isascii()):
            path_text = self._stored_path(raw_path, path, path_text)
        method = self._method[get("method")] if not websocket else "GET"
        query = get("query_string")
        query_text = self._query[query] if query else None
        referer_text = self._referer[referer] if referer is not None else None
        language = self._text[accept_language] if accept_language is not None else None
        content_type = response_header(exchange.response_headers, b"content-type")
        content_type_text = self._text[content_type] if content_type is not None else None
        if host is not None:
            host_text = self._text[host]
        else:
            host_text = text(_server_host(get("server")), self.cap)
        scheme = self._short[get("scheme") or ("ws" if websocket else "http")]
        http_version = self._short[get("http_version")]
        peer = _peer_text(get("client"))
        if self._trusted:
            address = self.addresses.resolve(peer, get("headers"))
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
            visitor = self.visitor(address, user_agent_text, host_text, exchange.start)
        body_size = exchange.body_size
        if exchange.pathsend is not None:
            body_size = body_size + _sent_file_size(exchange) if type(body_size) is int else None
        # Only look for a route or an actor where the scope can hold one (most often it cannot).
        keys = scope.keys()
        detectors = self.detectors
        route = None
        route_keys = detectors.route_keys
        if route_keys is None or not keys.isdisjoint(route_keys):
            route = detectors.route(scope)
            route = self._route[route] if type(route) is str else None
        actor = None
        actor_keys = detectors.actor_keys
        if actor_keys is None or not keys.isdisjoint(actor_keys):
            actor = text(detectors.actor(scope), 200)
        status = exchange.status
        if type(status) is not int or not 0 <= status < 1000:
            status = self._normal("http_status", status, integer)
        duration = exchange.duration
        if type(duration) is not float or not 0 <= duration < math.inf:
            duration = self._normal("duration", duration, real)
        ttfb = exchange.ttfb
        if ttfb is not None and (type(ttfb) is not float or not 0 <= ttfb < math.inf):
            ttfb = self._normal("ttfb", ttfb, real)
        if type(body_size) is not int or not 0 <= body_size <= INT_MAX:
            body_size = self._normal("body_size", body_size, size)
        request_body_size = exchange.request_body_size
        if type(request_body_size) is not int or not 0 <= request_body_size <= INT_MAX:
            request_body_size = self._normal("request_body_size", request_body_size, size)
        exception = exchange.exception
        if exception is not None and (type(exception) is not str or not exception.isascii()):
            exception = text(exception, 1000)
        return (
            exchange.start,
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
            1 if exchange.disconnected else 0,
            "websocket" if websocket else "http",
            peer_ip,
            route,
            actor,
            self.sample,
            visitor,
            self.instance,
        )

    def captured(self, exchange: Exchange) -> list[tuple[str, str | None, str | None]]:
        """(direction, name, value) of the headers the options ask to capture.

        Headers that hold a URL get the referer's treatment (no user:password@, sensitive query
        values redacted): capturing them must not store what the columns leave out.
        """
        cap = self.cap
        found = []
        for direction, wanted, headers in (
            ("request", self.capture_request, exchange.scope.get("headers")),
            ("response", self.capture_response, exchange.response_headers),
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

    def __call__(self, records: list[Exchange]) -> Batch:
        builder = self.builder
        build = builder.build
        captures = builder.captures
        batch = Batch()
        rows, keys, excluded = batch.rows, batch.keys, batch.excluded
        for exchange in records:
            try:
                row = build(exchange)
                if type(row) is str:
                    excluded[(hour_of(exchange.start), row)] += 1
                    continue
                if captures:
                    found = builder.captured(exchange)
                    if found:
                        batch.captured.append((len(rows), found))
                if exchange.capture is not None:  # capture_requests, an HTTP request
                    captured_row = self._capture(exchange)
                    if captured_row is not None:
                        batch.captures.append((len(rows), captured_row))
                rows.append(row)
                keys.append(exchange.key)
            except Exception:
                self.bad_records += 1
                logger.exception("asgi-log-to-sqlite: could not record a request; skipped")
        return batch

    def _capture(self, exchange: Exchange) -> tuple[Any, ...] | None:
        """The request's ``captures`` row; None (the access-log row is still written) if it
        cannot be built."""
        try:
            return self.captures.row(
                exchange.scope, exchange.request_tap, exchange.response_tap,
                exchange.response_headers,
            )
        except Exception:
            self.bad_captures += 1
            logger.exception("asgi-log-to-sqlite: could not capture a request; logged without")
            return None

    def stats(self) -> dict[str, Any]:
        builder = self.builder
        return {**builder.detectors.errors, "nulled_fields": dict(builder.nulled)}

