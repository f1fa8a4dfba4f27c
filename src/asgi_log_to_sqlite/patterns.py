"""Patterns users write in options (paths to exclude, query keys to redact, user agents): one
syntax for all of them, compiled once when the middleware is built and then only called.

A pattern is a regex (a compiled one, ``re:...``, or anchored ``^...``/``...$``; searched), a
glob (it contains ``*``, ``?`` or ``[``), or else a plain string whose meaning the option gives:
exact, prefix or substring.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any

__all__ = ["Pattern", "compile_pattern"]

_GLOB_CHARS = frozenset("*?[")


class Pattern:
    """One configured pattern; ``kind``: exact, prefix, substring, glob or regex."""

    __slots__ = ("_test", "kind", "source")

    def __init__(self, kind: str, source: str, test: Callable[[str], bool]) -> None:
        self.kind = kind
        self.source = source
        self._test = test

    def __call__(self, value: str) -> bool:
        return self._test(value)

    def __repr__(self) -> str:
        return f"Pattern({self.kind}, {self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and (self.kind, self.source) == (other.kind, other.source)

    def __hash__(self) -> int:
        return hash((self.kind, self.source))


def is_glob(text: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(text)


def _regex(name: str, source: str | re.Pattern[str], flags: int = 0) -> re.Pattern[str]:
    if isinstance(source, re.Pattern):
        if not isinstance(source.pattern, str):
            raise TypeError(f"option {name!r}: regular expressions must be str patterns")
        return source
    try:
        return re.compile(source, flags)
    except (re.error, RecursionError, OverflowError, MemoryError) as error:
        reason = error if isinstance(error, re.error) else "too deeply nested or too large"
        raise ValueError(
            f"option {name!r}: bad regular expression {source[:80]!r}: {reason}"
        ) from None


def compile_pattern(name: str, item: Any, plain: str, fold: bool) -> Pattern:
    """``item`` compiled; ``plain`` says what a plain string means ("exact", "prefix" or
    "substring"), ``fold`` whether matching ignores case. Errors name the option ``name``."""
    flags = re.IGNORECASE if fold else 0
    if isinstance(item, Pattern):  # compiled already (options validated twice)
        return item
    if isinstance(item, re.Pattern):
        regex = _regex(name, item)
        return Pattern("regex", regex.pattern, lambda v, r=regex: r.search(v) is not None)
    if not isinstance(item, str):
        raise TypeError(f"option {name!r} must hold strings or compiled regexes, got {item!r}")
    if not item:
        raise ValueError(f"option {name!r} must not hold an empty pattern")
    if item.startswith(("re:", "^")) or (item.endswith("$") and len(item) > 1):
        source = item.removeprefix("re:")
        regex = _regex(name, source, flags)
        return Pattern("regex", source, lambda v, r=regex: r.search(v) is not None)
    if is_glob(item):
        regex = _regex(name, fnmatch.translate(item), flags)
        return Pattern("glob", item, lambda v, r=regex: r.match(v) is not None)
    if plain == "prefix":
        base = item.rstrip("/")
        if not base:
            raise ValueError(f"option {name!r}: the prefix {item!r} would exclude every request")
        return Pattern("prefix", item, lambda v, b=base: v == b or v.startswith(b + "/"))
    if plain == "substring":
        low = item.lower()
        return Pattern("substring", item, lambda v, s=low: s in v.lower())
    if fold:
        exact = item.lower()
        return Pattern("exact", item, lambda v, e=exact: v.lower() == e)
    return Pattern("exact", item, lambda v, e=item: v == e)
