"""Benchmarks: the bare app, this middleware, and asgi-log-to-sqlite 0.1.1, in one run.

    .venv/bin/python benchmarks/run.py            # or: make bench   (a few minutes)
    .venv/bin/python benchmarks/run.py --quick    # shorter runs, for a smoke check
    .venv/bin/python benchmarks/run.py --diagnose # where the throughput under uvicorn goes

What is measured (all on 127.0.0.1, the realistic mix of ``mix.py``):

a. in-process: event-loop time per request, the ASGI app called directly in a loop;
b. under uvicorn (1 worker), saturated by wrk (installed with apt-get if missing and possible;
   else ``loadgen.py`` in a separate process): requests/s, p50 and p99 latency, CPU per request,
   for the bare app, this middleware (its default writer process, and its writer thread) and
   uvicorn's own access log;
c. the same at a fixed rate of half the bare app's maximum (wrk, each connection pausing
   between requests): p50 and p99;
d. writer ingest: records put straight into the writer, rows committed per second and per
   CPU-second of the writer;
e. bytes on disk per request after N requests (file size after close, WAL checkpointed).

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
    "added_us": 6.0,  # added event-loop CPU per request, at most
    "throughput_ratio": 0.75,  # wrapped / bare under uvicorn, at least
    "p99_ratio": 1.5,  # wrapped / bare p99 under saturation, at most
    "paced_p99_ratio": 1.2,  # wrapped / bare p99 at half the bare maximum, at most
    "ingest_rows_per_cpu_s": 100_000,  # at least
    "bytes_per_request": 90.0,  # at most
}

#: The variants under uvicorn: (BENCH_APP kind, middleware options).
VARIANTS = {
    "bare": ("bare", {}),
    "wrapped": ("wrapped", {}),  # the default: a writer process
    "thread": ("wrapped", {"writer": "thread"}),
    "accesslog": ("accesslog", {}),
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


def run_json(args: list[str], timeout: float = 900, env: dict | None = None) -> dict:
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False,
                         env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def in_process(folder: str, seed: str | None, quick: bool) -> dict:
    n, repeats = (5_000, 3) if quick else (20_000, 7)
    script = os.path.join(HERE, "inprocess.py")
    result = {}
    for name, kind, options in (("bare", "bare", {}), ("wrapped", "wrapped", {}),
                                ("thread", "wrapped", {"writer": "thread"})):
        log(f"in-process: {name} ({repeats} x {n} requests)")
        result[name] = run_json(
            [sys.executable, script, "--kind", kind, "--n", str(n), "--repeats", str(repeats),
             "--db", os.path.join(folder, f"a-{name}.db")],
            env={"BENCH_OPTIONS": json.dumps(options)},
        )
    if seed:
        seed_n = 300 if quick else 1_000
        log(f"in-process: 0.1.1 (3 x {seed_n} requests)")
        result["seed"] = run_json([seed, script, "--kind", "wrapped", "--n", str(seed_n),
                                   "--repeats", "3", "--db", os.path.join(folder, "a-seed.db")])
    return result


def _median(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def under_uvicorn(
    folder: str, seed: str | None, quick: bool, variants: dict | None = None,
    load: server_bench.Load | None = None,
) -> dict:
    """Each variant under the same load, rounds interleaved so that drifts in the machine's
    load hit all alike; per round, each variant's figures are also taken relative to the bare
    app's in the same round, and the medians of those ratios reported."""
    duration, rounds = (3, 1) if quick else (8, 3)
    variants = dict(variants or VARIANTS)
    own_load = load is None
    load = load or server_bench.Load(server_bench.find_wrk(), connections=32)
    if seed:
        variants["seed"] = ("wrapped", {})
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    try:
        for round_ in range(rounds):
            for name, (kind, options) in variants.items():
                log(f"uvicorn: {name}, round {round_ + 1}/{rounds}, {duration}s ({load.name})")
                python = seed if name == "seed" else sys.executable
                runs[name].append(server_bench.serve_and_measure(
                    python, kind, os.path.join(folder, f"u-{name}.db"), load, duration,
                    # 0.1.1 raises KeyError on the lifespan scope: run it without lifespan.
                    lifespan="off" if name == "seed" else "on",
                    options=options,
                ))
    finally:
        if own_load:
            load.close()
    medians = {
        name: {key: _median([r[key] for r in found])
               for key in ("rps", "p50_ms", "p99_ms", "main_cpu_us", "other_cpu_us",
                           "child_cpu_us")}
        for name, found in runs.items()
    }
    ratios = {
        name: {key: _median([r[key] / b[key] if r[key] and b[key] else None
                             for r, b in zip(found, runs["bare"], strict=True)])
               for key in ("rps", "p99_ms")}
        for name, found in runs.items()
    }
    return {"load": load.name, "duration_s": duration, "rounds": rounds, "runs": runs,
            "medians": medians, "ratios": ratios}


