"""What one request becomes: the facts observed on the event loop, and the row built from them.

The middleware fills an :class:`Exchange` while the request runs (cheap attribute stores only) and
hands it to the writer. Everything that costs more than O(1) (decoding bytes, walking header
lists, capping long values, the file size of a ``pathsend``) happens in :class:`RowBuilder`, which
the writer calls off the event loop, before anything reaches the disk.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from .privacy import ACTOR_SCOPE_KEYS, ROUTE_SCOPE_KEYS, Policy, parse_ip
from .raw_path import readable_path

__all__ = ["Exchange", "RowBuilder", "text", "to_row"]


class Exchange:
    """One HTTP request or WebSocket connection, as observed by the middleware."""

    __slots__ = (
        "body_size",
        "disconnected",
        "duration",
        "exception",
        "file",  # set by the writer once the row is stored: the file's identity and row id
        "pathsend",
        "queued",
        "request_body_size",
        "response_headers",
        "rowid",
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


#: Headers whose value is a URL, redacted like the referer when captured.
URL_HEADERS = frozenset({b"referer", b"location", b"content-location"})

REQUEST_HEADERS = {b"user-agent": 0, b"referer": 1, b"accept-language": 2, b"host": 3}


def request_headers(scope: dict[str, Any]) -> list[Any]:
    """user-agent, referer, accept-language, host: the first value of each, as bytes."""
    headers = scope.get("headers")
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


def _walk_request_headers(headers: Any) -> list[Any]:
    """:func:`request_headers` for anything else: odd case, odd types, broken items."""
    found: list[Any] = [None, None, None, None]
    get = REQUEST_HEADERS.get
    for item in headers:
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


def _sent_file_size(exchange: Exchange) -> int:
    """Bytes of a ``pathsend`` file: the response's Content-Length when it has one (Starlette's
    FileResponse always does), since by now the file may be gone (a temporary download removed
    by a background task); else the file's size now."""
    length = _int_or_none(response_header(exchange.response_headers, b"content-length"))
    if length is not None and length >= 0:
        return length
    return _file_size(exchange.pathsend) or 0


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


#: Distinct raw values remembered per column before a memo starts again (results stay exact).
MEMO_LIMIT = 20_000


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


