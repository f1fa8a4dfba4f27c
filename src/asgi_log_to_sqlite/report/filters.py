"""Which requests a report or ``tail`` covers: ``--path``, ``--route``, ``--status``, ``--host``,
``--method``, as SQL for raw rows and for rollups.

Repeating one filter widens it (any of the values); different filters narrow each other (all of
them). Names are matched in the lookup tables, so the requests table is filtered by integer ids.

``--instance`` keeps the rows of some hosts or containers (the ``instance`` lookup column); a
log older than that column refuses it with a message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..dialect import SQLITE, Dialect
from .files import ReportError

__all__ = ["Filters", "parse_methods", "parse_status"]

_WILDCARDS = "*?["


def parse_status(text: str) -> tuple[int, int]:
    """``404`` -> (404, 404); ``4xx`` -> (400, 499). ValueError otherwise."""
    value = text.strip().lower()
    if len(value) == 3 and value[0] in "12345" and value[1:] == "xx":
        return int(value[0]) * 100, int(value[0]) * 100 + 99
    if len(value) == 3 and value.isdigit() and 100 <= int(value) <= 599:
        return int(value), int(value)
    raise ValueError(f"{text!r} is not an HTTP status (100-599) like 404 or a class like 5xx")


def parse_methods(values: Iterable[str]) -> tuple[str, ...]:
    """``GET``, ``get,post``: upper-cased HTTP method names. ValueError for anything else."""
    methods = []
    for value in values:
        for part in value.split(","):
            name = part.strip().upper()
            if not name:
                continue
            if not name.isascii() or not all(c.isalpha() or c in "-_" for c in name):
                raise ValueError(f"{part!r} is not an HTTP method like GET or POST")
            methods.append(name)
    return tuple(dict.fromkeys(methods))


def _text_value(value: str, option: str) -> str:
    if not value or "\x00" in value:
        raise ValueError(f"{option} needs a non-empty value without NUL characters")
    return value


@dataclass(frozen=True)
class Filters:
    """The requests a report covers; empty tuples filter nothing."""

    paths: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    statuses: tuple[tuple[int, int], ...] = ()
    hosts: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for option, values in (("--path", self.paths), ("--route", self.routes),
                               ("--host", self.hosts), ("--instance", self.instances)):
            for value in values:
                _text_value(value, option)

    def __bool__(self) -> bool:
        return any((self.paths, self.routes, self.statuses, self.hosts, self.methods,
                    self.instances))

    def describe(self) -> dict[str, list[str]]:
        """The filters as the JSON report lists them."""
        statuses = [
            f"{low}" if low == high else f"{low // 100}xx" if high - low == 99 else f"{low}-{high}"
            for low, high in self.statuses
        ]
        return {
            "path": list(self.paths),
            "route": list(self.routes),
            "status": statuses,
            "host": list(self.hosts),
            "method": list(self.methods),
            "instance": list(self.instances),
        }

    # ---- SQL ----------------------------------------------------------------------------------
    @staticmethod
    def match_name(column: str, values: Sequence[str], prefix: bool,
                   dialect: Dialect = SQLITE) -> str:
        """``column`` (text) equal to one of ``values``, or matching it as a glob when it holds
        ``*``, ``?`` or ``[``; with ``prefix``, a plain value also matches everything below it
        (``/api`` matches ``/api`` and ``/api/...``)."""
        parts = []
        for value in values:
            if any(c in value for c in _WILDCARDS):
                parts.append(dialect.glob(column, dialect.literal(value)))
                continue
            parts.append(f"{column} = {dialect.literal(value)}")
            if prefix:
                below = value.rstrip("/") + "/"
                # A glob with the prefix's own wildcard characters escaped as [x].
                escaped = "".join(f"[{c}]" if c in _WILDCARDS else c for c in below)
                parts.append(dialect.glob(column, dialect.literal(escaped + "*")))
        return "(" + " OR ".join(parts) + ")"

    def _ids(self, column: str, table: str, match: str, source: int | None,
             tables: set[str], dialect: Dialect) -> str:
        if table not in tables:
            return "0"  # no names at all: nothing matches
        return f"{column} IN (SELECT id FROM {dialect.table(source, table)} WHERE {match})"

    def raw_sql(self, source: int | None, columns: set[str], tables: set[str],
                dialect: Dialect = SQLITE) -> str:
        """A WHERE condition on the ``requests`` rows of log ``source``."""
        parts = []
        if self.paths:
            match = self.match_name("name", self.paths, True, dialect)
            parts.append(self._ids("path", "paths", match, source, tables, dialect))
        if self.routes:
            if "route" not in columns:
                parts.append("0")
            else:
                match = self.match_name("name", self.routes, False, dialect)
                parts.append(self._ids("route", "routes", match, source, tables, dialect))
        if self.hosts:
            if "host" not in columns:
                parts.append("0")
            else:
                match = self.match_name("name", self.hosts, False, dialect)
                parts.append(self._ids("host", "hosts", match, source, tables, dialect))
        if self.methods:
            names = ", ".join(dialect.literal(m) for m in self.methods)
            parts.append(f"UPPER(method) IN ({names})")
        if self.statuses:
            parts.append("(" + " OR ".join(
                f"http_status BETWEEN {int(low)} AND {int(high)}" for low, high in self.statuses
            ) + ")")
        if self.instances:
            if "instance" not in columns:
                raise ReportError("--instance needs a log with an instance column "
                                  "(written by this version, or pulled from PostgreSQL)")
            match = self.match_name("name", self.instances, False, dialect)
            parts.append(self._ids("instance", "instances", match, source, tables, dialect))
        return " AND ".join(parts) or "1"

    def rollup_sql(self, source: int | None, tables: set[str], dialect: Dialect = SQLITE) -> str:
        """A WHERE condition on the ``rollups`` rows (``route``, ``path`` ids) of log ``source``.

        Rollups keep routes and paths only: ``--status``, ``--host`` and ``--method`` cannot be
        applied to them (the caller says so). ``--path`` matches the path of a request without
        a route, and the route template of one with a route (``/items`` matches
        ``/items/{id}``).
        """
        parts = []
        if self.paths:
            match = self.match_name("name", self.paths, True, dialect)
            parts.append(
                "(" + self._ids("path", "paths", match, source, tables, dialect) + " OR "
                + self._ids("route", "routes", match, source, tables, dialect) + ")"
            )
        if self.routes:
            match = self.match_name("name", self.routes, False, dialect)
            parts.append(self._ids("route", "routes", match, source, tables, dialect))
        return " AND ".join(parts) or "1"

    def beyond_rollups(self) -> list[str]:
        """The options given that rollups cannot answer."""
        return [name for name, values in (("--status", self.statuses), ("--host", self.hosts),
                                          ("--method", self.methods),
                                          ("--instance", self.instances)) if values]
