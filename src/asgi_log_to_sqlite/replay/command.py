"""``replay`` from start to end: the pieces put together, Ctrl-C handled, the report returned.

The first Ctrl-C stops sending and lets the requests in flight finish (each is bounded by the
timeout); a second one cancels them. The report then covers what was done and says it was
interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

from ..report.files import display
from .client import Sender, load_app
from .diff import DEFAULT_LATENCY_FLOOR, Diff, FailOn
from .pacing import AsFastAsAllowed, Pace
from .plan import Planner
from .progress import Progress
from .run import Replay
from .select import ReplayError, Selection, count_rows, open_log

__all__ = ["run_replay"]

#: Requests in flight at most with ``--speed`` or ``--rate`` when ``--concurrency`` is not given.
DEFAULT_CONCURRENCY = 16


def run_replay(
    log: str,
    selection: Selection,
    *,
    target: str | None = None,
    app_spec: str | None = None,
    app: Any = None,
    pace: Pace | None = None,
    concurrency: int | None = None,
    limit: int | None = None,
    duration: float | None = None,
    loop: bool = False,
    planner: Planner | None = None,
    timeout: float = 30.0,
    check_noise: bool = False,
    fail_on: FailOn | None = None,
    latency_floor: float = DEFAULT_LATENCY_FLOOR,
    log_to: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Replay the selected rows of ``log`` and return the diff report (a JSON-ready dict).

    ``concurrency`` None is one request at a time without a pace: each replayed latency is then
    the target's own, where N kept in flight would measure the target's queue and make every
    route look slower. With a pace it is 16, enough to keep a schedule against a slow target."""
    open_log(log)[0].close()  # a bad file fails here, before anything is sent
    if app_spec is not None:
        app = load_app(app_spec)
    pace = pace or AsFastAsAllowed()
    if concurrency is None:
        concurrency = 1 if isinstance(pace, AsFastAsAllowed) else DEFAULT_CONCURRENCY
    fail_on = fail_on or FailOn()
    diff = Diff(latency_ratio=fail_on.latency or 1.5, latency_floor=latency_floor)
    bar = None
    if progress:
        total = None if loop else count_rows(log, selection)
        if limit is not None:
            total = limit if total is None else min(total, limit)
        bar = Progress(total)

    async def main() -> None:
        async with Sender(target=target, app=app, timeout=timeout, log_to=log_to,
                          concurrency=concurrency) as sender:
            replay = Replay(
                log, sender, selection=selection, planner=planner, pace=pace,
                concurrency=concurrency, limit=limit, duration=duration, loop=loop,
                check_noise=check_noise, diff=diff, progress=bar,
            )
            running = asyncio.get_running_loop()
            handled = False
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                running.add_signal_handler(signal.SIGINT, replay.interrupt)
                handled = True
            try:
                await replay.run()
            finally:
                if handled:
                    running.remove_signal_handler(signal.SIGINT)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # before the handler was in place, or where there is none
        diff.interrupted = True
    except OSError as error:
        raise ReplayError(f"cannot replay: {error}") from None
    finally:
        if bar is not None:
            bar.close()
    mode: dict[str, Any] = {**pace.describe(), "concurrency": concurrency}
    if check_noise:
        mode["check_noise"] = True
    shown = display(target) if target else f"app {app_spec or app!r}"
    meta = {"log": display(log), "target": shown, "mode": mode,
            "selection": _selection(selection)}
    if log_to:
        meta["logged_to"] = display(log_to)
    return diff.report(meta, fail_on)


def _selection(selection: Selection) -> dict[str, Any]:
    return {
        "since": selection.since,
        "until": selection.until,
        "paths": list(selection.paths),
        "routes": list(selection.routes),
        "statuses": [list(pair) for pair in selection.statuses],
        "all_methods": selection.all_methods,
    }
