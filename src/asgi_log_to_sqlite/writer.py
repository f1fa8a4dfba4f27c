"""The writer: delivers queued records to a sink in batches, and knows nothing of either.

Records come from the event loop through :meth:`Writer.put`: a length check and a
``deque.append``, both atomic under the GIL, so the loop never waits on a lock. The writer turns
a run of records into a batch with its injected ``prepare`` step, hands it to the sink, and owns
everything around that: batch sizes, flush markers (``flush()`` waits for everything queued
before it), retries of a failing sink for ``retry_for`` seconds, setting apart the records a
sink refuses as data (the rest of their batch is written at once), and counting every record it
had to drop. Like CPython's ``QueueListener`` and Datasette's write thread, a private marker
stops it, and stopping drains the queue first.

Where the work runs is a strategy:

* :class:`ThreadWriter`: a named daemon thread beside the event loop (the default);
* :class:`InlineWriter`: no thread at all. Batches are written on the event loop itself, in
  slices bounded in rows and time, scheduled with ``loop.call_later``; for hosts where threads
  cannot start (Pyodide) or stop between requests (serverless);
* :class:`~asgi_log_to_sqlite.writer_process.ProcessWriter`: a writer process fed through a
  pipe, so that row building and SQLite never share the app's GIL (the default where a process
  can be started; see :mod:`asgi_log_to_sqlite.writer_process`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .batch import Batch
from .sinks.base import DataError, Sink

if TYPE_CHECKING:  # imported where used: the writer process never needs asyncio
    import asyncio

__all__ = ["InlineWriter", "Queue", "ThreadWriter", "Writer", "start_writer"]

logger = logging.getLogger("asgi_log_to_sqlite")

Prepare = Callable[[list[Any]], Batch]

_STOP = object()
#: Records one inline slice writes at most, and the time after which it lets the loop go on.
INLINE_SLICE_ROWS = 256
INLINE_SLICE_SECONDS = 0.005


class _Flush:
    """A marker in the queue: everything queued before it is written when ``done`` runs."""

    __slots__ = ("done",)

    def __init__(self, done: Callable[[], None]) -> None:
        self.done = done


class LoopWaiter:
    """A callback any thread may call once something is done, and a wait for it on the event
    loop that made it: how ``aflush`` waits for a writer in another thread or process."""

    def __init__(self) -> None:
        import asyncio
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[None] = self.loop.create_future()

    def __call__(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._resolve)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    async def wait(self, timeout: float | None, name: str) -> None:
        import asyncio
        try:
            await asyncio.wait_for(self.future, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"asgi-log-to-sqlite: flush of {name!r} took over {timeout}s"
            ) from None


class _AmendMarker:
    __slots__ = ("amend",)

    def __init__(self, amend: Any) -> None:
        self.amend = amend


class Queue:
    """The bounded queue every strategy starts with: what the event loop calls."""

    strategy = "none"

    def __init__(self, name: str, options: Any) -> None:
        self.name = name
        self.max_queue = options.max_queue
        self.flush_interval = options.flush_interval
        self.queue: collections.deque[Any] = collections.deque()
        self.dropped_queue_full = 0
        self._warned_full = False
        self._stopped = False

    # ---- called from the event loop ------------------------------------------------------
    def put(self, record: Any) -> None:
        if len(self.queue) >= self.max_queue:
            self.dropped_queue_full += 1
            if not self._warned_full:
                self._warned_full = True
                logger.warning(
                    "asgi-log-to-sqlite: queue full (%d records), dropping records for %s; "
                    "see the 'dropped' table",
                    self.max_queue,
                    self.name,
                )
            return
        self.queue.append(record)

    def amend(self, amend: Any) -> None:
        """A late exception for a record queued before (see :class:`exchange.Amend`)."""
        if len(self.queue) < self.max_queue:
            self.queue.append(_AmendMarker(amend))

    # ---- what each strategy provides ---------------------------------------------------------
    def request_flush(self, done: Callable[[], None]) -> None:
        """Call ``done`` once everything queued before now is written (or dropped)."""
        raise NotImplementedError

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything queued before now is written; ``TimeoutError`` past
        ``timeout``."""
        raise NotImplementedError

    async def aflush(self, timeout: float | None = None) -> None:
        """:meth:`flush` from the event loop, without blocking it."""
        raise NotImplementedError

    def stop(self, timeout: float | None = None) -> bool:
        """Drain, write and stop; safe to call twice. False if it could not finish in time."""
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        raise NotImplementedError


