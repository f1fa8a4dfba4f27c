"""The report on a PostgreSQL log beside the report on a SQLite file holding the same rows.

    /tmp/exp/inbench.sh .venv/bin/python benchmarks/postgresql_report_bench.py     # 1M rows
    .venv/bin/python benchmarks/postgresql_report_bench.py --rows 20000 --repeat 1  # a smoke check

A log of ``--rows`` requests over 7 days (the report benchmark's generator) is loaded into a
throwaway PostgreSQL cluster started here (tests/pg_support.py; or the server of ``--url``) by
the loader of ``merge URL file``, then pulled back into a SQLite file: the same rows in both,
and both reports are checked to agree. Measured, medians of ``--repeat``: ``build_report`` (all
that ``asgi-log-to-sqlite report`` computes) on the URL and on the file, over the whole log, its
last 24 hours, its last hour and with ``--status 5xx``: wall clock, CPU of this process, and
CPU of the PostgreSQL server (its backends and parallel workers); the way ``report URL`` worked
before (pull the window into a temporary file, then the file report); ``percentile_disc`` over
every duration of the log, for scale; the plan of the last hour's scans. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from asgi_log_to_sqlite.demo import synthetic_log  # noqa: E402
from asgi_log_to_sqlite.load import load_files  # noqa: E402
from asgi_log_to_sqlite.pull import pull  # noqa: E402
from asgi_log_to_sqlite.report import Filters, build_report  # noqa: E402
from asgi_log_to_sqlite.report.queries import LogSet  # noqa: E402

HOUR, DAY = 3600, 86400


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(work: Any, repeat: int, server: Any) -> dict[str, Any]:
    """Median wall clock, client CPU and server CPU seconds of ``work``, and its last result."""
    walls, cpus, servers, result = [], [], [], None
    for _ in range(repeat):
        before = server()
        started, started_cpu = time.perf_counter(), time.process_time()
        result = work()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - started_cpu)
        servers.append(server() - before)
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus),
            "server_cpu": statistics.median(servers), "result": result}


def agree(ours: Any, theirs: Any, where: str = "") -> None:
    """The two reports hold the same figures (means of durations to 12 digits: PostgreSQL
    adds durations up in an order of its own)."""
    if isinstance(ours, dict):
        for key in ours.keys() - {"generated_at", "files"}:
            agree(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(ours, list):
        if len(ours) != len(theirs):
            raise AssertionError(f"{where}: {len(ours)} != {len(theirs)}")
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            agree(a, b, f"{where}[{i}]")
    elif isinstance(ours, float) and isinstance(theirs, float):
        if not math.isclose(ours, theirs, rel_tol=1e-12, abs_tol=1e-12):
            raise AssertionError(f"{where}: {ours!r} != {theirs!r}")
    elif ours != theirs:
        raise AssertionError(f"{where}: {ours!r} != {theirs!r}")


def plans(url: str, since: float, until: float) -> list[str]:
    """EXPLAIN (ANALYZE) of the report's queries that read the window ``since``-``until``."""
    import psycopg

    statements: list[str] = []
    run = LogSet.all

    def recorded(self: LogSet, sql: str, params: Any = ()) -> Any:
        statements.append(sql)
        return run(self, sql, params)

    LogSet.all = recorded  # type: ignore[method-assign]
    try:
        build_report([url], since=since, until=until)
    finally:
        LogSet.all = run  # type: ignore[method-assign]
    found = []
    with psycopg.connect(url) as conn:
        for sql in statements:
            if repr(float(since)) in sql:
                rows = conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}")
                found.append("\n".join(row[0] for row in rows))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", help="a PostgreSQL server to use instead of a new cluster "
                                      "(a role that may create databases)")
    args = parser.parse_args()

    import postgresql_bench
    from pg_support import Cluster, find_bin

    if args.url:
        cluster = Cluster(args.url)
    else:
        folder = find_bin()
        if folder is None:
            sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
        cluster = Cluster.start_new(folder)

    def server() -> float:
        return postgresql_bench.server_cpu(cluster.data) if cluster.owned else 0.0

    results: dict[str, Any] = {"rows": args.rows, "repeat": args.repeat}
    database = cluster.create_database()
    try:
        url = cluster.url(database)
        with tempfile.TemporaryDirectory(prefix="asgi-log-pg-report-") as folder:
            now = time.time()
            source, path = os.path.join(folder, "source.db"), os.path.join(folder, "pulled.db")
            started = time.perf_counter()
            synthetic_log(source, args.rows, end=now, days=7)
            load_files(url, [source])
            results["load_s"] = time.perf_counter() - started
            started = time.perf_counter()
            pull(url, path)
            results["pull_whole_s"] = time.perf_counter() - started
            os.remove(source)
            log(f"{args.rows:,} rows generated and loaded in {results['load_s']:.1f} s, "
                f"pulled back in {results['pull_whole_s']:.1f} s")
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
                results["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
                results["settings"] = dict(conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN ('shared_buffers', "
                    "'work_mem', 'max_parallel_workers_per_gather', 'jit')").fetchall())
                results["table_mb"] = float(conn.execute(
                    "SELECT sum(pg_total_relation_size(inhrelid)) / 1e6 FROM pg_inherits "
                    "WHERE inhparent = 'requests'::regclass").fetchone()[0])
            results["file_mb"] = os.path.getsize(path) / 1e6

            cases = {
                "whole": {},
                "24h": {"since": now - DAY},
                "1h": {"since": now - HOUR},
                "5xx": {"filters": Filters(statuses=((500, 599),))},
            }
            for name, options in cases.items():
                results[name] = {}
                for kind, target in (("postgresql", url), ("file", path)):
                    found = timed(lambda t=target, o=options: build_report([t], **o),
                                  args.repeat, server)
                    results[name][kind] = {k: v for k, v in found.items() if k != "result"}
                    results[name][f"{kind}_report"] = found["result"]
                agree(results[name].pop("postgresql_report"), results[name].pop("file_report"))
                row = results[name]
                log(f"report {name}: PostgreSQL {row['postgresql']['wall']:.2f} s "
                    f"(client CPU {row['postgresql']['cpu']:.2f} s, server CPU "
                    f"{row['postgresql']['server_cpu']:.2f} s); file {row['file']['wall']:.2f} s "
                    f"(CPU {row['file']['cpu']:.2f} s)")

            for name in ("whole", "24h"):
                def before(o: dict = cases[name]) -> Any:
                    copy = os.path.join(folder, "window.db")
                    pull(url, copy, since=o.get("since"))
                    try:
                        return build_report([copy], **o)
                    finally:
                        os.remove(copy)

                found = timed(before, max(1, args.repeat - 2), server)
                results[name]["pull_then_file"] = {k: v for k, v in found.items()
                                                   if k != "result"}
                log(f"pull then file report, {name}: {found['wall']:.2f} s")

            def disc() -> Any:
                with psycopg.connect(url) as conn:
                    return conn.execute(
                        "SELECT percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP "
                        "(ORDER BY duration) FROM requests WHERE duration IS NOT NULL"
                    ).fetchone()[0]

            found = timed(disc, args.repeat, server)
            results["percentile_disc_whole"] = {k: v for k, v in found.items() if k != "result"}
            log(f"percentile_disc over every duration: {found['wall']:.2f} s")
            results["plans_1h"] = plans(url, now - HOUR, now + 1)
    finally:
        cluster.drop_database(database)
        cluster.remove()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
