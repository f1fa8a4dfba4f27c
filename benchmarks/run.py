"""Benchmarks: the bare app, this middleware, and asgi-log-to-sqlite 0.1.1, in one run.

    .venv/bin/python benchmarks/run.py            # or: make bench   (a few minutes)
    .venv/bin/python benchmarks/run.py --quick    # shorter runs, for a smoke check
    .venv/bin/python benchmarks/run.py --diagnose # where the throughput under uvicorn goes

What is measured (all on 127.0.0.1, the realistic mix of ``mix.py``):

a. in-process: event-loop time per request, the ASGI app called directly in a loop;
b. under uvicorn (1 worker): requests/s with wrk (installed with apt-get if missing and possible)
   or ``loadgen.py`` in a separate process;
c. writer ingest: records put straight into the writer, rows committed per second;
d. bytes on disk per request after N requests (file size after close, WAL checkpointed).

asgi-log-to-sqlite 0.1.1 pins sqlite-utils 2.3, so it runs from its own virtualenv
``.venv-seed`` (created here if missing, from the package index). Every figure is a median of
repeats; the JSON of the run goes to ``--json`` if given. Speed is only ever asserted here and
in docs/benchmarks.md, never in the test suite.
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
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEED_VENV = os.path.join(ROOT, ".venv-seed")
SEED_PYTHON = os.path.join(SEED_VENV, "bin", "python")

sys.path.insert(0, HERE)

import server_bench

TARGETS = {
    "added_us": 10.0,  # added event-loop time per request, at most
    "throughput_ratio": 0.90,  # wrapped / bare under uvicorn, at least
    "ingest_rows_per_s": 100_000,  # at least
    "bytes_per_request": 70.0,  # at most
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_seed_venv() -> str | None:
    """The python of ``.venv-seed`` with asgi-log-to-sqlite 0.1.1 and uvicorn; None if
    unavailable."""
    if os.path.exists(SEED_PYTHON):
        check = subprocess.run(
            [SEED_PYTHON, "-c", "import asgi_log_to_sqlite, uvicorn, sqlite_utils"],
            capture_output=True, check=False,
        )
        if check.returncode == 0:
            return SEED_PYTHON
    log(f"creating {SEED_VENV} with asgi-log-to-sqlite==0.1.1 from the package index...")
    try:
        subprocess.run([sys.executable, "-m", "venv", SEED_VENV], check=True, timeout=300)
        uvicorn = f"uvicorn[standard]=={metadata.version('uvicorn')}"
        subprocess.run(
            [SEED_PYTHON, "-m", "pip", "install", "--quiet", "asgi-log-to-sqlite==0.1.1", uvicorn],
            check=True, timeout=600,
        )
    except (subprocess.SubprocessError, OSError) as error:
        log(f"could not set up {SEED_VENV}: {error}; 0.1.1 is left out of this run")
        return None
    return SEED_PYTHON


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "uvicorn": metadata.version("uvicorn"),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def run_json(args: list[str], timeout: float = 900) -> dict:
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def in_process(folder: str, seed: str | None, quick: bool) -> dict:
    n, repeats = (5_000, 3) if quick else (20_000, 7)
    script = os.path.join(HERE, "inprocess.py")
    result = {}
    for kind in ("bare", "wrapped"):
        log(f"in-process: {kind} ({repeats} x {n} requests)")
        result[kind] = run_json([sys.executable, script, "--kind", kind, "--n", str(n),
                                 "--repeats", str(repeats), "--db", os.path.join(folder, "a.db")])
    if seed:
        seed_n = 300 if quick else 1_000
        log(f"in-process: 0.1.1 (3 x {seed_n} requests)")
        result["seed"] = run_json([seed, script, "--kind", "wrapped", "--n", str(seed_n),
                                   "--repeats", "3", "--db", os.path.join(folder, "a-seed.db")])
    return result


def under_uvicorn(
    folder: str, seed: str | None, quick: bool, kinds: tuple[str, ...] = ("bare", "wrapped")
) -> dict:
    duration, rounds = (3, 1) if quick else (8, 3)
    load = server_bench.Load(server_bench.find_wrk(), connections=32)
    runs: dict[str, list[float]] = {kind: [] for kind in kinds}
    if seed:
        runs["seed"] = []
    cpu: dict[str, dict[str, list[float]]] = {k: {"main": [], "other": []} for k in runs}
    try:
        for round_ in range(rounds):
            for kind, found in runs.items():  # interleaved: drifts in machine load hit all alike
                log(f"uvicorn: {kind}, round {round_ + 1}/{rounds}, {duration}s")
                python = seed if kind == "seed" else sys.executable
                measured = server_bench.serve_and_measure(
                    python,
                    "wrapped" if kind == "seed" else kind,
                    os.path.join(folder, f"u-{kind}.db"),
                    load,
                    duration,
                    # 0.1.1 raises KeyError on the lifespan scope: run it without lifespan.
                    lifespan="off" if kind == "seed" else "on",
                )
                found.append(measured["rps"])
                if measured["main_cpu_us"] is not None:
                    cpu[kind]["main"].append(measured["main_cpu_us"])
                    cpu[kind]["other"].append(measured["other_cpu_us"])
    finally:
        load.close()
    return {"load": load.name, "duration_s": duration, "rps": runs,
            "median_rps": {k: statistics.median(v) for k, v in runs.items()},
            "cpu_us_per_request": cpu,
            "median_cpu_us_per_request": {
                k: {part: statistics.median(v) for part, v in parts.items() if v}
                for k, parts in cpu.items()
            }}


def writer(folder: str, quick: bool) -> dict:
    n, repeats = (20_000, 1) if quick else (100_000, 3)
    log(f"writer: ingest and size ({repeats} x {n} records)")
    return run_json([sys.executable, os.path.join(HERE, "writer_bench.py"), "--folder", folder,
                     "--n", str(n), "--repeats", str(repeats)])


def report(results: dict) -> str:
    a, b, w = results["in_process"], results["uvicorn"], results["writer"]
    bare_us = a["bare"]["median_us"]
    bare_cpu = a["bare"]["median_cpu_us"]
    added = a["wrapped"]["median_cpu_us"] - bare_cpu
    added_wall = a["wrapped"]["median_us"] - bare_us
    rps = b["median_rps"]
    ratio = rps["wrapped"] / rps["bare"]
    ingest = w["median_rows_per_s"]
    size = w["median_bytes_per_request"]
    ok = {
        "added_us": added <= TARGETS["added_us"],
        "throughput_ratio": ratio >= TARGETS["throughput_ratio"],
        "ingest_rows_per_s": ingest >= TARGETS["ingest_rows_per_s"],
        "bytes_per_request": size <= TARGETS["bytes_per_request"],
    }
    results["summary"] = {"added_us": added, "added_wall_us": added_wall,
                          "throughput_ratio": ratio, "ingest_rows_per_s": ingest,
                          "bytes_per_request": size, "met": ok}

    def mark(key: str) -> str:
        return "met" if ok[key] else "**missed**"

    lines = [
        "| measure | bare app | this middleware | 0.1.1 | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    seed_a = a.get("seed")
    seed_cpu = f"{seed_a['median_cpu_us']:,.0f} µs" if seed_a else "n/a"
    seed_added = f"+{seed_a['median_cpu_us'] - bare_cpu:,.0f} µs" if seed_a else "n/a"
    seed_wall = f"{seed_a['median_us']:,.0f} µs" if seed_a else "n/a"
    lines.append(f"| in-process event-loop CPU time per request (median) | {bare_cpu:.2f} µs | "
                 f"{a['wrapped']['median_cpu_us']:.2f} µs | {seed_cpu} | |")
    lines.append(f"| added event-loop time per request | | +{added:.2f} µs | {seed_added} | "
                 f"<= {TARGETS['added_us']:.0f} µs: {mark('added_us')} |")
    lines.append(f"| in-process wall time per request, incl. waits for the GIL (median) | "
                 f"{bare_us:.2f} µs | {a['wrapped']['median_us']:.2f} µs (+{added_wall:.2f}) | "
                 f"{seed_wall} | |")
    seed_rps = rps.get("seed")
    lines.append(f"| uvicorn requests/s (median) | {rps['bare']:,.0f} | {rps['wrapped']:,.0f} | "
                 f"{f'{seed_rps:,.0f}' if seed_rps else 'n/a'} | |")
    seed_ratio = f"{seed_rps / rps['bare']:.3f}" if seed_rps else "n/a"
    lines.append(f"| ratio to bare | 1.00 | {ratio:.2f} | {seed_ratio} | "
                 f">= {TARGETS['throughput_ratio']:.2f}: {mark('throughput_ratio')} |")
    cpu = b.get("median_cpu_us_per_request", {})

    def cpu_cell(kind: str, part: str) -> str:
        value = cpu.get(kind, {}).get(part)
        return f"{value:,.1f} µs" if value is not None else "n/a"

    lines.append(f"| uvicorn CPU per request, event-loop thread (median) | {cpu_cell('bare', 'main')} | "
                 f"{cpu_cell('wrapped', 'main')} | {cpu_cell('seed', 'main')} | |")
    lines.append(f"| uvicorn CPU per request, other threads (the writer) | {cpu_cell('bare', 'other')} | "
                 f"{cpu_cell('wrapped', 'other')} | {cpu_cell('seed', 'other')} | |")
    lines.append(f"| writer ingest, rows/s (median) | | {ingest:,.0f} "
                 f"({w['median_rows_per_cpu_s']:,.0f} per CPU-second) | | "
                 f">= {TARGETS['ingest_rows_per_s']:,}: {mark('ingest_rows_per_s')} |")
    seed_size = (f"{seed_a['file_bytes'] / seed_a['rows']:.0f} (after {seed_a['rows']:,} requests)"
                 if seed_a else "n/a")
    lines.append(f"| bytes on disk per request | | {size:.1f} (after {w['n']:,} requests) | "
                 f"{seed_size} | <= {TARGETS['bytes_per_request']:.0f}: {mark('bytes_per_request')} |")
    return "\n".join(lines)


DIAGNOSE = {
    "bare": "bare app",
    "discard": "middleware, writer drops its records (the loop's own work)",
    "busy-thread": "bare app beside a thread computing in Python 25% of the time",
    "wrapped": "middleware with its writer",
}


def diagnose(folder: str, quick: bool) -> str:
    """Throughput of the variants of ``app.py`` that take the cost apart, as a table."""
    b = under_uvicorn(folder, None, quick, kinds=tuple(DIAGNOSE))
    rps, cpu = b["median_rps"], b["median_cpu_us_per_request"]
    lines = ["| variant | requests/s | vs bare | loop CPU/request | other threads |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for kind, label in DIAGNOSE.items():
        main_us = cpu.get(kind, {}).get("main")
        other_us = cpu.get(kind, {}).get("other")
        lines.append(
            f"| {label} | {rps[kind]:,.0f} | {rps[kind] / rps['bare']:.2f} | "
            f"{f'{main_us:.1f} µs' if main_us is not None else 'n/a'} | "
            f"{f'{other_us:.1f} µs' if other_us is not None else 'n/a'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (less precise)")
    parser.add_argument("--no-seed", action="store_true", help="leave asgi-log-to-sqlite 0.1.1 out")
    parser.add_argument("--json", help="also write every measurement to this JSON file")
    parser.add_argument("--diagnose", action="store_true",
                        help="only the uvicorn runs of the variants that take the cost apart")
    args = parser.parse_args()
    if args.diagnose:
        folder = tempfile.mkdtemp(prefix="asgi-log-bench-")
        try:
            print(diagnose(folder, args.quick))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return

    started = time.monotonic()
    seed = None if args.no_seed else ensure_seed_venv()
    folder = tempfile.mkdtemp(prefix="asgi-log-bench-")
    try:
        results = {"machine": machine(), "quick": args.quick}
        results["in_process"] = in_process(folder, seed, args.quick)
        results["uvicorn"] = under_uvicorn(folder, seed, args.quick)
        results["writer"] = writer(folder, args.quick)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    table = report(results)
    results["seconds"] = time.monotonic() - started
    m = results["machine"]
    print(f"Machine: {m['cpu']}, {m['cores']} cores, {m['os']}; Python {m['python']}, "
          f"SQLite {m['sqlite']}, uvicorn {m['uvicorn']}; load average at start {m['load_average']}")
    print(f"Load generator: {results['uvicorn']['load']}, {results['uvicorn']['duration_s']} s a run")
    print()
    print(table)
    print(f"\n({results['seconds']:.0f} s{', --quick' if args.quick else ''})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
