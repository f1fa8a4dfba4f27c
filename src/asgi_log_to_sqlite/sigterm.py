"""Commit the queue before SIGTERM ends a process in which nothing else handles SIGTERM.

Servers that stop gracefully install their own handler (uvicorn, gunicorn, granian, daphne) and
are left alone. hypercorn's worker processes have none: when the whole process group is
signalled, as systemd and ``docker stop`` do, a worker would die at once with its queue. Here,
only in a process where SIGTERM still has its default action:

1. The handler runs between two bytecodes of the main thread, which may hold any lock (a
   writer's wake-up event, a logging handler's), so it takes none: it writes a byte to a pipe.
   A thread of this module, parked on that pipe, commits every queue. Responses keep being
   served and queued meanwhile, and more SIGTERMs (hypercorn's parent terminates its other
   workers when one ends) only wait for it.
2. When that is done, the thread signals the main thread again. The handler then holds the
   event loop where it stands, so that no response completes any more, while the thread commits
   what was queued meanwhile; then SIGTERM ends the process, as it would have at first.

Every wait is bounded, so a lock held by the interrupted code costs time, never a hang.
"""

from __future__ import annotations

import os
import select
import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["install"]

#: Seconds the first commit may take; the last one, with the event loop held, may take less.
FLUSH_TIMEOUT = 10.0
FINAL_TIMEOUT = 5.0

_pid: int | None = None  # the process whose SIGTERM was looked at
_wake: tuple[int, int] | None = None  # handler -> thread
_release: tuple[int, int] | None = None  # thread -> handler, in the last step
_requested = False
_committed = False
_commit: Callable[[float], None] | None = None


def install(commit: Callable[[float], None]) -> None:
    """Once per process, from the main thread: ``commit(timeout)`` flushes every queue."""
    global _pid, _wake, _release, _requested, _committed, _commit
    if _pid == os.getpid() or threading.current_thread() is not threading.main_thread():
        return  # done in this process already, or not possible: only the main thread may
    try:
        if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, _handler):
            _pid = os.getpid()  # someone else's handler: theirs to run
            return
        _wake, _release = os.pipe(), os.pipe()
        _requested = _committed = False
        _commit = commit
        threading.Thread(target=_commit_then_end, name="asgi-log-to-sqlite-sigterm",
                         daemon=True).start()
        _pid = os.getpid()
        signal.signal(signal.SIGTERM, _handler)
    except (AttributeError, OSError, ValueError):
        pass


def _handler(signum: int, frame: Any) -> None:
    global _requested
    wake, release = _wake, _release
    if _pid != os.getpid() or wake is None or release is None:
        _end()  # a forked child without the thread: end as SIGTERM would have
        return
    try:
        if not _committed:
            if not _requested:
                _requested = True
                os.write(wake[1], b"1")
            return
        # Step 2: the event loop is held here while the thread commits the last records.
        os.write(wake[1], b"2")
        select.select([release[0]], [], [], FINAL_TIMEOUT)
    except OSError:
        pass
    _end()


def _end() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _commit_then_end() -> None:
    global _committed
    wake, release, commit = _wake, _release, _commit
    if wake is None or release is None or commit is None:
        return
    try:
        os.read(wake[0], 1)
    except OSError:
        return
    commit(FLUSH_TIMEOUT)
    _committed = True
    try:
        signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)  # type: ignore[arg-type]
    except (AttributeError, OSError, ValueError):
        os.kill(os.getpid(), signal.SIGTERM)
    try:
        os.read(wake[0], 1)
    except OSError:
        return
    commit(FINAL_TIMEOUT)
    os.write(release[1], b"!")