def paced(folder: str, quick: bool, bare_rps: float) -> dict:
    """The variants at a fixed rate of half the bare app's maximum: wrk's connections each pause
    between a response and their next request."""
    rate = bare_rps / 2
    # wrk's pause is whole milliseconds: 2 ms, and enough connections for the rate (each makes
    # one request per pause plus about one response's time).
    delay_ms = 2
    connections = max(1, round(rate * (delay_ms + 0.3) / 1000))
    load = server_bench.Load(server_bench.find_wrk(), connections=connections, delay_ms=delay_ms)
    try:
        result = under_uvicorn(folder, None, quick, load=load)
    finally:
        load.close()
    result["target_rps"] = rate
    return result


def writer(folder: str, quick: bool) -> dict:
    n, repeats = (20_000, 1) if quick else (100_000, 3)
    found = {}
    for strategy in ("thread", "process"):
        log(f"writer: ingest and size, {strategy} ({repeats} x {n} records)")
        found[strategy] = run_json(
            [sys.executable, os.path.join(HERE, "writer_bench.py"), "--folder", folder,
             "--n", str(n), "--repeats", str(repeats), "--writer", strategy])
    return found


def _ms(value: float | None) -> str:
    return f"{value:.2f} ms" if value is not None else "n/a"


def _us(value: float | None) -> str:
    return f"{value:,.1f} µs" if value is not None else "n/a"


