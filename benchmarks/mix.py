"""A realistic request mix, the same in every benchmark and in both virtualenvs (stdlib only).

Many distinct paths (a long tail, like a real site), a few dozen user agents and referers,
query strings on a third of the requests, several client addresses and content types.
Deterministic: the same seed gives the same requests.
"""

from __future__ import annotations

import random

USER_AGENTS = [
    f"Mozilla/5.0 ({os}) AppleWebKit/537.36 (KHTML, like Gecko) {browser}"
    for os in (
        "Windows NT 10.0; Win64; x64",
        "Macintosh; Intel Mac OS X 10_15_7",
        "X11; Linux x86_64",
        "iPhone; CPU iPhone OS 17_1 like Mac OS X",
        "Linux; Android 14; Pixel 8",
    )
    for browser in (
        "Chrome/119.0.0.0 Safari/537.36",
        "Version/17.1 Safari/605.1.15",
        "Firefox/120.0",
        "Edg/119.0.2151.72",
        "Chrome/118.0.5993.117 Mobile Safari/537.36",
        "OPR/104.0.0.0",
    )
] + ["curl/8.4.0", "python-httpx/0.25.1", "Googlebot/2.1 (+http://www.google.com/bot.html)",
     "bingbot/2.0", "Wget/1.21.4", "Go-http-client/1.1"]

REFERERS = [f"https://www.example{i}.com/some/page/{i * 7}" for i in range(25)] + [
    "https://www.google.com/", "https://duckduckgo.com/", "https://news.ycombinator.com/",
    "https://twitter.com/", "https://github.com/simonw/datasette",
]
LANGUAGES = ["en-US,en;q=0.9", "en-GB,en;q=0.8", "de-DE,de;q=0.9,en;q=0.5", "fr-FR", "ja", "es"]
SECTIONS = ["blog", "docs", "api/items", "static/css", "static/js", "tags", "users", "archive"]
CLIENTS = [f"203.0.113.{i}" for i in range(1, 60)] + [f"198.51.100.{i}" for i in range(1, 40)]


def paths(rng: random.Random, count: int) -> list[str]:
    out = ["/", "/about", "/favicon.ico", "/robots.txt"]
    while len(out) < count:
        section = rng.choice(SECTIONS)
        out.append(f"/{section}/{rng.randint(2015, 2024)}/{rng.randint(1, 9999)}-some-title")
    return out


def requests(n: int, seed: int = 1) -> list[dict]:
    """``n`` request descriptions: method, path, query, headers (bytes), client ip."""
    rng = random.Random(seed)
    all_paths = paths(rng, 500)
    out = []
    for _ in range(n):
        # A long tail: a few pages get most hits.
        path = all_paths[min(int(rng.paretovariate(1.2)) - 1, len(all_paths) - 1)
                         if rng.random() < 0.6 else rng.randrange(len(all_paths))]
        query = f"page={rng.randint(1, 20)}" if rng.random() < 0.3 else ""
        headers = [
            (b"host", b"www.example.com"),
            (b"user-agent", rng.choice(USER_AGENTS).encode()),
            (b"accept", b"text/html,application/xhtml+xml,*/*;q=0.8"),
            (b"accept-encoding", b"gzip, deflate, br"),
        ]
        if rng.random() < 0.6:
            headers.append((b"referer", rng.choice(REFERERS).encode()))
        if rng.random() < 0.8:
            headers.append((b"accept-language", rng.choice(LANGUAGES).encode()))
        method = "POST" if rng.random() < 0.05 else "GET"
        out.append({"method": method, "path": path, "query": query, "headers": headers,
                    "client": rng.choice(CLIENTS)})
    return out


def scopes(n: int, seed: int = 1) -> list[dict]:
    """The mix as ASGI HTTP scopes, as uvicorn would build them."""
    out = []
    for r in requests(n, seed):
        out.append({
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8000),
            "client": (r["client"], 40000),
            "scheme": "http",
            "method": r["method"],
            "root_path": "",
            "path": r["path"],
            "raw_path": r["path"].encode(),
            "query_string": r["query"].encode(),
            "headers": r["headers"],
            "state": {},
        })
    return out


def wrk_lua(n: int = 2000, seed: int = 1) -> str:
    """A wrk script that cycles through the mix (paths, query strings and headers)."""
    lines = ["local reqs = {}"]
    for i, r in enumerate(requests(n, seed), 1):
        target = r["path"] + ("?" + r["query"] if r["query"] else "")
        headers = {k.decode(): v.decode() for k, v in r["headers"] if k != b"host"}
        table = ", ".join(f"[{lua(k)}] = {lua(v)}" for k, v in headers.items())
        lines.append(f"reqs[{i}] = wrk.format({lua(r['method'])}, {lua(target)}, {{{table}}})")
    lines += [
        "local i = 0",
        f"local n = {n}",
        "request = function()",
        "  i = i % n + 1",
        "  return reqs[i]",
        "end",
    ]
    return "\n".join(lines) + "\n"


def lua(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
