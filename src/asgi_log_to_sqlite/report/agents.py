"""User agents grouped into browsers, operating systems and bots.

Parsing uses the maintained ``ua-parser`` rules (the same regexes as uap-core), never our own.
It runs once per *distinct* user-agent string with its request count, as SQL returned them, so
its cost follows the number of different agents, not the number of requests.

ua-parser compiles some 1,300 regular expressions before its first answer: about a tenth of a
second, most of what a small report takes. The command line therefore keeps the answers in a
cache file (:class:`AgentCache`, in the user's cache folder, one per ua-parser version), and a
report whose user agents were all seen before does not load ua-parser at all.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["AgentCache", "classify", "group_user_agents"]

NO_AGENT = "(no user agent)"
#: Agents a cache file keeps at most (past it, it starts again).
CACHE_LIMIT = 50_000


class AgentCache:
    """Answers of ua-parser kept between runs: ``{agent: [kind, family, os]}`` in a JSON file.

    Reading or writing it never fails a report: an unreadable or unwritable file is a cache
    that is empty, and a full one starts again.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.known: dict[str, tuple[str, str, str]] = {}
        self.added = 0
        if path is not None:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.known = {k: tuple(v) for k, v in data.items()  # type: ignore[misc]
                              if isinstance(k, str) and isinstance(v, list) and len(v) == 3}
            except (OSError, ValueError, AttributeError):
                self.known = {}

    @classmethod
    def default(cls) -> AgentCache:
        folder = os.environ.get("ASGI_LOG_TO_SQLITE_CACHE_DIR")
        if folder == "off":
            return cls(None)
        if not folder:
            base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                     ".cache")
            folder = os.path.join(base, "asgi-log-to-sqlite")
        # The rules' identity: where ua-parser's packages are and when they were installed
        # (cheaper to find than their versions, and new with every upgrade).
        import importlib.util

        try:
            stamps = []
            for name in ("ua_parser", "ua_parser_builtins"):
                spec = importlib.util.find_spec(name)
                origin = spec.origin if spec is not None else None
                if origin is None:
                    return cls(None)
                st = os.stat(origin)
                stamps.append(f"{st.st_size:x}{st.st_mtime_ns:x}")
        except (ImportError, ValueError, OSError):
            return cls(None)
        return cls(Path(folder) / f"user-agents-{'-'.join(stamps)}.json")

    def classify(self, agent: str | None) -> tuple[str, str, str]:
        if agent in self.known:
            return self.known[agent]  # type: ignore[index]
        found = classify(agent)
        if agent and len(agent) <= 1000:
            if len(self.known) >= CACHE_LIMIT:
                self.known = {}
            self.known[agent] = found
            self.added += 1
        return found

    def save(self) -> None:
        if self.path is None or not self.added:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=self.path.parent,
                                             delete=False, suffix=".tmp") as file:
                json.dump(self.known, file)
            os.replace(file.name, self.path)  # whole or not at all, even with reports at once
        except OSError:
            pass


#: The cache the command line installs for the report it builds (None: parse every time).
cache: AgentCache | None = None


@lru_cache(maxsize=65536)
def classify(agent: str | None) -> tuple[str, str, str]:
    """``(kind, family, os)`` of one user-agent string; kind is browser, bot or none."""
    if not agent:
        return ("none", NO_AGENT, NO_AGENT)
    import ua_parser  # the cli extra; imported here so the core package never needs it

    result = ua_parser.parse(agent)
    family = result.user_agent.family if result.user_agent else "Other"
    os_family = result.os.family if result.os else "Other"
    if result.device is not None and result.device.family == "Spider":
        return ("bot", family, os_family)
    return ("browser", family, os_family)


def group_user_agents(counts: Iterable[tuple[str | None, int]], limit: int = 10) -> dict[str, Any]:
    """Requests per browser family, operating system and bot, from (agent, requests) pairs."""
    kinds: Counter[str] = Counter()
    browsers: Counter[str] = Counter()
    systems: Counter[str] = Counter()
    bots: Counter[str] = Counter()
    lookup = cache.classify if cache is not None else classify
    for agent, requests in counts:
        kind, family, os_family = lookup(agent)
        kinds[kind] += requests
        if kind == "bot":
            bots[family] += requests
        elif kind == "browser":
            browsers[family] += requests
            systems[os_family] += requests

    def top(counter: Counter[str]) -> list[dict[str, Any]]:
        ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
        return [{"name": name, "requests": n} for name, n in ranked[:limit]]

    return {
        "kinds": {"browser": kinds["browser"], "bot": kinds["bot"], "none": kinds["none"]},
        "browsers": top(browsers),
        "operating_systems": top(systems),
        "bots": top(bots),
    }
