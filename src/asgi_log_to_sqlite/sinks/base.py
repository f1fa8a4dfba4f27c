"""What every sink is to the writer: somewhere batches are stored, in one transaction each."""

from __future__ import annotations

from typing import Protocol

from ..batch import Batch

__all__ = ["DataError", "Sink"]


class DataError(Exception):
    """The batch holds a value the storage refuses (not an I/O error, not a lock): retrying the
    same rows cannot help, so the writer sets the offending rows apart and writes the rest."""


class Sink(Protocol):
    """Storage for the log. Methods run in the writer's strategy (its thread, or slices of the
    event loop); none of them ever sees ASGI.

    * ``prepare()``: create or upgrade the storage; raises a clear error when it cannot be used.
    * ``write(batch)``: store the batch's rows, its late exceptions (amends) and its drop and
      exclusion counts, all or nothing; raises :class:`DataError` for a value the storage
      refuses, anything else for a failure worth retrying. A batch that was partly stored before
      a failure (a file rotated in the middle of it) is resumed where it stopped when retried.
    * ``idle()``: called when no batch came for a while (rotation and retention keep going on a
      quiet server).
    * ``close()``: release connections; the sink may be prepared again afterwards.
    * optional, ``waiting_at_most(seconds)``: a context in which the sink waits for nobody (a
      lock, a busy database) longer than ``seconds``, failing instead (then retried): the
      inline writer writes on the event loop, which must never wait for ``busy_timeout``.
    """

    name: str

    def prepare(self) -> None: ...

    def write(self, batch: Batch) -> None: ...

    def idle(self) -> None: ...

    def close(self) -> None: ...
