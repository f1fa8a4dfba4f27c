"""A reverse proxy as an ASGI app: each request sent on to an upstream server, its answer streamed
back as it comes. ``record`` wraps it in the middleware (with capture on) to record a remote
service, and the mock's ``--fallback`` does the same for requests it has no recording of.

It adds nothing of its own and keeps nothing between requests: httpx's default headers are
removed, cookies a response sets are never sent with later requests (they belong to whichever
client got them), redirects are passed back rather than followed, and bodies travel as they came
off the wire (still compressed, if they were). Headers that belong to one connection (``Host``,
``Connection``, ``Transfer-Encoding``...) are not forwarded, nor the upstream's ``Date`` and
``Server``: the server running the proxy sets its own.

When the upstream cannot be reached (or times out) before answering, :class:`UpstreamError` is
raised: the middleware logs the exchange as failed, with no response to serve later, and
:class:`AnswerUpstreamErrors` (outside the middleware) answers the client 502 or 504.
"""

from __future__ import annotations

import contextlib
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import quote, urlsplit

from .asgi_apps import read_body

__all__ = [
    "HOP_BY_HOP",
    "SERVER_SET",
    "AnswerUpstreamErrors",
    "ReverseProxy",
    "UpstreamError",
    "check_url",
    "new_client",
]

#: Headers of one connection (RFC 9110, 7.6.1), and those the client computes itself.
HOP_BY_HOP = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive",
    "proxy-connection", "te", "trailer", "upgrade", "expect", "http2-settings",
})
#: Response headers that the server in front (uvicorn) always sets itself: passed on as well,
#: a client would get two of each.
SERVER_SET = frozenset({"date", "server"})
#: What is not passed back of a response: the server frames the body its own way.
_NOT_RETURNED = (HOP_BY_HOP - {"content-length"}) | SERVER_SET


class UpstreamError(Exception):
    """The upstream gave no answer; ``status`` is what the client gets instead (502 or 504)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


def check_url(url: str, option: str) -> str:
    """``url`` without a trailing slash, or ValueError naming ``option``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{option} {url!r} must be a URL like https://api.example.com")
    if parts.query or parts.fragment:
        raise ValueError(f"{option} {url!r} must not have a query or a fragment")
    return url.rstrip("/")


def new_client(timeout: float, transport: Any = None) -> Any:
    """An httpx client that adds nothing and keeps nothing: no default headers of its own
    (User-Agent, Accept-Encoding), no cookies kept from responses, redirects not followed."""
    import httpx

    client = httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
        cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
    )
    for name in list(client.headers):
        del client.headers[name]
    return client


class ReverseProxy:
    """``ReverseProxy("https://api.example.com")``: an ASGI app forwarding every HTTP request.

    The upstream URL may have a path (``https://host/v1``): request paths are appended to it.
    Its httpx client is made at lifespan startup (or with the first request, where no lifespan
    runs) and closed at shutdown or by :meth:`aclose`; a ``client`` given (set up like
    :meth:`new_client`'s) is used instead, and left for its owner to close.
    """

    def __init__(self, upstream: str, *, timeout: float = 60.0, client: Any = None) -> None:
        self.upstream = check_url(upstream, "upstream")
        self.timeout = timeout
        self._client: Any = client
        self._owns_client = client is None

    def _new_client(self) -> Any:
        return new_client(self.timeout)

    async def aclose(self) -> None:
        if not self._owns_client:
            return
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1003})  # not forwarded

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._client = self._client or self._new_client()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Any, receive: Any, send: Any) -> None:
        import httpx

        body = await read_body(receive)
        if body is None:
            return
        target = scope.get("raw_path") or quote(scope["path"]).encode("ascii")
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        headers = [
            (name, value) for name, value in scope.get("headers", ())
            if name.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        if self._client is None:
            self._client = self._new_client()
        client = self._client
        try:
            request = client.build_request(
                scope["method"], self.upstream + target.decode("latin-1"), headers=headers,
                content=body,
            )
            response = await client.send(request, stream=True)
        except httpx.TimeoutException as error:
            raise UpstreamError(
                f"{self.upstream} did not answer in time ({error!r})", 504
            ) from None
        except (httpx.HTTPError, OSError, ValueError) as error:
            raise UpstreamError(f"{self.upstream} gave no answer ({error!r})") from None
        try:
            await send({
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [
                    (name, value) for name, value in response.headers.raw
                    if name.decode("latin-1").lower() not in _NOT_RETURNED
                ],
            })
            try:
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.HTTPError as error:  # cut short: the client gets a cut-short body
                raise UpstreamError(f"{self.upstream} stopped answering ({error!r})") from None
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()


class AnswerUpstreamErrors:
    """Outermost: answers an :class:`UpstreamError` with its status and a one-line reason
    (a response already started cannot be changed: the connection is then just closed)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = False

        async def watched_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except UpstreamError as error:
            if started or scope["type"] != "http":
                return
            body = f"{error}\n".encode()
            with contextlib.suppress(OSError):
                await send({"type": "http.response.start", "status": error.status,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})

