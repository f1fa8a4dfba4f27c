"""Option validators: each takes the option's name and the value given, and returns the value
normalised or raises ``TypeError``/``ValueError`` naming the option.

They run once, when the middleware is built (and when the Datasette plugin starts), so that no
setting can fail later at request time. Numbers have documented bounds: a value that would
overflow a timer, a ``datetime`` or a SQLite integer is refused here instead.
"""

from __future__ import annotations

import datetime
import fnmatch
import inspect
import ipaddress
import itertools
import math
import os
import re
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from .patterns import Pattern, compile_pattern, is_glob

#: Upper bounds of numeric options (also in the README's options table).
MAX_SECONDS = 3600.0  # flush_interval, busy_timeout: an hour
MAX_RETRY_FOR = 7 * 86400.0  # a week
MAX_RETAIN = 36_500 * 86400.0  # a hundred years
MAX_COUNT = 10**9  # max_queue, batch_size, keep, max_value_length...
MAX_ROWS = 2**62  # max_rows: below SQLite's largest rowid
MAX_BYTES = 2**50  # max_bytes: a pebibyte
MAX_ITEMS = 10_000  # items in a list option (headers, patterns, methods, proxies)

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

#: Default truncation for ``anonymize_ip=True``: IPv4 keeps 24 bits (the last octet is zeroed),
#: IPv6 keeps 48 bits (the last 80 are zeroed), as common web analytics do.
DEFAULT_ANONYMIZE = (24, 48)

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2,
               "g": 1024**3, "gb": 1024**3}


# ---- numbers ---------------------------------------------------------------------------------
def _number(name: str, value: Any, what: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"option {name!r} must be {what}, got {type(value).__name__}")
    return value


def bounded_int(low: int, high: int) -> Callable[[str, Any], int]:
    def validate(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"option {name!r} must be an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise ValueError(f"option {name!r} must be between {low} and {high:,}, got {value}")
        return value

    return validate


positive_int = bounded_int(1, MAX_COUNT)


def bounded_seconds(high: float) -> Callable[[str, Any], float]:
    def validate(name: str, value: Any) -> float:
        _number(name, value, "a number of seconds")
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds) or seconds <= 0 or seconds > high:
            raise ValueError(
                f"option {name!r} must be a number of seconds above 0 and at most {high:g}, "
                f"got {value!r}"
            )
        return seconds

    return validate


positive_seconds = bounded_seconds(MAX_SECONDS)


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"option {name!r} must be True or False, got {value!r}")
    return value


