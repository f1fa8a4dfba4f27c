"""Replay logged requests against a build, and report per route what changed.

``replay LOG --target URL`` (or ``--app module:attr``) selects rows of a log
(:mod:`.select`), rebuilds each request (:mod:`.plan`), sends it at the pace asked
(:mod:`.pacing`, :mod:`.run`) through httpx (:mod:`.client`), and compares each answer with what
was logged (:mod:`.diff`), rendered as text, JSON or HTML (:mod:`.render`). This side only reads
the log; capture itself (what makes a request replayable) is the middleware's option
``capture_requests``. Needs the ``replay`` extra (httpx, asgi-lifespan).
"""

from __future__ import annotations

from .diff import Diff, FailOn, parse_fail_on
from .pacing import AsFastAsAllowed, FixedRate, OriginalPace, parse_rate
from .plan import Planner, parse_header, parse_setting
from .select import ReplayError, Selection

__all__ = [
    "AsFastAsAllowed",
    "Diff",
    "FailOn",
    "FixedRate",
    "OriginalPace",
    "Planner",
    "ReplayError",
    "Selection",
    "parse_fail_on",
    "parse_header",
    "parse_rate",
    "parse_setting",
]
