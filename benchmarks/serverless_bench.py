"""What ``flush="response"`` costs, and which writer suits AWS Lambda.

Run as a script in ``.venv``; prints one JSON object. Three measurements, all with the realistic
mix (mix.py) and a trivial app, one request at a time (the way a Lambda process serves):

* ``per_request``: the wall time of one ASGI call, median over ``n`` calls, for each variant
  (flush "batch" or "response"; writer inline, thread or process; SQLite on local disk, or JSON
  lines into a pipe that a separate ``cat`` process drains, standing for a platform's log agent).
  "batch" returns before its row is committed: its figure is what the middleware costs a call,
  "response" adds the commit. With the PostgreSQL sink installed (and PostgreSQL's ``initdb``),
  also into PostgreSQL over TCP on 127.0.0.1: a throwaway cluster started here, fsync on.
* ``mangum``: one Mangum handler invocation (an HTTP API 2.0 event, ``lifespan="off"``) with
  ``AWS_LAMBDA_FUNCTION_NAME`` set, so flush and writer are chosen as on Lambda; for each writer.
* ``cold_start``: a fresh interpreter imports the package, builds the middleware and serves its
  first request until the row is committed (what a Lambda cold start adds), per writer; the
  median of ``--cold`` runs, each in a new process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import mix  # noqa: E402

from asgi_log_to_sqlite import AsgiLogToSqlite  # noqa: E402

WRITERS = ("inline", "thread", "process")


async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html; charset=utf-8")]})
    await send({"type": "http.response.body", "body": b"<p>hello</p>"})


async def receive():
    return {"type": "http.request", "body": b""}


async def send(message):
    pass


async def timed_calls(target, scopes) -> list[float]:
    times = []
    for scope in scopes:
        began = time.perf_counter()
        await target(dict(scope), receive, send)
        times.append(time.perf_counter() - began)
    return times


def median_us(times: list[float]) -> float:
    return round(statistics.median(times) * 1e6, 1)


def per_request(folder: str, n: int) -> dict[str, float]:
    scopes = mix.scopes(n)
    results = {"bare": median_us(asyncio.run(timed_calls(app, scopes)))}
    for flush in ("batch", "response"):
        for writer in WRITERS:
            path = os.path.join(folder, f"{flush}-{writer}.db")
            log = AsgiLogToSqlite(app, path, flush=flush, writer=writer)

            async def run(log=log):
                await timed_calls(log, scopes[:50])  # warm: writer started, lookups cached
                return await timed_calls(log, scopes)

            results[f"sqlite {flush} {writer}"] = median_us(asyncio.run(run()))
            log.close(60)
    results.update(stdout_per_request(scopes))
    results.update(postgresql_per_request(scopes))
    return results


def postgresql_bin() -> str | None:
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return folders[-1] if folders else None


@contextlib.contextmanager
def postgresql_server():
    """A throwaway PostgreSQL listening on 127.0.0.1 (fsync on, as a real server); its URL."""
    folder = tempfile.mkdtemp(prefix="serverless-bench-pg-")
    os.chmod(folder, 0o755)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bin_folder = postgresql_bin()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(folder, "postgres")
    data = os.path.join(folder, "data")

    def run(program, *args):
        subprocess.run([*as_postgres, os.path.join(bin_folder, program), *args], check=True,
                       cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    try:
        run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C")
        run("pg_ctl", "-D", data, "-l", os.path.join(folder, "server.log"), "-w", "-t", "60",
            "-o", f"-k {folder} -p {port} -c listen_addresses=127.0.0.1", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(Exception):
            run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def postgresql_per_request(scopes) -> dict[str, float | str]:
    if importlib.util.find_spec("asgi_log_to_sqlite.sinks.postgresql") is None:
        return {"postgresql": "no PostgreSQL sink in this version"}
    if postgresql_bin() is None:
        return {"postgresql": "PostgreSQL's initdb is not installed"}
    results: dict[str, float | str] = {}
    with postgresql_server() as url:
        for flush in ("batch", "response"):
            for writer in WRITERS:
                log = AsgiLogToSqlite(app, url, flush=flush, writer=writer)

                async def run(log=log):
                    await timed_calls(log, scopes[:50])
                    return await timed_calls(log, scopes)

                results[f"postgresql {flush} {writer}"] = median_us(asyncio.run(run()))
                log.close(60)
    return results


def stdout_per_request(scopes) -> dict[str, float]:
    """JSON lines into a pipe drained by another process, as a platform's log agent does."""
    results = {}
    agent = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    saved = os.dup(1)
    try:
        os.dup2(agent.stdin.fileno(), 1)
        for flush, writer in (("response", "inline"), ("response", "thread"),
                              ("batch", "thread")):
            log = AsgiLogToSqlite(app, "-", flush=flush, writer=writer)

            async def run(log=log):
                await timed_calls(log, scopes[:50])
                return await timed_calls(log, scopes)

            results[f"stdout {flush} {writer}"] = median_us(asyncio.run(run()))
            log.close(60)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        agent.stdin.close()
        agent.wait(30)
    return results


def mangum_invocations(folder: str, n: int) -> dict[str, float]:
    from lambda_events import Context, http_api_v2
    from mangum import Mangum

    os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "serverless-bench"
    results = {}
    try:
        events = [http_api_v2(r["method"], r["path"], {"page": [r["query"][5:]]}
                              if r["query"] else {}) for r in mix.requests(n)]
        for writer in WRITERS:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            log = AsgiLogToSqlite(app, os.path.join(folder, f"mangum-{writer}.db"),
                                  **({} if writer == "inline" else {"writer": writer}))
            handler = Mangum(log, lifespan="off")
            context = Context()
            for event in events[:50]:
                handler(event, context)
            times = []
            for event in events:
                began = time.perf_counter()
                handler(event, context)
                times.append(time.perf_counter() - began)
            results[f"mangum {writer}"] = median_us(times)
            log.close(60)
            asyncio.set_event_loop(None)
            loop.close()
    finally:
        del os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    return results


COLD = """
import time, asyncio, sys
began = time.perf_counter()
from asgi_log_to_sqlite import AsgiLogToSqlite
async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hi"})
async def receive():
    return {"type": "http.request", "body": b""}
async def send(message):
    pass
log = AsgiLogToSqlite(app, sys.argv[1], flush="response", writer=sys.argv[2])
scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": [],
         "http_version": "1.1", "scheme": "http", "client": ("127.0.0.1", 1)}
asyncio.run(log(scope, receive, send))
print(time.perf_counter() - began)
log.close(30)
"""


def cold_start(folder: str, runs: int) -> dict[str, float]:
    results = {}
    baseline = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        baseline.append(time.perf_counter() - began)
    results["python -c pass (whole process)"] = round(statistics.median(baseline) * 1e3, 1)
    for writer in WRITERS:
        times = []
        for i in range(runs):
            path = os.path.join(folder, f"cold-{writer}-{i}.db")
            out = subprocess.run([sys.executable, "-c", COLD, path, writer], check=True,
                                 capture_output=True, text=True).stdout
            times.append(float(out))
        results[f"import + first row committed, {writer}"] = round(
            statistics.median(times) * 1e3, 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folder", help="where the logs go (a temporary folder by default)")
    parser.add_argument("--n", type=int, default=3000, help="requests per variant")
    parser.add_argument("--cold", type=int, default=7, help="cold starts per writer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.folder or temporary
        result = {
            "n": args.n,
            "per_request_us": per_request(folder, args.n),
            "mangum_us": mangum_invocations(folder, args.n),
            "cold_start_ms": cold_start(folder, args.cold),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
