"""The PostgreSQL sink beside the SQLite sink, in one run: writer ingest (rows/s for one writer
and for four writers at once) and the app under uvicorn (requests/s and p99: bare, logging to
SQLite, logging to PostgreSQL).

    .venv/bin/python benchmarks/postgresql_bench.py            # a few minutes
    .venv/bin/python benchmarks/postgresql_bench.py --quick    # a smoke check

PostgreSQL is a throwaway cluster started here (``initdb`` + ``pg_ctl``, fsync on, as the tests
do it: tests/pg_support.py), or the server of ``--url`` (a role that may create schemas).
Ingest: ``n`` records of the benchmark mix put straight on a thread writer's queue (row building
and storing, the work of a writer process); rows/s from the first put to the commit of the last
row, and rows per CPU second of the writer. Four writers: four processes doing the same at once
into one log; rows/s is all their rows over the time from the first start to the last commit.
Prints one JSON object; medians of ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import server_bench  # noqa: E402
import writer_bench  # noqa: E402

from asgi_log_to_sqlite.options import Options  # noqa: E402
from asgi_log_to_sqlite.prepare import Prepare  # noqa: E402
from asgi_log_to_sqlite.sinks import open_sink  # noqa: E402
from asgi_log_to_sqlite.writer import ThreadWriter  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ingest(target: str, n: int, start_at: float | None = None) -> dict:
    """One thread writer into ``target``: rows/s and rows per CPU second."""
    batch = writer_bench.records(n)
    options = Options.from_kwargs({"max_queue": n + 10})
    sink = open_sink(target, options)
    sink.prepare()
    writer = ThreadWriter(sink, Prepare(options), options)
    if start_at is not None:
        while time.time() < start_at:
            time.sleep(0.001)
    done = threading.Event()
    cpu = time.process_time()
    started, started_at = time.perf_counter(), time.time()
    for exchange in batch:
        writer.put(exchange)
    writer.request_flush(done.set)
    if not done.wait(900):
        raise TimeoutError("the writer did not finish")
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    stats = writer.stats()
    writer.stop(60)
    if stats["written"] != n:
        raise RuntimeError(f"wrote {stats['written']} of {n} rows: {stats}")
    return {"rows_per_s": n / elapsed, "rows_per_cpu_s": n / cpu, "started": started_at,
            "finished": started_at + elapsed}


def four_at_once(target: str, n: int) -> float:
    """Four processes writing ``n`` rows each into ``target`` at once: rows/s in all."""
    start_at = time.time() + 5  # time enough for the four to build their records
    processes = [
        subprocess.Popen([sys.executable, __file__, "--child", target, "--n", str(n),
                          "--start-at", str(start_at)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = []
    try:
        for process in processes:
            out, _ = process.communicate(timeout=900)
            if process.returncode:
                raise RuntimeError("a writer failed")
            results.append(json.loads(out))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    span = max(r["finished"] for r in results) - min(r["started"] for r in results)
    return 4 * n / span


def server_cpu(data: str) -> float:
    """CPU seconds of the PostgreSQL server (the postmaster and its children) so far."""
    with open(os.path.join(data, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    tick = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{postmaster}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Its own time, its ended children's (backends of closed connections), its live ones'.
    own = sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick
    return own + (server_bench.process_cpu(postmaster) or 0.0)


def server_cost(cluster, base: str, n: int) -> dict:
    """One writer's ``n`` rows again: the server's CPU per row, and bytes per row on disk
    (the partitions of ``requests`` with their indexes, and the lookup tables)."""
    import psycopg

    target = postgresql_target(base, f"cost_{uuid.uuid4().hex[:8]}")
    before = server_cpu(cluster.data)
    ingest(target, n)
    used = server_cpu(cluster.data) - before
    schema = target.rsplit("schema=", 1)[1]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"SET search_path = {schema}")
        conn.execute("CHECKPOINT")
        size = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace s ON s.oid = c.relnamespace "
            "WHERE s.nspname = %s AND c.relkind IN ('r', 'm')", (schema,)
        ).fetchone()[0]
    return {"server_cpu_us_per_row": used / n * 1e6, "bytes_per_row": float(size) / n}


def postgresql_target(base: str, name: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}schema={name}"


def sqlite_target(folder: str, name: str) -> str:
    return os.path.join(folder, f"{name}.db")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--url", help="a PostgreSQL server to use instead of a new cluster")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--nice", type=int, default=10,
                        help="the cluster's CPU priority below the app's, as the writer "
                             "process's is (0: the same)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(ingest(args.child, args.n, args.start_at)))
        return
    n, repeats = (20_000, 1) if args.quick else (args.n, args.repeats)
    cluster = None
    if args.url:
        base = args.url
    else:
        import pg_support

        folder = pg_support.find_bin()
        if folder is None:
            raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
        cluster = pg_support.Cluster.start_new(folder, durable=True, nice=args.nice)
        base = cluster.url("postgres")
    results: dict = {"n": n, "repeats": repeats, "cluster_nice": None if args.url else args.nice}
    try:
        with tempfile.TemporaryDirectory(prefix="asgi-log-pg-bench-") as folder:
            for kind, make in (("sqlite", lambda name: sqlite_target(folder, name)),
                               ("postgresql", lambda name: postgresql_target(base, name))):
                one = []
                for repeat in range(repeats):
                    log(f"ingest: {kind}, one writer, {repeat + 1}/{repeats}")
                    one.append(ingest(make(f"one_{uuid.uuid4().hex[:8]}"), n))
                four = []
                for repeat in range(repeats):
                    log(f"ingest: {kind}, four writers, {repeat + 1}/{repeats}")
                    four.append(four_at_once(make(f"four_{uuid.uuid4().hex[:8]}"), n // 4))
                results[f"{kind}_one_writer_rows_per_s"] = statistics.median(
                    r["rows_per_s"] for r in one)
                results[f"{kind}_one_writer_rows_per_cpu_s"] = statistics.median(
                    r["rows_per_cpu_s"] for r in one)
                results[f"{kind}_four_writers_rows_per_s"] = statistics.median(four)
                results[f"{kind}_runs"] = {"one": one, "four": four}
            if cluster is not None:
                log("server cost: postgresql, one writer")
                results["postgresql_server"] = server_cost(cluster, base, n)
            results["uvicorn"] = under_uvicorn(folder, base, args.quick)
    finally:
        if cluster is not None:
            cluster.remove()
    print(json.dumps(results, indent=2))


def under_uvicorn(folder: str, base: str, quick: bool) -> dict:
    """The bare app, then logging to SQLite and to PostgreSQL (default writer process), rounds
    interleaved so that drifts in the machine's load hit all three alike."""
    duration, rounds = (3, 1) if quick else (8, 3)
    load = server_bench.Load(server_bench.find_wrk(), connections=32)
    variants = {
        "bare": ("bare", lambda: os.path.join(folder, "u-bare.db")),
        "sqlite": ("wrapped", lambda: os.path.join(folder, f"u-{uuid.uuid4().hex[:6]}.db")),
        "postgresql": ("wrapped", lambda: postgresql_target(base, f"u_{uuid.uuid4().hex[:6]}")),
    }
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    try:
        for round_ in range(rounds):
            for name, (kind, target) in variants.items():
                log(f"uvicorn: {name}, round {round_ + 1}/{rounds}, {duration}s ({load.name})")
                runs[name].append(server_bench.serve_and_measure(
                    sys.executable, kind, target(), load, duration))
    finally:
        load.close()

    def median(values: list) -> float | None:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    medians = {name: {key: median([r[key] for r in found])
                      for key in ("rps", "p50_ms", "p99_ms", "main_cpu_us", "child_cpu_us")}
               for name, found in runs.items()}
    ratios = {name: {key: median([r[key] / b[key] if r[key] and b[key] else None
                                  for r, b in zip(found, runs["bare"], strict=True)])
                     for key in ("rps", "p99_ms")}
              for name, found in runs.items()}
    return {"load": load.name, "duration_s": duration, "rounds": rounds, "medians": medians,
            "ratios": ratios, "runs": runs}


if __name__ == "__main__":
    main()
