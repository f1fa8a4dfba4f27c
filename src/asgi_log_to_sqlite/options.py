"""Middleware options: declared once, validated once, at construction.

Every option is a field of :class:`Options` with a validator. Bad names and bad values fail when
the middleware is built, with a message that names the option, so that nothing can go wrong later
at request time. Feature modules (privacy, rotation) add their fields here, in their own section.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

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
