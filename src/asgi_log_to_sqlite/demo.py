"""A bundled example site and realistic traffic for it, to see the logs and reports in seconds.

:func:`run_demo` wraps :func:`demo_app` in the middleware and drives generated visits through it
in-process (the ASGI calls a server would make, from many simulated clients: browsers loading a
page and its assets, API clients, crawlers, scanners probing for ``/wp-login.php``), so every row
is written by the real middleware and writer. :func:`synthetic_log` instead writes rows straight
into a log with ``executemany``: it fills a million-row log for benchmarks and tests in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import rollups
from .asgi_apps import answer_lifespan
from .filekind import special_file_kind
from .schema import connect, ensure_schema, remove_files, transaction

__all__ = ["USER_AGENTS", "demo_app", "run_demo", "synthetic_log"]

# (user agent, weight, is a bot)
USER_AGENTS: list[tuple[str, int, bool]] = [
    (("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36"), 30, False),
    (("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Safari/605.1.15"), 14, False),
    (("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"), 16, False),
    (("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Mobile Safari/537.36"), 12, False),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", 8, False),
    (("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51"), 7, False),
    ("curl/8.5.0", 3, False),
    ("python-httpx/0.27.0", 3, False),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 5, True),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", 3, True),
    (("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.0; "
     "+https://openai.com/gptbot)"), 2, True),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", 2, True),
]
PAGES = ["/", "/about", "/blog/", "/pricing", "/docs/", "/docs/install", "/docs/api", "/contact"]
POSTS = [f"/blog/{slug}" for slug in (
    "hello-world", "sqlite-is-enough", "asgi-in-depth", "logging-without-blocking",
    "datasette-tricks", "release-0-2", "wal-mode-explained", "percentiles-101",
)]
ASSETS = ["/static/app.css", "/static/app.js", "/static/logo.png"]
SCANS = ["/wp-login.php", "/.env", "/xmlrpc.php", "/admin/config.php", "/.git/config",
         "/phpmyadmin/", "/old-page", "/blog/missing-post"]
REFERRERS = [
    "https://www.google.com/", "https://duckduckgo.com/", "https://news.ycombinator.com/",
    "https://www.reddit.com/r/Python/", "https://twitter.com/", "https://github.com/",
]
LANGUAGES = ["en-US,en;q=0.9", "en-GB,en;q=0.8", "de-DE,de;q=0.9,en;q=0.5", "fr-FR,fr;q=0.9",
             "ja-JP,ja;q=0.9", "es-ES,es;q=0.9"]
HOSTS = ["www.example.com", "example.com", "api.example.com"]

_ASSET_BODIES = {
    "/static/app.css": (b"body{font:16px sans-serif}" * 300, b"text/css"),
    "/static/app.js": (b"console.log('demo');" * 900, b"text/javascript"),
    "/static/logo.png": (bytes(range(256)) * 160, b"image/png"),
}


async def _send_body(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def demo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A small website and JSON API with the usual mix of fast, slow, missing and failing pages."""
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)

    if path in _ASSET_BODIES:
        await asyncio.sleep(0.001)
        data, kind = _ASSET_BODIES[path]
        await _send_body(send, 200, data, kind)
    elif path in PAGES or path in POSTS:
        await asyncio.sleep(random.uniform(0.002, 0.02))
        page = f"<!doctype html><title>{path}</title><h1>{path}</h1>".encode()
        await _send_body(send, 200, page + b"<p>lorem ipsum</p>" * random.randint(20, 200),
                         b"text/html; charset=utf-8")
    elif path == "/api/items" and method == "POST":
        await asyncio.sleep(random.uniform(0.005, 0.03))
        status = 201 if body.startswith(b"{") else 422
        await _send_body(send, status, b'{"id": 42}', b"application/json")
    elif path == "/api/items":
        await asyncio.sleep(random.uniform(0.002, 0.01))
        await _send_body(send, 200, b'{"items": [1, 2, 3]}' * 20, b"application/json")
    elif path == "/api/search":
        # The slow endpoint of every site: a long tail of slow queries.
        await asyncio.sleep(random.expovariate(1 / 0.06))
        await _send_body(send, 200, b'{"results": []}', b"application/json")
    elif path == "/api/report":
        await asyncio.sleep(random.uniform(0.01, 0.05))
        if random.random() < 0.3:
            raise RuntimeError("report backend unavailable")
        await _send_body(send, 200, b'{"ok": true}', b"application/json")
    elif path == "/export.csv":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/csv")]})
        for _ in range(5):
            await asyncio.sleep(0.005)
            chunk = b"id,name\n" * 500
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/login" and method == "POST":
        await asyncio.sleep(0.02)
        status = 303 if b"password=right" in body else 401
        await _send_body(send, status, b"", b"text/plain")
    elif path == "/admin":
        await _send_body(send, 403, b"forbidden", b"text/plain")
    elif path == "/health":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/robots.txt":
        await _send_body(send, 200, b"User-agent: *\nDisallow: /admin\n", b"text/plain")
    elif path == "/sitemap.xml":
        await _send_body(send, 200, b"<urlset></urlset>" * 40, b"application/xml")
    else:
        await _send_body(send, 404, b"not found", b"text/plain")


