"""What the writer hands a sink: one batch, written in one transaction or not at all."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batch", "Row"]

#: One ``requests`` row: plain values in :data:`schema.REQUEST_COLUMNS` order, lookup columns as
#: their text (a sink swaps in ids where it normalises them).
Row = tuple[Any, ...]


@dataclass
class Batch:
    rows: list[Row] = field(default_factory=list)
    #: The exchange key of each row (same order), for late exceptions (``amends``).
    keys: list[int] = field(default_factory=list)
    #: Captured headers: (index of the row in ``rows``, [(direction, name, value), ...]).
    captured: list[tuple[int, list[tuple[str, Any, Any]]]] = field(default_factory=list)
    #: Captures for replay: (index of the row in ``rows``, the ``captures`` columns after
    #: ``request``, header lists as JSON text; see capture.capture_row).
    captures: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)
    #: Requests left out of the log, per (UTC hour "YYYY-MM-DDTHH:00", reason).
    excluded: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Late exceptions for rows written in this batch or earlier ones (:class:`exchange.Amend`).
    amends: list[Any] = field(default_factory=list)
    #: Records dropped since the last batch that reached the sink, per reason.
    dropped: dict[str, int] = field(default_factory=dict)
    #: Rows the sink has stored already: a write that failed halfway (a rotation in the middle
    #: of the batch) resumes after them when retried.
    done: int = 0

    def __bool__(self) -> bool:
        return bool(self.rows or self.excluded or self.amends or any(self.dropped.values()))

    def part(self, start: int, stop: int) -> Batch:
        """Rows ``start:stop`` with their keys, captured headers and captures; nothing else."""
        captured = [(i - start, found) for i, found in self.captured if start <= i < stop]
        captures = [(i - start, found) for i, found in self.captures if start <= i < stop]
        return Batch(self.rows[start:stop], self.keys[start:stop], captured, captures)
