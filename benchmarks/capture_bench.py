"""What capture costs the event loop per body chunk: the taps alone, in-process.

    .venv/bin/python benchmarks/capture_bench.py             # prints JSON

For each chunk size and chunk count, a body is fed through a request tap (kept within the limit,
hashed past it) and a response tap (hashed as it streams, kept too with capture_responses), the
way the middleware's observer feeds them on the event loop; the figure is the median time per
chunk over repeats. Work per chunk is O(1) apart from hashing the chunk when the time per chunk
does not grow with the number of chunks, and grows with the chunk's size only by SHA-256's
speed (a pass over the bytes, in C, with the GIL released for chunks over 2 KiB).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from asgi_log_to_sqlite.capture import BodyTap, ResponseTap
from asgi_log_to_sqlite.validators import CAPTURE_BODY_LIMIT as DEFAULT_BODY_LIMIT


def per_chunk_ns(make, chunk: bytes, count: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        tap = make()
        started = time.perf_counter_ns()
        add = tap.add
        for _ in range(count):
            add(chunk)
        times.append((time.perf_counter_ns() - started) / count)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", default="16,1024,16384")
    parser.add_argument("--counts", default="10,100,1000,10000")
    args = parser.parse_args()
    taps = {
        "request": lambda: BodyTap(DEFAULT_BODY_LIMIT),
        "response_hash_only": lambda: ResponseTap(DEFAULT_BODY_LIMIT, keep=False),
        "response_kept": lambda: ResponseTap(DEFAULT_BODY_LIMIT, keep=True),
    }
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        chunk = os.urandom(size)
        for count in (int(c) for c in args.counts.split(",")):
            for name, make in taps.items():
                results.append({
                    "tap": name, "chunk_bytes": size, "chunks": count,
                    "ns_per_chunk": round(per_chunk_ns(make, chunk, count, args.repeats), 1),
                })
    print(json.dumps({"python": sys.version.split()[0], "limit": DEFAULT_BODY_LIMIT,
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
