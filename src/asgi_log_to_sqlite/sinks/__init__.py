"""Sinks: where the writer stores batches. Each kind lives in its own module; adding one
touches no other. :func:`open_sink` picks one from the ``file`` argument."""

from __future__ import annotations

import os
from typing import Any

from .base import DataError, Sink

__all__ = ["DataError", "Sink", "open_sink"]


def open_sink(target: str | os.PathLike[str], options: Any) -> Sink:
    """The sink for ``target``: ``"-"`` or ``"stdout"`` for JSON lines on standard output, else a
    SQLite file path (created if missing)."""
    from .jsonlines import TARGETS, JSONLinesSink

    if isinstance(target, str) and target in TARGETS:
        return JSONLinesSink(options)

    from .sqlite import SQLiteSink, validated_path

    return SQLiteSink(validated_path(target), options)
