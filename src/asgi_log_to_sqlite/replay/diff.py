"""The diff report: per route, what changed between the logged requests and their replay.

Results are folded into per-route counters as they arrive (a long replay keeps only counts,
latencies and a few examples). A route is *changed* when a status differs (``200 -> 500``; no
response at all counts as a change to the error's name), when its replayed median latency is
at least ``latency_ratio`` times the logged one and at least ``latency_floor`` seconds more
(replayed times are measured by the client, network included, so a 0.4 ms route is not called
slower for taking 1 ms), or when a response body's SHA-256 differs from the captured one. With
``--check-noise`` each request is sent twice; a route whose two answers disagree is *noisy*:
its status or body differences are reported apart and do not fail the run.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .client import Outcome
from .plan import Outgoing

__all__ = ["REPLAY_REPORT_VERSION", "Diff", "FailOn", "parse_fail_on", "percentile"]

#: Bumped when the JSON shape changes incompatibly.
REPLAY_REPORT_VERSION = 1
#: Examples kept per status change and for body mismatches, per route.
EXAMPLES = 3
DEFAULT_LATENCY_RATIO = 1.5
#: Seconds a median must grow by to count as slower: what a busy client adds by itself (measured
#: up to 5 ms on a loaded 2-core machine against a route that took 0.5 ms).
DEFAULT_LATENCY_FLOOR = 0.01


@dataclass(frozen=True)
class FailOn:
    """Which changes make ``replay`` exit with status 1."""

    status: bool = False
    latency: float | None = None
    body: bool = False

    def any(self) -> bool:
        return self.status or self.body or self.latency is not None


def parse_fail_on(values: list[str] | tuple[str, ...]) -> FailOn:
    """``status``, ``body``, ``latency`` or ``latency=1.5`` (repeatable, or comma-separated)."""
    status = body = False
    latency: float | None = None
    for value in values:
        for item in value.split(","):
            name, sep, raw = item.strip().partition("=")
            name = name.strip().lower()
            if name == "status" and not sep:
                status = True
            elif name == "body" and not sep:
                body = True
            elif name == "latency":
                try:
                    latency = float(raw) if sep else DEFAULT_LATENCY_RATIO
                except ValueError:
                    latency = None
                if latency is None or not latency > 1:
                    raise ValueError(f"--fail-on {item!r}: the latency ratio must be above 1")
            else:
                raise ValueError(
                    f"--fail-on {item!r}: expected status, body, latency or latency=RATIO"
                )
    return FailOn(status, latency, body)


def percentile(values: list[float], p: int) -> float | None:
    """Nearest rank, as the log report computes it: the value at rank ceil(p/100 * n)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, (p * len(ordered) + 99) // 100) - 1]


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _example(outgoing: Outgoing) -> str:
    return f"{outgoing.method} {outgoing.target}"


class _Route:
    """Everything the report says about one route, accumulated."""

    def __init__(self) -> None:
        self.requests = 0
        self.replayed = 0
        self.from_access_log = 0
        self.skipped: Counter[str] = Counter()
        self.original: list[float] = []
        self.replayed_times: list[float] = []
        self.changes: Counter[tuple[Any, Any]] = Counter()
        self.change_examples: dict[tuple[Any, Any], list[str]] = {}
        self.compared = 0
        self.mismatches = 0
        self.mismatch_examples: list[str] = []
        self.noisy_status = 0
        self.noisy_body = 0
        self.unfilled: Counter[str] = Counter()


