"""The writer process (``writer="process"``, the default where a process can start).

Why a process: a writer thread shares the app's GIL, and building and storing rows holds it in
bursts; the event loop then gets only short slices until the burst is over, and that is what
tail latency under load measured (docs/benchmarks.md). Here the event loop only turns each
finished exchange into a tuple of plain values (:mod:`asgi_log_to_sqlite.wire`) and, every
millisecond or so, pickles the few that accumulated into one frame for a pipe: small, steady
slices. Row building and SQLite run in ``python -m asgi_log_to_sqlite.writer_process``, with the
same prepare step, sink and writer as every other strategy, at a lower CPU priority.

Frames, both ways, are a 4-byte big-endian length and a pickle. To the process: first the
settings ``(target, options, handoff, stored_drops)`` (``handoff``: what the app's own sink
already reported, see ``PostgreSQLSink.handoff``; ``stored_drops``: the app side's drop totals
that earlier processes committed, so that a new one stores only what follows), then ``(ack,
seq, records, items, queue_full, encode_errors)`` where ``items`` is a pickle of its own (a
list of encoded records and ``("a", amend)``) holding ``records`` records: a frame whose items
cannot be loaded here costs its records (counted as dropped), not the process. From it:
``("ready", 0, stats)`` once its sink is open, and ``("ack", seq, stats)`` right after every
commit, for every frame up to ``seq``. Frames not yet acknowledged are kept, and sent again to
a new process if the first one dies. It ends when its input ends (the app closed it, or died):
everything it read is committed first; it ignores SIGTERM and SIGINT, which a process group
gets from systemd, ``docker stop`` or Ctrl-C, so that it outlives the app long enough to finish.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import gc
import logging
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from .writer import LoopWaiter, Queue, Writer, _AmendMarker, _Flush, _running_loop

if TYPE_CHECKING:  # imported where used: the writer process never needs asyncio
    import asyncio

__all__ = ["ProcessWriter", "WriterProcessError", "main"]

logger = logging.getLogger("asgi_log_to_sqlite")

#: How much lower the writer process's CPU priority is than the app's (``os.nice``): under
#: saturation it yields the CPU to the app and catches up when the load drops.
NICENESS = 10
#: Seconds the start of a writer process may take (a Python interpreter and SQLite).
START_TIMEOUT = 20.0
#: Seconds before starting another process after one that died at start, doubled each time up
#: to the maximum (a broken environment must not cost a Python start every few milliseconds).
RESTART_DELAY = 0.1
MAX_RESTART_DELAY = 5.0
#: Seconds a stopping writer waits for each of its threads (they end as soon as it stops).
JOIN_TIMEOUT = 5.0
#: Bytes asked of the kernel for the pipe (Linux; the default 64 KiB holds ~250 records).
PIPE_SIZE = 1 << 20


class WriterProcessError(Exception):
    """The writer process could not be started (or answered nothing)."""


def _frame(value: Any) -> bytes:
    body = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    return len(body).to_bytes(4, "big") + body


def _read(stream: BinaryIO) -> Any:
    header = stream.read(4)
    if len(header) < 4:
        return None
    size = int.from_bytes(header, "big")
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)


# ---- the app's side --------------------------------------------------------------------------
class ProcessWriter(Queue):
    """Ships records to a writer process in small slices of the event loop."""

    strategy = "process"
    #: Records encoded per slice of the event loop at most.
    SLICE = 32
    #: Seconds between slices while records wait: small steady slices keep tail latency down
    #: (1 ms and 32 records measured best; 50 ms and 2,000 tripled p99).
    INTERVAL = 0.001
    #: Bytes waiting for the pipe at most; past it records stay queued (and the queue bound
    #: counts what it drops).
    MAX_BUFFER = 32 << 20
    #: The arguments of ``python`` that run the writer process (benchmarks swap in a process
    #: that stores nothing, to tell the event loop's share of the cost from the writer's).
    COMMAND: tuple[str, ...] = ("-m", "asgi_log_to_sqlite.writer_process")

    def __init__(self, target: str, given: dict[str, Any], encode: Callable[[Any], Any],
                 options: Any, name: str | None = None,
                 handoff: dict[str, Any] | None = None) -> None:
        super().__init__(target if name is None else name, options)
        self.encode = encode
        self.retry_for = options.retry_for
        self._settings = (target, given, handoff or {})
        #: The drop totals (queue full, not encoded) of the last acknowledged frame: stored.
        self._stored_drops = (0, 0)
        #: What processes that ended had counted (stats() adds the live one's).
        self._earlier: dict[str, Any] = {}
        self._lock = threading.Lock()  # uncontended on the loop; flushes from other threads
        #: The thread inside :meth:`_ship` (holding the lock): a flush from that same thread
        #: can only come from a signal handler that interrupted it, and must not wait for it.
        self._shipper: int | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = 0
        #: (seq, frame, records, drop totals it carries) of frames sent and not acknowledged.
        self._unacked: collections.deque[tuple[int, bytes, int, tuple[int, int]]] = (
            collections.deque()
        )
        self._buffer = bytearray()
        self._waiters: list[tuple[int, Callable[[], None]]] = []
        self._remote: dict[str, Any] = {}
        self._lost = 0  # records dropped here after retry_for without a working process
        self._encode_errors = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._dead_since: float | None = None
        #: Since when no process has been ready (None: one is); ``retry_for`` counts from it.
        self._failing_since: float | None = None
        self._next_start = 0.0  # a replacement that dies at start is retried later and later
        self._restart_delay = 0.0
        self._shipped_at = time.monotonic()
        self._answers: threading.Thread | None = None
        self._serving = False  # the first process started: later ones replace it
        self._wake_watch = threading.Event()  # set by stop(): the watch ends now
        self._start_process()
        self._watcher = threading.Thread(
            target=self._watch, daemon=True,
            name=f"asgi-log-to-sqlite-watch:{os.path.basename(self.name)}",
        )
        self._watcher.start()
        if not self._ready.wait(START_TIMEOUT):
            self._abandon()
            raise WriterProcessError(f"the writer process for {target} did not start")
        if self._dead_since is not None:
            self._abandon()
            status = self._process.returncode if self._process is not None else None
            raise WriterProcessError(
                f"the writer process for {target} ended at start (exit status {status})"
            )
        self._serving = True

    # ---- the process -------------------------------------------------------------------------
    def _start_process(self) -> None:
        self._ready.clear()
        try:
            process = subprocess.Popen(
                [sys.executable, *self.COMMAND],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except OSError as error:
            raise WriterProcessError(f"cannot start a writer process: {error}") from error
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._dead_since = None
        try:
            queue_full, bad_record = self._stored_drops
            process.stdin.write(_frame((
                *self._settings, {"queue_full": queue_full, "bad_record": bad_record},
            )))
            process.stdin.flush()
            answers = threading.Thread(
                target=self._read_answers, args=(process,), daemon=True,
                name=f"asgi-log-to-sqlite-answers:{os.path.basename(self.name)}",
            )
            answers.start()
            self._answers = answers
        except (OSError, RuntimeError) as error:  # RuntimeError: no thread can start here
            process.kill()
            process.wait()
            process.stdin.close()
            process.stdout.close()
            raise WriterProcessError(f"cannot talk to a writer process: {error}") from error
        fd = process.stdin.fileno()
        with contextlib.suppress(AttributeError, OSError):  # Linux only
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)  # type: ignore[attr-defined]
        os.set_blocking(fd, False)
        # What an earlier process did not acknowledge goes to this one first, in order.
        self._buffer = bytearray().join(frame for _, frame, _, _ in self._unacked)

    def _read_answers(self, process: subprocess.Popen[bytes]) -> None:
        """A thread that waits in ``read`` (without the GIL) for the process's answers."""
        assert process.stdout is not None
        try:
            while True:
                message = _read(process.stdout)
                if message is None:
                    break
                kind, seq, stats = message
                if kind == "ready":
                    self._failing_since, self._restart_delay = None, 0.0
                    self._ready.set()
                elif kind == "ack":
                    self._acknowledge(seq, stats)
        except Exception:
            logger.exception("asgi-log-to-sqlite: lost the writer process of %s", self.name)
        process.wait()
        with self._lock:  # what it counted stays counted, whatever follows it
            if process is self._process:
                _add_counts(self._earlier, self._remote)
                self._remote = {}
        for stream in (process.stdout, process.stdin):
            try:
                stream.close()  # type: ignore[union-attr]
            except (OSError, ValueError):
                pass  # closed already, or a write to it is being abandoned
        if process is self._process and not self._stopped:
            self._dead_since = time.monotonic()
            self._ready.set()  # whoever waits for the start learns it failed
            if self._serving:  # else the constructor says so, and no other one is started
                logger.error(
                    "asgi-log-to-sqlite: the writer process of %s ended (exit status %s); "
                    "another one takes over", self.name, process.returncode,
                )

    def _acknowledge(self, seq: int, stats: dict[str, Any]) -> None:
        with self._lock:
            self._remote = stats
            while self._unacked and self._unacked[0][0] <= seq:
                self._stored_drops = self._unacked.popleft()[3]
            done = [callback for upto, callback in self._waiters if upto <= seq]
            self._waiters = [(upto, c) for upto, c in self._waiters if upto > seq]
        self._call(done)

    def _release_waiters(self) -> None:
        """Every flush waiting for an acknowledgement returns: none will come."""
        waiters, self._waiters = self._waiters, []
        self._call([callback for _, callback in waiters])

    @staticmethod
    def _call(callbacks: list[Callable[[], None]]) -> None:
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("asgi-log-to-sqlite: flush callback failed")

    def _replace_dead_process(self) -> None:
        """Start another process (the caller holds the lock), at once after a death and then
        less and less often while each one dies at start; past ``retry_for`` without a process
        that got ready, what waits for one is dropped and counted."""
        assert self._dead_since is not None
        if self._stopped:
            return  # stopped: nothing is started any more (a flush racing the stop)
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = self._dead_since
        if now - self._failing_since >= self.retry_for and self._unacked:
            self._lost += sum(count for _, _, count, _ in self._unacked)
            self._unacked.clear()
            self._buffer = bytearray()
            self._release_waiters()
        if now < self._next_start:
            return
        self._restart_delay = min(max(2 * self._restart_delay, RESTART_DELAY), MAX_RESTART_DELAY)
        self._next_start = now + self._restart_delay
        try:
            self._start_process()
        except WriterProcessError as error:
            logger.error("asgi-log-to-sqlite: %s; retrying", error)
            self._dead_since = self._dead_since or time.monotonic()

    def _watch(self) -> None:
        """Records are shipped by the event loop. This thread replaces a writer process that
        died, sends on what the pipe could not take at once, and ships the records a loop left
        behind (it stopped, as ``asyncio.run`` does after one request in a test client), all
        within ``flush_interval``; on a serving loop with a healthy process it finds nothing to
        do."""
        period = min(self.flush_interval, 0.05)
        while not self._stopped:
            if self._wake_watch.wait(period):
                break
            try:
                if self._dead_since is not None:
                    # What waits goes into frames: sent to the next process, or past
                    # ``retry_for`` without one, dropped and counted.
                    self._ship(None)
                elif self._buffer:
                    self._ship(0)
                if self.queue and time.monotonic() - self._shipped_at >= self.flush_interval:
                    self._ship_everything(time.monotonic() + self.flush_interval)
            except Exception:
                logger.exception("asgi-log-to-sqlite: could not hand records to the writer "
                                 "process")

    def _kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def _abandon(self) -> None:
        """A writer that never started: its watch must not go on replacing the process (the
        middleware writes from a thread instead), and nothing of it may outlive it."""
        self._stopped = True
        self._kill()
        self._join_threads()

    def _join_threads(self) -> None:
        """Wait (bounded) for the watch and the answer thread: both end by themselves once
        stopped and the process is gone, and a stopped writer leaves no thread behind."""
        self._wake_watch.set()
        if self._shipper == threading.get_ident():
            return  # stopped from a signal handler inside _ship: they may wait for its lock
        current = threading.current_thread()
        for thread in (self._watcher, self._answers):
            if thread is not None and thread is not current and thread.ident is not None:
                thread.join(JOIN_TIMEOUT)

    # ---- the event loop's side ---------------------------------------------------------------
    def put(self, record: Any) -> None:
        super().put(record)
        if self._handle is None:
            self._schedule(self.INTERVAL)

    def amend(self, amend: Any) -> None:
        super().amend(amend)
        if self._handle is None:
            self._schedule(self.INTERVAL)

    def _schedule(self, delay: float) -> None:
        loop = _running_loop()
        if loop is None:
            return  # no loop here: the next put() on a loop, a flush or the stop ships it
        self._loop = loop
        self._handle = loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._handle = None
        if self._stopped:
            return
        try:
            more = self._ship(self.SLICE, replace=False)
        except Exception:
            logger.exception("asgi-log-to-sqlite: could not hand records to the writer process")
            more = bool(self.queue)
        if more or self._buffer:
            self._schedule(self.INTERVAL)

    def _ship(self, limit: int | None, replace: bool = True) -> bool:
        """Encode up to ``limit`` queued records into one frame and write what the pipe takes
        without blocking; True while records remain queued. ``replace``: start another process
        if this one died (not on the event loop: the watch thread does it within 50 ms)."""
        with self._lock:
            self._shipper = threading.get_ident()
            try:
                return self._ship_locked(limit, replace)
            finally:
                self._shipper = None

    def _ship_locked(self, limit: int | None, replace: bool) -> bool:
        """:meth:`_ship`'s work, under the lock."""
        if self._dead_since is not None and replace:
            self._replace_dead_process()
        queue, encode = self.queue, self.encode
        items: list[Any] = []
        amends = 0
        ack = False
        if len(self._buffer) < self.MAX_BUFFER:
            while queue and (limit is None or len(items) < limit) and limit != 0:
                item = queue.popleft()
                kind = type(item)
                if kind is _AmendMarker:
                    items.append(("a", tuple(item.amend)))
                    amends += 1
                elif kind is _Flush:
                    ack = True
                    self._waiters.append((self._seq + 1, item.done))
                    break  # its frame ends here: acknowledged as soon as it is committed
                else:
                    try:
                        items.append(encode(item))
                    except Exception:
                        self._not_encoded()
        self._shipped_at = time.monotonic()
        if items or ack:
            self._seq += 1
            # The drops only this side sees travel along, to be stored with the rows. The
            # items are a pickle of their own: one the writer process cannot load (a value
            # of a class it cannot import) loses that frame's records, counted, and not
            # the frames around it.
            payload, lost = self._pickle(items)
            drops = (self.dropped_queue_full, self._encode_errors)
            frame = _frame((ack, self._seq, len(items) - amends - lost, payload, *drops))
            self._unacked.append((self._seq, frame, len(items) - lost, drops))
            self._buffer += frame
        self._write_buffer()
        if self._stopped:  # stopped meanwhile: no process will answer
            self._release_waiters()
        return bool(queue)

    def _pickle(self, items: list[Any]) -> tuple[bytes, int]:
        """``items`` pickled, and how many could not be: where one cannot be (a value of a
        local class...), the others are, and it counts as a record that could not be encoded."""
        try:
            return pickle.dumps(items, pickle.HIGHEST_PROTOCOL), 0
        except Exception:
            kept = []
            for item in items:
                try:
                    pickle.dumps(item, pickle.HIGHEST_PROTOCOL)
                except Exception:
                    self._not_encoded()
                else:
                    kept.append(item)
            return pickle.dumps(kept, pickle.HIGHEST_PROTOCOL), len(items) - len(kept)

    def _not_encoded(self) -> None:
        """In an ``except`` block: a record that cannot be encoded or pickled is logged with its
        error and counted (shipped to the writer process as ``bad_record`` drops)."""
        self._encode_errors += 1
        logger.exception("asgi-log-to-sqlite: could not record a request")

    def _write_buffer(self) -> None:
        """As much of the buffer as the pipe takes now."""
        buffer, process = self._buffer, self._process
        if not buffer or process is None or self._dead_since is not None:
            return
        assert process.stdin is not None
        try:
            written = os.write(process.stdin.fileno(), buffer)
        except BlockingIOError:
            return
        except (OSError, ValueError):  # gone: the answer thread notices, a new one gets it all
            self._dead_since = self._dead_since or time.monotonic()
            return
        del buffer[:written]

    # ---- flushing and stopping (any thread) ----------------------------------------------------
    def request_flush(self, done: Callable[[], None]) -> None:
        import asyncio
        if self._stopped:  # stopped: everything was committed, nothing more is taken
            done()
            return
        self.queue.append(_Flush(done))
        if self._loop is not None:
            try:
                if asyncio.get_running_loop() is self._loop:
                    if self._handle is not None:
                        self._handle.cancel()
                    self._handle = self._loop.call_soon(self._tick)
                    return
            except RuntimeError:
                pass
        self._ship_everything()

    def _ship_everything(self, deadline: float | None = None) -> None:
        """Everything queued, shipped now from this thread, waiting for the pipe if needed."""
        while True:
            more = self._ship(None)
            if not more and not self._buffer:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(0.001)

    def flush(self, timeout: float | None = None) -> None:
        if self._stopped:
            return
        if self._shipper == threading.get_ident():
            raise TimeoutError(
                f"asgi-log-to-sqlite: flush of {self.name!r} asked in the middle of shipping "
                "records, on the same thread (from a signal handler?); it cannot wait for itself"
            )
        done = threading.Event()
        deadline = None if timeout is None else time.monotonic() + timeout
        self.queue.append(_Flush(done.set))
        self._ship_everything(deadline)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not done.wait(remaining):
            raise TimeoutError(f"asgi-log-to-sqlite: flush of {self.name!r} took over {timeout}s")

    async def aflush(self, timeout: float | None = None) -> None:
        import asyncio
        if self._stopped:
            return
        done = LoopWaiter()
        deadline = None if timeout is None else time.monotonic() + timeout
        self.queue.append(_Flush(done))
        # Shipped in slices, letting the loop serve in between.
        while not self._stopped and (self._ship(self.SLICE * 8, replace=False) or self._buffer):
            if deadline is not None and time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.001 if self._buffer else 0)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        await done.wait(remaining, self.name)

    def stop(self, timeout: float | None = None) -> bool:
        if self._stopped:
            return True
        finished = True
        try:
            self.flush(timeout)
        except TimeoutError:
            finished = False
            logger.warning("asgi-log-to-sqlite: the writer process for %s did not finish in "
                           "time", self.name)
        self._stopped = True
        self._wake_watch.set()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        process = self._process
        if process is None:
            return finished
        try:
            assert process.stdin is not None
            process.stdin.close()  # end of input: the process commits what it has and exits
        except OSError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self._join_threads()
        # The process committed what it received and ended: a flush still waiting for an
        # acknowledgement (of frames it never got) has nothing more to wait for.
        self._release_waiters()
        return finished

    @property
    def alive(self) -> bool:
        return not self._stopped and self._process is not None and self._process.poll() is None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            remote = _add_counts(_add_counts({}, self._earlier), self._remote)
            waiting = sum(count for _, _, count, _ in self._unacked)
        remote.pop("queued", None)
        remote.pop("dropped_queue_full", None)
        detectors = getattr(self.encode, "detectors", None)
        if detectors is not None:  # the route and actor callables ran on this side
            for name, count in detectors.errors.items():
                remote[name] = remote.get(name, 0) + count
        return {
            "written": remote.pop("written", 0),
            "queued": len(self.queue) + waiting,
            "dropped_queue_full": self.dropped_queue_full,
            "dropped_write_failed": remote.pop("dropped_write_failed", 0) + self._lost,
            "dropped_bad_record": remote.pop("dropped_bad_record", 0) + self._encode_errors,
            "write_errors": remote.pop("write_errors", 0),
            **remote,
            "writer": self.strategy,
        }

    def after_fork(self) -> None:
        """In a forked child: the process and its pipes are the parent's. Close this copy of
        the pipe, or the writer process would never see its input end."""
        self._stopped = True
        process = self._process
        if process is not None:
            for stream in (process.stdin, process.stdout):
                try:
                    if stream is not None:
                        os.close(stream.fileno())
                except OSError:
                    pass


