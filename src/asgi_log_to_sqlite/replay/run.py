"""The replay loop: read the selected rows, plan each request, send it when the pace says, with
at most ``concurrency`` in flight, and fold every answer into the diff.

Bounded: ``limit`` requests at most, nothing sent ``duration`` seconds after the start (a paced
schedule's late requests a little after, see :meth:`Replay._deadline`), and each request
bounded by the client's timeout. :meth:`Replay.interrupt` (the command calls it on
Ctrl-C) stops sending at once and lets the requests in flight finish; a second call cancels
them. Either way the report covers what was done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from .client import Outcome, Sender
from .diff import Diff
from .pacing import AsFastAsAllowed, Pace
from .plan import Outgoing, Planner
from .select import Recorded, Selection, read_rows

__all__ = ["Replay"]

#: A request that leaves more than this many seconds after its due time is counted as late.
LATE = 0.1
#: Past the end of a schedule (``duration``), late requests may still leave for this share of
#: the duration, at most GRACE_MAX seconds; after that nothing is sent.
GRACE_SHARE = 0.1
GRACE_MAX = 5.0


class Replay:
    def __init__(
        self,
        log: str,
        sender: Sender,
        *,
        selection: Selection | None = None,
        planner: Planner | None = None,
        pace: Pace | None = None,
        concurrency: int = 16,
        limit: int | None = None,
        duration: float | None = None,
        loop: bool = False,
        check_noise: bool = False,
        diff: Diff | None = None,
        progress: Callable[[Diff], Any] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if loop and limit is None and duration is None:
            raise ValueError("--loop needs a bound: --limit or --duration")
        self.log = log
        self.sender = sender
        self.selection = selection or Selection()
        self.planner = planner or Planner()
        self.pace = pace or AsFastAsAllowed()
        self.concurrency = concurrency
        self.limit = limit
        self.duration = duration
        self.loop = loop
        self.check_noise = check_noise
        self.diff = diff or Diff()
        self.progress = progress
        self._dispatcher: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._interrupts = 0

    async def _rows(self) -> AsyncIterator[Recorded]:
        """The selected rows, read in a thread a chunk at a time (the loop may be the app's)."""
        chunks = read_rows(self.log, self.selection)
        # One thread of its own, so that the close runs after a read still going on: a
        # cancelled await (Ctrl-C) does not stop that read, and closing the generator while it
        # runs would raise "generator already executing".
        reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="replay-rows")
        loop = asyncio.get_running_loop()
        try:
            while True:
                chunk = await loop.run_in_executor(reader, next, chunks, None)
                if chunk is None:
                    return
                for recorded in chunk:
                    yield recorded
        finally:
            try:
                await loop.run_in_executor(reader, chunks.close)
            finally:
                reader.shutdown(wait=False)

    async def run(self) -> Diff:
        self._dispatcher = asyncio.create_task(self._dispatch())
        try:
            await self._dispatcher
        except asyncio.CancelledError:
            if not self._interrupts:
                raise  # cancelled from outside, not interrupted: let it through
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)
        self.diff.finished = time.time()
        if self.progress is not None:
            self.progress(self.diff)
        return self.diff

    def interrupt(self) -> None:
        """First call: send nothing more. Second call: cancel the requests in flight too."""
        self._interrupts += 1
        self.diff.interrupted = True
        if self._dispatcher is not None and not self._dispatcher.done():
            self._dispatcher.cancel()
        if self._interrupts > 1:
            for task in list(self._in_flight):
                task.cancel()

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.diff.started = time.time()
        slots = asyncio.Semaphore(self.concurrency)
        sent = 0
        while True:
            seen = 0
            async for recorded in self._rows():
                seen += 1
                if self.limit is not None and sent >= self.limit:
                    return
                outgoing = self.planner.plan(recorded)
                if outgoing.skip:
                    self.diff.skip(outgoing)
                    continue
                due = self.pace.due(recorded.start, sent)
                if due is not None:
                    if self.duration is not None and due >= self.duration:
                        return
                    delay = start + due - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await slots.acquire()
                now = loop.time() - start
                if self.duration is not None and now >= self._deadline(due is not None):
                    slots.release()
                    return
                if due is not None and now - due > LATE:
                    self.diff.late += 1
                task = asyncio.create_task(self._one(outgoing))
                self._in_flight.add(task)
                task.add_done_callback(lambda t: (self._in_flight.discard(t), slots.release()))
                sent += 1
                self.diff.sent = sent
            if not self.loop or seen == 0:
                return
            self.pace.restart()

    def _deadline(self, paced: bool) -> float:
        """Seconds after the start when nothing more is sent. A schedule's requests that fell
        behind (the machine or the target was busy) may still leave a little after its end,
        and are counted as late; as fast as allowed stops at ``duration`` itself."""
        assert self.duration is not None
        if not paced:
            return self.duration
        return self.duration + min(GRACE_MAX, self.duration * GRACE_SHARE)

    async def _one(self, outgoing: Outgoing) -> None:
        try:
            outcome: Outcome = await self.sender.send(outgoing)
            again = await self.sender.send(outgoing) if self.check_noise else None
        except asyncio.CancelledError:
            self.diff.cancelled += 1
            return
        self.diff.add(outgoing, outcome, again)
        if self.progress is not None:
            self.progress(self.diff)