class Diff:
    """Collects outcomes as a replay runs; :meth:`report` turns them into a JSON-ready dict."""

    def __init__(
        self,
        latency_ratio: float = DEFAULT_LATENCY_RATIO,
        latency_floor: float = DEFAULT_LATENCY_FLOOR,
    ) -> None:
        self.latency_ratio = latency_ratio
        self.latency_floor = latency_floor
        self.routes: dict[str, _Route] = {}
        self.sent = 0
        self.completed = 0
        self.started = time.time()
        self.finished: float | None = None
        self.interrupted = False
        self.cancelled = 0
        #: Requests that left more than 0.1 s after the schedule said (the pace was not held).
        self.late = 0

    def _route(self, outgoing: Outgoing) -> _Route:
        key = outgoing.recorded.key
        route = self.routes.get(key)
        if route is None:
            route = self.routes[key] = _Route()
        return route

    def skip(self, outgoing: Outgoing) -> None:
        route = self._route(outgoing)
        route.requests += 1
        route.skipped[outgoing.skip or "skipped"] += 1

    def add(self, outgoing: Outgoing, outcome: Outcome, again: Outcome | None = None) -> None:
        """One replayed request; ``again`` is its second answer with ``--check-noise``."""
        recorded = outgoing.recorded
        route = self._route(outgoing)
        self.completed += 1
        route.requests += 1
        route.replayed += 1
        if outgoing.source == "access-log":
            route.from_access_log += 1
        route.unfilled.update(outgoing.unfilled)
        if recorded.duration is not None:
            route.original.append(float(recorded.duration))
        if outcome.status is not None:
            route.replayed_times.append(outcome.seconds)
        new = outcome.status if outcome.status is not None else outcome.error
        if recorded.status is not None and new != recorded.status:
            pair = (recorded.status, new)
            route.changes[pair] += 1
            examples = route.change_examples.setdefault(pair, [])
            if len(examples) < EXAMPLES and _example(outgoing) not in examples:
                examples.append(_example(outgoing))
        if recorded.response_body_sha256 and outcome.sha256:
            route.compared += 1
            if outcome.sha256 != recorded.response_body_sha256:
                route.mismatches += 1
                example = _example(outgoing)
                examples = route.mismatch_examples
                if len(examples) < EXAMPLES and example not in examples:
                    examples.append(example)
        if again is not None:
            if again.status != outcome.status:
                route.noisy_status += 1
            elif again.sha256 != outcome.sha256:
                route.noisy_body += 1

    # ---- the report --------------------------------------------------------------------------
    def _route_report(self, key: str, route: _Route, ratio: float) -> dict[str, Any]:
        original = {p: percentile(route.original, p) for p in (50, 95)}
        replayed = {p: percentile(route.replayed_times, p) for p in (50, 95)}
        latency_ratio = None
        if original[50] and replayed[50] is not None:
            latency_ratio = round(replayed[50] / original[50], 3)
        slower = bool(
            latency_ratio is not None
            and original[50] is not None
            and replayed[50] is not None
            and latency_ratio >= ratio
            and replayed[50] - original[50] >= self.latency_floor
        )
        changes = [
            {"from": a, "to": b, "requests": n, "examples": route.change_examples[(a, b)]}
            for (a, b), n in sorted(route.changes.items(), key=lambda kv: (-kv[1], str(kv[0])))
        ]
        noisy = {"status": route.noisy_status > 0, "body": route.noisy_body > 0}
        changed = []
        if changes and not noisy["status"]:
            changed.append("status")
        if slower:
            changed.append("latency")
        if route.mismatches and not (noisy["status"] or noisy["body"]):
            changed.append("body")
        return {
            "route": key,
            "requests": route.requests,
            "replayed": route.replayed,
            "from_access_log": route.from_access_log,
            "skipped": dict(route.skipped),
            "status_changes": changes,
            "latency": {
                "original": {"p50": original[50], "p95": original[95]},
                "replayed": {"p50": replayed[50], "p95": replayed[95]},
                "ratio_p50": latency_ratio,
            },
            "body": {
                "compared": route.compared,
                "mismatches": route.mismatches,
                "examples": route.mismatch_examples,
            },
            "noisy": noisy,
            "unfilled_placeholders": sorted(route.unfilled),
            "changed": changed,
        }

    def report(self, meta: dict[str, Any] | None = None, fail_on: FailOn | None = None) -> dict:
        fail_on = fail_on or FailOn()
        ratio = fail_on.latency or self.latency_ratio
        finished = self.finished or time.time()
        routes = [self._route_report(key, route, ratio) for key, route in self.routes.items()]
        routes.sort(key=lambda r: (-len(r["changed"]), -r["requests"], r["route"]))
        failures = []
        for route in routes:
            for check in route["changed"]:
                if (
                    (check == "status" and fail_on.status)
                    or (check == "body" and fail_on.body)
                    or (check == "latency" and fail_on.latency is not None)
                ):
                    failures.append({"route": route["route"], "check": check})
        elapsed = max(0.0, finished - self.started)
        all_original = [d for r in self.routes.values() for d in r.original]
        all_replayed = [d for r in self.routes.values() for d in r.replayed_times]
        skipped: Counter[str] = Counter()
        unfilled: Counter[str] = Counter()
        for route in self.routes.values():
            skipped.update(route.skipped)
            unfilled.update(route.unfilled)
        return {
            "replay_report_version": REPLAY_REPORT_VERSION,
            "generated_at": _iso(time.time()),
            **(meta or {}),
            "started_at": _iso(self.started),
            "elapsed_seconds": round(elapsed, 3),
            "interrupted": self.interrupted,
            "summary": {
                "requests": sum(r.requests for r in self.routes.values()),
                "replayed": self.completed,
                "per_second": round(self.completed / elapsed, 2) if elapsed else None,
                "cancelled": self.cancelled,
                "late": self.late,
                "from_access_log": sum(r.from_access_log for r in self.routes.values()),
                "skipped": dict(skipped),
                "status_changes": sum(sum(r.changes.values()) for r in self.routes.values()),
                "bodies_compared": sum(r.compared for r in self.routes.values()),
                "body_mismatches": sum(r.mismatches for r in self.routes.values()),
                "unfilled_placeholders": dict(unfilled),
                "latency": {
                    "original": {"p50": percentile(all_original, 50),
                                 "p95": percentile(all_original, 95)},
                    "replayed": {"p50": percentile(all_replayed, 50),
                                 "p95": percentile(all_replayed, 95)},
                },
            },
            "thresholds": {"latency_ratio": ratio, "latency_floor": self.latency_floor},
            "changed_routes": [
                {"route": r["route"], "changed": r["changed"]} for r in routes if r["changed"]
            ],
            "noisy_routes": [
                {"route": r["route"], "noisy": r["noisy"]}
                for r in routes
                if r["noisy"]["status"] or r["noisy"]["body"]
            ],
            "routes": routes,
            "fail_on": {"status": fail_on.status, "latency": fail_on.latency,
                        "body": fail_on.body},
            "failures": failures,
        }