# ---- the writer process --------------------------------------------------------------------------
class _SyncWriter(Writer):
    """The writer of the writer process: no thread, no event loop; its one thread writes what
    it read in whole batches when :func:`main` says so."""

    strategy = "process"

    @property
    def alive(self) -> bool:
        return not self._stopped

    def flush(self, timeout: float | None = None) -> None:
        flushed: list[bool] = []
        self.queue.append(_Flush(lambda: flushed.append(True)))
        while not flushed:
            self.work()
            if self._pending and not flushed:  # failing: wait, then retry (or drop, in time)
                time.sleep(max(0.0, min(self._retry_at - time.monotonic(), 1.0)))

    def stop(self, timeout: float | None = None) -> bool:
        if not self._stopped:
            self._stopped = True
            self._drain_for_stop()
        return True


def _add_counts(into: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    """``counts`` (a process's stats: numbers, and dicts of numbers) added into ``into``."""
    for name, value in counts.items():
        if name in ("queued", "writer"):
            continue  # what it holds now, not what it counted
        if isinstance(value, dict):
            _add_counts(into.setdefault(name, {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            into[name] = into.get(name, 0) + value
        else:
            into[name] = value
    return into


def main() -> None:
    """``python -m asgi_log_to_sqlite.writer_process``: see the module's docstring.

    One thread does everything: it reads what the app sent, and every ``flush_interval`` (or
    when the app asks for an acknowledgement, or a batch is full) writes what it read with the
    inline writer, synchronously. A second thread would only fight it for the GIL.
    """
    # Ends when its input ends, not on the signals its process group gets.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr,
        format="%(levelname)s: [asgi-log-to-sqlite writer %(process)d] %(message)s",
    )
    out = sys.stdout.buffer
    fd = sys.stdin.fileno()  # read raw: a buffered reader would hide bytes from select()
    pending = bytearray()

    def next_frame() -> Any:
        """The next whole frame in ``pending`` (removed from it), or None."""
        if len(pending) < 4:
            return None
        size = int.from_bytes(pending[:4], "big")
        if len(pending) < 4 + size:
            return None
        frame = pickle.loads(pending[4 : 4 + size])
        del pending[: 4 + size]
        return frame

    settings = None
    while settings is None:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return
        pending += chunk
        settings = next_frame()
    try:
        os.nice(NICENESS)
    except OSError:
        pass
    from .exchange import Amend
    from .options import Options
    from .prepare import Prepare
    from .sinks import open_sink

    target, given, handoff, stored_drops = settings
    options = Options.from_kwargs(given)
    sink = open_sink(target, options)
    if handoff and hasattr(sink, "resume"):
        sink.resume(handoff)
    writer = _SyncWriter(sink, Prepare(options), options)
    writer.stored_elsewhere(stored_drops)  # earlier processes stored the app side's drops so far
    # The app side bounds the queue (``max_queue``, counted there): what reaches this process
    # was shipped already and must not be dropped again. One read brings at most a megabyte of
    # frames, and nothing more is read while they are written.
    writer.max_queue = sys.maxsize
    # Records are short-lived and make no reference cycles: the cycle collector walking every
    # record waiting in a burst only costs time. It runs rarely here, and after each commit.
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)

    def answer(kind: str, seq: int) -> None:
        try:
            out.write(_frame((kind, seq, writer.stats())))
            out.flush()
        except (OSError, ValueError):
            pass  # the app is gone: nobody to tell

    def commit(seq: int | None) -> None:
        writer.flush(None)
        if seq is not None:
            answer("ack", seq)
        gc.collect(1)

    answer("ready", 0)
    unacknowledged: int | None = None  # the last frame read and not yet committed
    next_commit = time.monotonic() + options.flush_interval
    ended = False
    try:
        while not ended:
            timeout = max(0.0, next_commit - time.monotonic())
            ready, _, _ = select.select([fd], [], [], timeout)
            if ready:
                chunk = os.read(fd, 1 << 20)
                ended = not chunk
                pending += chunk
            asked = False
            while (message := next_frame()) is not None:
                ack, seq, records, payload, queue_full, encode_errors = message
                try:
                    items = pickle.loads(payload)
                except Exception as error:
                    items = ()
                    writer.dropped_bad_record += records
                    logger.error("asgi-log-to-sqlite: %d record(s) could not be read, dropped "
                                 "(a value of a class this process cannot import?): %r",
                                 records, error)
                # The app side's own drops, stored with the rows.
                writer.dropped_elsewhere = {"queue_full": queue_full, "bad_record": encode_errors}
                for item in items:
                    if item[0] == "a":
                        writer.amend(Amend(*item[1]))
                    else:
                        writer.put(item)
                unacknowledged = seq
                asked = asked or ack
            now = time.monotonic()
            if asked or ended or now >= next_commit or len(writer.queue) >= options.batch_size:
                # Acknowledged right after the commit: a frame committed and not acknowledged
                # would be sent again to the next process, and stored twice, if this one died.
                commit(unacknowledged)
                unacknowledged = None
                next_commit = time.monotonic() + options.flush_interval
                if not writer.queue:
                    writer.sink.idle()
    finally:
        writer.stop(None)
        if unacknowledged is not None:
            answer("ack", unacknowledged)
        os._exit(0)


if __name__ == "__main__":
    main()
