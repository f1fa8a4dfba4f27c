"""A throwaway PostgreSQL cluster for the tests: ``initdb`` and ``pg_ctl`` on a temporary socket
folder (as root, run as the ``postgres`` user, which owns the folders), or the server named by
``ASGI_LOG_TO_SQLITE_TEST_POSTGRESQL`` (a URL whose role may create databases) when it is set.
Every wait is bounded; the cluster is stopped and removed at the end of the session."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
import uuid
from typing import Any

ENV = "ASGI_LOG_TO_SQLITE_TEST_POSTGRESQL"


def find_bin() -> str | None:
    """The folder of ``initdb`` and ``pg_ctl``: Debian keeps them out of PATH."""
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(folder, "initdb")):
            return folder
    return None


class Cluster:
    """A PostgreSQL server the tests may create databases in (and, when they started it,
    stop and start again)."""

    def __init__(self, base_url: str, owned: bool = False) -> None:
        self.base_url = base_url
        self.owned = owned
        self.folder = ""
        self.bin = ""
        self.port = 0
        self.durable = False  # fsync on (benchmarks), or off (tests: faster, same behaviour)
        self.nice = 0  # the server's CPU priority below ours (a benchmark's "another machine")

    # ---- a cluster of our own ------------------------------------------------------------------
    @classmethod
    def start_new(cls, bin_folder: str, durable: bool = False, nice: int = 0) -> Cluster:
        folder = tempfile.mkdtemp(prefix="asgi-log-pg-")
        os.chmod(folder, 0o755)
        import socket

        with socket.socket() as sock:  # only names the socket file: any free number will do
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        cluster = cls(
            f"postgresql://postgres@/postgres?host={urllib.parse.quote(folder)}&port={port}",
            owned=True,
        )
        cluster.folder, cluster.bin, cluster.port = folder, bin_folder, port
        cluster.durable, cluster.nice = durable, nice
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
        cluster._run("initdb", "-D", cluster.data, "-A", "trust", "-U", "postgres", "--no-sync",
                     "-E", "UTF8", "--locale=C", timeout=120)
        cluster.start()
        return cluster

    @property
    def data(self) -> str:
        return os.path.join(self.folder, "data")

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        command = [os.path.join(self.bin, program), *args]
        if self.nice:
            command = ["nice", "-n", str(self.nice), *command]
        if os.geteuid() == 0:  # initdb refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, timeout=timeout, cwd=self.folder,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        assert self.owned
        self._run(
            "pg_ctl", "-D", self.data, "-l", os.path.join(self.folder, "server.log"), "-w",
            "-t", "60", "-o",
            f"-k {self.folder} -p {self.port} -c listen_addresses='' "
            f"-c fsync={'on' if self.durable else 'off'} -c max_connections=200",
            "start", timeout=90,
        )

    def stop(self, mode: str = "fast") -> None:
        assert self.owned
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop", timeout=90)

    def remove(self) -> None:
        if not self.owned:
            return
        try:
            self.stop("immediate")
        except (subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(self.folder, ignore_errors=True)

    # ---- databases -----------------------------------------------------------------------------
    def url(self, database: str, **query: str) -> str:
        parts = urllib.parse.urlsplit(self.base_url)
        params = urllib.parse.parse_qsl(parts.query) + list(query.items())
        return urllib.parse.urlunsplit(
            parts._replace(path="/" + database, query=urllib.parse.urlencode(params))
        )

    def create_database(self, name: str | None = None) -> str:
        import psycopg

        name = name or "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.base_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.base_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def open_cluster() -> Cluster | None:
    """The server named by the environment, or a new cluster; None when neither can be had."""
    if os.environ.get(ENV):
        return Cluster(os.environ[ENV])
    folder = find_bin()
    if folder is None:
        return None
    return Cluster.start_new(folder)


def write_records(target: str, records: list[Any], instance: str = "web-1", **options: Any) -> None:
    """Store ``records`` (exchanges) in a log file or PostgreSQL URL through a real writer and
    sink, as the middleware of host ``instance`` would."""
    from asgi_log_to_sqlite.options import Options
    from asgi_log_to_sqlite.prepare import Prepare
    from asgi_log_to_sqlite.sinks import open_sink
    from asgi_log_to_sqlite.writer import ThreadWriter

    settings = Options.from_kwargs({"instance": instance, "flush_interval": 60, **options})
    sink = open_sink(target, settings)
    sink.prepare()
    writer = ThreadWriter(sink, Prepare(settings), settings)
    for record in records:
        writer.put(record)
    done = threading.Event()
    writer.request_flush(done.set)
    assert done.wait(60)
    writer.stop(10)


def serve_paths(app: Any, paths: list[str], **headers: str) -> None:
    """GET each of ``paths`` from ``app`` in turn, with these request headers."""
    async def run() -> None:
        for path in paths:
            scope = {"type": "http", "method": "GET", "path": path, "query_string": b"",
                     "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
                     "client": ("127.0.0.1", 9)}

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b""}

            async def send(message: Any) -> None:
                pass

            await app(scope, receive, send)

    asyncio.run(run())