# ---- traffic -------------------------------------------------------------------------------
Request = tuple[str, str, str, bytes]  # method, path, query string, body


def _visit(rng: random.Random, bot: bool) -> list[Request]:
    """The requests of one visit: a browser reads pages and loads assets, a bot crawls."""
    if bot:
        visit: list[Request] = [("GET", "/robots.txt", "", b""), ("GET", "/sitemap.xml", "", b"")]
        visit += [("GET", rng.choice(PAGES + POSTS), "", b"") for _ in range(rng.randint(2, 8))]
        if rng.random() < 0.3:
            visit += [("GET", p, "", b"") for p in rng.sample(SCANS, 3)]
        return visit
    visit = []
    for _ in range(rng.randint(1, 5)):
        page = rng.choice(PAGES + POSTS + POSTS)
        visit.append(("GET", page, "", b""))
        if rng.random() < 0.6:
            visit += [("GET", asset, "", b"") for asset in ASSETS]
    extra = rng.random()
    if extra < 0.25:
        term = rng.choice(["sqlite", "asgi", "wal", "logs"])
        visit.append(("GET", "/api/search", f"q={term}", b""))
    elif extra < 0.35:
        visit.append(("POST", "/api/items", "", b'{"name": "x"}' if rng.random() < 0.9 else b"x"))
    elif extra < 0.42:
        form = b"user=a&password=right" if rng.random() < 0.7 else b""
        visit.append(("POST", "/login", "", form))
    elif extra < 0.47:
        visit.append(("GET", "/api/report", "", b""))
    elif extra < 0.52:
        visit.append(("GET", "/export.csv", "", b""))
    elif extra < 0.55:
        visit.append(("GET", rng.choice([*SCANS, "/admin"]), "", b""))
    elif extra < 0.6:
        visit.append(("GET", "/api/items", "page=2", b""))
    return visit


class _Visitor:
    def __init__(self, rng: random.Random) -> None:
        agent, _, self.bot = rng.choices(USER_AGENTS, weights=[w for _, w, _ in USER_AGENTS])[0]
        self.agent = agent
        if rng.random() < 0.15:
            self.ip = f"2001:db8:{rng.randint(0, 0xffff):x}::{rng.randint(1, 0xffff):x}"
        else:
            net = rng.choice(["192.0.2", "198.51.100", "203.0.113"])
            self.ip = f"{net}.{rng.randint(1, 254)}"
        self.language = rng.choice(LANGUAGES)
        self.referrer = rng.choice(REFERRERS) if rng.random() < 0.4 else None
        self.host = rng.choices(HOSTS, weights=[70, 20, 10])[0]


