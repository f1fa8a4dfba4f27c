"""One line on a terminal, rewritten in place while a replay runs (standard error)."""

from __future__ import annotations

import sys
import time
from typing import IO

from .diff import Diff

__all__ = ["Progress"]


class Progress:
    """Call with the diff after each answer; it redraws at most ``every`` seconds."""

    def __init__(self, total: int | None, stream: IO[str] | None = None, every: float = 0.2):
        self.total = total
        self.stream = stream or sys.stderr
        self.every = every
        self._last = 0.0
        self._drawn = False

    def __call__(self, diff: Diff) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        changes = sum(sum(r.changes.values()) for r in diff.routes.values())
        of = f"/{self.total:,}" if self.total is not None else ""
        self.stream.write(
            f"\rreplayed {diff.completed:,}{of}  in flight {diff.sent - diff.completed:,}  "
            f"status changes {changes:,}   "
        )
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
