"""Which recordings answer a request.

A request is matched by method and path, then by query string, then, where the recordings left
differ in their request bodies, by body. Each comparison scores ``EXACT`` (the same bytes) or
``EQUIVALENT`` and the best score wins:

- **Query**: the same parameters with the same values, in any order of keys (a key's repeated
  values keep their order). A value stored as a placeholder (``access_token={{access_token}}``,
  a secret the log never held) matches any value of that key, but the key must be there.
- **Body**: the same bytes (for a body too large to keep, the same SHA-256 of the bytes sent);
  or the same JSON document (whitespace and key order aside), the same form fields, the same
  multipart parts (whatever the boundary); or, for other bodies, the same bytes around any
  placeholder. A placeholder matches any value in its place.

Headers are not compared: a recorded ``Authorization: {{authorization}}`` answers whoever asks.
A ``HEAD`` request without a ``HEAD`` recording is answered from the ``GET`` recordings, without
their body.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from ..placeholders import PATTERN
from ..privacy.capture import redact_query
from ..privacy.redaction import Redactor
from .recordings import Recording

__all__ = ["EQUIVALENT", "EXACT", "Index", "Match", "Miss", "body_score", "query_score",
           "shown"]

EXACT = 2
EQUIVALENT = 1
_PLACEHOLDER_BYTES = re.compile(rb"\{\{[a-z0-9_.\-]+\}\}")
_SEPARATORS = re.compile(r"[&;]")
#: Queries shown in a 404's explanation at most.
SHOWN = 5


def _is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and PATTERN.fullmatch(value) is not None


def _pairs(text: str) -> list[tuple[str, str]]:
    """Decoded ``key=value`` pairs, sorted by key (a key's values keep their order)."""
    pairs = []
    for part in _SEPARATORS.split(text):
        if part:
            key, _, value = part.partition("=")
            pairs.append((unquote_plus(key, errors="replace"),
                          unquote_plus(value, errors="replace")))
    return sorted(pairs, key=lambda pair: pair[0])


def _same_pairs(recorded: str, incoming: str) -> bool:
    ours, theirs = _pairs(recorded), _pairs(incoming)
    if [key for key, _ in ours] != [key for key, _ in theirs]:
        return False
    return all(
        mine == given or _is_placeholder(mine)
        for (_, mine), (_, given) in zip(ours, theirs, strict=True)
    )


def query_score(recorded: bytes, incoming: bytes) -> int:
    if recorded == incoming:
        return EXACT
    return EQUIVALENT if _same_pairs(recorded.decode("latin-1"), incoming.decode("latin-1")) else 0


# ---- bodies ------------------------------------------------------------------------------------
def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _boundary(content_type: str | None) -> bytes | None:
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "boundary":
            return value.strip().strip('"').encode("latin-1")
    return None


def _same_json(recorded: Any, incoming: Any) -> bool:
    if _is_placeholder(recorded):
        return True
    if isinstance(recorded, dict):
        return (isinstance(incoming, dict) and recorded.keys() == incoming.keys()
                and all(_same_json(value, incoming[key]) for key, value in recorded.items()))
    if isinstance(recorded, list):
        return (isinstance(incoming, list) and len(recorded) == len(incoming)
                and all(_same_json(a, b) for a, b in zip(recorded, incoming, strict=True)))
    return type(recorded) is type(incoming) and recorded == incoming


def _parts(body: bytes, boundary: bytes | None) -> list[tuple[list[bytes], bytes]] | None:
    """Each part's header lines (sorted) and content, or None for a body that is not multipart."""
    if not boundary:
        return None
    pieces = body.split(b"--" + boundary)
    if len(pieces) < 3:
        return None
    parts = []
    for piece in pieces[1:-1]:
        head, sep, content = piece.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            return None
        parts.append((sorted(head.split(b"\r\n")), content.removesuffix(b"\r\n")))
    return parts


def _same_parts(recorded: list, incoming: list) -> bool:
    return len(recorded) == len(incoming) and all(
        head == their_head and (content == theirs or _PLACEHOLDER_BYTES.fullmatch(content))
        for (head, content), (their_head, theirs) in zip(recorded, incoming, strict=True)
    )


def _equivalent_bodies(stored: bytes, stored_type: str | None, body: bytes,
                       content_type: str | None) -> bool:
    media = _media_type(stored_type) or _media_type(content_type)
    if media == "application/json" or media.endswith("+json") or (
        media in ("", "text/plain") and stored.lstrip()[:1] in (b"{", b"[")
    ):
        try:
            return _same_json(json.loads(stored), json.loads(body))
        except ValueError:
            pass
    elif media == "application/x-www-form-urlencoded":
        return _same_pairs(stored.decode("latin-1"), body.decode("latin-1"))
    elif media == "multipart/form-data":
        ours, theirs = _parts(stored, _boundary(stored_type)), _parts(body, _boundary(content_type))
        if ours is not None and theirs is not None:
            return _same_parts(ours, theirs)
    if b"{{" not in stored:
        return False
    pattern = b".*?".join(re.escape(piece) for piece in _PLACEHOLDER_BYTES.split(stored))
    return re.fullmatch(pattern, body, re.DOTALL) is not None


def body_score(recorded: Recording, body: bytes, sha256: str, content_type: str | None) -> int:
    """How well ``body`` (its SHA-256 given) matches what was recorded."""
    stored = recorded.request_body
    if stored is None:  # too large to keep: only the hash of what was sent is known
        return EXACT if recorded.request_body_sha256 == sha256 else 0
    if stored == body:
        return EXACT
    if not stored or not body:
        return 0
    if _equivalent_bodies(stored, recorded.request_content_type, body, content_type):
        return EQUIVALENT
    return 0


# ---- the index ---------------------------------------------------------------------------------
@dataclass
class Match:
    """The recordings answering a request, oldest first; ``key`` names them for taking turns."""

    recordings: list[Recording]
    key: tuple[int, ...]


@dataclass
class Miss:
    """No recording can answer; ``reason`` is said in the 404."""

    reason: str


def _best(scored: Iterable[tuple[int, Recording]]) -> list[Recording]:
    scored = [(score, recording) for score, recording in scored if score]
    top = max((score for score, _ in scored), default=0)
    return [recording for score, recording in scored if score == top]


_DEFAULT_RULES = Redactor().sensitive


def shown(method: str, path: bytes, query: bytes = b"") -> str:
    """A request as the mock's 404s and messages show it: sensitive query values (by the
    default rules) as placeholders, like the log holds them."""
    text = path.decode("utf-8", "replace")
    if query:
        text += "?" + redact_query(query.decode("latin-1"), _DEFAULT_RULES)
    return f"{method} {text}"


class Index:
    """Recordings by method and path, each list oldest first."""

    def __init__(self, recordings: Iterable[Recording] = ()) -> None:
        self.routes: dict[tuple[str, bytes], list[Recording]] = defaultdict(list)
        self.last_rowid = 0
        self.add(recordings)

    def add(self, recordings: Iterable[Recording]) -> None:
        touched = set()
        for recording in recordings:
            key = (recording.method, recording.path)
            self.routes[key].append(recording)
            touched.add(key)
            self.last_rowid = max(self.last_rowid, recording.rowid)
        for key in touched:
            self.routes[key].sort(key=lambda r: (r.start, r.rowid))

    def __iter__(self) -> Any:
        for recordings in self.routes.values():
            yield from recordings

    def __len__(self) -> int:
        return sum(map(len, self.routes.values()))

    def find(self, method: str, path: bytes, query: bytes, body: bytes, sha256: str,
             content_type: str | None) -> Match | Miss:
        candidates: Sequence[Recording] = self.routes.get((method, path), ())
        if not candidates and method == "HEAD":
            candidates = self.routes.get(("GET", path), ())
        if not candidates:
            methods = sorted(m for m, p in self.routes if p == path)
            reason = f"no recording matches {shown(method, path, query)}"
            if methods:
                reason += f" (this path was recorded for {', '.join(methods)})"
            return Miss(reason)
        found = _best((query_score(r.query, query), r) for r in candidates)
        if not found:
            queries = list(dict.fromkeys(r.query.decode("latin-1") or "(none)" for r in candidates))
            listed = ", ".join(queries[:SHOWN]) + (", ..." if len(queries) > SHOWN else "")
            return Miss(f"no recording matches {shown(method, path, query)}: the queries "
                        f"recorded for {shown(method, path)} are {listed}")
        if len({r.body_key for r in found}) > 1:
            found = _best((body_score(r, body, sha256, content_type), r) for r in found)
            if not found:
                return Miss(f"no recording matches {shown(method, path, query)} with this "
                            "request body (recordings of it differ by body, none like this one)")
        servable = [r for r in found if r.response_body is not None]
        if not servable:
            return Miss(f"{shown(method, path, query)} was recorded, but cannot be served: "
                        f"{found[-1].unservable}")
        return Match(servable, tuple(r.rowid for r in servable))
