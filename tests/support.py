"""Helpers for tests that run real servers: free ports, bounded waits, cleanup by PID."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: The system Chromium: the browser tests never download one.
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uvicorn(target: str, port: int) -> list[str]:
    """The command serving ``target`` (``module:attr``) with uvicorn on 127.0.0.1, no access
    log."""
    return [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--host", "127.0.0.1",
            "--no-access-log"]


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


class Server:
    """A server in its own process group on 127.0.0.1; always killed on exit, by PID."""

    def __init__(
        self,
        args: Sequence[str],
        port: int,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        log: str | os.PathLike[str] | None = None,
    ) -> None:
        self.args = list(args)
        self.port = port
        self.cwd = cwd
        self.env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), **(env or {})}
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        out = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                self.args, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # the child has its own copy of the descriptor
        try:
            wait_for_port(self.port, self.process)
        except BaseException:
            self.kill()
            raise
        return self

    def stop(
        self, sig: int = signal.SIGTERM, timeout: float = 30, group: bool = False
    ) -> int | None:
        """Send ``sig`` to the server (``group``: to its whole process group, as systemd and
        ``docker stop`` do) and wait (bounded) for it to exit; its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            if group:
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def output(self) -> str:
        return Path(self.log_path).read_text(errors="replace") if self.log_path else ""

    def wait_for_output(self, text: str, count: int = 1, timeout: float = 30) -> None:
        """Wait (bounded) until the server's log holds ``text`` ``count`` times.

        A multi-worker server listens as soon as its first worker does; tests that need every
        worker serving wait for each one's startup line.
        """
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.output().count(text) < count:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"server exited with {code}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not seen {count} times within {timeout}s")
            time.sleep(0.05)


@contextmanager
def chromium(profile: Path) -> Iterator[object]:
    """A headless system Chromium (a Playwright browser context) with a fresh profile and
    nothing in the background that could reach the network."""
    import pytest

    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
            ],
        )
        try:
            yield context
        finally:
            context.close()


#: Columns measured anew on every run (start, duration, ttfb): left out where rows are compared.
TIMINGS = frozenset({"start", "duration", "ttfb"})


def stored_rows(path: str | Path, order_by: str = "requests.rowid") -> list[tuple]:
    """Every column of every row as a SQLite log holds it, lookups as their text."""
    from asgi_log_to_sqlite.schema import REQUEST_COLUMNS

    selects, joins = [], []
    for name, table in REQUEST_COLUMNS.items():
        if table:
            selects.append(f"{table}_{name}.name")
            joins.append(f"LEFT JOIN {table} AS {table}_{name} "
                         f"ON {table}_{name}.id = requests.{name}")
        else:
            selects.append(f"requests.{name}")
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            f"SELECT {', '.join(selects)} FROM requests {' '.join(joins)} ORDER BY {order_by}"
        ).fetchall()
    finally:
        conn.close()


def untimed(row: tuple) -> tuple:
    """A row of :func:`stored_rows` without the columns measured per run."""
    from asgi_log_to_sqlite.schema import REQUEST_COLUMNS

    return tuple(v for name, v in zip(REQUEST_COLUMNS, row, strict=True) if name not in TIMINGS)
