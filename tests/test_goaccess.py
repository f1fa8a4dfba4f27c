"""The report checked against GoAccess, the reference reader of combined logs.

A combined-format log of tens of thousands of varied lines is generated here; GoAccess (a
subprocess, Debian's ``goaccess``) turns it into JSON; the same traffic goes through the real
middleware into a log database (each line replayed as the ASGI request a server would make of
it); and the report's totals, status codes, top paths with hits and bytes, and 404s must equal
GoAccess's. Then ``tail`` prints the database as a combined log again, which GoAccess must
accept line for line, with the same figures.

``.ci/run`` installs GoAccess; the tests are skipped only where it is absent locally.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import sqlite3
import subprocess
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, unquote, unquote_to_bytes

import pytest

from asgi_log_to_sqlite import AsgiLogToSqlite
from asgi_log_to_sqlite.report import build_report
from asgi_log_to_sqlite.report.tail import tail

GOACCESS = shutil.which("goaccess")
pytestmark = [
    pytest.mark.skipif(GOACCESS is None, reason="needs goaccess (Debian package goaccess)"),
    pytest.mark.timeout(300),
]
LINES = 20_000
START = 1_714_521_600  # 2024-05-01T00:00:00Z

AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Wget/1.21.4",
]
REFERRERS = ["https://www.google.com/search?q=sqlite", "https://news.ycombinator.com/item?id=1",
             "https://github.com/simonw", "https://example.org/blog/post-1#comments",
             "android-app://com.google.android.gm/"]
PAGES = ([f"/blog/{slug}" for slug in ("hello", "sqlite-is-enough", "caf%C3%A9-au-lait",
                                        "a%20space", "%E6%97%A5%E6%9C%AC%E8%AA%9E")]
         + [f"/docs/page-{i}" for i in range(40)] + ["/", "/about", "/pricing", "/search"]
         + [f"/products/{i}" for i in range(150)])
STATIC = ["/static/app.css", "/static/app.js", "/static/logo.png", "/favicon.ico",
          "/static/fonts/inter.woff2"]
SCANS = ["/wp-login.php", "/.env", "/xmlrpc.php", "/admin/config.php", "/.git/config",
         "/old-page", "/blog/missing"]


def combined_log(path: Path, lines: int = LINES, seed: int = 42) -> None:
    """A varied combined-format log, in time order, as Apache or nginx writes it."""
    rng = random.Random(seed)
    ips = [f"203.0.113.{i}" for i in range(1, 200)] + [f"2001:db8::{i:x}" for i in range(1, 300)]
    weights = [1 / (i + 1) for i in range(len(PAGES))]
    out = []
    for n in range(lines):
        when = datetime.fromtimestamp(START + n * 13 + rng.random(), timezone.utc)
        kind = rng.random()
        method = "GET"
        if kind < 0.15:
            target, status = rng.choice(STATIC), rng.choice([200, 200, 200, 304])
        elif kind < 0.22:
            target, status = rng.choice(SCANS), 404
        else:
            target = rng.choices(PAGES, weights)[0]
            status = rng.choices([200, 301, 302, 400, 401, 403, 404, 500, 502, 503],
                                 [80, 3, 3, 1, 1, 1, 3, 2, 1, 1])[0]
            method = rng.choices(["GET", "POST", "HEAD", "PUT", "DELETE"], [85, 8, 4, 2, 1])[0]
            if rng.random() < 0.2:
                target += rng.choice(["?page=2", "?q=asgi&sort=new", "?utm_source=news"])
        size = 0 if method == "HEAD" or status in (204, 304) else rng.randint(0, 90_000)
        referer = rng.choice(REFERRERS) if rng.random() < 0.3 else "-"
        out.append(
            f'{rng.choice(ips)} - - [{when.strftime("%d/%b/%Y:%H:%M:%S +0000")}] '
            f'"{method} {target} HTTP/1.1" {status} {size if size else "-"} '
            f'"{referer}" "{rng.choice(AGENTS)}"'
        )
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def parse(line: str) -> dict:
    """One line of :func:`combined_log` (no quotes inside its fields)."""
    host, rest = line.split(" - - [", 1)
    _, rest = rest.split('] "', 1)
    request, rest = rest.split('" ', 1)
    method, target, _ = request.split(" ")
    status, size, rest = rest.split(" ", 2)
    referer, _, agent = rest[1:-1].partition('" "')
    return {"ip": host, "method": method, "target": target, "status": int(status),
            "size": 0 if size == "-" else int(size), "referer": referer, "agent": agent}


async def _replayed_app(scope, receive, send):
    """Answers each request as the log line says: its status and that many body bytes."""
    if scope["type"] != "http":
        return
    status, size = scope["replay"]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(size).encode())]})
    await send({"type": "http.response.body", "body": b"x" * size})


async def _replay(log: AsgiLogToSqlite, requests: list[dict]) -> None:
    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        return None

    for r in requests:
        raw, _, query = r["target"].partition("?")
        headers = [(b"host", b"example.com"), (b"user-agent", r["agent"].encode())]
        if r["referer"] != "-":
            headers.append((b"referer", r["referer"].encode()))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": r["method"], "scheme": "http", "root_path": "",
            # What a server makes of the target: raw bytes as sent, the path decoded.
            "raw_path": raw.encode(), "path": unquote_to_bytes(raw).decode("utf-8", "replace"),
            "query_string": query.encode(), "headers": headers,
            "client": (r["ip"], 40000), "server": ("127.0.0.1", 8000),
            "replay": (r["status"], r["size"]),
        }
        await log(scope, receive, send)


def replay(lines: list[str], db: str) -> None:
    """Every line through the real middleware, as the request a server would make of it."""
    log = AsgiLogToSqlite(_replayed_app, db, flush_interval=0.5, max_queue=200_000,
                          exclude_health_checks=False)
    asyncio.run(_replay(log, [parse(line) for line in lines]))
    log.close(60)


def goaccess(log: Path, out: Path, *extra: str) -> dict:
    subprocess.run(
        [GOACCESS, str(log), "--log-format=COMBINED", "--no-query-string", "--max-items=100000",
         "-o", str(out), "--json-pretty-print", *extra],
        check=True, capture_output=True, timeout=120,
    )
    return json.loads(out.read_text(encoding="utf-8"))


def goaccess_figures(data: dict) -> dict:
    """Hits and bytes per path (its requests, static files and 404 panels together), hits per
    status code, and per 404 path."""
    paths: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for panel in ("requests", "static_requests", "not_found"):
        for item in data[panel]["data"]:
            paths[item["data"]] += item["hits"]["count"]
            sizes[item["data"]] += item["bytes"]["count"]
    statuses: Counter[int] = Counter()
    for group in data["status_codes"]["data"]:
        for item in group["items"]:
            statuses[int(item["data"].split(" ", 1)[0])] += item["hits"]["count"]
    not_found: Counter[str] = Counter()
    for item in data["not_found"]["data"]:
        not_found[item["data"]] += item["hits"]["count"]
    return {"paths": paths, "bytes": sizes, "statuses": statuses, "not_found": not_found,
            "total": data["general"]["valid_requests"],
            "failed": data["general"]["failed_requests"],
            "bandwidth": data["general"]["bandwidth"]}


def top(counter: Counter, n: int) -> list:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("goaccess")
    access = folder / "access.log"
    combined_log(access)
    db = str(folder / "log.db")
    replay(access.read_text(encoding="utf-8").splitlines(), db)
    return folder, access, db, goaccess_figures(goaccess(access, folder / "goaccess.json"))


def assert_report_matches(report: dict, ga: dict, limit: int) -> None:
    s = report["summary"]
    assert s["requests"] == ga["total"] == LINES
    assert s["bytes_sent"] == ga["bandwidth"]
    assert {row["status"]: row["requests"] for row in report["statuses"]} == dict(ga["statuses"])
    assert [(p["path"], p["requests"], p["bytes"]) for p in report["top_paths"]] == [
        (path, hits, ga["bytes"][path]) for path, hits in top(ga["paths"], limit)]
    assert [(p["path"], p["requests"]) for p in report["not_found"]] == top(ga["not_found"], limit)


def test_report_equals_goaccess_on_the_same_traffic(traffic):
    _, _, db, ga = traffic
    assert ga["failed"] == 0
    report = build_report([db], limit=60)
    assert_report_matches(report, ga, 60)
    # Paths with escapes are the ones GoAccess shows too.
    names = {p["path"] for p in report["top_paths"]}
    assert {"/blog/café-au-lait", "/blog/a space"} <= names | set(ga["paths"])


def test_tail_prints_a_log_goaccess_reads_line_for_line(traffic):
    folder, _, db, ga = traffic
    lines: list[str] = []
    tail(db, lines=LINES * 2, emit=lines.append)
    assert len(lines) == LINES
    printed = folder / "tail.log"
    printed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    again = goaccess_figures(goaccess(printed, folder / "tail.json",
                                      f"--invalid-requests={folder / 'invalid.log'}"))
    assert (folder / "invalid.log").read_text() == ""
    assert again["failed"] == 0 and again["total"] == LINES
    assert again["paths"] == ga["paths"] and again["bytes"] == ga["bytes"]
    assert again["statuses"] == ga["statuses"] and again["not_found"] == ga["not_found"]


# Values that used to break a line: quotes and spaces in the path, quotes and backslashes in
# the user agent and referer, control characters, text that is not ASCII.
ODD = [
    ('/a"b c', "", 'agent "quoted" \\ back', 'https://x.com/"q"'),
    ("/tab\there", "?q=\"x\" y", "new\nline agent", "-"),
    ("/caf\u00e9/\u65e5\u672c", "?name=\u00e9", "Mozilla/5.0 (\u65e5\u672c)", "https://r/\u00e9"),
    ("/a%2Fb", "", "", ""),
    ("/100%25", "?x=%22", "ends with backslash\\", "ends with quote\""),
    ('"', '"', '"', '"'),
    ("/\x00nul\x7fdel", "", "\x1b[31mred", "\\"),
]


def test_tail_lines_of_odd_values_are_all_accepted(tmp_path):
    db = str(tmp_path / "odd.db")
    log = AsgiLogToSqlite(_replayed_app, db, exclude_health_checks=False)  # the schema
    log.close(10)
    conn = sqlite3.connect(db)
    with conn:
        for i, (path, query, agent, referer) in enumerate(ODD * 30):
            ids = []
            for table, value in (("paths", path), ("query_strings", query),
                                 ("user_agents", agent), ("referers", referer)):
                if not value:
                    ids.append(None)
                    continue
                conn.execute(f"INSERT OR IGNORE INTO {table} (name) VALUES (?)", (value,))
                ids.append(conn.execute(f"SELECT id FROM {table} WHERE name = ?",
                                        (value,)).fetchone()[0])
            conn.execute(
                "INSERT INTO requests (start, method, path, query_string, user_agent, referer, "
                "http_status, client_ip, duration, body_size, http_version) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0.01, 10, '1.1')",
                (START + i, ("GET", "POST", "HEAD")[i % 3], *ids, (200, 404, None)[i % 3],
                 ("203.0.113.9", "2001:db8::1")[i % 2]),
            )
    conn.close()
    lines: list[str] = []
    tail(db, lines=10_000, emit=lines.append)
    assert len(lines) == len(ODD) * 30
    assert all("\n" not in line and "\x1b" not in line for line in lines)
    printed = tmp_path / "odd.log"
    printed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = goaccess(printed, tmp_path / "odd.json", f"--invalid-requests={tmp_path / 'bad.log'}")
    assert (tmp_path / "bad.log").read_text() == ""
    assert data["general"]["failed_requests"] == 0
    assert data["general"]["valid_requests"] == len(lines)
    # GoAccess decodes the target back to the stored path.
    shown = {item["data"] for panel in ("requests", "static_requests", "not_found")
             for item in data[panel]["data"]}
    assert "/caf\u00e9/\u65e5\u672c" in shown and '/a"b c' in shown


def test_the_request_target_is_percent_encoded():
    from asgi_log_to_sqlite.report.tail import format_line

    line = format_line((1, START, "203.0.113.9", "GET", '/a"b c', "?q=1 2", 'ua "x"', None,
                        "1.1", 200, 5, 0.01))
    assert '"GET /a%22b%20c?q=1%202 HTTP/1.1" 200 5 "-" "ua \\"x\\"" 0.010s' in line
    assert unquote(quote('/a"b c')) == '/a"b c'
