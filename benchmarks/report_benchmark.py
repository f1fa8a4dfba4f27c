"""How long a report takes over a large log: 1,000,000 rows by default.

    .venv/bin/python benchmarks/report_benchmark.py              # 1M rows, text/JSON/HTML
    .venv/bin/python benchmarks/report_benchmark.py --rows 200000 --repeat 1

The log is generated with ``executemany`` straight into the schema (7 days of plausible traffic:
~330 paths, a dozen user agents, referrers, hosts, statuses, log-normal durations), then
``build_report`` runs over the whole log and over the last 24 hours, and each renderer runs once.
The figures (median of ``--repeat``) go into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from asgi_log_to_sqlite.demo import synthetic_log
from asgi_log_to_sqlite.report import (
    build_report,
    render_html,
    render_json,
    render_text,
)


def timed(work, repeat: int) -> tuple[float, float, object]:
    """Median wall-clock seconds, median CPU seconds (all threads), and the last result."""
    times, cpu, result = [], [], None
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = work()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(times), statistics.median(cpu), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="write the generated log here and keep it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = args.keep or os.path.join(folder, "big.db")
        now = time.time()
        started = time.perf_counter()
        synthetic_log(path, args.rows, end=now, days=7)
        generated = time.perf_counter() - started
        size = os.path.getsize(path)
        print(f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
              f"{os.cpu_count()} CPUs")
        print(f"generated {args.rows:,} rows in {generated:.1f} s ({size / 1e6:.0f} MB)")
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        whole, whole_cpu, report = timed(lambda: build_report([path]), args.repeat)
        print(f"report, whole log ({args.rows:,} rows): {whole:.2f} s (CPU {whole_cpu:.2f} s)")
        day, day_cpu, recent = timed(lambda: build_report([path], since=now - 86400), args.repeat)
        print(f"report, last 24 hours ({recent['summary']['requests']:,} rows): {day:.2f} s "
              f"(CPU {day_cpu:.2f} s)")
        for name, render in (("text", render_text), ("json", render_json), ("html", render_html)):
            took, _, _ = timed(lambda render=render: render(report), 1)
            print(f"render {name}: {took * 1000:.0f} ms")


if __name__ == "__main__":
    main()
