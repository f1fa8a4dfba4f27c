"""Middleware options: declared once, validated once, at construction.

Every option is a field of :class:`Options` with a validator. Bad names and bad values fail when
the middleware is built, with a message that names the option, so that nothing can go wrong later
at request time. Feature modules (privacy, rotation) add their fields here, in their own section.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from . import validators as v
from .validators import parse_duration, parse_size

__all__ = ["Options", "option_names", "parse_duration", "parse_size"]

ROTATE_PERIODS = ("hourly", "daily", "monthly")
WRITERS = ("auto", "thread", "inline", "process")
FLUSHES = ("auto", "batch", "response")


def _check_writer(options: Options) -> None:
    if options.writer == "process" and options.clock is not None:
        raise ValueError(
            "option 'clock' is a function of this process and cannot reach a writer process; "
            "use writer='thread' (or 'auto') with it"
        )


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
    #: Where the writer runs: "thread" (beside the event loop), "process" (a writer process fed
    #: through a pipe), "inline" (on the event loop, in short slices, for hosts without threads),
    #: or "auto" (a writer process where one can start, else a thread; inline on AWS Lambda
    #: and Pyodide, see hosts.py).
    writer: str = _field("auto", v.choice(*WRITERS))
    #: When a request's row is committed: "batch" (by the writer, every ``flush_interval``),
    #: "response" (before the response's last message reaches the server, and so before the
    #: ASGI call returns to the server or adapter: for hosts that freeze, throttle or discard the
    #: process between requests), or "auto" ("response" on AWS Lambda, else "batch"). See
    #: docs/serverless.md.
    flush: str = _field("auto", v.choice(*FLUSHES))
    #: Records waiting for the writer at most; past it records are dropped and counted.
    max_queue: int = _field(100_000, v.positive_int)
    #: Records committed in one transaction at most.
    batch_size: int = _field(2_000, v.positive_int)
    #: How often the writer wakes to commit what is waiting (seconds, at most an hour).
    flush_interval: float = _field(0.2, v.positive_seconds)
    #: Longest text kept for a path, query string, header value... (characters).
    max_value_length: int = _field(4096, v.bounded_int(1, 1 << 24))
    #: How long one write waits for another process's lock before retrying (seconds).
    busy_timeout: float = _field(10.0, v.positive_seconds)
    #: How long a batch that cannot be written is retried before it is dropped and counted.
    retry_for: float = _field(60.0, v.bounded_seconds(v.MAX_RETRY_FOR))

    # --- rotation and retention -------------------------------------------------------------
    #: Start a new file every "hourly", "daily" or "monthly" period (UTC); the old one is kept.
    rotate: str | None = _field(None, v.optional_of(v.choice(*ROTATE_PERIODS)))
    #: Start a new file once the current one (with its WAL) reaches this size ("100MB").
    max_bytes: int | None = _field(None, v.optional(parse_size, "a size such as '100MB'"))
    #: Start a new file once this many rows were written to the current one.
    max_rows: int | None = _field(None, v.optional_of(v.bounded_int(1, v.MAX_ROWS)))
    #: Rotated files kept beside the log at most; older ones are deleted (None: keep all).
    keep: int | None = _field(None, v.optional_of(v.positive_int))
    #: Delete rows older than this ("30d") from the file itself, instead of rotating (seconds).
    retain: float | None = _field(None, v.optional(parse_duration, "a duration such as '30d'"))
    #: Where "now" comes from for rotation and retention (unix seconds); for tests.
    clock: Callable[[], float] | None = _field(None, v.optional_clock)

    # --- privacy (see docs/privacy.md) ----------------------------------------------------------
    #: Extra query keys whose values are replaced by REDACTED (names, globs, ``re:`` regexes).
    redact_query: tuple = _field((), v.query_keys)
    #: Query keys whose values are kept even though a default rule would redact them.
    keep_query: tuple = _field((), v.query_keys)
    #: Request headers recorded in ``captured_headers`` (names, case-insensitive).
    capture_request_headers: tuple = _field((), v.header_names)
    #: Response headers recorded in ``captured_headers``.
    capture_response_headers: tuple = _field((), v.header_names)
    #: The explicit override that lets a captured header name look like a secret.
    allow_secret_headers: tuple = _field((), v.header_names)
    #: Record the client address at all.
    client_ip: bool = _field(True, v.boolean)
    #: Proxies whose forwarding header is believed (addresses or CIDR networks).
    trusted_proxies: tuple = _field((), v.networks)
    #: Which header trusted proxies set: ``x-forwarded-for`` or ``forwarded`` (RFC 7239).
    forwarded_header: str = _field("x-forwarded-for", v.forwarded_header)
    #: Truncate addresses: True (IPv4 /24, IPv6 /48), an IPv4 prefix, or (IPv4, IPv6) prefixes.
    anonymize_ip: Any = _field(None, v.anonymize_setting)
    #: Daily-salted visitor hash: True (random key per process) or a shared secret.
    visitor_hash: Any = _field(False, v.visitor_setting)
    #: ``callable(scope) -> str | None`` naming who made the request; None detects, False never.
    actor: Any = _field(None, v.hook_setting)
    #: ``callable(scope) -> str | None`` giving the route template; None detects, False never.
    route: Any = _field(None, v.hook_setting)
    #: Paths not recorded: prefixes, globs, ``re:`` regexes.
    exclude: tuple = _field((), v.path_patterns)
    #: User agents not recorded: substrings, globs, ``re:`` regexes.
    exclude_user_agents: tuple = _field((), v.user_agent_patterns)
    #: Leave out health checks and probes (counted per hour in ``excluded_requests``).
    exclude_health_checks: bool = _field(True, v.boolean)
    #: Only these HTTP methods are recorded (None: all).
    methods: Any = _field(None, v.methods_setting)
    #: Fraction of requests recorded; each row stores it in ``sample_rate``.
    sample: float = _field(1.0, v.sample_setting)

    # --- capture for replay (see docs/replay.md) ----------------------------------------------
    #: Keep what a replay needs of each request in ``captures``: raw path and query, every
    #: header, the body within the limit, the response body's SHA-256; secrets as placeholders.
    capture_requests: bool = _field(False, v.boolean)
    #: Bytes of a body kept at most ("64KB"; 0 keeps none); beyond, its size and SHA-256 only.
    capture_body_limit: int = _field(v.CAPTURE_BODY_LIMIT, v.body_limit)
    #: Also keep response headers, bodies within the limit and when each chunk was sent.
    capture_responses: bool = _field(False, v.boolean)

    # --- where rows go, for a log shared by several hosts (see docs/postgresql.md) -------------
    #: Which host or container wrote each row (the ``instance`` column); None: the host name.
    instance: str | None = _field(None, v.instance_name)
    #: PostgreSQL log: the schema holding its tables (or ``?schema=`` in the URL); "public".
    schema: str | None = _field(None, v.identifier)
    #: PostgreSQL log: the SQLite file rows wait in while the database is away; None: a file
    #: in the system's temp folder named after the database; False: no spill.
    spill: Any = _field(None, v.spill_setting)

    def __post_init__(self) -> None:
        v.check_captured_headers(self)  # checks that span several options
        v.check_capture(self)
        _check_rotation(self)
        _check_writer(self)

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
        return cls(**values)


def option_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Options)]
