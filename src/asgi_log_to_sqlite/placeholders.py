"""Named placeholders: what captured requests hold where a secret was.

A captured request must be replayable without ever holding its secrets. So the value of a secret
header, of a sensitive query parameter or of a secret-looking body field is stored as
``{{name}}`` (the header name, the query key, the field name), and a replay fills it in from
values given on its command line. Both sides meet only here: capture writes placeholders with
:func:`placeholder`, a replay finds them with :func:`names_in` and fills them with :func:`fill`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

__all__ = ["PATTERN", "UNFILLED", "fill", "name_for", "names_in", "placeholder"]

#: ``{{name}}``: lower-case letters, digits, ``_``, ``-`` and ``.``.
PATTERN = re.compile(r"\{\{([a-z0-9_.\-]+)\}\}")
_PATTERN_BYTES = re.compile(rb"\{\{([a-z0-9_.\-]+)\}\}")
_UNSAFE = re.compile(r"[^a-z0-9_.\-]+")

#: What an unfilled placeholder becomes in a query string or a body when it is replayed.
UNFILLED = "REDACTED"


def name_for(key: str) -> str:
    """A placeholder name for a header name, query key or field name (``user[password]`` ->
    ``user_password``), so that the same secret gets the same name wherever it appears."""
    return _UNSAFE.sub("_", key.strip().lower()).strip("_") or "value"


def placeholder(key: str) -> str:
    return "{{" + name_for(key) + "}}"


def names_in(value: str | bytes | None) -> set[str]:
    """The placeholder names in a captured value."""
    if not value:
        return set()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {m.decode("ascii") for m in _PATTERN_BYTES.findall(bytes(value))}
    return set(PATTERN.findall(value))


def fill(
    value: str,
    values: Mapping[str, str],
    encode: Callable[[str], str] = str,
    missing: set[str] | None = None,
) -> str:
    """``value`` with each placeholder replaced by ``encode(values[name])``, or by
    :data:`UNFILLED` when no value was given (its name is then added to ``missing``)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return encode(values[name])
        if missing is not None:
            missing.add(name)
        return UNFILLED

    return PATTERN.sub(replace, value) if "{{" in value else value
