"""Throughput under uvicorn (1 worker) on 127.0.0.1, driven by wrk or ``loadgen.py``.

Each run starts a fresh server in its own process group, waits for the port, warms up, measures
for ``duration`` seconds, then stops the server with SIGTERM (and kills it by PID if needed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def find_wrk() -> str | None:
    """wrk if installed; on Debian/Ubuntu as root, try ``apt-get install -y wrk`` once."""
    found = shutil.which("wrk")
    if found or not shutil.which("apt-get") or os.geteuid() != 0:
        return found
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, timeout=300,
                   check=False)
    return shutil.which("wrk")


#: wrk's summary as one JSON line (latency percentiles in microseconds).
WRK_DONE = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format('BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, '
    .. '"p90_us": %d, "p99_us": %d, "errors": %d}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), errors))
end
"""


class Load:
    """The load generator: wrk with a Lua script cycling through the mix, or loadgen.py.

    ``delay_ms`` makes every connection wait that long after each response before its next
    request: a rate-limited (not saturating) load of about ``connections / delay`` requests/s.
    """

    def __init__(self, wrk: str | None, connections: int, delay_ms: float | None = None) -> None:
        self.wrk = wrk
        self.connections = connections
        self.delay_ms = delay_ms
        self.script = None
        if wrk:
            sys.path.insert(0, HERE)
            import mix

            body = mix.wrk_lua() + WRK_DONE
            if delay_ms:
                body += f"delay = function() return {delay_ms} end\n"
            handle, self.script = tempfile.mkstemp(suffix=".lua")
            with os.fdopen(handle, "w") as f:
                f.write(body)

    @property
    def name(self) -> str:
        paced = f", each pausing {self.delay_ms:g} ms after a response" if self.delay_ms else ""
        if self.wrk:
            return f"wrk, 1 thread, {self.connections} connections{paced}"
        return f"benchmarks/loadgen.py, {self.connections} connections"

    def run(self, port: int, duration: float) -> dict[str, float]:
        """requests/s, requests served and (with wrk) p50/p99 latency over one run."""
        if self.wrk:
            out = subprocess.run(
                [self.wrk, "-t1", f"-c{self.connections}", "--timeout", "30s",
                 f"-d{max(1, round(duration))}s", "-s", self.script,
                 f"http://127.0.0.1:{port}/"],
                capture_output=True, text=True, timeout=duration + 60, check=True,
            ).stdout
            line = next((x for x in out.splitlines() if x.startswith("BENCH ")), None)
            if line is None:
                raise RuntimeError(f"no summary in wrk output:\n{out}")
            found = json.loads(line[len("BENCH "):])
            if found["errors"] or "Non-2xx" in out:
                raise RuntimeError(f"wrk saw errors:\n{out}")
            return {
                "rps": found["requests"] / (found["duration_us"] / 1e6),
                "served": found["requests"],
                "p50_ms": found["p50_us"] / 1000,
                "p99_ms": found["p99_us"] / 1000,
            }
        out = subprocess.run(
            [sys.executable, os.path.join(HERE, "loadgen.py"), "--port", str(port),
             "--connections", str(self.connections), "--duration", str(duration)],
            capture_output=True, text=True, timeout=duration + 60, check=True,
        ).stdout
        result = json.loads(out)
        return {"rps": result["rps"], "served": result["requests"], "p50_ms": None,
                "p99_ms": None}

    def close(self) -> None:
        if self.script:
            os.remove(self.script)


def thread_cpu(pid: int) -> dict[str, float] | None:
    """CPU seconds (user + system) of each thread of ``pid``, by thread id; None off Linux."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        found = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            found[tid] = (int(fields[11]) + int(fields[12])) / tick
        return found
    except OSError:
        return None


def process_cpu(pid: int) -> float | None:
    """CPU seconds of the processes whose parent is ``pid`` (the writer process)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def serve_and_measure(python: str, kind: str, db: str, load: Load, duration: float,
                      warmup: float = 1.0, lifespan: str = "on",
                      options: dict | None = None) -> dict[str, float | None]:
    """Requests/s and latency, and the server's CPU time per request: its main (event-loop)
    thread, its other threads (a writer thread), and its child processes (a writer process).
    CPU per request is steadier than requests/s on a shared machine, and says where the time
    goes. ``kind`` "accesslog" is the bare app with uvicorn's own access log written to a file.
    """
    port = free_port()
    access_log = kind == "accesslog"
    env = {**os.environ, "BENCH_APP": "bare" if access_log else kind, "BENCH_DB": db,
           "PYTHONPATH": HERE, "BENCH_OPTIONS": json.dumps(options or {})}
    command = [os.path.abspath(python), "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1", "--lifespan", lifespan]
    command += ["--log-level", "info"] if access_log else ["--no-access-log", "--log-level",
                                                          "warning"]
    output = open(db + ".out", "w") if access_log else subprocess.DEVNULL
    process = subprocess.Popen(
        command, env=env, cwd=HERE, stdout=output, stderr=output, start_new_session=True,
    )
    try:
        wait_for_port(port, process)
        load.run(port, warmup)
        before, children_before = thread_cpu(process.pid), process_cpu(process.pid)
        measured = load.run(port, duration)
        after, children_after = thread_cpu(process.pid), process_cpu(process.pid)
        served = measured["served"]
        main_us = other_us = child_us = None
        if before is not None and after is not None and served:
            main = str(process.pid)
            main_us = (after[main] - before.get(main, 0.0)) / served * 1e6
            total = sum(after.values()) - sum(before.get(tid, 0.0) for tid in after)
            other_us = total / served * 1e6 - main_us
        if children_before is not None and children_after is not None and served:
            child_us = (children_after - children_before) / served * 1e6
        return {**measured, "main_cpu_us": main_us, "other_cpu_us": other_us,
                "child_cpu_us": child_us}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if output is not subprocess.DEVNULL:
            output.close()