async def _request(app: Any, visitor: _Visitor, request: Request, referrer: str | None) -> None:
    method, path, query, body = request
    headers = [(b"host", visitor.host.encode()), (b"user-agent", visitor.agent.encode()),
               (b"accept-language", visitor.language.encode())]
    if referrer:
        headers.append((b"referer", referrer.encode()))
    if body:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "https", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(), "headers": headers,
        "client": (visitor.ip, random.randint(30000, 60000)), "server": ("127.0.0.1", 8000),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # a client that stays connected until the response is done
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        pass

    with contextlib.suppress(RuntimeError):
        # The demo app's failing endpoint: a server would answer 500, and the middleware has
        # already logged the request.
        await app(scope, receive, send)


async def _drive(app: Any, requests: int, seconds: float, seed: int,
                 progress: Callable[[int], None]) -> int:
    rng = random.Random(seed)
    done = 0
    limit = asyncio.Semaphore(64)

    async def one_visit(visitor: _Visitor, visit: list[Request]) -> None:
        nonlocal done
        referrer = visitor.referrer
        for request in visit:
            async with limit:
                await _request(app, visitor, request, referrer)
            done += 1
            progress(1)
            if request[1] in PAGES or request[1] in POSTS:
                referrer = f"https://{visitor.host}{request[1]}"
            await asyncio.sleep(rng.uniform(0, 0.05))

    planned: list[tuple[_Visitor, list[Request]]] = []
    visitors = [_Visitor(rng) for _ in range(max(20, requests // 25))]
    count = 0
    while count < requests:
        visitor = rng.choice(visitors)
        visit = _visit(rng, visitor.bot)[: requests - count]
        planned.append((visitor, visit))
        count += len(visit)
    # Visits start along ``seconds`` in waves (a busy moment, a quiet one), like real traffic.
    weights = [1.5 + math.sin(i / len(planned) * 3 * math.pi) for i in range(len(planned))]
    total_weight = sum(weights)
    tasks = []
    started = time.monotonic()
    elapsed = 0.0
    for (visitor, visit), weight in zip(planned, weights, strict=False):
        elapsed += seconds * weight / total_weight
        delay = started + elapsed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one_visit(visitor, visit)))
    await asyncio.gather(*tasks)
    return done


def run_demo(
    db: str | os.PathLike[str],
    requests: int = 3000,
    seconds: float = 8.0,
    seed: int = 1,
    progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Start ``db`` afresh, serve ``requests`` generated requests over about ``seconds`` through
    the middleware-wrapped :func:`demo_app`, flush, and return how many were served."""
    from .middleware import AsgiLogToSqlite

    path = os.fspath(db)
    kind = special_file_kind(path)
    if kind is not None:  # never delete a pipe, a device (/dev/null) or a folder
        raise ValueError(f"{path}: {kind}, not a log file")
    remove_files(path)
    random.seed(seed)
    log = AsgiLogToSqlite(demo_app, path, flush_interval=0.1)
    try:
        return asyncio.run(_drive(log, requests, seconds, seed, progress))
    finally:
        log.close(timeout=30)


# ---- synthetic logs ------------------------------------------------------------------------
def _time_of(position: float, rows: int, end: float, span: float) -> float:
    """Where the ``position``-th of ``rows`` requests falls in ``span`` seconds before ``end``:
    a daily cycle (twice as busy mid-afternoon UTC as at night), time increasing with position.
    """
    x = position / rows  # 0..1 of the requests
    # Invert the cumulative of 1 + 0.5 sin(2 pi (t / day - 0.375)) approximately by a first-order
    # correction of the uniform time: close enough for plausible charts.
    t = x * span
    t -= 0.5 * 86400 / (2 * math.pi) * (
        math.cos(2 * math.pi * ((end - span) / 86400 - 0.375))
        - math.cos(2 * math.pi * ((end - span + t) / 86400 - 0.375))
    )
    return min(end, max(end - span, end - span + t))


def synthetic_log(
    db: str | os.PathLike[str],
    rows: int,
    end: float | None = None,
    days: float = 7.0,
    seed: int = 0,
    batch: int = 50_000,
    routes: Sequence[str] = (),
) -> None:
    """Append ``rows`` plausible requests spread over ``days`` up to ``end`` to a log, directly
    with ``executemany`` (no middleware), and add them to the rollups as the writer does: for
    benchmarks and tests of the reports. The paths named in ``routes`` are served by a route
    template of the same name (as an app with a router logs them; the rollups count them under
    the route)."""
    rng = random.Random(seed)
    end = time.time() if end is None else end
    conn = connect(os.fspath(db))
    try:
        ensure_schema(conn)
        lookups: dict[str, list[int]] = {}
        values = {
            "paths": PAGES + POSTS + ASSETS + SCANS + ["/api/search", "/api/items", "/api/report"]
            + [f"/products/{i}" for i in range(300)],
            "user_agents": [agent for agent, _, _ in USER_AGENTS],
            "referers": REFERRERS,
            "hosts": HOSTS,
            "query_strings": ["?page=2", "?q=sqlite", "?sort=new", "?utm_source=news"],
            "routes": list(routes),
        }
        with transaction(conn):
            for table, names in values.items():
                conn.executemany(
                    f"INSERT OR IGNORE INTO [{table}] (name) VALUES (?)", [(n,) for n in names]
                )
                ids = dict(conn.execute(f"SELECT name, id FROM [{table}]").fetchall())
                lookups[table] = [ids[n] for n in names]
        paths, agents = lookups["paths"], lookups["user_agents"]
        path_ids = dict(zip(values["paths"], paths, strict=True))
        route_of = {path_ids[name]: route for name, route in zip(
            routes, lookups["routes"], strict=True) if name in path_ids}
        path_weights = [1.0 / (i + 1) for i in range(len(paths))]
        agent_weights = [w for _, w, _ in USER_AGENTS]
        statuses = (
            [200] * 80 + [304] * 6 + [301, 302] + [404] * 6 + [401, 403, 422] + [500, 502, 503]
        )
        ips = [f"203.0.113.{i}" for i in range(1, 255)] + [f"198.51.100.{i}" for i in range(1, 255)]
        ips += [f"2001:db8::{i:x}" for i in range(1, 2000)]
        span = days * 86400
        columns = ("start", "method", "path", "query_string", "user_agent", "referer",
                   "http_status", "client_ip", "duration", "body_size", "host", "scheme",
                   "http_version", "ttfb", "connection_type", "route")
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO requests ({', '.join(columns)}) VALUES ({marks})"
        written = 0
        while written < rows:
            n = min(batch, rows - written)
            chosen_paths = rng.choices(paths, weights=path_weights, k=n)
            chosen_agents = rng.choices(agents, weights=agent_weights, k=n)
            chosen_status = rng.choices(statuses, k=n)
            chosen_ips = rng.choices(ips, k=n)
            chunk = []
            for i in range(n):
                duration = rng.lognormvariate(-4.0, 1.0)
                chunk.append((
                    # In time order, as a log fills: a busier afternoon, a quieter night.
                    _time_of(written + i + rng.random(), rows, end, span),
                    "POST" if rng.random() < 0.08 else "GET",
                    chosen_paths[i],
                    rng.choice(lookups["query_strings"]) if rng.random() < 0.1 else None,
                    chosen_agents[i],
                    rng.choice(lookups["referers"]) if rng.random() < 0.3 else None,
                    chosen_status[i],
                    chosen_ips[i],
                    duration,
                    rng.randint(0, 60_000),
                    rng.choice(lookups["hosts"]),
                    "https",
                    "1.1",
                    duration * 0.8,
                    "http",
                    route_of.get(chosen_paths[i]),
                ))
            with transaction(conn):
                conn.executemany(sql, chunk)
                last = conn.execute("SELECT max(rowid) FROM requests").fetchone()[0]
                rollups.add_rows(conn, last - len(chunk) + 1, last)  # as the writer keeps them
            written += n
    finally:
        conn.close()
