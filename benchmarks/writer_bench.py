"""Writer ingest (rows/s) and bytes on disk per request, for this package's writer.

Run as a script in ``.venv``; prints one JSON object. ``n`` records of the realistic mix are put
on the writer's queue as fast as possible; ingest is ``n`` divided by the time from the first
put to the end of the flush that commits the last one. Then the writer is closed, the WAL
checkpointed and truncated, and the file size divided by ``n``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mix

from asgi_log_to_sqlite.exchange import Exchange
from asgi_log_to_sqlite.options import Options
from asgi_log_to_sqlite.prepare import Prepare
from asgi_log_to_sqlite.schema import connect, ensure_schema
from asgi_log_to_sqlite.sinks.sqlite import SQLiteSink
from asgi_log_to_sqlite.wire import Encoder
from asgi_log_to_sqlite.writer import ThreadWriter
from asgi_log_to_sqlite.writer_process import ProcessWriter

CONTENT_TYPES = [b"text/html; charset=utf-8", b"application/json", b"text/css", b"image/png"]


def records(n: int, seed: int = 2) -> list[Exchange]:
    rng = random.Random(seed)
    now = time.time() - n / 100
    out = []
    for i, scope in enumerate(mix.scopes(n)):
        exchange = Exchange(scope, now + i / 100, 0.0)
        exchange.key = i + 1
        exchange.status = 200 if rng.random() < 0.9 else rng.choice((301, 304, 404, 500))
        exchange.response_headers = [(b"content-type", rng.choice(CONTENT_TYPES))]
        exchange.duration = rng.uniform(0.0005, 0.2)
        exchange.ttfb = exchange.duration * rng.uniform(0.3, 1.0)
        exchange.body_size = rng.randint(200, 60_000)
        out.append(exchange)
    return out


def children_cpu() -> float:
    """CPU seconds of this process's children (a writer process), from /proc."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import server_bench

    return server_bench.process_cpu(os.getpid()) or 0.0


def ingest(path: str, batch: list[Exchange], strategy: str) -> tuple[float, float]:
    """Rows per second from the first put to the commit of the last row, by the wall clock and
    per CPU second spent by the writer: this process's (a thread writer; the main thread only
    waits), or the writer process's alone (the event loop's share, encoding records for it, is
    measured by inprocess.py)."""
    options = Options.from_kwargs({"max_queue": len(batch) + 10})
    if strategy == "thread":
        writer: Any = ThreadWriter(SQLiteSink(path, options), Prepare(options), options)
    else:
        writer = ProcessWriter(path, {"max_queue": len(batch) + 10}, Encoder(options), options)
    done = threading.Event()
    cpu, child_cpu = time.process_time(), children_cpu()
    started = time.perf_counter()
    for exchange in batch:
        writer.put(exchange)
    writer.request_flush(done.set)
    if not done.wait(600):
        raise TimeoutError("writer did not finish")
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu if strategy == "thread" else children_cpu() - child_cpu
    stats = writer.stats()
    writer.stop(60)
    if stats["written"] != len(batch):
        raise RuntimeError(f"wrote {stats['written']} of {len(batch)} rows: {stats}")
    return len(batch) / elapsed, len(batch) / cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", required=True)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--writer", choices=["thread", "process"], default="thread")
    args = parser.parse_args()

    batch = records(args.n)
    rates, cpu_rates, sizes = [], [], []
    for repeat in range(args.repeats):
        path = os.path.join(args.folder, f"ingest-{repeat}.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        conn = connect(path)  # what the middleware does at construction
        ensure_schema(conn)
        conn.close()
        rate, cpu_rate = ingest(path, batch, args.writer)
        rates.append(rate)
        cpu_rates.append(cpu_rate)
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        sizes.append(os.path.getsize(path) / args.n)
    print(json.dumps({
        "n": args.n,
        "writer": args.writer,
        "rows_per_s": rates,
        "median_rows_per_s": statistics.median(rates),
        "rows_per_cpu_s": cpu_rates,
        "median_rows_per_cpu_s": statistics.median(cpu_rates),
        "bytes_per_request": sizes,
        "median_bytes_per_request": statistics.median(sizes),
    }))


if __name__ == "__main__":
    main()
