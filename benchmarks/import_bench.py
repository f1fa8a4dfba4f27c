"""``import`` speed: lines per second from a combined-format log into a fresh log database.

    .venv/bin/python benchmarks/import_bench.py                  # 1,000,000 lines, 5 rounds
    .venv/bin/python benchmarks/import_bench.py --lines 200000 --rounds 3
    .venv/bin/python benchmarks/import_bench.py --json import.json

The log comes from the generator the tests compare with GoAccess (tests/accesslogs.py): about
200 bytes a line, 2,000 paths with a long tail, a dozen user agents, referers, query strings on a
fifth of the lines, several time zones, about one request per second (so nearly every timestamp
is new). It is written once to ``--folder`` (plain, and gzip for the gzip round) and reused.

Each measurement is a fresh process that calls ``import_logs`` once, as the command does, into
a new database (WAL, the schema's index on ``start``), and reports wall-clock seconds and the CPU
seconds of its own process and of the reading process (``--parallel``). The modes alternate in
every round, so that other load on the machine falls on each alike; the figures are medians, and
the load average before and after is printed with them. Speed is never asserted in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "src"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

MODES = {
    "one process": ("plain", False),
    "two processes": ("plain", True),
    "two processes, gzip": ("gzip", True),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_log(folder: str, lines: int, seed: int) -> dict[str, str]:
    """The generated log, plain and gzip, written once per size and seed."""
    from accesslogs import entries, write_log

    paths = {
        "plain": os.path.join(folder, f"combined-{lines}-{seed}.log"),
        "gzip": os.path.join(folder, f"combined-{lines}-{seed}.log.gz"),
    }
    for kind, path in paths.items():
        if not os.path.exists(path):
            log(f"writing {path} ({lines:,} lines)...")
            write_log(path + ".tmp", entries(lines, seed=seed), compress=kind == "gzip")
            os.replace(path + ".tmp", path)
    return paths


def measure_once(source: str, parallel: bool) -> dict:
    """One import into a fresh database, in this process (called in a child of the driver)."""
    from asgi_log_to_sqlite.importer import ImportOptions, import_logs

    with tempfile.TemporaryDirectory() as folder:
        db = os.path.join(folder, "log.db")
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        started, cpu = time.perf_counter(), time.process_time()
        (result,) = import_logs(db, [source], ImportOptions(parallel=parallel))
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        reader = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        size = os.path.getsize(db) + os.path.getsize(db + "-wal") if os.path.exists(
            db + "-wal") else os.path.getsize(db)
    return {"seconds": seconds, "lines": result.lines, "rows": result.rows, "cpu_main": cpu,
            "cpu_reader": reader, "db_bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "import-bench"))
    parser.add_argument("--json", help="also write every measurement here")
    parser.add_argument("--once", nargs=2, metavar=("SOURCE", "PARALLEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        print(json.dumps(measure_once(args.once[0], args.once[1] == "1")))
        return

    os.makedirs(args.folder, exist_ok=True)
    paths = ensure_log(args.folder, args.lines, args.seed)
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        for mode, (kind, parallel) in MODES.items():
            log(f"round {round_ + 1}/{args.rounds}: {mode}")
            out = subprocess.run(
                [sys.executable, __file__, "--once", paths[kind], "1" if parallel else "0"],
                capture_output=True, text=True, timeout=3600, check=True,
            )
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    load_after = os.getloadavg()

    print(f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")
    print(f"{args.lines:,} combined-format lines, "
          f"{os.path.getsize(paths['plain']) / args.lines:.0f} bytes each "
          f"({os.path.getsize(paths['plain']) / 1e6:.0f} MB; gzip "
          f"{os.path.getsize(paths['gzip']) / 1e6:.0f} MB); median of {args.rounds} rounds")
    print(f"{'mode':22} {'lines/s':>9} {'min':>9} {'max':>9} {'seconds':>8} "
          f"{'CPU us/line: main':>18} {'reader':>7}")
    summary = {}
    for mode, measured in runs.items():
        rates = [m["lines"] / m["seconds"] for m in measured]
        lines = measured[0]["lines"]
        summary[mode] = {
            "median_lines_per_s": statistics.median(rates),
            "min_lines_per_s": min(rates),
            "max_lines_per_s": max(rates),
            "median_seconds": statistics.median(m["seconds"] for m in measured),
            "median_cpu_main_us": statistics.median(m["cpu_main"] for m in measured) / lines * 1e6,
            "median_cpu_reader_us": statistics.median(
                m["cpu_reader"] for m in measured) / lines * 1e6,
            "rows": measured[0]["rows"],
            "db_bytes_per_row": measured[0]["db_bytes"] / max(measured[0]["rows"], 1),
        }
        s = summary[mode]
        print(f"{mode:22} {s['median_lines_per_s']:9,.0f} {s['min_lines_per_s']:9,.0f} "
              f"{s['max_lines_per_s']:9,.0f} {s['median_seconds']:8.2f} "
              f"{s['median_cpu_main_us']:18.2f} {s['median_cpu_reader_us']:7.2f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"lines": args.lines, "rounds": args.rounds, "runs": runs,
                       "summary": summary, "load_average": [load_before, load_after]},
                      file, indent=2)


if __name__ == "__main__":
    main()
