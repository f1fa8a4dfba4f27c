"""Which requests are recorded at all: health checks and probes, excluded paths and user agents,
methods, and sampling. A request left out is counted per hour under its reason, never stored.
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["HEALTH_CHECK_PATHS", "HEALTH_CHECK_USER_AGENTS", "RecordingFilter"]

#: Paths of health checks and probes, excluded by default (``exclude_health_checks``).
HEALTH_CHECK_PATHS: tuple[str, ...] = (
    "/health",
    "/healthz",
    "/healthcheck",
    "/health-check",
    "/_health",
    "/ping",
    "/ready",
    "/readyz",
    "/readiness",
    "/live",
    "/livez",
    "/liveness",
)

#: User agents of health checkers and probes (case-insensitive substrings).
HEALTH_CHECK_USER_AGENTS: tuple[str, ...] = (
    "kube-probe/",
    "elb-healthchecker/",
    "googlehc/",
    "amazon-route53-health-check-service",
    "consul health check",
    "envoy/hc",
    "docker-healthcheck",
)


class RecordingFilter:
    """The exclusion options of one middleware: a verdict per path and per user agent (the
    same for every request with that path or agent, so row building remembers them), and the
    rules that apply to every request (methods, sampling)."""

    def __init__(self, options: Any) -> None:
        self.exclude = options.exclude
        self.exclude_user_agents = options.exclude_user_agents
        self.health = options.exclude_health_checks
        self._health_paths = frozenset(HEALTH_CHECK_PATHS)
        self.methods = options.methods
        self.sample = options.sample
        self._random = random.Random()
        #: Rules that apply to every request, not only to some paths or user agents.
        self.every_request = self.methods is not None or self.sample < 1.0

    def path_verdict(self, path: str) -> str | None:
        """"health_check", "excluded_path" or None."""
        if self.health and (path.rstrip("/") in self._health_paths or path in self._health_paths):
            return "health_check"
        if any(pattern(path) for pattern in self.exclude):
            return "excluded_path"
        return None

    def user_agent_verdict(self, user_agent: str | None) -> str | None:
        """"health_check", "excluded_user_agent" or None."""
        if not user_agent:
            return None
        if self.health:
            lowered = user_agent.lower()
            if any(probe in lowered for probe in HEALTH_CHECK_USER_AGENTS):
                return "health_check"
        if any(pattern(user_agent) for pattern in self.exclude_user_agents):
            return "excluded_user_agent"
        return None

    def reason(
        self, path_verdict: str | None, agent_verdict: str | None, method: Any
    ) -> str | None:
        """Why this request is not recorded (counted per hour under that name), or None: the
        path's and the user agent's verdicts in their order of precedence, then the method rule
        and sampling."""
        if path_verdict == "health_check" or agent_verdict == "health_check":
            return "health_check"
        if self.methods is not None and (
            not isinstance(method, str) or method.upper() not in self.methods
        ):
            return "method"
        if path_verdict is not None:
            return path_verdict
        if agent_verdict is not None:
            return agent_verdict
        if self.sample < 1.0 and self._random.random() >= self.sample:
            return "sampled_out"
        return None
