"""Secrets in query strings and URLs: which keys are sensitive, and their values replaced.

Query values whose key looks secret (tokens, sessions, keys, passwords, signatures, OAuth codes,
signed-URL parameters) are stored as :data:`REDACTED`. The referer, and captured headers that
hold a URL, get the same treatment plus the removal of ``user:password@``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from ..patterns import Pattern, compile_pattern

__all__ = ["DEFAULT_REDACT_QUERY", "REDACTED", "Redactor", "redact_query", "redact_url"]

#: What a redacted query value becomes.
REDACTED = "REDACTED"

#: Query keys whose values are never stored: exact names and globs, matched against the key
#: decoded and lower-cased. ``redact_query=[...]`` adds to it, ``keep_query=[...]`` exempts keys.
DEFAULT_REDACT_QUERY: tuple[str, ...] = (
    # tokens and sessions
    "*token*",
    "jwt",
    "auth",
    "authorization",
    "*session*",
    "sid",
    "*csrf*",
    "*xsrf*",
    "ticket",
    "otp",
    # keys and secrets
    "key",
    "*_key",
    "*-key",
    "*apikey*",
    "*api_key*",
    "*api-key*",
    "*secret*",
    "*password*",
    "*passwd*",
    "*passphrase*",
    "pwd",
    "pass",
    "*credential*",
    # signatures: Azure SAS ``sig``, Adyen ``merchantSig``; ``sign`` (Yandex, Alipay, WeChat
    # Pay ``sign``/``paySign``, PayPal ``verify_sign``); payment checksums (Paytm)
    "*sig",
    "*signature*",
    "sign",
    "*_sign",
    "*-sign",
    "paysign",
    "*checksum*",
    "hmac",
    # OAuth 2.0 / OpenID Connect authorization responses
    "code",
    "state",
    "nonce",
    "code_verifier",
    # cloud-storage signed URLs (AWS S3, Alibaba OSS, Google Cloud Storage, Azure SAS)
    "x-amz-*",
    "*accesskey*",
    "x-goog-*",
    "googleaccessid",
)


_SEPARATORS = re.compile(r"([&;])")
_BRACKETS = re.compile(r"[\[\]]+")
_AUTHORITY_END = re.compile(r"[/?#]")


def redact_query(query: str, sensitive: Callable[[str], bool]) -> str:
    """Replace the values of sensitive keys by :data:`REDACTED`; keep keys, order, the rest.

    Both ``&`` and ``;`` separate parameters: some servers split on either, so a value hidden
    behind a ``;`` must not escape redaction.
    """
    parts = _SEPARATORS.split(query)
    changed = False
    for index in range(0, len(parts), 2):
        part = parts[index]
        key, equals, value = part.partition("=")
        if not equals or not value:
            continue
        decoded = key
        if "%" in key or "+" in key:
            try:
                decoded = unquote_plus(key, errors="replace")
            except Exception:
                decoded = key
        name = decoded.strip().lower()
        # Bracketed names (``key[]``, ``user[password]``) are sensitive if any part is.
        if sensitive(name) or ("[" in name and any(map(sensitive, _BRACKETS.split(name)))):
            parts[index] = key + "=" + REDACTED
            changed = True
    return "".join(parts) if changed else query



class Redactor:
    """The query rules of one middleware, compiled: the defaults, plus ``redact_query``, minus
    ``keep_query``. Keys repeat endlessly (page, q, sort...): each verdict is remembered."""

    def __init__(self, redact: tuple[Pattern, ...] = (), keep: tuple[Pattern, ...] = ()) -> None:
        defaults = tuple(
            compile_pattern("redact_query", key, "exact", True) for key in DEFAULT_REDACT_QUERY
        )
        self._patterns = defaults + tuple(redact)
        self._keep = tuple(keep)
        self._verdicts: dict[str, bool] = {}

    def sensitive(self, key: str) -> bool:
        verdict = self._verdicts.get(key)
        if verdict is None:
            if any(pattern(key) for pattern in self._keep):
                verdict = False
            else:
                verdict = any(pattern(key) for pattern in self._patterns)
            if len(self._verdicts) >= 10_000:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def query(self, query: str | None) -> str | None:
        if not query or "=" not in query:
            return query
        return redact_query(query, self.sensitive)

    def url(self, url: Any) -> Any:
        """A URL (referer, Location) without user:password@ and with its query redacted."""
        if not url or not isinstance(url, str):
            return url
        return redact_url(url, lambda query: redact_query(query, self.sensitive))


def redact_url(url: str, redact: Callable[[str], str]) -> str:
    """``url`` without user:password@, its query passed through ``redact`` (which replaces
    sensitive values: by ``REDACTED`` in the columns, by named placeholders in captures), and
    so is its fragment's where it holds one: a page anchor (``#install``) stays as it is;
    key=value pairs (the OAuth implicit flow's ``#access_token=...``) and a hash route's query
    (``#/cb?token=...``) are redacted."""
    head, hash_, fragment = url.partition("#")
    scheme, sep, rest = head.partition("://")
    if sep:
        end = _AUTHORITY_END.search(rest)
        cut = end.start() if end else len(rest)
        authority = rest[:cut]
        if "@" in authority:
            head = scheme + sep + authority.rsplit("@", 1)[1] + rest[cut:]
    base, question, query = head.partition("?")
    if question:
        head = base + "?" + redact(query)
    if hash_:
        route, question, query = fragment.partition("?")
        if question:
            fragment = route + "?" + redact(query)
        elif "=" in fragment:
            fragment = redact(fragment)
        head += "#" + fragment
    return head
