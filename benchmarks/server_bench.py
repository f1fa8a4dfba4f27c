"""Throughput under uvicorn (1 worker) on 127.0.0.1, driven by wrk or ``loadgen.py``.

Each run starts a fresh server in its own process group, waits for the port, warms up, measures
for ``duration`` seconds, then stops the server with SIGTERM (and kills it by PID if needed).
"""

from __future__ import annotations

import json
import os
import re
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


class Load:
    """The load generator: wrk with a Lua script cycling through the mix, or loadgen.py."""

    def __init__(self, wrk: str | None, connections: int) -> None:
        self.wrk = wrk
        self.connections = connections
        self.script = None
        if wrk:
            sys.path.insert(0, HERE)
            import mix

            handle, self.script = tempfile.mkstemp(suffix=".lua")
            with os.fdopen(handle, "w") as f:
                f.write(mix.wrk_lua())

    @property
    def name(self) -> str:
        if self.wrk:
            return f"wrk, 1 thread, {self.connections} connections"
        return f"benchmarks/loadgen.py, {self.connections} connections"

    def run(self, port: int, duration: float) -> tuple[float, int]:
        """(requests/s, requests served) over one run of ``duration`` seconds."""
        if self.wrk:
            out = subprocess.run(
                [self.wrk, "-t1", f"-c{self.connections}", "--timeout", "30s", f"-d{max(1, round(duration))}s", "-s", self.script,
                 f"http://127.0.0.1:{port}/"],
                capture_output=True, text=True, timeout=duration + 60, check=True,
            ).stdout
            match = re.search(r"Requests/sec:\s+([\d.]+)", out)
            if not match:
                raise RuntimeError(f"no Requests/sec in wrk output:\n{out}")
            errors = re.search(r"connect (\d+), read (\d+), write (\d+)", out)
            if "Non-2xx" in out or (errors and any(int(n) for n in errors.groups())):
                raise RuntimeError(f"wrk saw errors:\n{out}")
            served = re.search(r"(\d+) requests in", out)
            return float(match.group(1)), int(served.group(1)) if served else 0
        out = subprocess.run(
            [sys.executable, os.path.join(HERE, "loadgen.py"), "--port", str(port),
             "--connections", str(self.connections), "--duration", str(duration)],
            capture_output=True, text=True, timeout=duration + 60, check=True,
        ).stdout
        result = json.loads(out)
        return result["rps"], result["requests"]

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


def serve_and_measure(python: str, kind: str, db: str, load: Load, duration: float,
                      warmup: float = 1.0, lifespan: str = "on") -> dict[str, float | None]:
    """Requests/s, and the server's CPU time per request: its main (event-loop) thread and all
    its other threads (the writer). CPU per request is steadier than requests/s on a shared
    machine, and says where the time goes."""
    port = free_port()
    env = {**os.environ, "BENCH_APP": kind, "BENCH_DB": db, "PYTHONPATH": HERE}
    process = subprocess.Popen(
        [os.path.abspath(python), "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--no-access-log", "--log-level", "warning", "--lifespan", lifespan],
        env=env, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, process)
        load.run(port, warmup)
        before = thread_cpu(process.pid)
        rps, served = load.run(port, duration)
        after = thread_cpu(process.pid)
        main_us = other_us = None
        if before is not None and after is not None and served:
            main = str(process.pid)
            main_us = (after[main] - before.get(main, 0.0)) / served * 1e6
            total = sum(after.values()) - sum(before.get(tid, 0.0) for tid in after)
            other_us = total / served * 1e6 - main_us
        return {"rps": rps, "main_cpu_us": main_us, "other_cpu_us": other_us}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
