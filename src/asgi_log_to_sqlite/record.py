"""What one request becomes: the facts observed on the event loop, and the row built from them.

The middleware fills an :class:`Exchange` while the request runs (cheap attribute stores only) and
hands it to the writer. Everything that costs more than O(1) (decoding bytes, walking header
lists, capping long values, the file size of a ``pathsend``) happens in :func:`to_row`, which the
writer calls off the event loop, before anything reaches the disk.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from .privacy import Policy, parse_ip

__all__ = ["Exchange", "captured_headers", "skip_reason", "text", "to_row"]


class Exchange:
    """One HTTP request or WebSocket connection, as observed by the middleware."""

    __slots__ = (
        "body_size",
        "disconnected",
        "duration",
        "exception",
        "pathsend",
        "queued",
        "request_body_size",
        "response_headers",
        "scope",
        "start",
        "status",
        "t0",
        "ttfb",
    )

    def __init__(self, scope: dict[str, Any], start: float, t0: float) -> None:
        self.scope = scope
        self.start = start  # wall clock, unix seconds
        self.t0 = t0  # perf_counter at arrival, for durations
        self.duration: float | None = None
        self.ttfb: float | None = None
        self.status: int | None = None
        self.response_headers: Any = None
        self.body_size = 0
        self.request_body_size = 0
        self.exception: str | None = None
        self.disconnected = False
        self.pathsend: Any = None
        self.queued = False


def text(value: Any, cap: int) -> str | None:
    """Valid text for any input: lossless for valid UTF-8, escapes for bad bytes, capped."""
    if value is None:
        return None
    kind = type(value)
    if kind is bytes:  # the common case first: this runs a dozen times per row
        value = value.decode("utf-8", "backslashreplace")
    elif kind is str:
        if not value.isascii():
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8", "backslashreplace")
    elif not isinstance(value, str):
        value = str(value)
    elif not value.isascii():
        # Lone surrogates (from a server decoding with surrogateescape) cannot be stored.
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    if not value:
        return None
    return value[:cap]


REQUEST_HEADERS = {b"user-agent": 0, b"referer": 1, b"accept-language": 2, b"host": 3}


def request_headers(scope: dict[str, Any]) -> list[Any]:
    """user-agent, referer, accept-language, host: the first value of each, as bytes."""
    found: list[Any] = [None, None, None, None]
    get = REQUEST_HEADERS.get
    for item in scope.get("headers") or ():
        try:
            name, value = item
            # Servers send lower-case bytes names: skip the copy and .lower() when they did.
            plain = type(name) is bytes
            index = get(name) if plain else None
            if index is None and not (plain and name.islower()):
                index = get(bytes(name).lower())
        except Exception:
            continue
        if index is not None and found[index] is None:
            found[index] = value
    return found


def response_header(headers: Any, wanted: bytes) -> Any:
    for item in headers or ():
        try:
            name, value = item
            if bytes(name).lower() == wanted:
                return value
        except Exception:
            continue
    return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _file_size(path: Any) -> int | None:
    try:
        return os.path.getsize(path)
    except (OSError, TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=1)
def default_policy() -> Policy:
    """The privacy defaults, for callers that do not pass the middleware's own policy."""
    from .options import Options

    return Policy(Options())


def skip_reason(
    exchange: Exchange, policy: Policy | None = None, headers: list[Any] | None = None
) -> str | None:
    """Why this request is left out of the log (excluded, a health check, sampled out), or None.

    ``headers`` is :func:`request_headers` of the scope when the caller has it already.
    """
    policy = policy or default_policy()
    user_agent = (headers or request_headers(exchange.scope))[0]
    return policy.skip_reason(exchange.scope, text(user_agent, 4096))


def captured_headers(
    exchange: Exchange, cap: int, policy: Policy
) -> list[tuple[str, str | None, str | None]]:
    """(direction, name, value) of the headers the options ask to capture."""
    return [
        (direction, text(name, cap), text(value, cap))
        for direction, name, value in policy.captured(exchange.scope, exchange.response_headers)
    ]


def to_row(
    exchange: Exchange, cap: int, policy: Policy | None = None, headers: list[Any] | None = None
) -> tuple[Any, ...]:
    """The ``requests`` row, lookup columns still as text (the writer swaps in their ids).

    Privacy rules apply here, before anything reaches the writer's connection: query values and
    the referer are redacted, the client address resolved and anonymized (see privacy.py).
    """
    policy = policy or default_policy()
    scope = exchange.scope
    websocket = scope.get("type") == "websocket"
    user_agent, referer, accept_language, host = headers or request_headers(scope)
    if host is None:
        server = scope.get("server")
        if server:
            try:
                host = f"{server[0]}:{server[1]}" if server[1] is not None else str(server[0])
            except Exception:
                host = None
    path = scope.get("path")
    if not isinstance(path, str) or not path:
        path = scope.get("raw_path") or path
    query = scope.get("query_string")
    # Redact before capping: a cut could otherwise leave a secret's first characters behind.
    query_text = text(policy.query(text(query, 1 << 30)), cap)
    address, peer, resolved = policy.addresses(scope)
    user_agent_text = text(user_agent, cap)
    host_text = text(host, cap)
    visitor = policy.visitor(address, user_agent_text, host_text, exchange.start)
    client_ip = peer_ip = None
    if policy.client_ip:
        client_ip = text(policy.storable(address), cap)
        if resolved or policy.trusted:
            peer_ip = text(policy.storable(parse_ip(peer) or peer), cap)
    body_size = exchange.body_size
    if exchange.pathsend is not None:
        body_size += _file_size(exchange.pathsend) or 0
    return (
        exchange.start,
        text(scope.get("method"), 32) if not websocket else "GET",
        text(path, cap),
        ("?" + query_text)[:cap] if query_text else None,
        user_agent_text,
        text(policy.referer(text(referer, 1 << 30)), cap),
        text(accept_language, cap),
        _int_or_none(exchange.status),
        text(response_header(exchange.response_headers, b"content-type"), cap),
        client_ip,
        _float_or_none(exchange.duration),
        body_size,
        host_text,
        text(scope.get("scheme") or ("ws" if websocket else "http"), 16),
        text(scope.get("http_version"), 16),
        exchange.request_body_size,
        _float_or_none(exchange.ttfb),
        exchange.exception,
        1 if exchange.disconnected else 0,
        "websocket" if websocket else "http",
        peer_ip,
        text(policy.route(scope), cap),
        text(policy.actor(scope), 200),
        policy.sample,
        visitor,
    )
