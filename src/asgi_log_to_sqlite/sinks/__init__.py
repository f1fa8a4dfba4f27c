"""Sinks: where the writer stores batches. Each kind lives in its own module; adding one
touches no other. :func:`open_sink` picks one from the ``file`` argument."""

from __future__ import annotations

import os
import re
from typing import Any

from .base import DataError, Sink

__all__ = ["DataError", "Sink", "open_sink"]

#: ``scheme://`` at the start of a target: a URL, not a file name.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: ``postgresql:`` without the ``//``: a URL mistyped, not a file name to create.
_MISTYPED_POSTGRESQL = re.compile(r"^postgres(?:ql)?:(?!//)", re.IGNORECASE)
POSTGRESQL_SCHEMES = ("postgresql", "postgres")
#: Options that only mean something for a PostgreSQL log.
POSTGRESQL_OPTIONS = ("schema", "spill")


def open_sink(target: str | os.PathLike[str], options: Any) -> Sink:
    """The sink for ``target``: a ``postgresql://`` (or ``postgres://``) URL, ``"-"`` or
    ``"stdout"`` for JSON lines on standard output, or the path of a SQLite file (created if
    missing). Raises ``ValueError`` naming the ``file`` option for a URL of another kind."""
    match = _URL.match(target) if isinstance(target, str) else None
    if match is not None:
        scheme = match.group(1).lower()
        if scheme in POSTGRESQL_SCHEMES:
            from .postgresql import PostgreSQLSink

            return PostgreSQLSink(target, options)
        raise ValueError(
            f"option 'file' must be a file path or a postgresql:// URL; {scheme}:// is not a "
            "kind of log this package writes"
        )
    if isinstance(target, str) and _MISTYPED_POSTGRESQL.match(target):
        raise ValueError(
            f"option 'file': {target.split(':', 1)[0]}: is not followed by // "
            "(postgresql://user@host/database)"
        )
    for name in POSTGRESQL_OPTIONS:
        if getattr(options, name, None) is not None:
            raise ValueError(f"option {name!r} applies to a PostgreSQL log only")
    from .jsonlines import TARGETS, JSONLinesSink

    if isinstance(target, str) and target in TARGETS:
        return JSONLinesSink(options)
    from .sqlite import SQLiteSink, validated_path

    return SQLiteSink(validated_path(target), options)
