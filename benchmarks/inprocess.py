"""In-process cost: event-loop time per request, the ASGI app called directly in a loop.

Run as a script in a fresh interpreter (in ``.venv`` for this package, in ``.venv-seed`` for
0.1.1); prints one JSON object. Each repeat serves ``n`` requests of the realistic mix one after
the other in one coroutine and divides by ``n`` two times: the event-loop thread's own CPU time
(the work done on the loop, unaffected by other processes), and the wall time, which also holds
the time the loop waited for the GIL while the writer thread (if any) held it. Between repeats
the log is flushed, outside the timed part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mix
from app import make

REQUEST = {"type": "http.request", "body": b"", "more_body": False}


async def receive():
    return REQUEST


async def send(message):
    pass


async def serve(app, scopes) -> tuple[float, float]:
    """Wall time and this thread's CPU time for serving ``scopes`` one after the other."""
    cpu = time.thread_time()
    started = time.perf_counter()
    for scope in scopes:
        await app(scope, receive, send)
        await asyncio.sleep(0)  # as a server's loop would: callbacks (a writer's slices) run
    return time.perf_counter() - started, time.thread_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", required=True,
                        choices=["bare", "wrapped", "capture", "capture-responses"])
    parser.add_argument("--db", default="inprocess.db")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    scopes = mix.scopes(args.n)
    app = make(args.kind, args.db)
    per_request, cpu_per_request = [], []
    for _ in range(args.repeats):
        # Fresh dicts each time, as a server builds a new scope per request.
        batch = [dict(scope) for scope in scopes]
        elapsed, cpu = asyncio.run(serve(app, batch))
        per_request.append(elapsed / len(batch) * 1e6)
        cpu_per_request.append(cpu / len(batch) * 1e6)
        if hasattr(app, "flush"):
            app.flush(60)
    result = {"kind": args.kind, "n": args.n, "us_per_request": per_request,
              "median_us": statistics.median(per_request),
              "cpu_us_per_request": cpu_per_request,
              "median_cpu_us": statistics.median(cpu_per_request)}
    if args.kind != "bare":
        if hasattr(app, "close"):
            result["stats"] = app.stats()
            app.close(60)
        conn = sqlite3.connect(args.db)
        result["rows"] = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        result["file_bytes"] = os.path.getsize(args.db)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