class Writer(Queue):
    """A writer that owns its sink: batching, retries and counts, wherever it runs."""

    def __init__(self, sink: Sink, prepare: Prepare, options: Any) -> None:
        super().__init__(sink.name, options)
        self.sink = sink
        self.prepare = prepare
        self.batch_size = options.batch_size
        self.retry_for = options.retry_for
        self.written = 0
        self.dropped_write_failed = 0
        self.dropped_bad_record = 0  # refused by the sink as data; prepare counts its own
        self.write_errors = 0
        self._reported: dict[str, int] = {}
        self._pending: list[Batch] = []  # prepared, not written yet (failing: retried)
        self._records: list[Any] = []  # taken from the queue, not prepared yet
        self._amends: list[Any] = []
        self._markers: list[_Flush] = []
        self._first_failure: float | None = None
        self._retry_at = 0.0
        self._stopping = False
        #: Drops counted where this writer cannot see them (the app side of a writer process),
        #: stored with its own.
        self.dropped_elsewhere: dict[str, int] = {}

    def stored_elsewhere(self, drops: dict[str, int]) -> None:
        """Drops counted elsewhere (``dropped_elsewhere``) that another writer stored already:
        a writer process that replaced one stores only what follows them."""
        self.dropped_elsewhere = dict(drops)
        self._reported = self._drop_counts()

    def stats(self) -> dict[str, Any]:
        stats = getattr(self.prepare, "stats", None)
        pending = sum(len(batch.rows) - batch.done for batch in self._pending)
        return {
            "written": self.written,
            "queued": len(self.queue) + len(self._records) + pending,
            "dropped_queue_full": self.dropped_queue_full,
            "dropped_write_failed": self.dropped_write_failed,
            "dropped_bad_record": self._bad_records(),
            "write_errors": self.write_errors,
            "writer": self.strategy,
            **(stats() if stats is not None else {}),
            # What only the sink knows (a PostgreSQL sink: rows spilled and shipped).
            **getattr(self.sink, "stats", dict)(),
        }

    # ---- the work, wherever the strategy runs it -----------------------------------------------
    def _bad_records(self) -> int:
        return self.dropped_bad_record + getattr(self.prepare, "bad_records", 0)

    def _drop_counts(self) -> dict[str, int]:
        elsewhere = self.dropped_elsewhere.get
        return {
            "queue_full": self.dropped_queue_full + elsewhere("queue_full", 0),
            "write_failed": self.dropped_write_failed,
            "bad_record": self._bad_records() + elsewhere("bad_record", 0),
        }

    def work(self, max_records: int | None = None, deadline: float | None = None) -> bool:
        """Take what is queued (up to ``max_records``, or until ``deadline`` on the monotonic
        clock) and write it in batches; True while work remains: records queued, or a batch
        that failed and waits to be retried."""
        queue = self.queue
        taken = 0
        while True:
            if self._pending and not self._write_pending(give_up=self._stopping):
                return True
            if self._markers:
                self._release()  # everything before them is written
            if (max_records is not None and taken >= max_records) or (
                deadline is not None and time.monotonic() >= deadline
            ):
                break
            records = self._records
            while queue and len(records) < self.batch_size:
                if max_records is not None and taken >= max_records:
                    break
                item = queue.popleft()
                kind = type(item)
                if kind is _AmendMarker:
                    self._amends.append(item.amend)
                elif kind is _Flush:
                    # Released once what came before it is written. Records behind it join the
                    # same transaction: with a flush per response (flush="response") requests
                    # that end together share one commit.
                    self._markers.append(item)
                elif item is _STOP:
                    self._stopping = True
                else:
                    records.append(item)
                    taken += 1
            if records or self._amends or self._drop_counts() != self._reported:
                self._prepare_pending()
            elif not queue and not self._markers:
                break
        if self._warned_full and len(queue) < self.max_queue // 2:
            self._warned_full = False  # caught up: warn again if the queue fills again
        return bool(queue)

    def _prepare_pending(self) -> None:
        records, self._records = self._records, []
        try:
            batch = self.prepare(records) if records else Batch()
        except Exception:
            # A bug of ours in row building: count what was in hand, write on.
            self.dropped_bad_record += len(records)
            logger.exception(
                "asgi-log-to-sqlite: could not prepare %d record(s) for %s; dropped",
                len(records),
                self.name,
            )
            batch = Batch()
        batch.amends, self._amends = self._amends, []
        self._pending.append(batch)

    def _write_pending(self, give_up: bool) -> bool:
        """Write the pending batches; False if one failed and waits to be retried."""
        if not give_up and time.monotonic() < self._retry_at:
            return False
        pending = self._pending
        while pending:
            batch = pending[0]
            counts = self._drop_counts()
            if batch.done == 0:
                batch.dropped = {
                    reason: total - self._reported.get(reason, 0)
                    for reason, total in counts.items()
                    if total != self._reported.get(reason, 0)
                }
            before = batch.done
            try:
                self.sink.write(batch)
            except DataError as error:
                self.written += batch.done - before
                if batch.done == 0:
                    self._reported = counts  # the halves carry them
                pending[0:1] = self._set_apart(batch, error)
                continue
            except Exception as error:
                self.written += batch.done - before
                if not self._failed(batch, error, give_up):
                    return False
                continue
            pending.pop(0)
            self.written += len(batch.rows) - before
            self._reported = counts
            if self._first_failure is not None:
                self._first_failure = None
                # A sink that kept the rows elsewhere (a spill file) says itself when it is back.
                if not getattr(self.sink, "away", False):
                    logger.warning("asgi-log-to-sqlite: writing to %s works again", self.name)
        return True

    def _set_apart(self, batch: Batch, error: Exception) -> list[Batch]:
        """What a batch the sink refused as data becomes: its halves, until the offending rows
        are found; those are dropped and counted, and everything else is written at once."""
        start, stop = batch.done, len(batch.rows)
        extras = Batch(excluded=batch.excluded, dropped=batch.dropped, amends=batch.amends)
        if stop - start <= 1:
            if stop > start:
                self.dropped_bad_record += 1
                logger.error("asgi-log-to-sqlite: a request could not be stored in %s (%s); "
                             "dropped", self.name, error)
            if not (batch.rows[start:stop] or batch.excluded or batch.dropped):
                logger.error("asgi-log-to-sqlite: a late exception could not be stored in %s "
                             "(%s)", self.name, error)
                return []
            return [extras] if stop > start else []
        middle = start + (stop - start) // 2
        first, second = batch.part(start, middle), batch.part(middle, stop)
        first.excluded, first.dropped = batch.excluded, batch.dropped
        first.amends = second.amends = batch.amends
        return [first, second]

    def _failed(self, batch: Batch, error: Exception, give_up: bool) -> bool:
        """A failure worth retrying; True when the batch is dropped (and counted) instead."""
        self.write_errors += 1
        now = time.monotonic()
        if self._first_failure is None:
            self._first_failure = now
            logger.warning(
                "asgi-log-to-sqlite: could not write %d record(s) to %s (%s); retrying",
                len(batch.rows) - batch.done,
                self.name,
                error,
            )
        self.sink.close()  # reopened next time: the file may be gone or replaced
        if not give_up and now - self._first_failure < self.retry_for:
            self._retry_at = now + min(1.0, self.flush_interval)
            return False
        if give_up:
            # Last chance at shutdown: a short retry for a lock held by another process.
            for delay in (0.05, 0.2, 0.5, 1.0):
                time.sleep(delay)
                before = batch.done
                try:
                    self.sink.write(batch)
                except Exception:
                    self.written += batch.done - before
                    self.sink.close()
                    continue
                self.written += len(batch.rows) - before
                self._pending.pop(0)
                self._first_failure = None
                return True
        lost = len(batch.rows) - batch.done
        self.dropped_write_failed += lost
        self._pending.pop(0)
        self._first_failure = None
        logger.error(
            "asgi-log-to-sqlite: dropped %d record(s) that could not be written to %s: %s",
            lost,
            self.name,
            error,
        )
        return True

    def _release(self) -> None:
        markers, self._markers = self._markers, []
        for marker in markers:
            try:
                marker.done()
            except Exception:
                logger.exception("asgi-log-to-sqlite: flush callback failed")

    def _drain_for_stop(self) -> None:
        """Everything left, written now (retried briefly), then every flusher released."""
        self._stopping = True
        try:
            while self.work() or self._pending:
                pass
        except Exception:
            self._recover()
        self._release()
        try:
            self.sink.close()
        except Exception:
            logger.exception("asgi-log-to-sqlite: could not close %s", self.name)

    def _recover(self) -> None:
        """After a bug of ours in the loop: count what was in hand, release flushers, go on."""
        lost = len(self._records) + sum(len(b.rows) - b.done for b in self._pending)
        self._records, self._pending = [], []
        self.dropped_bad_record += lost
        logger.exception(
            "asgi-log-to-sqlite: writer for %s hit an unexpected error; "
            "%d record(s) dropped, writing goes on",
            self.name,
            lost,
        )
        self._release()
        try:
            self.sink.close()
        except Exception:
            pass