class RowBuilder:
    """Turns exchanges into ``requests`` rows for one writer, remembering repeated work.

    Paths, query strings, user agents, referers, hosts and addresses repeat endlessly in a log.
    Decoding, redacting, capping and the exclusion verdicts are computed once per distinct raw
    value and then looked up: this is most of what keeps the writer thread's share of the GIL,
    and so its cost to the app, small (see docs/benchmarks.md). A request carrying a value that
    cannot be a dict key (bad input such as a ``bytearray``) is built without the memos.
    """

    def __init__(self, policy: Policy, cap: int, memo: type = _Memo) -> None:
        self.policy = policy
        self.cap = cap
        self._method = memo(lambda value: text(value, 32))
        # Header values (bytes), paths and routes (str) apart: an ASCII bytes and str of the same
        # content hash alike, and comparing them fails under ``python -bb``.
        self._text = memo(lambda value: text(value, cap))
        self._path = memo(lambda value: text(value, cap))
        self._raw_path = memo(readable_path)
        self._route = memo(lambda value: text(value, cap))
        self._short = memo(lambda value: text(value, 16))
        self._query = memo(self._query_text)
        self._referer = memo(lambda value: text(policy.referer(text(value, 1 << 30)), cap))
        self._agent = memo(self._agent_facts)
        self._path_verdict = memo(policy.path_verdict)
        self._client = memo(lambda value: text(policy.storable(value), cap))
        self._plain = RowBuilder(policy, cap, _NoMemo) if memo is _Memo else self
        # Rules that apply to every request, not only to some paths or user agents.
        self._rules = policy.methods is not None or policy.sample < 1.0
        # Scope keys a route or an actor can come from (None: a hook of the user's, always asked).
        self._route_keys = ROUTE_SCOPE_KEYS if policy.route_hook is None else None
        self._actor_keys = ACTOR_SCOPE_KEYS if policy.actor_hook is None else None

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
        redacted = text(self.policy.query(text(query, 1 << 30)), self.cap)
        return ("?" + redacted)[: self.cap] if redacted else None

    def _agent_facts(self, user_agent: Any) -> tuple[str | None, str | None]:
        """(stored text, exclusion verdict) of a user agent."""
        return text(user_agent, self.cap), self.policy.user_agent_verdict(text(user_agent, 4096))

    def build(self, exchange: Exchange) -> tuple[Any, ...] | str:
        """The ``requests`` row, or the reason (a str) this request is left out of the log.

        Lookup columns are still text (the writer swaps in their ids). Privacy rules apply here,
        before anything reaches the writer's connection: exclusions and sampling, query values
        and the referer redacted, the client address resolved and anonymized (privacy.py).
        """
        try:
            return self._build(exchange)
        except TypeError:
            if self._plain is self:
                raise
            return self._plain._build(exchange)

    def _build(self, exchange: Exchange) -> tuple[Any, ...] | str:
        # Memo lookups first: only they raise TypeError (an unhashable value), and build()
        # then starts again without memos. Sampling and the user's hooks come after them, so
        # that they run once per request.
        policy = self.policy
        scope = exchange.scope
        get = scope.get
        user_agent, referer, accept_language, host = request_headers(scope)
        user_agent_text, agent_verdict = (
            self._agent[user_agent] if user_agent is not None else (None, None)
        )
        path = get("path")
        path_verdict = self._path_verdict[path if isinstance(path, str) else ""]
        websocket = get("type") == "websocket"
        raw_path = get("raw_path")
        if not isinstance(path, str) or not path:
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
        if policy.trusted:
            address, peer, _resolved = policy.addresses(scope)
            client_ip = peer_ip = None
            if policy.client_ip:
                client_ip = text(policy.storable(address), self.cap)
                peer_ip = text(policy.storable(parse_ip(peer) or peer), self.cap)
        else:
            address = _peer_text(get("client"))
            peer_ip = None
            client_ip = self._client[address] if policy.client_ip and address is not None else None

        if path_verdict is not None or agent_verdict is not None or self._rules:
            reason = policy.combine(path_verdict, agent_verdict, scope)
            if reason is not None:
                return reason
        visitor = None
        if policy.visitor_key:
            visitor = policy.visitor(address, user_agent_text, host_text, exchange.start)
        body_size = exchange.body_size
        if exchange.pathsend is not None:
            body_size += _sent_file_size(exchange)
        # Only look for a route or an actor where the scope can hold one (most often it cannot).
        keys = scope.keys()
        route_keys, actor_keys = self._route_keys, self._actor_keys
        route = None
        if route_keys is None or not keys.isdisjoint(route_keys):
            route = policy.route(scope)
            route = self._route[route] if type(route) is str else text(route, self.cap)
        actor = None
        if actor_keys is None or not keys.isdisjoint(actor_keys):
            actor = text(policy.actor(scope), 200)
        return (
            exchange.start,
            method,
            path_text,
            query_text,
            user_agent_text,
            referer_text,
            language,
            status if type(status := exchange.status) is int else _int_or_none(status),
            content_type_text,
            client_ip,
            duration if type(duration := exchange.duration) is float else _float_or_none(duration),
            body_size,
            host_text,
            scheme,
            http_version,
            exchange.request_body_size,
            ttfb if type(ttfb := exchange.ttfb) is float else _float_or_none(ttfb),
            exchange.exception,
            1 if exchange.disconnected else 0,
            "websocket" if websocket else "http",
            peer_ip,
            route,
            actor,
            policy.sample,
            visitor,
        )

    def captured(self, exchange: Exchange) -> list[tuple[str, str | None, str | None]]:
        """(direction, name, value) of the headers the options ask to capture.

        Headers that hold a URL get the referer's treatment (no user:password@, sensitive query
        values redacted): capturing them must not store what the columns leave out.
        """
        cap, policy = self.cap, self.policy
        found = []
        for direction, name, value in policy.captured(exchange.scope, exchange.response_headers):
            if name in URL_HEADERS:
                value = policy.referer(text(value, 1 << 30))
            found.append((direction, text(name, cap), text(value, cap)))
        return found




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


def to_row(exchange: Exchange, cap: int, policy: Policy | None = None) -> tuple[Any, ...] | str:
    """One exchange's row (or why it is left out) with a fresh :class:`RowBuilder`."""
    return RowBuilder(policy or default_policy(), cap).build(exchange)
