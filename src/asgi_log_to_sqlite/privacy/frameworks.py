"""Who made a request and which route served it, as the framework wrote them into the scope
(Starlette/FastAPI routes and mounts, Litestar's ``path_template``, ``scope["user"]`` and
``scope["auth"]``), or as the user's own callables say.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

__all__ = [
    "ACTOR_SCOPE_KEYS",
    "ROUTE_SCOPE_KEYS",
    "SCOPE_ACTOR_KEY",
    "SCOPE_ROUTE_KEY",
    "Detectors",
    "framework_actor",
    "framework_route",
]

logger = logging.getLogger("asgi_log_to_sqlite")

SCOPE_ROUTE_KEY = "asgi_log_to_sqlite.route"
SCOPE_ACTOR_KEY = "asgi_log_to_sqlite.actor"

def _mounted_template(router: Any, path: str, target: Any, depth: int = 0) -> str | None:
    """Walk Starlette mounts from the outermost router to ``target``, joining their templates."""
    if depth > 8:
        return None
    for route in getattr(router, "routes", None) or ():
        if route is target:
            return getattr(route, "path_format", None)
        regex = getattr(route, "path_regex", None)
        if regex is None or not getattr(route, "routes", None):
            continue
        match = regex.match(path)
        if not match:
            continue
        rest = "/" + (match.groupdict().get("path") or "")
        found = _mounted_template(route, rest, target, depth + 1)
        if found is not None:
            mount_format = getattr(route, "path_format", "")
            return mount_format.removesuffix("/{path}") + found
    return None


def framework_route(scope: Any) -> str | None:
    """The route template the framework wrote into the scope, or None."""
    explicit = scope.get(SCOPE_ROUTE_KEY)
    if isinstance(explicit, str):
        return explicit
    route = scope.get("route")
    if route is not None:
        # FastAPI 0.165+ includes routers lazily: the route keeps its own path, and the one
        # with every include_router() prefix is in its effective route context.
        fastapi = scope.get("fastapi")
        context = fastapi.get("effective_route_context") if isinstance(fastapi, dict) else None
        effective = getattr(context, "path", None)
        template = effective if isinstance(effective, str) and effective else (
            getattr(route, "path_format", None) or getattr(route, "path", None)
        )
        if not isinstance(template, str):
            return None
        root_path = scope.get("root_path") or ""
        app_root = scope.get("app_root_path")
        if isinstance(app_root, str) and root_path != app_root and root_path.startswith(app_root):
            # Mounted: the route's template is relative to its mount point.
            path = scope.get("path") or ""
            found = None
            if template is not effective:
                found = _mounted_template(scope.get("router"), path[len(app_root) :] or "/", route)
            return found if found is not None else root_path[len(app_root) :] + template
        return template
    template = scope.get("path_template")  # Litestar
    return template if isinstance(template, str) else None


_USER_ATTRIBUTES = ("identity", "username", "pk", "id", "display_name")
_DICT_KEYS = ("id", "sub", "username", "user_id", "name")


def _id_of(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict):
        for key in _DICT_KEYS:
            found = value.get(key)
            if isinstance(found, (str, int)) and not isinstance(found, bool) and found != "":
                return str(found)
        return None
    wrapped = getattr(value, "_wrapped", None)
    if type(wrapped) is object:
        return None  # a lazy user nobody looked at: resolving it would query the app's database
    authenticated = getattr(value, "is_authenticated", True)
    if callable(authenticated):
        authenticated = authenticated()
    if authenticated is False:
        return None
    for attribute in _USER_ATTRIBUTES:
        try:
            found = getattr(value, attribute, None)
        except NotImplementedError:
            continue
        if isinstance(found, (str, int)) and not isinstance(found, bool) and found != "":
            return str(found)
    return None


_ACTOR_KEYS = (SCOPE_ACTOR_KEY, "user", "auth", "actor")
#: The scope keys :func:`framework_actor` and :func:`framework_route` read.
ACTOR_SCOPE_KEYS = frozenset(_ACTOR_KEYS)
ROUTE_SCOPE_KEYS = frozenset((SCOPE_ROUTE_KEY, "route", "path_template"))


def framework_actor(scope: Any) -> str | None:
    """Who made the request, as a short id: ``scope["user"]``, ``scope["auth"]``, an actor."""
    for key in _ACTOR_KEYS:
        value = scope.get(key)
        if value is not None:
            found = _id_of(value)
            if found:
                return found
    return None



class Detectors:
    """The ``route`` and ``actor`` options of one middleware: detection from the scope (None),
    never (False), or the user's callable. A callable that raises, or answers something that is
    not text, leaves that field empty and is counted; the row is kept."""

    def __init__(self, route: Any, actor: Any) -> None:
        self.route_hook = route
        self.actor_hook = actor
        #: Scope keys a route or an actor can come from (None: a hook of the user's, always asked).
        self.route_keys = ROUTE_SCOPE_KEYS if route is None else None
        self.actor_keys = ACTOR_SCOPE_KEYS if actor is None else None
        self.errors = {"actor_errors": 0, "route_errors": 0}
        self._warned: set[str] = set()

    def _call(self, kind: str, hook: Callable[[Any], Any], scope: Any) -> Any:
        try:
            result = hook(scope)
            if result is None or type(result) is str:  # the usual answers, checked cheaply
                return result
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise TypeError(f"the {kind} callable returned an awaitable; it must not be async")
            return result
        except Exception as error:
            self.failed(kind, error)
            return None

    def failed(self, kind: str, error: Exception) -> None:
        self.errors[f"{kind}_errors"] += 1
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(
                "asgi-log-to-sqlite: the %s option raised; recorded without it",
                kind,
                exc_info=error,
            )

    def route(self, scope: Any) -> Any:
        hook = self.route_hook
        if hook is False:
            return None
        if hook is None:
            try:
                return framework_route(scope)
            except Exception as error:
                self.failed("route", error)
                return None
        found = self._call("route", hook, scope)
        if found is None or type(found) is str:
            return found
        self.failed("route", TypeError(f"the route callable returned {type(found).__name__}"))
        return None

    def actor(self, scope: Any) -> Any:
        hook = self.actor_hook
        if hook is False:
            return None
        if hook is None:
            try:
                return framework_actor(scope)
            except Exception as error:
                self.failed("actor", error)
                return None
        try:
            return _id_of(self._call("actor", hook, scope))
        except Exception as error:
            self.failed("actor", error)
            return None
