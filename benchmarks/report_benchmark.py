"""How long reports take, beside GoAccess on the same data in the same run.

    .venv/bin/python benchmarks/report_benchmark.py              # 1M rows, a year of rollups
    .venv/bin/python benchmarks/report_benchmark.py --rows 200000 --repeat 1 --json out.json

Measured, each the median of ``--repeat`` runs (wall clock, and CPU of all threads):

- the report over a log of ``--rows`` requests (7 days of plausible traffic written with
  ``executemany``, rollups kept as the writer keeps them), over its last 24 hours, and with a
  filter; each renderer once;
- GoAccess (Debian ``goaccess``, where installed) reading the same requests as a combined log
  (written by ``tail``), to JSON; and both over the first 10,000 requests;
- a report read from the rollups alone: a year of hourly rollups for ``--routes`` routes, their
  raw rows pruned;
- the command line's start: ``asgi-log-to-sqlite --help``, and ``report`` on an 11-row log
  (after a first run has filled the user-agent cache);
- what keeping rollups costs the writer: rows per CPU-second of the writer benchmark's mix,
  with and without rollups, interleaved.

The figures go into docs/benchmarks.md ("Reports").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
sys.path.insert(0, HERE)

from asgi_log_to_sqlite import rollups
from asgi_log_to_sqlite.demo import synthetic_log
from asgi_log_to_sqlite.report import (
    Filters,
    build_report,
    render_html,
    render_json,
    render_text,
)
from asgi_log_to_sqlite.report.tail import tail
from asgi_log_to_sqlite.schema import connect, ensure_schema

PROGRAM = os.path.join(os.path.dirname(sys.executable), "asgi-log-to-sqlite")
HOUR, DAY = 3600, 86400


def timed(work: Any, repeat: int) -> tuple[float, float, Any]:
    """Median wall-clock seconds, median CPU seconds (all threads), and the last result."""
    times, cpu, result = [], [], None
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = work()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(times), statistics.median(cpu), result


def timed_process(args: list[str], repeat: int) -> tuple[float, float]:
    """Median wall-clock seconds and CPU seconds (user + system) of a program run."""
    times, cpu = [], []
    for _ in range(repeat):
        before = os.times()
        started = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
        after = os.times()
        cpu.append(after.children_user - before.children_user
                   + after.children_system - before.children_system)
    return statistics.median(times), statistics.median(cpu)


def year_of_rollups(path: str, routes: int, end: float) -> int:
    """A log holding only rollups: a year of hourly rollups for ``routes`` routes (about a
    dozen latency buckets each), folded into days by the library's own code. Hourly rows."""
    conn = connect(path)
    ensure_schema(conn)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO routes (name) VALUES (?)",
                     [(f"/api/v1/resource-{i}/{{id}}",) for i in range(routes)])
    first = int(end // HOUR) * HOUR - 365 * DAY
    conn.execute(
        f"""WITH RECURSIVE hours(h) AS (SELECT {first} UNION ALL SELECT h + {HOUR} FROM hours
                                        WHERE h < {first + 365 * DAY - HOUR})
            INSERT INTO rollups (period, start, route, rows, requests, status_2xx, status_4xx,
                                 status_5xx, not_found, bytes_sent, timed, duration_total,
                                 duration_max)
            SELECT {HOUR}, h, r.id, n, n, n - n / 20, n / 25, n / 100, n / 50, n * 3000, n,
                   n * 0.03 * (1 + r.id % 7), 2.5
            FROM hours, routes AS r, (SELECT 40 + ABS(RANDOM()) % 400 AS n) AS c"""
    )
    conn.execute(
        """WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 11)
           INSERT INTO rollup_latency (rollup, bucket, count)
           SELECT u.id, 95 + u.route % 7 * 4 + k.i, 1 + u.rows / 12 + (k.i = 5) * (u.rows % 12)
           FROM rollups AS u, k"""
    )
    rollups.fold(conn, first, first + 365 * DAY)
    hourly = conn.execute("SELECT COUNT(*) FROM rollups WHERE period = 3600").fetchone()[0]
    conn.execute("COMMIT")
    conn.close()
    return hourly


def writer_cost(folder: str, n: int, repeat: int) -> dict[str, float]:
    """Writer rows per CPU-second with and without rollups (interleaved, same records)."""
    import writer_bench

    batch = writer_bench.records(n)
    # The SQLite sink sums each batch with aggregate_columns (and writes the sums every few
    # seconds): without it, nothing of the rollups is done.
    aggregate = rollups.aggregate_columns
    rates: dict[str, list[float]] = {"with": [], "without": []}
    for i in range(repeat):
        for kind in ("without", "with"):
            path = os.path.join(folder, f"writer-{kind}-{i}.db")
            conn = connect(path)
            ensure_schema(conn)
            conn.close()
            rollups.aggregate_columns = aggregate if kind == "with" else (lambda columns: [])
            try:
                # The thread writer: the patch above reaches it (a writer process does the
                # same SQLite work in its own process).
                rates[kind].append(writer_bench.ingest(path, batch, "thread")[1])
            finally:
                rollups.aggregate_columns = aggregate
    return {kind: statistics.median(values) for kind, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--routes", type=int, default=30, help="routes in the year of rollups")
    parser.add_argument("--writer-rows", type=int, default=100_000)
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args()
    results: dict[str, Any] = {}

    def say(key: str, text: str, value: Any) -> None:
        results[key] = value
        print(text, flush=True)

    with tempfile.TemporaryDirectory() as folder:
        now = time.time()
        path = os.path.join(folder, "big.db")
        started = time.perf_counter()
        synthetic_log(path, args.rows, end=now, days=7)
        print(f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
              f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
        print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f} s "
              f"({os.path.getsize(path) / 1e6:.0f} MB)")

        wall, cpu, report = timed(lambda: build_report([path]), args.repeat)
        say("report_whole", f"report, whole log ({args.rows:,} rows): {wall:.2f} s "
            f"(CPU {cpu:.2f} s)", {"wall": wall, "cpu": cpu})
        wall, cpu, recent = timed(lambda: build_report([path], since=now - DAY), args.repeat)
        say("report_24h", f"report, last 24 hours ({recent['summary']['requests']:,} rows): "
            f"{wall:.2f} s (CPU {cpu:.2f} s)", {"wall": wall, "cpu": cpu})
        wall, cpu, _ = timed(
            lambda: build_report([path], filters=Filters(statuses=((500, 599),))), args.repeat)
        say("report_5xx", f"report, --status 5xx: {wall:.2f} s (CPU {cpu:.2f} s)",
            {"wall": wall, "cpu": cpu})
        for name, render in (("text", render_text), ("json", render_json), ("html", render_html)):
            took, _, _ = timed(lambda render=render: render(report), 1)
            say(f"render_{name}", f"render {name}: {took * 1000:.0f} ms", took)

        goaccess = shutil.which("goaccess")
        if goaccess:
            lines: list[str] = []
            tail(path, lines=args.rows, emit=lines.append)
            access = os.path.join(folder, "access.log")
            with open(access, "w", encoding="utf-8") as file:
                file.write("\n".join(lines) + "\n")
            small = os.path.join(folder, "small.log")
            with open(small, "w", encoding="utf-8") as file:
                file.write("\n".join(lines[:10_000]) + "\n")
            del lines
            for key, log, rows in (("goaccess_whole", access, args.rows),
                                   ("goaccess_10k", small, 10_000)):
                wall, cpu = timed_process(
                    [goaccess, log, "--log-format=COMBINED", "-o",
                     os.path.join(folder, "goaccess.json")], args.repeat)
                say(key, f"GoAccess, {rows:,} lines to JSON: {wall:.2f} s (CPU {cpu:.2f} s)",
                    {"wall": wall, "cpu": cpu})
            small_db = os.path.join(folder, "small.db")
            synthetic_log(small_db, 10_000, end=now, days=1)
            wall, cpu, _ = timed(lambda: build_report([small_db]), args.repeat)
            say("report_10k", f"report, 10,000 rows: {wall:.2f} s (CPU {cpu:.2f} s)",
                {"wall": wall, "cpu": cpu})
        else:
            print("GoAccess: not installed (apt-get install goaccess), not compared")

        year = os.path.join(folder, "year.db")
        hourly = year_of_rollups(year, args.routes, now)
        wall, cpu, rolled = timed(lambda: build_report([year]), args.repeat)
        assert rolled["source"]["rows"] == "rollups"
        say("report_rollups_year", f"report from rollups, a year ({hourly:,} hourly rows, "
            f"{args.routes} routes, {rolled['summary']['requests']:,} requests): {wall:.2f} s "
            f"(CPU {cpu:.2f} s)", {"wall": wall, "cpu": cpu, "hourly_rows": hourly})

        tiny = os.path.join(folder, "tiny.db")
        synthetic_log(tiny, 11, end=now, days=1)
        env_cache = os.path.join(folder, "cache")
        os.environ["ASGI_LOG_TO_SQLITE_CACHE_DIR"] = env_cache
        wall, cpu = timed_process([PROGRAM, "--help"], max(5, args.repeat))
        say("cli_help", f"asgi-log-to-sqlite --help: {wall:.3f} s (CPU {cpu:.3f} s)",
            {"wall": wall, "cpu": cpu})
        first, first_cpu = timed_process([PROGRAM, "report", tiny], 1)
        wall, cpu = timed_process([PROGRAM, "report", tiny], max(5, args.repeat))
        say("cli_report_tiny", f"asgi-log-to-sqlite report on 11 rows: {wall:.3f} s "
            f"(CPU {cpu:.3f} s; first run, parsing user agents: {first:.3f} s)",
            {"wall": wall, "cpu": cpu, "first_wall": first, "first_cpu": first_cpu})

        cost = writer_cost(folder, args.writer_rows, args.repeat)
        say("writer_rollups", f"writer, rows per CPU-second ({args.writer_rows:,} records): "
            f"{cost['without']:,.0f} without rollups, {cost['with']:,.0f} with "
            f"({(1 / cost['with'] - 1 / cost['without']) * 1e6:.1f} µs more per row)", cost)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
