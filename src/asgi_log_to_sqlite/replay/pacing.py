"""When each replayed request leaves: at the original pace, at a fixed rate, or at once.

Due times are seconds after the replay started, on the event loop's monotonic clock; each is
computed from the schedule, never from when the previous request happened to leave, so a late
request does not push the ones after it back (no drift).
"""

from __future__ import annotations

import math
import re

__all__ = ["AsFastAsAllowed", "FixedRate", "OriginalPace", "Pace", "parse_rate"]

_RATE = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$", re.IGNORECASE
)
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
        "h": 3600.0, "hour": 3600.0}


def parse_rate(text: str) -> float:
    """``"500/s"``, ``"30/m"``, ``"200"`` -> requests per second. ValueError otherwise."""
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a rate like 500/s or 30/m")
    rate = float(match.group(1)) / _PER[(match.group(2) or "s").lower()]
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"a rate must be positive, got {text!r}")
    return rate


class Pace:
    """A schedule: ``due(start, index)`` is when the ``index``-th request (logged at unix time
    ``start``) leaves, in seconds after the replay began; None means as soon as a slot is free.
    ``restart()`` is called when ``--loop`` goes through the rows again."""

    def due(self, start: float, index: int) -> float | None:
        raise NotImplementedError

    def restart(self) -> None:
        pass

    def describe(self) -> dict[str, float | str]:
        raise NotImplementedError


class AsFastAsAllowed(Pace):
    """No schedule: ``--concurrency`` alone limits how fast requests leave."""

    def due(self, start: float, index: int) -> float | None:
        return None

    def describe(self) -> dict[str, float | str]:
        return {"pace": "as fast as allowed"}


class FixedRate(Pace):
    """``rate`` requests a second, evenly spaced: the n-th leaves at n / rate."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def due(self, start: float, index: int) -> float:
        return index / self.rate

    def describe(self) -> dict[str, float | str]:
        return {"pace": "fixed rate", "rate": self.rate}


class OriginalPace(Pace):
    """The gaps between the logged requests, divided by ``speed`` (2: twice as fast)."""

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self.first: float | None = None
        self.offset = 0.0
        self.last = 0.0
        self.count = 0

    def due(self, start: float, index: int) -> float:
        if self.first is None:
            self.first = start
        self.last = self.offset + max(0.0, start - self.first) / self.speed
        self.count += 1
        return self.last

    def restart(self) -> None:
        # The next pass starts one average gap after the last request of this one.
        gap = (self.last - self.offset) / (self.count - 1) if self.count > 1 else 1.0 / self.speed
        self.offset = self.last + gap
        self.first = None
        self.count = 0

    def describe(self) -> dict[str, float | str]:
        return {"pace": "original", "speed": self.speed}
