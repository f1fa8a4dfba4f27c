"""Where the SQL of reports and rollups differs between databases: generated here, once.

Report and rollup queries are written once, in SQL that SQLite and PostgreSQL share (``CASE``,
``COALESCE``, window functions, ``INSERT ... ON CONFLICT``), and call a :class:`Dialect` for the
few things the two spell differently: truth values, turning unix seconds into a time bucket,
integers (SQLite's ``INTEGER`` has 64 bits and PostgreSQL's 32; casting a float rounds in
PostgreSQL and truncates in SQLite), a total that is 0 rather than NULL, the larger or smaller of
two values, matching a glob, ordering text by its bytes, reading values of any stored type as
numbers, naming the tables of one of several log files; and how a database groups rows and
whether a report may keep results in temporary tables.

:class:`SQLiteDialect` serves files; :class:`PostgreSQLDialect` a PostgreSQL log (``floor()``,
``trunc()``, ``GREATEST``/``LEAST``, ``SIMILAR TO`` with a translated glob, ``COLLATE "C"``): the
report's queries run in PostgreSQL itself, and none is copied to do it.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "POSTGRESQL", "SQLITE", "Dialect", "PostgreSQLDialect", "SQLiteDialect", "glob_as_similar",
]

# Unix seconds of 0001-01-01 and of the end of 9999-12-31: the times Python's datetime shows.
FIRST_SECOND = -62135596800
END_SECOND = 253402300800


class Dialect:
    """SQL fragments that differ between databases; each method returns SQL text."""

    name = "generic"
    #: Conditions that always hold and never do.
    true, false = "1", "0"
    #: Group many rows into few groups by adding each into a small keyed table (SQLite, which
    #: groups by sorting) rather than with GROUP BY (PostgreSQL's hash aggregation is faster).
    groups_by_upsert = False
    #: A report may keep results in temporary tables and views (SQLite: on its own in-memory
    #: database). PostgreSQL reports only read, in a read-only transaction: a role without the
    #: TEMPORARY right gets them too (and so would a standby).
    temporary_tables = False
    #: ``ln()`` is there: True, False, or None when it depends on the build (ask the database).
    math_functions: bool | None = True
    #: ``MIN(start)`` and ``MAX(start)`` each read one end of an index (SQLite's B-tree on
    #: ``start``); without one (PostgreSQL's block-range index), one scan finds both.
    extremes_by_index = False

    def attach(self, conn: Any, index: int, location: str) -> None:
        """Make log ``location`` readable as log number ``index`` on ``conn``."""
        raise NotImplementedError

    def finite(self, expr: str, low: str | None = None) -> str:
        """``expr`` where it holds a finite number (above ``low`` if given), else NULL; text,
        blobs and infinities read as NULL."""
        raise NotImplementedError

    def flag(self, condition: str) -> str:
        """1 where ``condition`` holds, 0 where it does not (NULL stays NULL)."""
        raise NotImplementedError

    def is_integer(self, expr: str) -> str:
        """``expr`` holds an integer (not a float, text or blob)."""
        raise NotImplementedError

    def as_integer(self, expr: str) -> str:
        """``expr``, a whole number, as a 64-bit integer (so that packing keys cannot overflow)."""
        raise NotImplementedError

    def truncate(self, expr: str) -> str:
        """The integer part of ``expr`` (toward zero), as a 64-bit integer."""
        raise NotImplementedError

    def by_bytes(self, expr: str) -> str:
        """Text ``expr`` for ORDER BY, ordered by its bytes whatever the database's collation
        (ties in top-N lists are cut the same way in every database)."""
        raise NotImplementedError

    def bucket(self, seconds: str, width: int) -> str:
        """The index of the ``width``-second bucket holding ``seconds`` (floor division)."""
        raise NotImplementedError

    def total(self, expr: str) -> str:
        """A sum that is 0.0 for no rows, never NULL, and never overflows."""
        raise NotImplementedError

    def greatest(self, a: str, b: str) -> str:
        """The larger of two values, ignoring a NULL one."""
        raise NotImplementedError

    def least(self, a: str, b: str) -> str:
        """The smaller of two values, ignoring a NULL one."""
        raise NotImplementedError

    def glob(self, expr: str, pattern_literal: str) -> str:
        """``expr`` matches a shell glob (``*``, ``?``, ``[...]``), case-sensitively."""
        raise NotImplementedError

    def number(self, expr: str) -> str:
        """``expr`` where it holds a finite number; NULL for text, blobs and infinities."""
        raise NotImplementedError

    def integer(self, expr: str, low: int, high: int) -> str:
        """``expr`` where it holds an integer in [low, high]; NULL otherwise."""
        raise NotImplementedError

    def table(self, source: int | None, name: str) -> str:
        """The table ``name`` of log number ``source`` (None: the only one, on its own
        connection)."""
        raise NotImplementedError

    def literal(self, value: str | float | None) -> str:
        """A constant inlined in SQL (views cannot take parameters)."""
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return str(int(value))
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"{value!r} cannot be used in a query")
            return repr(value)
        if "\x00" in value:
            raise ValueError("text with a NUL character cannot be used in a query")
        return "'" + value.replace("'", "''") + "'"


class SQLiteDialect(Dialect):
    name = "sqlite"
    groups_by_upsert = True
    temporary_tables = True
    math_functions = None  # SQLite may be built without them
    extremes_by_index = True

    def attach(self, conn: Any, index: int, location: str) -> None:
        conn.execute(f"ATTACH DATABASE ? AS db{int(index)}", (location,))

    def finite(self, expr: str, low: str | None = None) -> str:
        # Text and blobs sort after every number and 9e999 reads as infinity: two comparisons
        # keep finite numbers only, cheaper than typeof().
        return f"(CASE WHEN {expr} > {low or '-9e999'} AND {expr} < 9e999 THEN {expr} END)"

    def flag(self, condition: str) -> str:
        return f"({condition})"

    def is_integer(self, expr: str) -> str:
        return f"(typeof({expr}) = 'integer')"

    def as_integer(self, expr: str) -> str:
        return f"CAST({expr} AS INTEGER)"

    def truncate(self, expr: str) -> str:
        return f"CAST({expr} AS INTEGER)"

    def by_bytes(self, expr: str) -> str:
        return expr  # BINARY, SQLite's default collation

    def bucket(self, seconds: str, width: int) -> str:
        # CAST truncates toward zero: step down once for negative times between two buckets.
        q = f"CAST(({seconds}) / {int(width)} AS INTEGER)"
        return f"({q} - (({seconds}) < {q} * {int(width)}))"

    def total(self, expr: str) -> str:
        return f"TOTAL({expr})"

    def greatest(self, a: str, b: str) -> str:
        # SQLite's two-argument MAX() is NULL when either is.
        return f"MAX(COALESCE({a}, {b}), COALESCE({b}, {a}))"

    def least(self, a: str, b: str) -> str:
        return f"MIN(COALESCE({a}, {b}), COALESCE({b}, {a}))"

    def glob(self, expr: str, pattern_literal: str) -> str:
        return f"({expr} GLOB {pattern_literal})"

    def number(self, expr: str) -> str:
        # 9e999 reads as infinity: finite numbers are strictly inside.
        return (
            f"(CASE WHEN typeof({expr}) IN ('integer', 'real') "
            f"AND {expr} > -9e999 AND {expr} < 9e999 THEN {expr} END)"
        )

    def integer(self, expr: str, low: int, high: int) -> str:
        return (
            f"(CASE WHEN typeof({expr}) = 'integer' AND {expr} BETWEEN {int(low)} AND {int(high)} "
            f"THEN {expr} END)"
        )

    def table(self, source: int | None, name: str) -> str:
        return f"[{name}]" if source is None else f"db{int(source)}.[{name}]"


SQLITE = SQLiteDialect()


def glob_as_similar(pattern: str) -> str:
    """A shell glob as a ``SIMILAR TO`` pattern with ``\\`` as its escape: ``*``, ``?`` and
    ``[...]`` kept, everything else literal (what SQLite's ``GLOB`` matches)."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            body = "^" + body[1:] if body.startswith("^") else body
            out.append("[" + re.sub(r"([\\\]])", r"\\\1", body) + "]")
            i = end
        else:
            out.append(re.sub(r"([%_|*+?{}()\[\]\\^$.])", r"\\\1", char))
        i += 1
    return "".join(out)


class PostgreSQLDialect(Dialect):
    """A PostgreSQL log (postgresql_schema.py): typed columns, so a value is never text in a
    number column; one log per connection, its tables on the ``search_path``."""

    name = "postgresql"
    true, false = "true", "false"
    groups_by_upsert = False

    def attach(self, conn: Any, index: int, location: str) -> None:
        raise NotImplementedError("a PostgreSQL log is read on a connection of its own")

    def finite(self, expr: str, low: str | None = None) -> str:
        # NaN sorts above infinity in PostgreSQL: both comparisons leave it out.
        return (f"(CASE WHEN {expr} > {low or INFINITY_LOW} AND {expr} < {INFINITY_HIGH} "
                f"THEN {expr} END)")

    def flag(self, condition: str) -> str:
        return f"(CASE WHEN {condition} THEN 1 WHEN NOT ({condition}) THEN 0 END)"

    def is_integer(self, expr: str) -> str:
        return (f"(pg_typeof({expr}) IN "
                "('bigint'::regtype, 'integer'::regtype, 'smallint'::regtype))")

    def as_integer(self, expr: str) -> str:
        return f"CAST({expr} AS bigint)"

    def truncate(self, expr: str) -> str:
        return f"CAST(trunc({expr}) AS bigint)"  # a cast alone rounds

    def by_bytes(self, expr: str) -> str:
        return f'({expr}) COLLATE "C"'

    def bucket(self, seconds: str, width: int) -> str:
        return f"CAST(floor(({seconds}) / {int(width)}) AS bigint)"

    def total(self, expr: str) -> str:
        return f"COALESCE(SUM(CAST({expr} AS double precision)), 0.0)"

    def greatest(self, a: str, b: str) -> str:
        return f"GREATEST({a}, {b})"  # NULLs are ignored

    def least(self, a: str, b: str) -> str:
        return f"LEAST({a}, {b})"

    def glob(self, expr: str, pattern_literal: str) -> str:
        if not (pattern_literal.startswith("'") and pattern_literal.endswith("'")):
            raise ValueError(f"{pattern_literal!r} is not a text literal")
        pattern = pattern_literal[1:-1].replace("''", "'")
        return f"({expr} SIMILAR TO {self.literal(glob_as_similar(pattern))} ESCAPE '\\')"

    def number(self, expr: str) -> str:
        return self.finite(expr)

    def integer(self, expr: str, low: int, high: int) -> str:
        return f"(CASE WHEN {expr} BETWEEN {int(low)} AND {int(high)} THEN {expr} END)"

    def table(self, source: int | None, name: str) -> str:
        if source not in (None, 0):
            raise NotImplementedError("a PostgreSQL log is read on its own")
        return name


INFINITY_LOW = "CAST('-Infinity' AS double precision)"
INFINITY_HIGH = "CAST('Infinity' AS double precision)"
POSTGRESQL = PostgreSQLDialect()
