"""Capture for replay under uvicorn: requests/s and p99 latency with capture off and on.

    .venv/bin/python benchmarks/capture_server_bench.py            # about 2 minutes
    .venv/bin/python benchmarks/capture_server_bench.py --quick    # a smoke check

uvicorn 1 worker on 127.0.0.1 serves the hello-world app of ``app.py`` wrapped in the middleware
(``wrapped``), with ``capture_requests=True`` (``capture``), and with ``capture_responses=True``
too (``capture-responses``); wrk (1 thread, 32 connections, the request mix of ``mix.py``, which
carries query strings, referers and a few POST bodies) drives it after a 1 s warm-up. Rounds are
interleaved so that a change in the machine's load hits every variant alike; the figures are
medians over the rounds, and each variant's ratio to ``wrapped`` within the run. Each round also
times the event loop's own CPU per request in-process (``inprocess.py``, 3 repeats), the
figure least disturbed by other load on the machine. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mix  # noqa: E402 (beside this file)
from server_bench import (  # noqa: E402
    find_wrk,
    free_port,
    process_cpu,
    thread_cpu,
    wait_for_port,
)

VARIANTS = ("wrapped", "capture", "capture-responses")
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(binary: str, script: str, port: int, duration: float, connections: int) -> dict:
    out = subprocess.run(
        [binary, "-t1", f"-c{connections}", "--timeout", "30s", "--latency",
         f"-d{max(1, round(duration))}s", "-s", script, f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=duration + 60, check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    served = re.search(r"(\d+) requests in", out)
    if not (rps and p99 and served):
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return {"rps": float(rps.group(1)), "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)],
            "served": int(served.group(1))}


def measure(kind: str, binary: str, script: str, duration: float, connections: int) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="capture-bench-") as folder:
        env = {**os.environ, "BENCH_APP": kind, "BENCH_DB": os.path.join(folder, "log.db"),
               "PYTHONPATH": HERE}
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port",
             str(port), "--workers", "1", "--no-access-log", "--log-level", "warning"],
            env=env, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for_port(port, process)
            wrk(binary, script, port, 1.0, connections)
            before, child_before = thread_cpu(process.pid), process_cpu(process.pid) or 0.0
            result = wrk(binary, script, port, duration, connections)
            after, child_after = thread_cpu(process.pid), process_cpu(process.pid) or 0.0
            if before is not None and after is not None and result["served"]:
                main = str(process.pid)
                loop = after[main] - before.get(main, 0.0)
                total = sum(after.values()) - sum(before.get(tid, 0.0) for tid in after)
                result["loop_cpu_us"] = round(loop / result["served"] * 1e6, 1)
                # The writer: a thread of the server, or (the default) its child process.
                writer = total - loop + child_after - child_before
                result["writer_cpu_us"] = round(writer / result["served"] * 1e6, 1)
            return result
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)


def in_process(kind: str, n: int, repeats: int) -> float:
    """Event-loop thread CPU per request (µs), the app called in a loop (``inprocess.py``)."""
    with tempfile.TemporaryDirectory(prefix="capture-bench-") as folder:
        out = subprocess.run(
            [sys.executable, os.path.join(HERE, "inprocess.py"), "--kind", kind, "--db",
             os.path.join(folder, "log.db"), "--n", str(n), "--repeats", str(repeats)],
            capture_output=True, text=True, timeout=600, check=True,
        ).stdout
    return json.loads(out)["median_cpu_us"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--n", type=int, default=20_000, help="requests per in-process repeat")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.n = 1, 2.0, 2000
    binary = find_wrk()
    if binary is None:
        sys.exit("this benchmark needs wrk (apt-get install wrk)")
    handle, script = tempfile.mkstemp(suffix=".lua")
    with os.fdopen(handle, "w") as file:
        file.write(mix.wrk_lua())
    runs: dict[str, list[dict]] = {kind: [] for kind in VARIANTS}
    try:
        for round_ in range(args.rounds):
            for kind in VARIANTS:
                result = measure(kind, binary, script, args.duration, args.connections)
                result["inprocess_loop_cpu_us"] = in_process(kind, args.n, 3)
                runs[kind].append(result)
                print(f"round {round_ + 1} {kind}: {result}", file=sys.stderr)
    finally:
        os.remove(script)
    summary = {}
    for kind, results in runs.items():
        summary[kind] = {
            key: round(statistics.median(r[key] for r in results), 2)
            for key in ("rps", "p99_ms", "loop_cpu_us", "writer_cpu_us", "inprocess_loop_cpu_us")
            if all(key in r for r in results)
        }
    base = summary["wrapped"]
    for kind in VARIANTS:
        summary[kind]["rps_ratio"] = round(summary[kind]["rps"] / base["rps"], 3)
        summary[kind]["p99_ratio"] = round(summary[kind]["p99_ms"] / base["p99_ms"], 3)
    print(json.dumps({"rounds": args.rounds, "duration": args.duration,
                      "connections": args.connections, "median": summary, "runs": runs},
                     indent=2))


if __name__ == "__main__":
    main()