def report(results: dict) -> str:
    a, b, c, w = results["in_process"], results["uvicorn"], results["paced"], results["writer"]
    bare_cpu = a["bare"]["median_cpu_us"]
    added = a["wrapped"]["median_cpu_us"] - bare_cpu
    added_thread = a["thread"]["median_cpu_us"] - bare_cpu
    med, ratio = b["medians"], b["ratios"]
    pmed, pratio = c["medians"], c["ratios"]
    ingest = w["process"]["median_rows_per_cpu_s"]
    size = w["process"]["median_bytes_per_request"]
    ok = {
        "added_us": added <= TARGETS["added_us"],
        "throughput_ratio": ratio["wrapped"]["rps"] >= TARGETS["throughput_ratio"],
        "p99_ratio": ratio["wrapped"]["p99_ms"] <= TARGETS["p99_ratio"],
        "paced_p99_ratio": pratio["wrapped"]["p99_ms"] <= TARGETS["paced_p99_ratio"],
        "ingest_rows_per_cpu_s": ingest >= TARGETS["ingest_rows_per_cpu_s"],
        "bytes_per_request": size <= TARGETS["bytes_per_request"],
    }
    results["summary"] = {"added_us": added, "throughput_ratio": ratio["wrapped"]["rps"],
                          "p99_ratio": ratio["wrapped"]["p99_ms"],
                          "paced_p99_ratio": pratio["wrapped"]["p99_ms"],
                          "ingest_rows_per_cpu_s": ingest, "bytes_per_request": size, "met": ok}

    def mark(key: str) -> str:
        return "met" if ok[key] else "**missed**"

    names = [n for n in ("bare", "wrapped", "thread", "accesslog", "seed") if n in med]
    labels = {"bare": "bare app", "wrapped": "this middleware (writer process, the default)",
              "thread": "this middleware, writer thread", "accesslog": "uvicorn's access log",
              "seed": "asgi-log-to-sqlite 0.1.1"}
    lines = [
        f"Saturated ({b['load']}, {b['duration_s']} s a run, {b['rounds']} rounds; medians, "
        "ratios taken per round):",
        "",
        "| variant | requests/s | vs bare | p50 | p99 | p99 vs bare | loop CPU/request | "
        "writer CPU/request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        m, r = med[name], ratio[name]
        writer_cpu = (m["other_cpu_us"] or 0.0) + (m["child_cpu_us"] or 0.0)
        lines.append(
            f"| {labels[name]} | {m['rps']:,.0f} | {r['rps']:.2f} | {_ms(m['p50_ms'])} | "
            f"{_ms(m['p99_ms'])} | {r['p99_ms']:.2f} | {_us(m['main_cpu_us'])} | "
            f"{_us(writer_cpu)} |"
        )
    lines += [
        "",
        f"Paced at about half the bare maximum ({c['target_rps']:,.0f} requests/s asked; "
        f"{c['load']}):",
        "",
        "| variant | requests/s | p50 | p99 | p99 vs bare |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in (n for n in ("bare", "wrapped", "thread", "accesslog") if n in pmed):
        m, r = pmed[name], pratio[name]
        lines.append(f"| {labels[name]} | {m['rps']:,.0f} | {_ms(m['p50_ms'])} | "
                     f"{_ms(m['p99_ms'])} | {r['p99_ms']:.2f} |")
    seed_a = a.get("seed")
    lines += [
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
        f"| added event-loop CPU per request <= {TARGETS['added_us']:.0f} µs (in-process) | "
        f"+{added:.2f} µs (writer thread: +{added_thread:.2f} µs"
        + (f"; 0.1.1: +{seed_a['median_cpu_us'] - bare_cpu:,.0f} µs" if seed_a else "")
        + f") | {mark('added_us')} |",
        f"| uvicorn throughput >= {TARGETS['throughput_ratio']:.2f}x bare | "
        f"{ratio['wrapped']['rps']:.2f}x (writer thread {ratio['thread']['rps']:.2f}x, "
        f"access log {ratio['accesslog']['rps']:.2f}x) | {mark('throughput_ratio')} |",
        f"| p99 under saturation <= {TARGETS['p99_ratio']:.1f}x bare | "
        f"{ratio['wrapped']['p99_ms']:.2f}x (writer thread {ratio['thread']['p99_ms']:.2f}x, "
        f"access log {ratio['accesslog']['p99_ms']:.2f}x) | {mark('p99_ratio')} |",
        f"| p99 at half the bare maximum <= {TARGETS['paced_p99_ratio']:.1f}x bare | "
        f"{pratio['wrapped']['p99_ms']:.2f}x (writer thread {pratio['thread']['p99_ms']:.2f}x) "
        f"| {mark('paced_p99_ratio')} |",
        f"| writer ingest >= {TARGETS['ingest_rows_per_cpu_s']:,} rows per CPU-second | "
        f"{ingest:,.0f} (writer process; a writer thread: "
        f"{w['thread']['median_rows_per_cpu_s']:,.0f}) | {mark('ingest_rows_per_cpu_s')} |",
        f"| bytes on disk per request <= {TARGETS['bytes_per_request']:.0f} | {size:.1f} (after "
        f"{w['process']['n']:,} requests) | {mark('bytes_per_request')} |",
    ]
    return "\n".join(lines)


DIAGNOSE = {
    "bare": "bare app",
    "discard": "middleware, writer drops its records (the loop's own work)",
    "busy-thread": "bare app beside a thread computing in Python 25% of the time",
    "idle-writer": "middleware, its writer process stores nothing (the loop's shipping alone)",
    "wrapped": "middleware with its writer process (the default)",
}


def diagnose(folder: str, quick: bool) -> str:
    """Throughput of the variants of ``app.py`` that take the cost apart, as a table."""
    variants = {kind: (kind, {}) for kind in DIAGNOSE}
    variants["thread"] = ("wrapped", {"writer": "thread"})
    b = under_uvicorn(folder, None, quick, variants=variants)
    med, ratio = b["medians"], b["ratios"]
    lines = ["| variant | requests/s | vs bare | p99 | loop CPU/request | writer CPU/request |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    labels = {**DIAGNOSE, "thread": "middleware with a writer thread"}
    for kind, label in labels.items():
        m = med[kind]
        writer_cpu = (m["other_cpu_us"] or 0.0) + (m["child_cpu_us"] or 0.0)
        lines.append(
            f"| {label} | {m['rps']:,.0f} | {ratio[kind]['rps']:.2f} | {_ms(m['p99_ms'])} | "
            f"{_us(m['main_cpu_us'])} | {_us(writer_cpu)} |"
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
        results["paced"] = paced(folder, args.quick, results["uvicorn"]["medians"]["bare"]["rps"])
        results["writer"] = writer(folder, args.quick)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    table = report(results)
    results["seconds"] = time.monotonic() - started
    m = results["machine"]
    print(f"Machine: {m['cpu']}, {m['cores']} cores, {m['os']}; Python {m['python']}, "
          f"SQLite {m['sqlite']}, uvicorn {m['uvicorn']}; "
          f"load average at start {m['load_average']}")
    print()
    print(table)
    print(f"\n({results['seconds']:.0f} s{', --quick' if args.quick else ''})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
