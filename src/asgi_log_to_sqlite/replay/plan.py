"""What is sent for one logged request: method, target, headers and body, placeholders filled.

A captured request (``capture_requests=True`` when it was logged) is sent as it came: its raw
path and query bytes, every header in order with duplicates, its body. A request logged without
capture is rebuilt from the access-log columns (path, query string, user agent, referer,
accept-language) and marked ``access-log``. Either way the secrets are not in the log: secret
headers and redacted query and body values are ``{{name}}`` placeholders (``REDACTED`` in the
access-log query column), filled from ``--set name=value``; ``--header`` sets a header on every
request, the way ``curl -H`` does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus, unquote_plus

from ..placeholders import UNFILLED, fill, names_in, placeholder
from .select import Recorded

__all__ = ["Outgoing", "Planner", "parse_header", "parse_setting"]

#: Headers a client sets for its own connection: never resent as captured.
NOT_RESENT = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive",
    "proxy-connection", "te", "trailer", "upgrade", "expect", "http2-settings",
})
_SEPARATORS = re.compile(r"([&;])")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Characters left as they are when a decoded path from the access log is encoded again.
_PATH_SAFE = "/:@!$&'()*+,;=~-._"


@dataclass
class Outgoing:
    """A request ready to send, or the reason (``skip``) it cannot be."""

    recorded: Recorded
    method: str
    target: str  # path and query as sent on the wire: "/items/1?page=2"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    source: str = "captured"  # or "access-log"
    skip: str | None = None
    unfilled: set[str] = field(default_factory=set)


def parse_header(text: str) -> tuple[str, str]:
    """``'Authorization: Bearer x'`` -> ("Authorization", "Bearer x"); ValueError otherwise."""
    name, sep, value = text.partition(":")
    if not sep or not _TOKEN.fullmatch(name.strip()):
        raise ValueError(f"{text!r} is not a header like 'Name: value'")
    return name.strip(), value.strip()


def parse_setting(text: str) -> tuple[str, str]:
    """``'token=abc'`` -> ("token", "abc"): a value for the ``{{token}}`` placeholder."""
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name.strip()):
        raise ValueError(f"{text!r} is not NAME=VALUE (a placeholder's name and its value)")
    return name.strip().lower(), value


def _latin1(value: str) -> str:
    """Header values and wire bytes as latin-1 text: UTF-8 input kept as its bytes."""
    return value.encode("utf-8").decode("latin-1")


def _media_type(headers: Sequence[tuple[str, str]]) -> str:
    for name, value in headers:
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower()
    return ""


class Planner:
    """Turns recorded requests into outgoing ones with the values and headers given."""

    def __init__(
        self,
        values: Mapping[str, str] | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.values = dict(values or {})
        self.headers = [(name, value) for name, value in headers]
        self._overridden = {name.lower() for name, _ in self.headers}

    def plan(self, recorded: Recorded) -> Outgoing:
        if recorded.captured:
            return self._captured(recorded)
        return self._from_access_log(recorded)

    # ---- captured requests ---------------------------------------------------------------
    def _captured(self, recorded: Recorded) -> Outgoing:
        missing: set[str] = set()
        if recorded.raw_path:
            path = recorded.raw_path.decode("latin-1")
        else:
            path = quote(recorded.path or "/", safe=_PATH_SAFE)
        query = (recorded.raw_query or b"").decode("latin-1")
        query = fill(query, self.values, lambda v: quote(v, safe=""), missing)
        target = path + ("?" + query if query else "")
        headers: list[tuple[str, str]] = []
        try:
            captured = json.loads(recorded.request_headers or "[]")
        except ValueError:
            captured = []
        for name, value in captured:
            lowered = name.lower()
            if lowered in NOT_RESENT or lowered in self._overridden:
                continue
            if names_in(value):
                unfilled = names_in(value) - self.values.keys()
                if unfilled:
                    missing |= unfilled  # a secret header nobody gave: not sent at all
                    continue
                value = fill(value, self.values, _latin1)
            headers.append((name, value))
        headers += self.headers
        outgoing = Outgoing(recorded, recorded.method, target, headers)
        if not recorded.request_body_kept:
            if recorded.request_body_size:
                outgoing.skip = "request body not captured (larger than capture_body_limit)"
        elif recorded.request_body:
            outgoing.body = self._body(recorded.request_body, _media_type(headers), missing)
        outgoing.unfilled = missing
        return outgoing

    def _body(self, body: bytes, media: str, missing: set[str]) -> bytes:
        if b"{{" not in body:
            return body
        if media == "application/x-www-form-urlencoded":
            def encode(v: str) -> str:
                return quote_plus(v)
        elif media == "application/json" or media.endswith("+json") or not media:
            def encode(v: str) -> str:
                return _latin1(json.dumps(v, ensure_ascii=False)[1:-1])
        else:
            encode = _latin1
        return fill(body.decode("latin-1"), self.values, encode, missing).encode("latin-1")

    # ---- requests logged without capture ---------------------------------------------------
    def _from_access_log(self, recorded: Recorded) -> Outgoing:
        missing: set[str] = set()
        path = quote(recorded.path or "/", safe=_PATH_SAFE)
        query = (recorded.query_string or "").removeprefix("?")
        if query:
            query = fill(_placeholders_for_redacted(query), self.values,
                         lambda v: quote(v, safe=""), missing)
        target = path + ("?" + query if query else "")
        headers = [
            (name, _latin1(value))
            for name, value in (
                ("user-agent", recorded.user_agent),
                ("referer", recorded.referer),
                ("accept-language", recorded.accept_language),
            )
            if value and name not in self._overridden
        ]
        headers += self.headers
        outgoing = Outgoing(recorded, recorded.method, target, headers, source="access-log")
        if recorded.request_body_size:
            outgoing.skip = "request body not captured (logged without capture_requests)"
        outgoing.unfilled = missing
        return outgoing


def _placeholders_for_redacted(query: str) -> str:
    """The access log stores ``key=REDACTED``: make it the ``{{key}}`` placeholder."""
    if UNFILLED not in query:
        return query
    parts = _SEPARATORS.split(query)
    for index in range(0, len(parts), 2):
        key, equals, value = parts[index].partition("=")
        if equals and value == UNFILLED:
            parts[index] = key + "=" + placeholder(unquote_plus(key))
    return "".join(parts)
