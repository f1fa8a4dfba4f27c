"""Exchanges as plain tuples: the records row building reads, in every writer strategy.

:class:`Encoder` keeps what row building needs of an exchange, as plain values that pickle
quickly (the four request headers a row stores, not the whole header list, so nothing secret
crosses the pipe that the row would not hold), and resolves what only the live scope knows
(route template, actor) on the spot. The writer process gets these records through its pipe and
builds rows straight from them; the other strategies encode on the writer's side, just before
building, so that there is one row-building path (:mod:`asgi_log_to_sqlite.prepare`) for all.
"""

from __future__ import annotations

from typing import Any

from .exchange import Exchange
from .headers import REQUEST_HEADERS, header_items, header_pairs, header_value, request_headers
from .privacy.frameworks import Detectors

__all__ = ["FIELDS", "Encoder"]

#: A record's fields, in order. ``extra``: (lower-case name, value) of the request headers kept
#: beyond the four a row stores (captured, the proxies' forwarding header); ``response_kept``:
#: the captured response headers, and Content-Length for a ``pathsend`` response; ``captured``:
#: what ``capture_requests`` keeps (mark, every request header, body taps, every response
#: header), else None.
FIELDS = (
    "key", "start", "duration", "ttfb", "status", "body_size", "request_body_size", "exception",
    "disconnected", "type", "method", "path", "raw_path", "query_string", "user_agent",
    "referer", "accept_language", "host", "extra", "client", "server", "scheme", "http_version",
    "content_type", "response_kept", "pathsend", "route", "actor", "captured",
)
KEY, START, PATH, RAW_PATH, QUERY_STRING, EXTRA, RESPONSE_KEPT, CAPTURED = (
    FIELDS.index(name) for name in
    ("key", "start", "path", "raw_path", "query_string", "extra", "response_kept", "captured")
)

#: The request headers a row stores (their first values travel as fields of their own).
ROW_HEADERS = frozenset(REQUEST_HEADERS)


class Encoder:
    """Turns exchanges into tuples on the event loop; O(1) per request apart from walking the
    request's headers once."""

    def __init__(self, options: Any) -> None:
        self.detectors = detectors = Detectors(options.route, options.actor)
        #: The scope keys either detection reads (None: a hook of the user's, always asked).
        self.detect_keys = (
            None if detectors.route_keys is None or detectors.actor_keys is None
            else detectors.route_keys | detectors.actor_keys
        )
        forwarded = options.forwarded_header.encode("latin-1") if options.trusted_proxies else b""
        captured = {h.encode("latin-1") for h in options.capture_request_headers}
        #: Request headers kept beyond the four a row stores (lower-case names).
        self.extra = frozenset(captured | ({forwarded} if forwarded else set()))
        self.wanted = self.extra | ROW_HEADERS
        #: Where one of the four is also captured, every wanted pair travels, in order.
        self.in_order = not self.extra.isdisjoint(ROW_HEADERS)
        self.response_extra = frozenset(
            h.encode("latin-1") for h in options.capture_response_headers
        )
        #: The response headers a record keeps: the captured ones, and Content-Length (the size
        #: of a ``pathsend`` file that may be gone by the time the row is built).
        self.response_kept = self.response_extra | {b"content-length"}

    def __call__(self, exchange: Exchange) -> tuple[Any, ...]:
        scope = exchange.scope
        get = scope.get
        headers = get("headers")
        # The first value of each header a row stores, as plain fields (a list of pairs would
        # cost the loop, and the pickle, a dozen objects a request), found as the row builder
        # finds them in a live scope.
        if self.in_order:
            user_agent = referer = language = host = None
        else:
            user_agent, referer, language, host = request_headers(headers)
        extra = None
        if self.extra:
            extra = header_pairs(headers, self.wanted if self.in_order else self.extra) or None
        route = actor = None
        if self.detect_keys is None or not scope.keys().isdisjoint(self.detect_keys):
            keys = scope.keys()
            detectors = self.detectors
            if detectors.route_keys is None or not keys.isdisjoint(detectors.route_keys):
                route = detectors.route(scope)
            if detectors.actor_keys is None or not keys.isdisjoint(detectors.actor_keys):
                actor = detectors.actor(scope)
            if actor is not None and type(actor) is not str:
                # A str subclass (a hook's own type) travels as plain text, which any process
                # can unpickle (``str.__str__`` gives a plain str whatever the subclass
                # overrides); anything else is not an id.
                actor = str.__str__(actor) if isinstance(actor, str) else None
        response = exchange.response_headers
        content_type = header_value(response, b"content-type")
        response_kept = None
        if self.response_extra or exchange.pathsend is not None:
            # An item that is not a pair of bytes loses only itself.
            response_kept = header_pairs(response, self.response_kept) or None
        captured = None
        if exchange.capture is not None:
            # Capture stores every header (secret ones as placeholders, in the writer) and
            # what the taps kept of the bodies.
            request_tap, response_tap = exchange.request_tap, exchange.response_tap
            captured = (
                exchange.capture,
                list(header_items(headers)),
                request_tap.freeze() if request_tap is not None else None,
                response_tap.freeze() if response_tap is not None else None,
                list(header_items(response)),
            )
        return (
            exchange.key,
            exchange.start,
            exchange.duration,
            exchange.ttfb,
            exchange.status,
            exchange.body_size,
            exchange.request_body_size,
            exchange.exception,
            exchange.disconnected,
            get("type"),
            get("method"),
            get("path"),
            # The row builder decides whether the path needs it (escapes that decoding loses,
            # bytes the server could not decode: raw_path.py); deciding here costs the loop more
            # than pickling it.
            get("raw_path"),
            get("query_string"),
            user_agent,
            referer,
            language,
            host,
            extra,
            get("client"),
            get("server") if host is None and header_value(extra, b"host") is None else None,
            get("scheme"),
            get("http_version"),
            content_type,
            response_kept,
            exchange.pathsend,
            route if route is None or type(route) is str else None,
            actor,
            captured,
        )

