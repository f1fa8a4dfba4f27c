"""Varied combined-format access logs, and GoAccess's reading of them, for tests to compare.

:func:`generate` writes what nginx and Apache write by default: IPv4 and IPv6 clients, remote
users, several time-zone offsets, every common method and protocol, a long tail of paths (some
percent-escaped, some static files), query strings (some with secrets), statuses from 200 to 503,
``-`` for an empty body, referers and user agents with escaped quotes and ``\\xHH`` bytes, and
nginx's ``"-"`` request line for connections that sent no request. Each :class:`Entry` keeps the
truth it was written from, so a test can compare an importer, a report and GoAccess with each
other and with what was generated.

:func:`goaccess_report` runs the real GoAccess (Debian ``goaccess``) on a file and
:func:`goaccess_summary` reduces its JSON to what can be compared: totals, status counts, hits
and bytes per path (query strings left out), and the 404 paths.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import os
import random
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone

__all__ = [
    "Entry",
    "Summary",
    "database_summary",
    "entries",
    "expected_summary",
    "generate",
    "goaccess_report",
    "goaccess_summary",
    "write_log",
]

METHODS = ["GET"] * 40 + ["POST"] * 4 + ["HEAD"] * 2 + ["PUT", "DELETE", "PATCH", "OPTIONS"]
PROTOCOLS = ["HTTP/1.1"] * 8 + ["HTTP/1.0", "HTTP/2.0"]
STATUSES = [200] * 60 + [304] * 8 + [301, 302] * 3 + [404] * 8 + [206, 401, 403, 500, 502, 503]
ZONES = [timedelta(0), timedelta(hours=-7), timedelta(hours=5, minutes=30), timedelta(hours=1)]
AGENTS = [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.1 Safari/605.1.15"),
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/17.1 Mobile/15E148 Safari/604.1"),
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
    "python-requests/2.31.0",
    'Mozilla/5.0 "quoted" agent',  # written with \" escapes
    "Agent \u2014 with a dash",  # written as \xE2\x80\x94, as nginx escapes bytes
]
REFERERS = [None] * 6 + [
    "https://www.google.com/",
    "https://news.example.org/item?id=42",
    "https://www.example.com/blog/",
    "https://www.example.com/login?next=/account&token=abc123",  # redacted on import
]
SECTIONS = ["blog", "docs", "api/items", "tags", "users", "archive", "caf\u00e9", "a b"]
STATIC = ["css/site.css", "js/app.js", "img/logo.png", "favicon.ico", "fonts/x.woff2"]
USERS = [None] * 10 + ["alice", "bob"]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One generated request: the line written, and the facts it was written from."""

    line: str
    client: str
    user: str | None
    start: float  # unix seconds
    method: str | None  # None: nginx's "-" request line (no request received)
    path: str | None  # decoded, as the middleware stores it
    query: str | None  # raw, without "?"
    protocol: str | None
    status: int
    size: int  # "-" written for 0 on some lines
    referer: str | None
    agent: str | None


