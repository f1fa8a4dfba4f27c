"""User agents grouped into browsers, operating systems and bots.

Parsing uses the maintained ``ua-parser`` rules (the same regexes as uap-core), never our own.
It runs once per *distinct* user-agent string with its request count, as SQL returned them, so
its cost follows the number of different agents, not the number of requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

__all__ = ["classify", "group_user_agents"]

NO_AGENT = "(no user agent)"


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
    for agent, requests in counts:
        kind, family, os_family = classify(agent)
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
