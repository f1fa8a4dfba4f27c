"""A small HTTP/1.1 keep-alive load generator, for machines without ``wrk``.

Run as a script in its own process (so it does not share the server's GIL): ``connections``
concurrent keep-alive connections send the realistic mix for ``duration`` seconds; prints JSON
with the number of complete responses and the requests per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mix


def raw_requests(host: str, n: int = 2000) -> list[bytes]:
    out = []
    for r in mix.requests(n):
        target = r["path"] + ("?" + r["query"] if r["query"] else "")
        lines = [f"{r['method']} {target} HTTP/1.1".encode(), b"host: " + host.encode()]
        lines += [k + b": " + v for k, v in r["headers"] if k != b"host"]
        if r["method"] == "POST":
            lines.append(b"content-length: 0")
        out.append(b"\r\n".join(lines) + b"\r\n\r\n")
    return out


async def connection(port: int, requests: list[bytes], offset: int, stop: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    i = offset
    try:
        while time.perf_counter() < stop:
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            done += 1
    finally:
        writer.close()
    return done


async def run(port: int, connections: int, duration: float) -> dict[str, float]:
    requests = raw_requests(f"127.0.0.1:{port}")
    started = time.perf_counter()
    stop = started + duration
    counts = await asyncio.gather(
        *(connection(port, requests, k * 97, stop) for k in range(connections))
    )
    elapsed = time.perf_counter() - started
    return {"requests": sum(counts), "seconds": elapsed, "rps": sum(counts) / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.port, args.connections, args.duration))))


if __name__ == "__main__":
    main()
