"""Batch inserts that bind few parameters and hand the GIL over rarely.

Two costs dominate a writer thread living next to an event loop. Binding: Python's ``sqlite3``
spends about as long binding a parameter as SQLite spends storing it, so a column holding the
same value on every row of a batch (scheme, HTTP version, connection type, no exception...) is
bound once per statement instead of once per row. Hand-overs: ``executemany`` releases and
re-takes the GIL around every row, and each re-take waits on a busy event loop; one statement
inserting many rows releases it once. Row order is kept: rowids follow the queue.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
from collections.abc import Sequence
from typing import Any

__all__ = ["insert_columns", "lookup_ids"]

# Parameters per statement: under SQLite's historical limit (999), so any build accepts it.
MAX_PARAMETERS = 999
MAX_ROWS = 64

_statements: dict[tuple[str, tuple[str, ...], tuple[str, ...], int], str] = {}


def _sql(table: str, varying: tuple[str, ...], constant: tuple[str, ...], rows: int) -> str:
    key = (table, varying, constant, rows)
    sql = _statements.get(key)
    if sql is None:
        row = "(" + ", ".join("?" for _ in varying) + ")"
        values = ", ".join([row] * rows)
        names = ", ".join(varying + constant)
        if constant:
            picked = ", ".join(
                [f"column{i + 1}" for i in range(len(varying))] + ["?" for _ in constant]
            )
            # The constants' "?" come first in the text, so they are bound first.
            sql = f"INSERT INTO [{table}] ({names}) SELECT {picked} FROM (VALUES {values})"
        else:
            sql = f"INSERT INTO [{table}] ({names}) VALUES {values}"
        if len(_statements) > 512:
            _statements.clear()
        _statements[key] = sql
    return sql


def _sizes(count: int, per: int) -> list[int]:
    """Statement sizes covering ``count`` rows: full ones, then powers of two (few statements
    to prepare, and each stays in the connection's statement cache)."""
    sizes = [per] * (count // per)
    rest = count % per
    size = 1 << max(rest.bit_length() - 1, 0)
    while rest:
        if size <= rest:
            sizes.append(size)
            rest -= size
        size >>= 1
    return sizes


def insert_columns(
    conn: sqlite3.Connection, table: str, names: Sequence[str], columns: Sequence[Sequence[Any]]
) -> None:
    """Insert the rows whose values are ``columns`` (one sequence per name), in order."""
    count = len(columns[0]) if columns else 0
    if not count:
        return
    varying: list[int] = []
    constant: list[int] = []
    for index, column in enumerate(columns):
        first = column[0]
        # Same value and same type on every row (1 == 1.0 == True must not merge).
        if count > 1 and column.count(first) == count and _one_type(column, first):
            constant.append(index)
        else:
            varying.append(index)
    if not varying:  # every column repeats: still one value list per row
        varying, constant = constant[:1], constant[1:]
    constants = [columns[i][0] for i in constant]
    rows = list(zip(*[columns[i] for i in varying], strict=True))
    varying_names = tuple(names[i] for i in varying)
    constant_names = tuple(names[i] for i in constant)
    per = max(1, min(MAX_ROWS, (MAX_PARAMETERS - len(constant)) // len(varying)))
    start = 0
    for size in _sizes(count, per):
        chunk = rows[start : start + size]
        start += size
        params = constants + list(itertools.chain.from_iterable(chunk))
        conn.execute(_sql(table, varying_names, constant_names, size), params)


def _one_type(column: Sequence[Any], first: Any) -> bool:
    kind = type(first)
    if kind is str or first is None:
        return True  # equal to a str (or None) means being one
    if kind is float:  # 0.0 == -0.0, yet SQLite keeps the sign
        sign = math.copysign(1.0, first)
        return all(type(value) is float and math.copysign(1.0, value) == sign for value in column)
    return all(type(value) is kind for value in column)


def lookup_ids(conn: sqlite3.Connection, table: str, names: Sequence[str]) -> dict[str, int]:
    """The ids of ``names`` in lookup ``table``, inserting those not there yet (in the caller's
    transaction: other processes may insert the same names, ``OR IGNORE`` keeps that safe)."""
    found: dict[str, int] = {}
    for start in range(0, len(names), MAX_ROWS):
        chunk = list(names[start : start + MAX_ROWS])
        chunk += [None] * (MAX_ROWS - len(chunk))  # one statement shape, padded with NULLs
        slots = ", ".join("(?)" for _ in chunk)
        conn.execute(
            f"INSERT OR IGNORE INTO [{table}] (name) "
            f"SELECT column1 FROM (VALUES {slots}) WHERE column1 IS NOT NULL",
            chunk,
        )
        marks = ", ".join("?" for _ in chunk)
        found.update(
            conn.execute(f"SELECT name, id FROM [{table}] WHERE name IN ({marks})", chunk)
        )
    return found
