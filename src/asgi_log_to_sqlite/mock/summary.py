"""What the ``mock`` and ``record`` commands say about a log: what it can serve, and which
placeholders (secrets the log never held) have to be given values."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from .recordings import Recording

__all__ = ["listing_lines", "placeholder_lines", "serving_line"]


def placeholder_lines(found: Mapping[str, Sequence[str]], given: Iterable[str] = ()) -> list[str]:
    """Each placeholder and where it is; those with a value given are marked so."""
    if not found:
        return ["No placeholders: nothing was redacted."]
    given = set(given)
    width = max(map(len, found))
    lines = ["Placeholders where secrets were redacted (give values with --set NAME=VALUE):"]
    for name, places in found.items():
        mark = "  (given)" if name in given else ""
        lines.append(f"  {name:<{width}}  {', '.join(places)}{mark}")
    return lines


def serving_line(recordings: Sequence[Recording], log: str) -> str:
    servable = sum(1 for r in recordings if r.response_body is not None)
    line = f"Serving {servable:,} recorded response(s) from {log}"
    if len(recordings) > servable:
        line += f"; {len(recordings) - servable:,} recorded without a response to serve"
    return line


def listing_lines(recordings: Iterable[Recording]) -> list[str]:
    """One line per distinct request: how many recordings, and their statuses."""
    counts: Counter[tuple[str, str]] = Counter()
    statuses: dict[tuple[str, str], list[str]] = {}
    for r in recordings:
        target = r.path.decode("utf-8", "replace")
        if r.query:
            target += "?" + r.query.decode("latin-1")
        key = (r.method, target)
        counts[key] += 1
        status = str(r.status) if r.response_body is not None else f"{r.status} (not servable)"
        seen = statuses.setdefault(key, [])
        if status not in seen:
            seen.append(status)
    return [
        f"{method:<7} {target}  -> {', '.join(statuses[(method, target)])}"
        + (f"  ({count} recordings)" if count > 1 else "")
        for (method, target), count in sorted(counts.items(), key=lambda item: item[0][1])
    ]