class ThreadWriter(Writer):
    """A named daemon thread wakes every ``flush_interval`` (or when asked to flush)."""

    strategy = "thread"

    def __init__(self, sink: Sink, prepare: Prepare, options: Any) -> None:
        super().__init__(sink, prepare, options)
        self._wake = threading.Event()
        #: Set by the thread as it ends, under the lock: a flush asked after that is released
        #: at once (the thread would never see it).
        self._finished = False
        self._finish_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"asgi-log-to-sqlite-writer:{sink.name}", daemon=True
        )
        self._thread.start()  # RuntimeError where threads cannot start: see start_writer()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def request_flush(self, done: Callable[[], None]) -> None:
        with self._finish_lock:
            finished = self._finished or not self._thread.is_alive()
            if not finished:
                self.queue.append(_Flush(done))
        if finished:
            done()
            return
        self._wake.set()

    def flush(self, timeout: float | None = None) -> None:
        done = threading.Event()
        self.request_flush(done.set)
        if not done.wait(timeout):
            raise TimeoutError(f"asgi-log-to-sqlite: flush of {self.name!r} took over {timeout}s")

    async def aflush(self, timeout: float | None = None) -> None:
        done = LoopWaiter()
        self.request_flush(done)
        await done.wait(timeout, self.name)

    def stop(self, timeout: float | None = None) -> bool:
        if not self._stopped:
            self._stopped = True
            self.queue.append(_STOP)
            self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("asgi-log-to-sqlite: writer for %s is still running", self.name)
            return False
        return True

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                try:
                    if not self.work() and not self._pending and not self._stopping:
                        self.sink.idle()
                except Exception:
                    self._recover()
                    time.sleep(min(1.0, self.flush_interval))
            self._drain_for_stop()
        except BaseException:  # not even that worked: never let it pass silently
            logger.exception("asgi-log-to-sqlite: writer for %s stopped by an error", self.name)
        finally:
            # A flush asked while the drain was closing the sink is answered: nothing more
            # will be written by this thread.
            with self._finish_lock:
                self._finished = True
                late = [item for item in list(self.queue) if type(item) is _Flush]
            self._markers.extend(late)
            self._release()


