"""Middleware options: declared once, validated once, at construction.

Every option is a field of :class:`Options` with a validator. Bad names and bad values fail when
the middleware is built, with a message that names the option, so that nothing can go wrong later
at request time. Feature modules (privacy, rotation) add their fields here, in their own section.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from . import privacy

__all__ = ["Options", "option_names"]


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"option {name!r} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"option {name!r} must be at least 1, got {value}")
    return value


def positive_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"option {name!r} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"option {name!r} must be a positive number of seconds, got {value}")
    return float(value)


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"option {name!r} must be True or False, got {value!r}")
    return value


# --- rotation and retention ---------------------------------------------------------------
ROTATE_PERIODS = ("hourly", "daily", "monthly")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2,
               "g": 1024**3, "gb": 1024**3}


def parse_duration(text: Any) -> float:
    """Seconds in ``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` or a plain number of seconds."""
    if isinstance(text, datetime.timedelta):
        seconds = text.total_seconds()
    elif isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    elif isinstance(text, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
        if not match:
            raise ValueError(f"{text!r} is not a duration such as '30d', '12h', '90m' or '45s'")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    else:
        raise TypeError(f"expected a duration such as '30d', got {type(text).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be positive, got {text!r}")
    return seconds


def parse_size(text: Any) -> int:
    """Bytes in ``"100MB"``, ``"512k"``, ``"1G"`` or a plain integer."""
    if isinstance(text, int) and not isinstance(text, bool):
        size = text
    elif isinstance(text, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?b?)\s*", text.lower())
        if not match:
            raise ValueError(f"{text!r} is not a size such as '100MB', '512KB' or 1000000")
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    else:
        raise TypeError(f"expected a size such as '100MB', got {type(text).__name__}")
    if size < 1:
        raise ValueError(f"a size must be positive, got {text!r}")
    return size


def _optional(parse: Callable[[Any], Any], what: str) -> Callable[[str, Any], Any]:
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


def rotate_period(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"option {name!r} must be one of {ROTATE_PERIODS} or None, got {value!r}")
    if value.lower() not in ROTATE_PERIODS:
        raise ValueError(f"option {name!r} must be one of {ROTATE_PERIODS}, got {value!r}")
    return value.lower()


def optional_positive_int(name: str, value: Any) -> int | None:
    return None if value is None else positive_int(name, value)


def optional_clock(name: str, value: Any) -> Callable[[], float] | None:
    if value is not None and not callable(value):
        raise TypeError(f"option {name!r} must be a function returning unix seconds, got {value!r}")
    return value


def _check_rotation(options: Options) -> None:
    """Options that only make sense together (or apart) are checked as a whole."""
    rotating = options.rotate or options.max_bytes or options.max_rows
    if options.keep is not None and not rotating:
        raise ValueError("option 'keep' needs a rotation option: rotate, max_bytes or max_rows")
    if options.retain is not None and rotating:
        raise ValueError(
            "option 'retain' deletes old rows in place and cannot be combined with rotation "
            "(rotate, max_bytes, max_rows); use 'keep' to limit the rotated files"
        )


def _field(default: Any, validator: Callable[[str, Any], Any]) -> Any:
    """A field whose validator returns the normalised value or raises TypeError/ValueError."""
    return dataclasses.field(default=default, metadata={"validator": validator})


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything that can be passed to ``AsgiLogToSqlite(app, file, **options)``."""

    # --- the writer -------------------------------------------------------------------------
    #: Records waiting for the writer at most; past it records are dropped and counted.
    max_queue: int = _field(100_000, positive_int)
    #: Records committed in one transaction at most.
    batch_size: int = _field(2_000, positive_int)
    #: How often the writer wakes to commit what is waiting (seconds).
    flush_interval: float = _field(0.2, positive_seconds)
    #: Longest text kept for a path, query string, header value... (characters).
    max_value_length: int = _field(4096, positive_int)
    #: How long one write waits for another process's lock before retrying (seconds).
    busy_timeout: float = _field(10.0, positive_seconds)
    #: How long a batch that cannot be written is retried before it is dropped and counted.
    retry_for: float = _field(60.0, positive_seconds)

    # --- rotation and retention -------------------------------------------------------------
    #: Start a new file every "hourly", "daily" or "monthly" period (UTC); the old one is kept.
    rotate: str | None = _field(None, rotate_period)
    #: Start a new file once the current one (with its WAL) reaches this size ("100MB").
    max_bytes: int | None = _field(None, _optional(parse_size, "a size such as '100MB'"))
    #: Start a new file once this many rows were written to the current one.
    max_rows: int | None = _field(None, optional_positive_int)
    #: Rotated files kept beside the log at most; older ones are deleted (None: keep all).
    keep: int | None = _field(None, optional_positive_int)
    #: Delete rows older than this ("30d") from the file itself, instead of rotating (seconds).
    retain: float | None = _field(None, _optional(parse_duration, "a duration such as '30d'"))
    #: Where "now" comes from for rotation and retention (unix seconds); for tests.
    clock: Callable[[], float] | None = _field(None, optional_clock)

    # --- privacy (validators and defaults in privacy.py; see docs/privacy.md) ----------------
    #: Extra query keys whose values are replaced by REDACTED (names, globs, ``re:`` regexes).
    redact_query: tuple = _field((), privacy.query_keys)
    #: Query keys whose values are kept even though a default rule would redact them.
    keep_query: tuple = _field((), privacy.query_keys)
    #: Request headers recorded in ``captured_headers`` (names, case-insensitive).
    capture_request_headers: tuple = _field((), privacy.header_names)
    #: Response headers recorded in ``captured_headers``.
    capture_response_headers: tuple = _field((), privacy.header_names)
    #: The explicit override that lets a captured header name look like a secret.
    allow_secret_headers: tuple = _field((), privacy.header_names)
    #: Record the client address at all.
    client_ip: bool = _field(True, boolean)
    #: Proxies whose forwarding header is believed (addresses or CIDR networks).
    trusted_proxies: tuple = _field((), privacy.networks)
    #: Which header trusted proxies set: ``x-forwarded-for`` or ``forwarded`` (RFC 7239).
    forwarded_header: str = _field("x-forwarded-for", privacy.forwarded_header)
    #: Truncate addresses: True (IPv4 /24, IPv6 /48), an IPv4 prefix, or (IPv4, IPv6) prefixes.
    anonymize_ip: Any = _field(None, privacy.anonymize_setting)
    #: Daily-salted visitor hash: True (random key per process) or a shared secret.
    visitor_hash: Any = _field(False, privacy.visitor_setting)
    #: ``callable(scope) -> str | None`` naming who made the request; None detects, False never.
    actor: Any = _field(None, privacy.hook_setting)
    #: ``callable(scope) -> str | None`` giving the route template; None detects, False never.
    route: Any = _field(None, privacy.hook_setting)
    #: Paths not recorded: prefixes, globs, ``re:`` regexes.
    exclude: tuple = _field((), privacy.path_patterns)
    #: User agents not recorded: substrings, globs, ``re:`` regexes.
    exclude_user_agents: tuple = _field((), privacy.user_agent_patterns)
    #: Leave out health checks and probes (counted per hour in ``excluded_requests``).
    exclude_health_checks: bool = _field(True, boolean)
    #: Only these HTTP methods are recorded (None: all).
    methods: Any = _field(None, privacy.methods_setting)
    #: Fraction of requests recorded; each row stores it in ``sample_rate``.
    sample: float = _field(1.0, privacy.sample_setting)

    def __post_init__(self) -> None:
        privacy.check_options(self)  # checks that span several privacy options

    @classmethod
    def from_kwargs(cls, options: Mapping[str, Any]) -> Options:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(
                f"AsgiLogToSqlite() got unknown option(s): {', '.join(map(repr, unknown))}; "
                f"known options are: {', '.join(sorted(known))}"
            )
        values = {
            name: known[name].metadata["validator"](name, value) for name, value in options.items()
        }
        built = cls(**values)
        _check_rotation(built)  # rotation and retention: options checked together
        return built


def option_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Options)]
