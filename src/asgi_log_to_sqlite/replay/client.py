"""Sending replayed requests: to a server over HTTP (``--target``), or to an ASGI app in this
process (``--app``, through ``httpx.ASGITransport``, with its lifespan run around the replay).

The client adds nothing of its own: httpx's default headers are removed, redirects are not
followed (a 302 is compared as a 302), and the body is read as it came off the wire (still
compressed, if it was) and hashed as it streams, like the log hashed what the app sent.
``log_to`` logs the replayed exchanges into a second log database, through the middleware
itself: around the app, or around the reverse proxy of :mod:`..proxy` in front of the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from ..proxy import ReverseProxy, new_client
from .plan import Outgoing
from .select import ReplayError

__all__ = ["Outcome", "Sender", "load_app"]

#: Seconds an ``--app``'s lifespan startup may take.
LIFESPAN_TIMEOUT = 30.0


@dataclass
class Outcome:
    """What came back: status (None when no response came), seconds until the last byte,
    the body's SHA-256 and size, or the error's name."""

    status: int | None
    seconds: float
    sha256: str | None = None
    size: int = 0
    error: str | None = None


def load_app(spec: str) -> Any:
    """``module:attribute`` (``attribute`` may be dotted), importable from the current folder."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ReplayError(f"--app {spec!r} is not module:attribute (like main:app)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ReplayError(f"--app {spec!r}: cannot import {module_name!r} ({error})") from None
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ReplayError(f"--app {spec!r}: {module_name!r} has no {attribute!r}") from None
    if not callable(found):
        raise ReplayError(f"--app {spec!r} is not an ASGI application")
    return found


class Sender:
    """``async with Sender(target=...) as sender: outcome = await sender.send(outgoing)``."""

    def __init__(
        self,
        target: str | None = None,
        app: Any = None,
        timeout: float = 30.0,
        log_to: str | None = None,
        concurrency: int = 16,
    ) -> None:
        if (target is None) == (app is None):
            raise ReplayError("give exactly one of --target URL and --app module:attribute")
        if target is not None and not target.startswith(("http://", "https://")):
            raise ReplayError(f"--target {target!r} must be a URL like http://127.0.0.1:8000")
        self.target = target.rstrip("/") if target else None
        self.app = app
        self.timeout = timeout
        self.log_to = log_to
        self.concurrency = concurrency
        self._stack = contextlib.AsyncExitStack()
        self._clients: asyncio.Queue[Any] = asyncio.Queue()
        self._log: Any = None

    def _new_client(self, transport: Any) -> Any:
        # Only what the logged request carried: no Accept-Encoding or User-Agent of httpx's own,
        # and never a cookie that a response set.
        return new_client(self.timeout, transport)

    async def __aenter__(self) -> Sender:
        import httpx

        try:
            app = self.app
            if app is None and self.log_to is not None:
                limits = httpx.Limits(max_connections=self.concurrency)
                upstream = self._new_client(httpx.AsyncHTTPTransport(limits=limits))
                await self._stack.enter_async_context(upstream)
                try:
                    app = ReverseProxy(self.target or "", client=upstream)
                except ValueError as error:
                    raise ReplayError(f"--target: {error}") from None
            if self.log_to is not None:
                from ..middleware import AsgiLogToSqlite

                try:
                    self._log = app = AsgiLogToSqlite(app, self.log_to)
                except (OSError, TypeError, ValueError) as error:
                    raise ReplayError(f"--log-to: {error}") from None
            if app is not None:
                from asgi_lifespan import LifespanManager, LifespanNotSupported

                try:
                    manager = await self._stack.enter_async_context(
                        LifespanManager(app, startup_timeout=LIFESPAN_TIMEOUT)
                    )
                    app = manager.app
                except LifespanNotSupported:
                    pass  # the app raised on the lifespan scope: it has none to run
                except TimeoutError:
                    raise ReplayError(
                        f"--app: the app's lifespan startup did not complete within "
                        f"{LIFESPAN_TIMEOUT:g} s"
                    ) from None
                transport: Any = httpx.ASGITransport(app=app, raise_app_exceptions=False)
                client = self._new_client(transport)
                for _ in range(self.concurrency):
                    self._clients.put_nowait(client)
                await self._stack.enter_async_context(client)
            else:
                # One connection per client, a client per request in flight: httpx's pool
                # looks at every connection it holds for every request it sends, which at a
                # few hundred requests a second costs more than the requests themselves.
                one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
                for _ in range(self.concurrency):
                    client = self._new_client(httpx.AsyncHTTPTransport(limits=one))
                    self._clients.put_nowait(await self._stack.enter_async_context(client))
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._stack.aclose()
        finally:
            if self._log is not None:
                await self._log.aclose(30.0)

    def url(self, outgoing: Outgoing) -> str:
        if self.target is not None:
            return self.target + outgoing.target
        recorded = outgoing.recorded
        scheme = recorded.scheme if recorded.scheme in ("http", "https") else "http"
        return f"{scheme}://{recorded.host or 'localhost'}{outgoing.target}"

    async def send(self, outgoing: Outgoing) -> Outcome:
        import httpx

        url = self.url(outgoing)
        client = await self._clients.get()
        started = time.perf_counter()
        try:
            request = client.build_request(
                outgoing.method, url, headers=outgoing.headers, content=outgoing.body or None
            )
            response = await client.send(request, stream=True)
            try:
                digest = hashlib.sha256()
                size = 0
                async for chunk in response.aiter_raw():
                    digest.update(chunk)
                    size += len(chunk)
            finally:
                await response.aclose()
        except (httpx.HTTPError, OSError, ValueError) as error:
            return Outcome(None, time.perf_counter() - started, error=type(error).__name__)
        finally:
            self._clients.put_nowait(client)
        seconds = time.perf_counter() - started
        return Outcome(response.status_code, seconds, digest.hexdigest(), size)
