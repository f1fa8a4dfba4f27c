"""What may be recorded about a request, and in what form: privacy by default.

A request log is personal data and a store of secrets waiting to leak. This module decides, for
each finished request, whether it is recorded at all (exclusions, health checks, sampling) and
turns the raw facts into storable ones: query values with sensitive keys replaced by
:data:`REDACTED`, client addresses resolved through trusted proxies and truncated, an optional
daily-salted visitor hash, the route template and the actor. All of it runs in the writer thread,
before a row is built, so that nothing which should not be stored ever reaches SQLite (and so its
``-wal`` or ``-journal`` files); the event loop does none of this work.

The option validators live here too (:mod:`.options` declares the fields): every pattern is
compiled and every network parsed once, when the middleware is built, with errors naming the
option.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import inspect
import ipaddress
import logging
import random
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "DEFAULT_REDACT_QUERY",
    "HEALTH_CHECK_PATHS",
    "HEALTH_CHECK_USER_AGENTS",
    "REDACTED",
    "SECRET_HEADERS",
    "Policy",
    "anonymize",
    "redact_query",
]

logger = logging.getLogger("asgi_log_to_sqlite")

#: What a redacted query value becomes.
REDACTED = "REDACTED"

#: Query keys whose values are never stored: exact names and globs, matched against the key
#: decoded and lower-cased. ``redact_query=[...]`` adds to it, ``keep_query=[...]`` exempts keys.
DEFAULT_REDACT_QUERY: tuple[str, ...] = (
    # tokens and sessions
    "*token*",
    "jwt",
    "auth",
    "authorization",
    "*session*",
    "sid",
    "*csrf*",
    "*xsrf*",
    "ticket",
    "otp",
    # keys and secrets
    "key",
    "*_key",
    "*-key",
    "*apikey*",
    "*api_key*",
    "*api-key*",
    "*secret*",
    "*password*",
    "*passwd*",
    "*passphrase*",
    "pwd",
    "pass",
    "*credential*",
    # signatures: Azure SAS ``sig``, Adyen ``merchantSig``; ``sign`` (Yandex, Alipay, WeChat
    # Pay ``sign``/``paySign``, PayPal ``verify_sign``); payment checksums (Paytm)
    "*sig",
    "*signature*",
    "sign",
    "*_sign",
    "*-sign",
    "paysign",
    "*checksum*",
    "hmac",
    # OAuth 2.0 / OpenID Connect authorization responses
    "code",
    "state",
    "nonce",
    "code_verifier",
    # cloud-storage signed URLs (AWS S3, Alibaba OSS, Google Cloud Storage, Azure SAS)
    "x-amz-*",
    "*accesskey*",
    "x-goog-*",
    "googleaccessid",
)

#: Header names that can never be captured without ``allow_secret_headers``; globs, lower-case.
SECRET_HEADERS: tuple[str, ...] = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "set-cookie2",
    "*token*",
    "*secret*",
    "*password*",
    "*api-key*",
    "*apikey*",
    "*api_key*",
    "*-key",
    "*session*",
    "*signature*",
    "*credential*",
    "*csrf*",
    "*xsrf*",
    "x-auth*",
    "*-auth",
    "x-amz-security-token",
    "x-goog-iap-jwt-assertion",
)

#: Paths of health checks and probes, excluded by default (``exclude_health_checks``).
HEALTH_CHECK_PATHS: tuple[str, ...] = (
    "/health",
    "/healthz",
    "/healthcheck",
    "/health-check",
    "/_health",
    "/ping",
    "/ready",
    "/readyz",
    "/readiness",
    "/live",
    "/livez",
    "/liveness",
)

#: User agents of health checkers and probes (case-insensitive substrings).
HEALTH_CHECK_USER_AGENTS: tuple[str, ...] = (
    "kube-probe/",
    "elb-healthchecker/",
    "googlehc/",
    "amazon-route53-health-check-service",
    "consul health check",
    "envoy/hc",
    "docker-healthcheck",
)

#: Default truncation for ``anonymize_ip=True``: IPv4 keeps 24 bits (the last octet is zeroed),
#: IPv6 keeps 48 bits (the last 80 are zeroed), as common web analytics do.
DEFAULT_ANONYMIZE = (24, 48)

SCOPE_ROUTE_KEY = "asgi_log_to_sqlite.route"
SCOPE_ACTOR_KEY = "asgi_log_to_sqlite.actor"

_GLOB_CHARS = frozenset("*?[")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


# ---- patterns ----------------------------------------------------------------------------------
class Pattern:
    """One configured pattern; ``kind``: exact, prefix, substring, glob or regex."""

    __slots__ = ("_test", "kind", "source")

    def __init__(self, kind: str, source: str, test: Callable[[str], bool]) -> None:
        self.kind = kind
        self.source = source
        self._test = test

    def __call__(self, value: str) -> bool:
        return self._test(value)

    def __repr__(self) -> str:
        return f"Pattern({self.kind}, {self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and (self.kind, self.source) == (other.kind, other.source)

    def __hash__(self) -> int:
        return hash((self.kind, self.source))


def _as_list(name: str, value: Any, what: str) -> list[Any]:
    if isinstance(value, (str, bytes, re.Pattern)) or not isinstance(value, Iterable):
        raise TypeError(f"option {name!r} must be a list of {what}, got {value!r}")
    return list(value)


def _regex(name: str, source: str | re.Pattern[str], flags: int = 0) -> re.Pattern[str]:
    if isinstance(source, re.Pattern):
        if not isinstance(source.pattern, str):
            raise TypeError(f"option {name!r}: regular expressions must be str patterns")
        return source
    try:
        return re.compile(source, flags)
    except re.error as error:
        raise ValueError(f"option {name!r}: bad regular expression {source!r}: {error}") from None


def _pattern(name: str, item: Any, plain: str, fold: bool) -> Pattern:
    """A regex (compiled, ``re:...``, or anchored ``^...``/``...$``; searched), a glob
    (contains ``*``, ``?`` or ``[``), or else ``plain`` matching (exact, prefix or substring)."""
    flags = re.IGNORECASE if fold else 0
    if isinstance(item, re.Pattern):
        regex = _regex(name, item)
        return Pattern("regex", regex.pattern, lambda v, r=regex: r.search(v) is not None)
    if not isinstance(item, str):
        raise TypeError(f"option {name!r} must hold strings or compiled regexes, got {item!r}")
    if not item:
        raise ValueError(f"option {name!r} must not hold an empty pattern")
    if item.startswith(("re:", "^")) or (item.endswith("$") and len(item) > 1):
        source = item.removeprefix("re:")
        regex = _regex(name, source, flags)
        return Pattern("regex", source, lambda v, r=regex: r.search(v) is not None)
    if _GLOB_CHARS & set(item):
        regex = re.compile(fnmatch.translate(item), flags)
        return Pattern("glob", item, lambda v, r=regex: r.match(v) is not None)
    if plain == "prefix":
        base = item.rstrip("/")
        if not base:
            raise ValueError(f"option {name!r}: the prefix {item!r} would exclude every request")
        return Pattern("prefix", item, lambda v, b=base: v == b or v.startswith(b + "/"))
    if plain == "substring":
        low = item.lower()
        return Pattern("substring", item, lambda v, s=low: s in v.lower())
    exact = item.lower() if fold else item
    if fold:
        return Pattern("exact", item, lambda v, e=exact: v.lower() == e)
    return Pattern("exact", item, lambda v, e=exact: v == e)


# ---- option validators (called by options.Options at construction) ----------------------------
def query_keys(name: str, value: Any) -> tuple[Pattern, ...]:
    """Query keys: exact names (case-insensitive), globs, or regexes (``re:...``)."""
    return tuple(_pattern(name, item, "exact", True) for item in _as_list(name, value, "keys"))


def path_patterns(name: str, value: Any) -> tuple[Pattern, ...]:
    """Paths: prefixes (``/static`` matches ``/static`` and ``/static/...``), globs, regexes."""
    items = _as_list(name, value, "path prefixes, globs or regexes")
    for item in items:
        if (
            isinstance(item, str)
            and not item.startswith(("/", "re:", "^"))
            and not (_GLOB_CHARS & set(item))
        ):
            raise ValueError(f"option {name!r}: path prefix {item!r} must start with '/'")
    return tuple(_pattern(name, item, "prefix", False) for item in items)


def user_agent_patterns(name: str, value: Any) -> tuple[Pattern, ...]:
    """User agents: case-insensitive substrings, globs, or regexes."""
    items = _as_list(name, value, "user-agent substrings, globs or regexes")
    return tuple(_pattern(name, item, "substring", True) for item in items)


def header_names(name: str, value: Any) -> tuple[str, ...]:
    """Header names, lower-cased, each a valid HTTP token; duplicates removed."""
    names: list[str] = []
    for item in _as_list(name, value, "header names"):
        if not isinstance(item, str):
            raise TypeError(f"option {name!r} must hold header names (str), got {item!r}")
        if not _TOKEN.match(item):
            raise ValueError(f"option {name!r}: {item!r} is not a valid header name")
        if item.lower() not in names:
            names.append(item.lower())
    return tuple(names)


def is_secret_header(header: str) -> bool:
    header = header.lower()
    return any(fnmatch.fnmatchcase(header, pattern) for pattern in SECRET_HEADERS)


def networks(name: str, value: Any) -> tuple[Any, ...]:
    """Trusted proxies: addresses or CIDR networks (``10.0.0.0/8``, ``::1``)."""
    result = []
    for item in _as_list(name, value, "addresses or CIDR networks"):
        if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            result.append(item)
            continue
        if isinstance(item, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            item = str(item)
        if not isinstance(item, str):
            raise TypeError(f"option {name!r} must hold addresses or networks, got {item!r}")
        try:
            result.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"option {name!r}: {item!r} is not an IP address or network") from None
    return tuple(result)


def forwarded_header(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"option {name!r} must be a header name, got {value!r}")
    lowered = value.lower()
    if lowered not in ("x-forwarded-for", "forwarded"):
        raise ValueError(f"option {name!r} must be 'x-forwarded-for' or 'forwarded', got {value!r}")
    return lowered


def _prefix(name: str, value: Any, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"option {name!r}: prefix lengths must be integers, got {value!r}")
    if not 0 <= value <= bits:
        raise ValueError(f"option {name!r}: prefix length {value} is not between 0 and {bits}")
    return value


def anonymize_setting(name: str, value: Any) -> tuple[int, int] | None:
    """False/None, True (24 and 48 bits kept), an IPv4 prefix length, or (IPv4, IPv6) lengths."""
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_ANONYMIZE
    if isinstance(value, int):
        return (_prefix(name, value, 32), DEFAULT_ANONYMIZE[1])
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (_prefix(name, value[0], 32), _prefix(name, value[1], 128))
    raise TypeError(
        f"option {name!r} must be True, False, an IPv4 prefix length or a pair of "
        f"(IPv4, IPv6) prefix lengths, got {value!r}"
    )


def methods_setting(name: str, value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    items = _as_list(name, value, "HTTP methods")
    if not items:
        raise ValueError(f"option {name!r} must name at least one method (None records all)")
    for item in items:
        if not isinstance(item, str) or not _TOKEN.match(item):
            raise ValueError(f"option {name!r}: {item!r} is not an HTTP method")
    return frozenset(item.upper() for item in items)


def sample_setting(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"option {name!r} must be a number between 0 and 1, got {value!r}")
    if not 0 < value <= 1:  # also rejects NaN
        raise ValueError(f"option {name!r} must be above 0 and at most 1, got {value}")
    return float(value)


def hook_setting(name: str, value: Any) -> Any:
    """None (detect automatically), False (never record), or a callable taking the scope."""
    if value is None or value is False:
        return value
    if callable(value):
        if inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(
            getattr(value, "__call__", None)  # noqa: B004 (an object whose __call__ is async)
        ):
            raise TypeError(
                f"option {name!r} must be a plain (not async) callable: it runs in the writer "
                "thread, after the response, with the request's scope"
            )
        return value
    raise TypeError(f"option {name!r} must be a callable(scope), None or False, got {value!r}")


def visitor_setting(name: str, value: Any) -> bytes | bool:
    """False, True (a random key per process), or a shared secret of at least 16 characters."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes):
        raise TypeError(f"option {name!r} must be True, False or a secret string, got {value!r}")
    if len(value) < 16:
        raise ValueError(f"option {name!r}: a secret must be at least 16 characters long")
    return value


def check_options(options: Any) -> None:
    """Checks across options: a secret header is captured only when explicitly allowed."""
    allowed = set(options.allow_secret_headers)
    for option in ("capture_request_headers", "capture_response_headers"):
        for header in getattr(options, option):
            if is_secret_header(header) and header not in allowed:
                raise ValueError(
                    f"option {option!r}: {header!r} may carry secrets and is never recorded; "
                    f"to record it anyway also pass allow_secret_headers=[{header!r}]"
                )
    captured = set(options.capture_request_headers) | set(options.capture_response_headers)
    unused = sorted(allowed - captured)
    if unused:
        raise ValueError(
            f"option 'allow_secret_headers': {', '.join(map(repr, unused))} is not captured by "
            "capture_request_headers or capture_response_headers"
        )


# ---- query strings -------------------------------------------------------------------------------
_SEPARATORS = re.compile(r"([&;])")
_BRACKETS = re.compile(r"[\[\]]+")
_AUTHORITY_END = re.compile(r"[/?#]")


def redact_query(query: str, sensitive: Callable[[str], bool]) -> str:
    """Replace the values of sensitive keys by :data:`REDACTED`; keep keys, order, the rest.

    Both ``&`` and ``;`` separate parameters: some servers split on either, so a value hidden
    behind a ``;`` must not escape redaction.
    """
    parts = _SEPARATORS.split(query)
    changed = False
    for index in range(0, len(parts), 2):
        part = parts[index]
        key, equals, value = part.partition("=")
        if not equals or not value:
            continue
        decoded = key
        if "%" in key or "+" in key:
            try:
                decoded = unquote_plus(key, errors="replace")
            except Exception:
                decoded = key
        name = decoded.strip().lower()
        # Bracketed names (``key[]``, ``user[password]``) are sensitive if any part is.
        if sensitive(name) or ("[" in name and any(map(sensitive, _BRACKETS.split(name)))):
            parts[index] = key + "=" + REDACTED
            changed = True
    return "".join(parts) if changed else query


# ---- addresses -----------------------------------------------------------------------------------
def parse_ip(value: Any) -> Any:
    """An ``ipaddress`` address from text such as ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``."""
    if not isinstance(value, str):
        return None
    text = value.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # IPv4 with a port
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def format_ip(address: Any) -> str:
    """Text for an address; IPv4-mapped IPv6 always as ``::ffff:1.2.3.4`` (any Python version)."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        return f"::ffff:{mapped}"
    return str(address)


def anonymize(address: Any, prefixes: tuple[int, int]) -> str:
    """The address with its host bits zeroed; IPv4-mapped IPv6 uses the IPv4 prefix."""
    v4, v6 = prefixes
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            network = ipaddress.IPv4Network(f"{mapped}/{v4}", strict=False)
            return f"::ffff:{network.network_address}"
        plain = ipaddress.IPv6Address(int(address))  # drops a zone id such as %eth0
        return str(ipaddress.IPv6Network(f"{plain}/{v6}", strict=False).network_address)
    return str(ipaddress.IPv4Network(f"{address}/{v4}", strict=False).network_address)


def _forwarded_for(value: str) -> list[str]:
    """The ``for=`` values of an RFC 7239 ``Forwarded`` header, in order."""
    hops = []
    for element in value.split(","):
        found = ""
        for pair in element.split(";"):
            key, _, val = pair.partition("=")
            if key.strip().lower() == "for":
                found = val.strip()
        hops.append(found)
    return hops


# ---- routes and actors ---------------------------------------------------------------------------
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


# ---- the policy ----------------------------------------------------------------------------------
class Policy:
    """The privacy options, compiled, applied by the writer thread to each finished request."""

    def __init__(self, options: Any) -> None:
        self.options = options
        keep = options.keep_query
        defaults = query_keys("redact_query", DEFAULT_REDACT_QUERY)
        extra = options.redact_query
        self._query_patterns = defaults + extra
        self._keep = keep
        self._verdicts: dict[str, bool] = {}

        self.exclude = options.exclude
        self.exclude_user_agents = options.exclude_user_agents
        self.health = options.exclude_health_checks
        self._health_paths = frozenset(HEALTH_CHECK_PATHS)
        self.methods = options.methods
        self.sample = options.sample
        self.client_ip = options.client_ip
        self.trusted = options.trusted_proxies
        self.forwarded = options.forwarded_header.encode("latin-1")
        self.anonymize = options.anonymize_ip
        self.visitor_key = options.visitor_hash
        self.route_hook = options.route
        self.actor_hook = options.actor
        self.capture_request = tuple(h.encode("latin-1") for h in options.capture_request_headers)
        self.capture_response = tuple(h.encode("latin-1") for h in options.capture_response_headers)
        self.captures = bool(self.capture_request or self.capture_response)
        self.errors = {"actor_errors": 0, "route_errors": 0}
        self._random = random.Random()
        self._salts: dict[str, bytes] = {}
        self._salt_lock = threading.Lock()
        self._warned: set[str] = set()

    # ---- what is recorded at all -------------------------------------------------------------
    def path_verdict(self, path: str) -> str | None:
        """"health_check", "excluded_path" or None: the same for every request to ``path``."""
        if self.health and (path.rstrip("/") in self._health_paths or path in self._health_paths):
            return "health_check"
        if any(pattern(path) for pattern in self.exclude):
            return "excluded_path"
        return None

    def user_agent_verdict(self, user_agent: str | None) -> str | None:
        """"health_check", "excluded_user_agent" or None, for a user agent."""
        if not user_agent:
            return None
        if self.health:
            lowered = user_agent.lower()
            if any(probe in lowered for probe in HEALTH_CHECK_USER_AGENTS):
                return "health_check"
        if any(pattern(user_agent) for pattern in self.exclude_user_agents):
            return "excluded_user_agent"
        return None

    def combine(self, path_verdict: str | None, agent_verdict: str | None, scope: Any) -> str | None:
        """Why this request is not recorded (counted per hour under that name), or None: the
        path's and the user agent's verdicts in their order of precedence, then the method rule
        and sampling."""
        if path_verdict == "health_check" or agent_verdict == "health_check":
            return "health_check"
        if self.methods is not None:
            method = scope.get("method") if scope.get("type") != "websocket" else "GET"
            if not isinstance(method, str) or method.upper() not in self.methods:
                return "method"
        if path_verdict is not None:
            return path_verdict
        if agent_verdict is not None:
            return agent_verdict
        if self.sample < 1.0 and self._random.random() >= self.sample:
            return "sampled_out"
        return None

    # ---- secrets -----------------------------------------------------------------------------
    def _sensitive(self, key: str) -> bool:
        # Keys repeat endlessly (page, q, sort...): remember each verdict, in bounded memory.
        verdict = self._verdicts.get(key)
        if verdict is None:
            if any(pattern(key) for pattern in self._keep):
                verdict = False
            else:
                verdict = any(pattern(key) for pattern in self._query_patterns)
            if len(self._verdicts) >= 10_000:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def query(self, query: str | None) -> str | None:
        if not query or "=" not in query:
            return query
        return redact_query(query, self._sensitive)

    def referer(self, referer: str | None) -> str | None:
        """The referer without user:password@ and with its query redacted like ours."""
        if not referer:
            return referer
        head, hash_, fragment = referer.partition("#")
        scheme, sep, rest = head.partition("://")
        if sep:
            end = _AUTHORITY_END.search(rest)
            cut = end.start() if end else len(rest)
            authority = rest[:cut]
            if "@" in authority:
                head = scheme + sep + authority.rsplit("@", 1)[1] + rest[cut:]
        base, question, query = head.partition("?")
        if question:
            head = base + "?" + redact_query(query, self._sensitive)
        if hash_:
            head += "#" + self._fragment(fragment)
        return head

    def _fragment(self, fragment: str) -> str:
        """A page anchor (``#install``) as it is; key=value pairs (the OAuth implicit flow's
        ``#access_token=...``) and a hash route's query (``#/cb?token=...``) redacted like a
        query string."""
        route, question, query = fragment.partition("?")
        if question:
            return route + "?" + redact_query(query, self._sensitive)
        if "=" in fragment:
            return redact_query(fragment, self._sensitive)
        return fragment

    # ---- addresses ---------------------------------------------------------------------------
    def _trusted(self, address: Any) -> bool:
        if address is None:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        candidates = (address, mapped) if mapped is not None else (address,)
        return any(
            candidate.version == net.version and candidate in net
            for candidate in candidates
            for net in self.trusted
        )

    def _hops(self, scope: Any) -> list[str]:
        values = []
        for item in scope.get("headers") or ():
            try:
                name, value = item
                if bytes(name).lower() == self.forwarded:
                    values.append(bytes(value).decode("latin-1"))
            except Exception:
                continue
        joined = ",".join(values)
        if not joined.strip():
            return []
        if self.forwarded == b"forwarded":
            return _forwarded_for(joined)
        return [hop.strip() for hop in joined.split(",")]

    def addresses(self, scope: Any) -> tuple[Any, str | None, bool]:
        """(client address, raw peer text, resolved) before anonymization.

        The client is ``scope["client"]``, or with ``trusted_proxies`` the first untrusted hop
        counted from the right of the forwarding header; a spoofed left-most value is never
        reached past an untrusted hop.
        """
        client = scope.get("client")
        peer_text = None
        if client:
            try:
                peer_text = client[0] if isinstance(client[0], str) else None
            except Exception:
                peer_text = None
        if not self.trusted:
            return peer_text, peer_text, False  # parsed later only if it is to be anonymized
        peer = parse_ip(peer_text)
        if not self._trusted(peer):
            return (peer if peer is not None else peer_text), peer_text, False
        current: Any = peer
        for hop in reversed(self._hops(scope)):
            if not self._trusted(current):
                break
            current = parse_ip(hop)
            if current is None:
                # "unknown", an obfuscated identifier or garbage: nothing left of it is trusted.
                return None, peer_text, True
        return current, peer_text, True

    def storable(self, address: Any) -> str | None:
        if address is None:
            return None
        if isinstance(address, str):
            if not self.anonymize:
                return address
            address = parse_ip(address)
            if address is None:
                # Not an IP (a unix socket, a test client's name): nothing to truncate.
                return None
        if self.anonymize:
            return anonymize(address, self.anonymize)
        return format_ip(address)

    def visitor(self, address: Any, user_agent: str | None, host: str | None, start: float) -> Any:
        """A hash of address + user agent + host under a salt that changes every UTC day."""
        if not self.visitor_key or address is None:
            return None
        day = datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%d")
        salt = self._salts.get(day)
        if salt is None:
            with self._salt_lock:
                if isinstance(self.visitor_key, bytes):
                    salt = hmac.new(self.visitor_key, day.encode(), hashlib.sha256).digest()
                else:
                    salt = secrets.token_bytes(32)
                # Forget earlier days' salts: their hashes can no longer be recomputed here.
                self._salts = {d: s for d, s in self._salts.items() if d > day}
                self._salts[day] = salt
        if not isinstance(address, str):
            address = format_ip(address)
        message = f"{address}\n{user_agent or ''}\n{host or ''}".encode("utf-8", "replace")
        return hmac.new(salt, message, hashlib.sha256).hexdigest()[:16]

    # ---- route and actor -----------------------------------------------------------------------
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
            self._failed(kind, error)
            return None

    def _failed(self, kind: str, error: Exception) -> None:
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
        if hook is None:
            try:
                return framework_route(scope)
            except Exception as error:
                self._failed("route", error)
                return None
        if hook is False:
            return None
        return self._call("route", hook, scope)

    def actor(self, scope: Any) -> Any:
        hook = self.actor_hook
        if hook is None:
            try:
                return framework_actor(scope)
            except Exception as error:
                self._failed("actor", error)
                return None
        if hook is False:
            return None
        return _id_of(self._call("actor", hook, scope))

    # ---- captured headers ----------------------------------------------------------------------
    def captured(self, scope: Any, response_headers: Any) -> list[tuple[str, bytes, Any]]:
        """(direction, lower-case name, value) for every captured header that was present."""
        found: list[tuple[str, bytes, Any]] = []
        for direction, wanted, headers in (
            ("request", self.capture_request, scope.get("headers")),
            ("response", self.capture_response, response_headers),
        ):
            if not wanted:
                continue
            for item in headers or ():
                try:
                    name, value = item
                    name = bytes(name).lower()
                except Exception:
                    continue
                if name in wanted:
                    found.append((direction, name, value))
        return found

    def stats(self) -> dict[str, int]:
        return dict(self.errors)