def choice(*choices: str) -> Callable[[str, Any], str]:
    def validate(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(f"option {name!r} must be one of {', '.join(map(repr, choices))}, "
                            f"got {value!r}")
        if value.lower() not in choices:
            raise ValueError(f"option {name!r} must be one of {', '.join(map(repr, choices))}, "
                             f"got {value!r}")
        return value.lower()

    return validate


# ---- durations and sizes (also used by the command line) -------------------------------------
def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None


def parse_duration(text: Any, high: float = MAX_RETAIN) -> float:
    """Seconds in ``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` or a plain number."""
    if isinstance(text, datetime.timedelta):
        seconds: Any = Decimal(str(text.total_seconds()))
    elif isinstance(text, (int, float)) and not isinstance(text, bool):
        if isinstance(text, float) and not math.isfinite(text):
            raise ValueError(f"a duration must be a finite number, got {text!r}")
        seconds = Decimal(text)
    elif isinstance(text, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
        if not match:
            raise ValueError(
                f"{text[:40]!r} is not a duration such as '30d', '12h', '90m' or '45s'"
            )
        seconds = _decimal(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    else:
        raise TypeError(f"expected a duration such as '30d', got {type(text).__name__}")
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {text!r}")
    if seconds > Decimal(high):
        raise ValueError(
            f"a duration must be at most {high / 86400:g} days, got {str(text)[:40]!r}"
        )
    return float(seconds)


def parse_size(text: Any) -> int:
    """Bytes in ``"100MB"``, ``"512k"``, ``"1G"`` or a plain integer."""
    if isinstance(text, int) and not isinstance(text, bool):
        size: Any = text
    elif isinstance(text, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?b?)\s*", text.lower())
        if not match:
            raise ValueError(f"{text[:40]!r} is not a size such as '100MB', '512KB' or 1000000")
        size = int(_decimal(match.group(1)) * _SIZE_UNITS[match.group(2)])
    else:
        raise TypeError(f"expected a size such as '100MB', got {type(text).__name__}")
    if size < 1:
        raise ValueError(f"a size must be positive, got {text!r}")
    if size > MAX_BYTES:
        raise ValueError(f"a size must be at most {MAX_BYTES:,} bytes, got {str(text)[:40]!r}")
    return size


#: ``capture_body_limit`` at most: SQLite's largest value (SQLITE_MAX_LENGTH) is a gigabyte.
MAX_BODY_LIMIT = 1_000_000_000


def body_limit(name: str, value: Any) -> int:
    """Bytes of a captured body kept at most: an integer (0 keeps none) or a size ("64KB")."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return 0
    try:
        size = parse_size(value)
    except TypeError as error:
        raise TypeError(f"option {name!r} must be a number of bytes or a size: {error}") from None
    except ValueError as error:
        raise ValueError(f"option {name!r} must be a number of bytes or a size: {error}") from None
    if size > MAX_BODY_LIMIT:
        raise ValueError(f"option {name!r} must be at most {MAX_BODY_LIMIT:,} bytes, got {value!r}")
    return size


def check_capture(options: Any) -> None:
    """``capture_responses`` and ``capture_body_limit`` only mean something with capture on."""
    if options.capture_requests:
        return
    if options.capture_responses:
        raise ValueError("option 'capture_responses' needs capture_requests=True")
    if options.capture_body_limit != CAPTURE_BODY_LIMIT:
        raise ValueError("option 'capture_body_limit' needs capture_requests=True")


#: ``capture_body_limit``'s default: 64 KiB.
CAPTURE_BODY_LIMIT = 64 * 1024


def optional(parse: Callable[[Any], Any], what: str) -> Callable[[str, Any], Any]:
    """A validator from a parser: None stays None, errors name the option."""

    def validate(name: str, value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except TypeError as error:
            raise TypeError(f"option {name!r} must be {what}: {error}") from None
        except ValueError as error:
            raise ValueError(f"option {name!r} must be {what}: {error}") from None

    return validate


def optional_of(validator: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def validate(name: str, value: Any) -> Any:
        return None if value is None else validator(name, value)

    return validate


def optional_clock(name: str, value: Any) -> Callable[[], float] | None:
    if value is not None and not callable(value):
        raise TypeError(f"option {name!r} must be a function returning unix seconds, got {value!r}")
    return value


# ---- privacy ---------------------------------------------------------------------------------
def _as_list(name: str, value: Any, what: str, single: tuple[type, ...] = ()) -> list[Any]:
    """A list of items; ``single`` types count as one item even when they are iterable (an
    ``ipaddress`` network iterates over its addresses)."""
    if single and isinstance(value, single):
        return [value]
    if (isinstance(value, (str, bytes, re.Pattern, *_NETWORKS))
            or not isinstance(value, Iterable)):
        raise TypeError(f"option {name!r} must be a list of {what}, got {value!r}")
    try:
        # Read one item past the bound, never to the end: an iterator may be endless.
        items = list(itertools.islice(value, MAX_ITEMS + 1))
    except Exception as error:  # noqa: BLE001 - any failing iterable is a bad value
        raise TypeError(f"option {name!r} must be a list of {what}: {error}") from None
    if len(items) > MAX_ITEMS:
        raise ValueError(f"option {name!r} must hold at most {MAX_ITEMS:,} {what}")
    return items


def query_keys(name: str, value: Any) -> tuple[Pattern, ...]:
    """Query keys: exact names (case-insensitive), globs, or regexes (``re:...``)."""
    items = _as_list(name, value, "keys")
    return tuple(compile_pattern(name, item, "exact", True) for item in items)


def path_patterns(name: str, value: Any) -> tuple[Pattern, ...]:
    """Paths: prefixes (``/static`` matches ``/static`` and ``/static/...``), globs, regexes."""
    items = _as_list(name, value, "path prefixes, globs or regexes")
    for item in items:
        if isinstance(item, str) and not item.startswith(("/", "re:", "^")) and not is_glob(item):
            raise ValueError(f"option {name!r}: path prefix {item!r} must start with '/'")
    return tuple(compile_pattern(name, item, "prefix", False) for item in items)


def user_agent_patterns(name: str, value: Any) -> tuple[Pattern, ...]:
    """User agents: case-insensitive substrings, globs, or regexes."""
    items = _as_list(name, value, "user-agent substrings, globs or regexes")
    return tuple(compile_pattern(name, item, "substring", True) for item in items)


def header_names(name: str, value: Any) -> tuple[str, ...]:
    """Header names, lower-cased, each a valid HTTP token; duplicates removed."""
    names: list[str] = []
    for item in _as_list(name, value, "header names"):
        if not isinstance(item, str):
            raise TypeError(f"option {name!r} must hold header names (str), got {item!r}")
        if not _TOKEN.match(item):
            raise ValueError(f"option {name!r}: {item[:80]!r} is not a valid header name")
        if item.lower() not in names:
            names.append(item.lower())
    return tuple(names)


def is_secret_header(header: str) -> bool:
    header = header.lower()
    return any(fnmatch.fnmatchcase(header, pattern) for pattern in SECRET_HEADERS)


_NETWORKS = (ipaddress.IPv4Network, ipaddress.IPv6Network)
_ADDRESSES = (ipaddress.IPv4Address, ipaddress.IPv6Address)


def networks(name: str, value: Any) -> tuple[Any, ...]:
    """Trusted proxies: addresses or CIDR networks (``10.0.0.0/8``, ``::1``, ``ipaddress``
    objects); a network is kept as one network, never expanded into its addresses."""
    result = []
    for item in _as_list(name, value, "addresses or CIDR networks", _NETWORKS + _ADDRESSES):
        if isinstance(item, _NETWORKS):
            result.append(item)
            continue
        if isinstance(item, _ADDRESSES):
            result.append(ipaddress.ip_network(item))
            continue
        if not isinstance(item, str):
            raise TypeError(f"option {name!r} must hold addresses or networks, got {item!r}")
        try:
            result.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"option {name!r}: {item[:80]!r} is not an IP address or network"
            ) from None
    return tuple(result)


def forwarded_header(name: str, value: Any) -> str:
    return choice("x-forwarded-for", "forwarded")(name, value)


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
    _number(name, value, "a number between 0 and 1")
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
                f"option {name!r} must be a plain (not async) callable: it runs in the writer, "
                "after the response, with the request's scope"
            )
        return value
    raise TypeError(f"option {name!r} must be a callable(scope), None or False, got {value!r}")


def visitor_setting(name: str, value: Any) -> bytes | bool:
    """False, True (a random key per process), or a shared secret of at least 16 characters."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value = value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"option {name!r}: the secret is not valid text (it holds lone surrogates)"
            ) from None
    if not isinstance(value, bytes):
        raise TypeError(f"option {name!r} must be True, False or a secret string, got {value!r}")
    if len(value) < 16:
        raise ValueError(f"option {name!r}: a secret must be at least 16 characters long")
    return value


def check_captured_headers(options: Any) -> None:
    """A secret header is captured only when explicitly allowed, and an allowance is used."""
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


# ---- where the log goes ----------------------------------------------------------------------
#: Longest ``instance`` name: a host name is at most 253 characters.
MAX_INSTANCE = 253
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


def instance_name(name: str, value: Any) -> str | None:
    """Which host or container wrote a row: printable text, or None for the host name."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"option {name!r} must be a name (str), got {type(value).__name__}")
    if not value.strip() or len(value) > MAX_INSTANCE or not value.isprintable():
        raise ValueError(
            f"option {name!r} must be printable text of 1 to {MAX_INSTANCE} characters, "
            f"got {value[:40]!r}"
        )
    try:
        value.encode("utf-8")
    except UnicodeError:
        raise ValueError(f"option {name!r} must be valid text, got {value[:40]!r}") from None
    return value


def identifier(name: str, value: Any) -> str | None:
    """A PostgreSQL schema name used as is (letters, digits, underscores; no quoting needed)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"option {name!r} must be a schema name (str), got {type(value).__name__}")
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"option {name!r} must be a name of letters, digits and underscores (at most 63, "
            f"not starting with a digit), got {value[:40]!r}"
        )
    return value


def spill_setting(name: str, value: Any) -> Any:
    """Where rows wait while PostgreSQL is away: a file path, None (the default file in the
    temp folder) or False (no spill: rows are retried, then dropped and counted)."""
    if value is None or value is False:
        return value
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"option {name!r} must be a file path, None or False, got {value!r}")
    path = os.fspath(value)
    if not path or "\x00" in path:
        raise ValueError(f"option {name!r} must be the path of a file, got {path!r}")
    return path