def _escape(text: str) -> str:
    """Apache/nginx escaping inside a quoted field: \\" and \\\\, other bytes as \\xHH."""
    out = []
    for byte in text.encode("utf-8"):
        if byte == 0x22:
            out.append('\\"')
        elif byte == 0x5C:
            out.append("\\\\")
        elif byte < 0x20 or byte >= 0x7F:
            out.append(f"\\x{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def _quote_path(path: str) -> str:
    """Percent-escape what a client would (spaces, non-ASCII), as a request line carries it."""
    out = []
    for char in path:
        if char == " " or not char.isascii():
            out.append("".join(f"%{b:02X}" for b in char.encode("utf-8")))
        else:
            out.append(char)
    return "".join(out)


def _paths(rng: random.Random, count: int) -> list[str]:
    out = ["/", "/about", "/robots.txt", "/missing"]
    while len(out) < count:
        if rng.random() < 0.2:
            out.append(f"/static/{rng.choice(STATIC)}".replace(".", f".{rng.randint(1, 40)}.", 1))
        else:
            out.append(f"/{rng.choice(SECTIONS)}/{rng.randint(1, 99999)}-title")
    return list(dict.fromkeys(out))


def generate(
    n: int,
    seed: int = 1,
    health_checks: float = 0.0,
    start: datetime = datetime(2026, 11, 30, 22, 0, tzinfo=timezone.utc),
    paths: int = 2000,
) -> list[Entry]:
    """``n`` requests over about ``n`` seconds from ``start``; ``health_checks``: the share of
    kube-probe requests to ``/healthz`` (left out by default on import)."""
    return list(entries(n, seed, health_checks, start, paths))


def entries(
    n: int,
    seed: int = 1,
    health_checks: float = 0.0,
    start: datetime = datetime(2026, 11, 30, 22, 0, tzinfo=timezone.utc),
    paths: int = 2000,
) -> Iterator[Entry]:
    """:func:`generate`, one entry at a time (for logs too big to hold in memory)."""
    rng = random.Random(seed)
    all_paths = _paths(rng, paths)
    clients = [f"203.0.113.{i}" for i in range(1, 80)] + [f"2001:db8::{i:x}" for i in range(1, 20)]
    when = start.timestamp()
    for _ in range(n):
        when += rng.random() * 2
        zone = timezone(rng.choice(ZONES))
        stamp = datetime.fromtimestamp(int(when), zone).strftime("%d/%b/%Y:%H:%M:%S %z")
        client = rng.choice(clients)
        user = rng.choice(USERS)
        if rng.random() < health_checks:
            method, path, query, protocol = "GET", "/healthz", None, "HTTP/1.1"
            status, size, referer, agent = 200, 2, None, "kube-probe/1.29"
        elif rng.random() < 0.01:  # a connection that sent no request
            method = path = query = protocol = None
            status, size, referer, agent = rng.choice([400, 408]), 0, None, None
        else:
            method = rng.choice(METHODS)
            weight = rng.paretovariate(1.1)
            index = min(int(weight) - 1, len(all_paths) - 1)
            path = all_paths[index if rng.random() < 0.7 else rng.randrange(len(all_paths))]
            query = None
            roll = rng.random()
            if roll < 0.2:
                query = f"page={rng.randint(1, 30)}"
            elif roll < 0.23:
                query = f"q=caf%C3%A9&token=s3cr3t{rng.randint(1, 9)}"
            protocol = rng.choice(PROTOCOLS)
            status = 404 if path == "/missing" else rng.choice(STATUSES)
            size = 0 if status in (304, 204) or method == "HEAD" else rng.randint(1, 90_000)
            referer = rng.choice(REFERERS)
            agent = rng.choice(AGENTS)
        if method is None:
            request = "-"
        else:
            target = _quote_path(path) + (f"?{query}" if query else "")
            request = _escape(f"{method} {target} {protocol}")
        size_text = "-" if size == 0 and rng.random() < 0.5 else str(size)
        line = (
            f'{client} - {user or "-"} [{stamp}] "{request}" {status} {size_text} '
            f'"{_escape(referer) if referer else "-"}" "{_escape(agent) if agent else "-"}"'
        )
        yield Entry(line, client, user, float(int(when)), method, path, query, protocol, status,
                    size, referer, agent)


def write_log(
    path: str | os.PathLike[str], entries: Iterable[Entry], compress: bool = False
) -> None:
    """Write the entries' lines (gzip-compressed if asked), a thousand at a time."""
    with open(path, "wb") as raw, (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if compress else contextlib.nullcontext(raw)
    ) as file:
        batch: list[str] = []
        for entry in entries:
            batch.append(entry.line)
            if len(batch) >= 1000:
                file.write(("\n".join(batch) + "\n").encode("utf-8"))
                batch = []
        if batch:
            file.write(("\n".join(batch) + "\n").encode("utf-8"))


@dataclasses.dataclass
class Summary:
    """What a combined log says, in numbers any reader of it must agree on."""

    total: int
    statuses: dict[int, int]
    paths: dict[str | None, tuple[int, int]]  # path (None: no request) -> (hits, bytes)
    not_found: dict[str, int]  # path -> hits of 404 responses


def expected_summary(entries: Sequence[Entry]) -> Summary:
    """The summary of generated entries, counted from the facts they were written from."""
    hits: Counter[str | None] = Counter()
    sizes: Counter[str | None] = Counter()
    for entry in entries:
        hits[entry.path] += 1
        sizes[entry.path] += entry.size
    return Summary(
        total=len(entries),
        statuses=dict(Counter(entry.status for entry in entries)),
        paths={path: (hits[path], sizes[path]) for path in hits},
        not_found=dict(Counter(e.path for e in entries if e.status == 404 and e.path)),
    )


def goaccess_report(log: str | os.PathLike[str], output: str | os.PathLike[str]) -> dict:
    """GoAccess's JSON report of a combined log (query strings left out of the paths)."""
    subprocess.run(
        ["goaccess", str(log), "--log-format=COMBINED", "--no-query-string",
         "--no-global-config", "--max-items=1000000", "-o", str(output)],
        check=True, capture_output=True, timeout=120,
    )
    with open(output, "rb") as file:
        # GoAccess writes a decoded path's bytes as they are, even when they are not UTF-8.
        return json.loads(file.read().decode("utf-8", "replace"), strict=False)


def goaccess_summary(report: dict) -> Summary:
    """GoAccess's numbers: requests, static files and 404s are three panels of one path list;
    a request line GoAccess could not split (method ``---``, such as nginx's ``"-"``) counts
    under None, as an importer stores no path for it."""
    paths: dict[str | None, tuple[int, int]] = {}
    for panel in ("requests", "static_requests", "not_found"):
        for item in report[panel]["data"]:  # one item per method and protocol of a path
            key = None if item.get("method") == "---" else item["data"]
            hits, size = paths.get(key, (0, 0))
            paths[key] = (hits + item["hits"]["count"], size + item["bytes"]["count"])
    statuses = {}
    for group in report["status_codes"]["data"]:
        for item in group["items"]:
            statuses[int(item["data"].split()[0])] = item["hits"]["count"]
    not_found: Counter[str] = Counter()
    for item in report["not_found"]["data"]:  # one item per method and protocol
        not_found[item["data"]] += item["hits"]["count"]
    return Summary(
        total=report["general"]["valid_requests"],
        statuses=statuses,
        paths=paths,
        not_found=dict(not_found),
    )


def database_summary(db: str | os.PathLike[str]) -> Summary:
    """The same numbers counted from a log database's ``requests_view``."""
    conn = sqlite3.connect(db)
    try:
        total = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        statuses = dict(conn.execute(
            "SELECT http_status, count(*) FROM requests GROUP BY http_status"))
        paths = {path: (hits, size) for path, hits, size in conn.execute(
            "SELECT path, count(*), total(body_size) FROM requests_view GROUP BY path")}
        not_found = dict(conn.execute(
            "SELECT path, count(*) FROM requests_view WHERE http_status = 404 "
            "AND path IS NOT NULL GROUP BY path"))
    finally:
        conn.close()
    return Summary(total, statuses, {k: (h, int(b)) for k, (h, b) in paths.items()}, not_found)