class InlineWriter(Writer):
    """No thread: the event loop writes, in slices of at most :data:`INLINE_SLICE_ROWS` records
    and about :data:`INLINE_SLICE_SECONDS`, scheduled with ``loop.call_later``.

    ``aflush()`` writes slice by slice, letting the loop serve in between; ``flush()`` and
    ``stop()`` write everything at once, in the caller (call them where blocking is fine: at
    shutdown, or with the loop stopped).
    """

    strategy = "inline"

    def __init__(self, sink: Sink, prepare: Prepare, options: Any) -> None:
        super().__init__(sink, prepare, options)
        self._handle: asyncio.TimerHandle | None = None
        self._handle_loop: asyncio.AbstractEventLoop | None = None

    @property
    def alive(self) -> bool:
        return not self._stopped

    def put(self, record: Any) -> None:
        super().put(record)
        # A timer left on a loop that ended (``asyncio.run`` returned before it fired) never
        # fires: the loop serving now gets one.
        if self._handle is None or self._handle_loop is not _running_loop():
            self._schedule(self.flush_interval)

    def _schedule(self, delay: float) -> None:
        loop = _running_loop()
        if loop is None:
            return  # no loop here: the next put() on a loop, a flush or the stop writes it
        if self._handle is not None:
            self._handle.cancel()
        self._handle = loop.call_later(delay, self._tick)
        self._handle_loop = loop

    def _on_the_loop(self) -> contextlib.AbstractContextManager[Any]:
        """The sink waits for no lock longer than a slice: a busy database fails the slice,
        which is retried later, rather than stalling the loop for ``busy_timeout``."""
        waiting_at_most = getattr(self.sink, "waiting_at_most", None)
        if waiting_at_most is None or _running_loop() is None:
            return contextlib.nullcontext()
        return waiting_at_most(INLINE_SLICE_SECONDS)  # type: ignore[no-any-return]

    def _slice(self) -> bool:
        """One bounded slice of work; True while more remains."""
        try:
            with self._on_the_loop():
                return self.work(INLINE_SLICE_ROWS, time.monotonic() + INLINE_SLICE_SECONDS)
        except Exception:
            self._recover()
            return bool(self.queue)

    def _tick(self) -> None:
        self._handle = None
        if self._stopped:
            return
        more = self._slice()
        if self._pending:
            self._schedule(max(0.0, self._retry_at - time.monotonic()))
        elif more:
            self._schedule(0)
        else:
            try:
                with self._on_the_loop():
                    self.sink.idle()
            except Exception:
                logger.exception("asgi-log-to-sqlite: maintenance of %s failed", self.name)

    def request_flush(self, done: Callable[[], None]) -> None:
        self.queue.append(_Flush(done))
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._schedule(0)

    def flush(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        flushed: list[bool] = []
        self.queue.append(_Flush(lambda: flushed.append(True)))
        while not flushed:
            self._slice()
            if self._pending and not flushed:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"asgi-log-to-sqlite: flush of {self.name!r} took over {timeout}s"
                    )
                time.sleep(max(0.0, min(self._retry_at - time.monotonic(), 0.05)))

    async def aflush(self, timeout: float | None = None) -> None:
        import asyncio
        deadline = None if timeout is None else time.monotonic() + timeout
        flushed: list[bool] = []
        self.queue.append(_Flush(lambda: flushed.append(True)))
        while not flushed:
            self._slice()
            if flushed:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"asgi-log-to-sqlite: flush of {self.name!r} took over {timeout}s"
                )
            # Let the loop serve between slices; wait out a retry pause without spinning.
            await asyncio.sleep(max(0.0, self._retry_at - time.monotonic()) if self._pending else 0)

    def stop(self, timeout: float | None = None) -> bool:
        if self._stopped:
            return True
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._drain_for_stop()
        return True


def _running_loop() -> asyncio.AbstractEventLoop | None:
    import asyncio
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def start_writer(kind: str, sink: Sink, prepare: Prepare, options: Any) -> Writer:
    """The writer of strategy ``kind``: "thread", "inline", or "auto" (a thread where one can
    start, else inline; the hosts that need inline are told apart in hosts.py)."""
    if kind == "inline":
        return InlineWriter(sink, prepare, options)
    try:
        return ThreadWriter(sink, prepare, options)
    except RuntimeError:
        if kind == "thread":
            raise
        logger.info("asgi-log-to-sqlite: threads cannot start here; writing on the event loop")
        return InlineWriter(sink, prepare, options)
