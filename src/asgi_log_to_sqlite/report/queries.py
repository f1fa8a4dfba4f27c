"""The SQL behind a report: every aggregate is computed inside the database, never row by row.

Several log files (a live log and its rotated predecessors) are read as one: each is attached
read-only to an in-memory connection, and a temporary view per file (``temp.r0``, ``temp.r1``...)
gives its ``requests`` rows in the report's window and filters, every value made safe to add up
(text in a number column, an infinity, an out-of-range time read as NULL: a damaged file gives
a report, not an error). Queries run once per file, joined by ``UNION ALL`` (SQLite cannot push
an aggregate into a compound view and would copy every row first).

Grouping is the costly part: SQLite sorts rows to group them, and sorts one integer key about
twice as fast as several columns. So the big scans group on a packed integer (time bucket and
status; lookup id, "has a route" and latency bucket) and Python takes the few thousand groups
apart. Lookup ids only mean something inside their own file: groups carry their file's number,
and names are looked up per file for the ids found, so a path logged in two files is counted
once with both files' requests.

Percentiles are exact, nearest rank (the p-th percentile of n durations sorted ascending is the
one at rank ceil(p * n / 100)), without sorting every duration: the grouped scans count the
durations per fixed latency bucket (histogram.py); the bucket holding each wanted rank is found
from those counts, and one more scan fetches only the durations of those buckets.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..dialect import END_SECOND, FIRST_SECOND, SQLITE, Dialect
from ..histogram import BUCKETS, LOWER, RATIO, bounds, bucket_of, bucket_sql
from .files import SQL_ERRORS, ReportError, Snapshot, display, read_uri, reason
from .filters import Filters

__all__ = ["LogSet", "ReportError", "Window", "as_text"]

# Columns a report reads from ``requests``; a column a file lacks (older schema) reads as NULL.
_REQUIRED = {"start", "path", "http_status", "duration"}
# A pseudonymous visitor column, if the schema has one, is preferred to the client address.
_VISITOR_COLUMNS = ("visitor", "visitor_hash", "visitor_id")
# Packed keys (see the module's docstring).
STATUS_UNITS = 1024
STATUS_NONE = 1000  # no status, or one outside 0-999
BUCKET_UNITS = 256
UNTIMED = 255
_ID_MAX = 2**40
MAX_FILES = 16  # packed into integer keys beside the file's number (SQLite attaches 10)
# The latency bucket of a row in a report view (UNTIMED without a duration): the tree of
# comparisons reads the stored value, once the cleaned one said it is a finite number. Where
# SQLite has its math functions, a logarithm finds the same buckets in a third of the time
# (the bounds may differ by a rounding, which does not matter: within one report every query
# uses the same expression, and the bucket found is returned with the rows).
USE_MATH_FUNCTIONS = True  # tests turn it off to check the other way
_BUCKET_TREE = (
    f"(CASE WHEN duration IS NULL THEN {UNTIMED} ELSE {bucket_sql('duration_raw')} END)"
)
_BUCKET_LN = (
    f"(CASE WHEN duration IS NULL THEN {UNTIMED} WHEN duration_raw < {LOWER[1]!r} THEN 0 "
    f"ELSE MIN({BUCKETS - 1}, CAST((ln(duration_raw) - {math.log(LOWER[1])!r}) "
    f"/ {math.log(RATIO)!r} AS INTEGER) + 1) END)"
)
# A row's path and route ids packed in one integer (ids from 2**27 up read as none).
ID_UNITS = 2**27
_PATH_ROUTE = (
    f"((CASE WHEN path_raw >= 1 AND path_raw < {ID_UNITS} THEN CAST(path_raw AS INTEGER) "
    f"ELSE 0 END) * {ID_UNITS} + (CASE WHEN route_raw >= 1 AND route_raw < {ID_UNITS} "
    f"THEN CAST(route_raw AS INTEGER) ELSE 0 END))"
)


def as_text(value: Any) -> str | None:
    """A value read from a text column, as text (a blob or a number in it is shown, not
    fatal)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _text_factory(data: bytes) -> str:
    # Text that is not UTF-8 (written by hand, or damaged) would make sqlite3 raise.
    return data.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Window:
    """The time range a report covers: unix seconds, either end open (None)."""

    since: float | None = None
    until: float | None = None

    def sql(self, column: str = "start", dialect: Dialect = SQLITE) -> str:
        parts = []
        if self.since is not None:
            parts.append(f"{column} >= {dialect.literal(float(self.since))}")
        if self.until is not None:
            parts.append(f"{column} < {dialect.literal(float(self.until))}")
        return " AND ".join(parts) or "1"


@dataclass
class LogFile:
    """One attached log: its position, name and what its schema has."""

    index: int
    path: str
    columns: set[str] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)
    snapshot: Snapshot | None = None


class LogSet:
    """One or more log databases opened read-only and queried as one log."""

    def __init__(
        self,
        paths: Sequence[str],
        window: Window | None = None,
        filters: Filters | None = None,
        weighted: bool = True,
        quiet: bool = True,
        dialect: Dialect = SQLITE,
        visitor_column: str | None = None,
    ) -> None:
        """``weighted=False`` counts rows as they are, for a window found unsampled: weighting
        every row by its sample rate costs about a fifth of a report's time. ``quiet=False``
        opens every file the ordinary read-only way (see files.py). ``visitor_column``: what
        another LogSet on the same files found (looking costs a scan when no row has one)."""
        if not paths:
            raise ReportError("no log database given")
        self.paths = [str(p) for p in paths]
        self.window = window or Window()
        self.filters = filters or Filters()
        self.weighted = weighted
        self.dialect = dialect
        self.count = dialect.total("w") if weighted else "COUNT(*)"
        self.files: list[LogFile] = []
        self.conn = sqlite3.connect(":memory:")
        self.conn.text_factory = _text_factory
        self.bucket, self.bucket_in_sql = _BUCKET_TREE, False
        if USE_MATH_FUNCTIONS:
            try:
                self.conn.execute("SELECT ln(2)")
                self.bucket, self.bucket_in_sql = _BUCKET_LN, True
            except sqlite3.OperationalError:  # built without its math functions
                pass
        try:
            self._attach(quiet, visitor_column)
        except BaseException:
            self.conn.close()
            raise

    # ---- opening ---------------------------------------------------------------------------
    def _attach(self, quiet: bool, visitor_column: str | None) -> None:
        for i, path in enumerate(self.paths):
            uri, snapshot = read_uri(path, quiet)
            log = LogFile(i, path, snapshot=snapshot)
            try:
                self.dialect.attach(self.conn, i, uri)
                log.tables = {
                    row[0] for row in self.conn.execute(
                        f"SELECT name FROM db{i}.sqlite_master WHERE type IN ('table', 'view')"
                    )
                }
                log.columns = {
                    row[1] for row in self.conn.execute(f"PRAGMA db{i}.table_info(requests)")
                }
            except sqlite3.OperationalError as error:
                if "too many attached" in str(error):
                    raise ReportError(
                        f"too many log files at once ({len(self.paths)}); "
                        f"this SQLite reads at most {i} together"
                    ) from None
                raise ReportError(
                    f"{display(path)}: cannot be read as a SQLite database ({error})"
                ) from None
            except SQL_ERRORS as error:
                raise ReportError(f"{display(path)}: not a SQLite database ({reason(error)})") from None
            if not _REQUIRED <= log.columns:
                raise ReportError(
                    f"{display(path)}: not an asgi-log-to-sqlite log (no 'requests' table with "
                    "start, path, http_status and duration columns)"
                )
            self.files.append(log)
        # A visitor column counts where some row has a value in it (the privacy option on);
        # else every row falls back to its address and the column is left out.
        if visitor_column is not None:
            hashed = None if visitor_column == "client_ip" else visitor_column
        else:
            hashed = next(
                (c for c in _VISITOR_COLUMNS if any(self._has_values(f, c) for f in self.files)),
                None,
            )
        self.visitor_column = hashed or "client_ip"
        for log in self.files:
            self._view(log, hashed)

    def _view(self, log: LogFile, hashed: str | None) -> None:
        d = self.dialect
        cols = log.columns

        def col(name: str) -> str:
            return name if name in cols else "NULL"

        def ident(name: str) -> str:
            c = col(name)
            return f"(CASE WHEN {c} >= 1 AND {c} < {_ID_MAX} THEN {c} END)"

        def number(name: str, low: str | None = None) -> str:
            return d.finite(col(name), low)

        start = f"(CASE WHEN start >= {FIRST_SECOND} AND start < {END_SECOND} THEN start END)"
        if hashed and hashed in cols:
            visitor = f"COALESCE({hashed}, {col('client_ip')})"
        else:
            visitor = col("client_ip")
        rate = col("sample_rate")
        weight = f"(CASE WHEN {rate} > 0 AND {rate} < 1 THEN 1.0 / {rate} ELSE 1 END)"
        fields = {
            "src": str(log.index),
            "rid": "rowid",
            "start": start,
            "method": col("method"),
            "path": ident("path"),
            "route": ident("route"),
            "user_agent": ident("user_agent"),
            "referer": ident("referer"),
            "host": ident("host"),
            "instance": ident("instance"),
            "http_status": number("http_status"),
            "client_ip": col("client_ip"),
            "visitor": visitor,
            "duration": number("duration"),
            "body_size": number("body_size", "-1"),
            "request_body_size": number("request_body_size", "-1"),
            "http_version": col("http_version"),
            "w": weight if self.weighted else "1",
            # The stored values as they are, for expressions that test them once cleaned:
            # a view column is an expression repeated wherever it is used.
            "start_raw": col("start"),
            "path_raw": col("path"),
            "route_raw": col("route"),
            "status_raw": col("http_status"),
            "duration_raw": col("duration"),
        }
        window = " AND ".join(
            part for part in (self.window.sql("start", d), self.window.sql(start, d)) if part != "1"
        ) or "1"
        where = f"({window}) AND ({self.filters.raw_sql(log.index, cols, log.tables, d)})"
        self.conn.execute(
            f"CREATE TEMP VIEW r{log.index} AS SELECT "
            + ", ".join(f"{expr} AS {name}" for name, expr in fields.items())
            + f" FROM {d.table(log.index, 'requests')} WHERE {where}"
        )

    def _has_values(self, log: LogFile, column: str) -> bool:
        if column not in log.columns:
            return False
        return bool(self.all(
            f"SELECT EXISTS (SELECT 1 FROM {self.dialect.table(log.index, 'requests')} "
            f"WHERE {column} IS NOT NULL)"
        )[0][0])

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> LogSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def changed(self) -> bool:
        """A file opened without locks was written to meanwhile: read it again, with them."""
        return any(f.snapshot is not None and f.snapshot.changed() for f in self.files)

    # ---- running queries -------------------------------------------------------------------
    def each(self, template: str, files: Iterable[LogFile] | None = None) -> str:
        """``template`` (which reads ``{r}``, ``{src}``) once per file, joined by UNION ALL."""
        chosen = list(self.files if files is None else files)
        if not chosen:
            return "SELECT NULL WHERE 0"
        return "\nUNION ALL\n".join(
            template.format(r=f"r{f.index}", src=f.index) for f in chosen
        )

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except SQL_ERRORS as error:
            raise ReportError(
                f"cannot read {', '.join(display(p) for p in self.paths)}: {reason(error)}"
            ) from None

    # ---- the window's extent ---------------------------------------------------------------
    def extent(self) -> tuple[float | None, float | None]:
        """First and last plausible ``start`` in the window, through the ``start`` index."""
        firsts, lasts = [], []
        d = self.dialect
        for f in self.files:
            table = d.table(f.index, "requests")
            low = self.window.sql("start", d)
            firsts += [r[0] for r in self.all(
                f"SELECT MIN(start) FROM {table} WHERE start >= {FIRST_SECOND} AND {low}")]
            lasts += [r[0] for r in self.all(
                f"SELECT MAX(start) FROM {table} WHERE start < {END_SECOND} AND {low}")]
        firsts = [v for v in firsts if isinstance(v, (int, float))]
        lasts = [v for v in lasts if isinstance(v, (int, float))]
        return (min(firsts) if firsts else None, max(lasts) if lasts else None)

    def total_rows(self) -> int:
        """Rows in all files, ignoring window and filters (an empty log is an error)."""
        return sum(
            self.all(f"SELECT COUNT(*) FROM {self.dialect.table(f.index, 'requests')}")[0][0]
            for f in self.files
        )

    def sampled(self) -> bool:
        """Any row in the window recorded with a sample rate below 1."""
        for f in self.files:
            if "sample_rate" in f.columns and self.all(
                f"SELECT EXISTS (SELECT 1 FROM {self.dialect.table(f.index, 'requests')} "
                f"WHERE sample_rate > 0 AND sample_rate < 1 AND {self.window.sql()})"
            )[0][0]:
                return True
        return False

    # ---- the grouped scans -----------------------------------------------------------------
    def accumulate(
        self,
        name: str,
        keys: Sequence[tuple[str, str]],
        measures: Sequence[tuple[str, str, str]],
        where: str = "1",
        files: Iterable[LogFile] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Per distinct key, sums (``"sum"``) and extremes (``"min"``, ``"max"``) of the rows of
        every file: rows of ``(src, *keys, *measures)``.

        ``keys`` are ``(kind, expression)``, kind ``"int"`` or ``"text"``; a key must not be
        NULL (COALESCE it). SQLite groups by sorting every row; adding each row into a small
        temporary table keyed by the group instead (an upsert) costs about a third less when
        the groups are few, and grouping is most of a report's time.
        """
        chosen = list(self.files if files is None else files)
        names = [f"k{i}" for i in range(len(keys))]
        columns = [m for m, _, _ in measures]
        packed = len(keys) == 1 and keys[0][0] == "int"
        if keys[0][0] != "int":
            raise ValueError("the first key must be an integer (the file's number joins it)")
        d = self.dialect
        self.conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
        if not d.groups_by_upsert:  # a database that groups by hashing: plain GROUP BY
            aggregates = ", ".join(
                f"{d.total(expr) if how == 'sum' else f'{how.upper()}({expr})'} AS {m}"
                for m, expr, how in measures
            )
            key = ", ".join([f"({keys[0][1]}) * {MAX_FILES} + {{src}} AS k0",
                             *(f"{expr} AS {n}" for (_, expr), n in zip(keys[1:], names[1:],
                                                                          strict=True))])
            group = ", ".join(str(i + 1) for i in range(len(keys)))
            select = self.each(
                f"SELECT {key}, {aggregates} FROM {{r}} WHERE {where} GROUP BY {group}", chosen)
            try:
                self.conn.execute(f"CREATE TEMP TABLE {name} AS {select}")
            except SQL_ERRORS as error:
                raise ReportError(
                    f"cannot read {', '.join(map(display, self.paths))}: {reason(error)}") from None
            rows = self.all(f"SELECT * FROM temp.{name}")
            return [(k % MAX_FILES, k // MAX_FILES, *rest) for k, *rest in rows]
        # The file's number is packed into the first (integer) key: one column less to compare.
        if packed:  # one integer key: the fastest table there is
            self.conn.execute(
                f"CREATE TEMP TABLE {name} (k0 INTEGER PRIMARY KEY, {', '.join(columns)})"
            )
        else:
            self.conn.execute(
                f"CREATE TEMP TABLE {name} ("
                + ", ".join(f"{n} NOT NULL" for n in names) + f", {', '.join(columns)}, "
                f"PRIMARY KEY ({', '.join(names)})) WITHOUT ROWID"
            )
        updates = ", ".join(
            f"{m} = {m} + excluded.{m}" if how == "sum"
            else f"{m} = {d.greatest(m, f'excluded.{m}')}" if how == "max"
            else f"{m} = {d.least(m, f'excluded.{m}')}"
            for m, _, how in measures
        )
        # A NULL in a sum would stay NULL through every addition after it.
        values = ", ".join(f"COALESCE({expr}, 0)" if how == "sum" else expr
                           for _, expr, how in measures)
        for f in chosen:
            key = ", ".join(
                [f"({keys[0][1]}) * {MAX_FILES} + {f.index}", *(expr for _, expr in keys[1:])]
            )
            sql = (f"INSERT INTO temp.{name} SELECT {key}, {values} FROM r{f.index} "
                   f"WHERE {where} ON CONFLICT DO UPDATE SET {updates}")
            try:
                self.conn.execute(sql)
            except SQL_ERRORS as error:
                raise ReportError(
                    f"cannot read {', '.join(map(display, self.paths))}: {reason(error)}") from None
        rows = self.all(f"SELECT * FROM temp.{name}")
        return [(k % MAX_FILES, k // MAX_FILES, *rest) for k, *rest in rows]

    def _counted(self) -> tuple[str, str]:
        """The expression one row counts for, and the weight to multiply sums by."""
        return ("w", " * w") if self.weighted else ("1", "")

    def time_groups(self, unit: int) -> list[tuple[Any, ...]]:
        """Per (``unit``-second bucket, status, host id, method, HTTP version): (src, key,
        host, method, version, requests, bytes sent, bytes received, first start, last start,
        longest duration), key = bucket * 1024 + status.

        The few hosts, methods and versions ride along (groups multiply by a handful) rather
        than cost a scan of their own.
        """
        one, w = self._counted()
        # Text sorts after numbers: "status_raw < 1000" is false for it, as for NULL.
        status = (
            f"(CASE WHEN status_raw >= 0 AND status_raw < {STATUS_NONE} "
            f"THEN CAST(status_raw AS INTEGER) ELSE {STATUS_NONE} END)"
        )
        bucket = (f"(CASE WHEN start IS NULL THEN -1 "
                  f"ELSE {self.dialect.bucket('start_raw', unit)} END)")
        return self.accumulate("t", [
            ("int", f"{bucket} * {STATUS_UNITS} + {status}"), ("int", "COALESCE(host, 0)"),
            ("text", "COALESCE(method, '')"), ("text", "COALESCE(http_version, '')"),
        ], [
            ("n", one, "sum"),
            ("sent", f"COALESCE(body_size{w}, 0)", "sum"),
            ("received", f"COALESCE(request_body_size{w}, 0)", "sum"),
            ("first", "start_raw", "min"),
            ("last", "start_raw", "max"),
            ("longest", "duration", "max"),
        ])

    def key_groups(self) -> list[tuple[Any, ...]]:
        """Per (path id, route id, latency bucket): (src, key, requests, bytes, timed rows,
        duration total, 404s, 5xx), key = (path * 2**27 + route) * 256 + bucket.

        Ids from 2**27 up read as 0 (none); bucket 255 means no duration (its duration
        figures mean nothing). Timed rows are 0 where rows are not weighted (then they are
        the requests).
        """
        one, w = self._counted()
        key = f"{_PATH_ROUTE} * {BUCKET_UNITS} + {self.bucket}"
        measures = [("n", one, "sum"), ("sent", f"COALESCE(body_size{w}, 0)", "sum")]
        if self.weighted:
            measures.append(("timed", "1", "sum"))
        measures += [
            ("total", "COALESCE(duration_raw, 0)", "sum"),
            ("nf", f"{self.dialect.flag('status_raw = 404')}{w}", "sum"),
            ("err", f"{self.dialect.flag('status_raw >= 500 AND status_raw < 600')}{w}", "sum"),
        ]
        rows = self.accumulate("keys", [("int", key)], measures)
        if self.weighted:
            return rows
        return [(src, k, n, sent, 0, total, nf, err) for src, k, n, sent, total, nf, err in rows]

    def grouped(self, *columns: str) -> list[tuple[Any, ...]]:
        """(src, lookup id or None per column, requests) per combination of the ids of one
        or two lookup columns (two packed in one integer key; ids from 2**27 up read as
        None then)."""
        one, _ = self._counted()
        if len(columns) == 1:
            key = f"COALESCE({columns[0]}, 0)"
        else:
            a, b = columns
            key = (f"COALESCE(CASE WHEN {a} < {ID_UNITS} THEN {a} END, 0) * {ID_UNITS} + "
                   f"COALESCE(CASE WHEN {b} < {ID_UNITS} THEN {b} END, 0)")
        rows = self.accumulate(f"g_{'_'.join(columns)}", [("int", key)], [("n", one, "sum")])
        if len(columns) == 1:
            return [(src, ident or None, n) for src, ident, n in rows]
        return [(src, *(v or None for v in divmod(k, ID_UNITS)), n) for src, k, n in rows]

    def visitor_groups(self, unit: int) -> None:
        """Requests per (``unit`` bucket, client address, visitor) into ``temp.v``, which
        :meth:`visitors` and :meth:`clients` read."""
        one, _ = self._counted()
        keys = [("int", f"(CASE WHEN start IS NULL THEN -1 "
                        f"ELSE {self.dialect.bucket('start_raw', unit)} END)"),
                ("text", "COALESCE(client_ip, '')")]
        if self.visitor_column != "client_ip":
            keys.append(("text", "COALESCE(visitor, '')"))
        self.accumulate("v", keys, [("n", one, "sum")])
        visitor = "k1" if self.visitor_column == "client_ip" else "k2"
        self.conn.execute("DROP VIEW IF EXISTS temp.visits")
        self.conn.execute(
            # Floor division: the bucket of rows without a time is -1.
            f"CREATE TEMP VIEW visits AS SELECT (k0 - ((k0 % {MAX_FILES}) + {MAX_FILES}) "
            f"% {MAX_FILES}) / {MAX_FILES} AS k, "
            f"NULLIF({visitor}, '') AS visitor, NULLIF(k1, '') AS client_ip, n FROM temp.v"
        )

    def visitors(self) -> tuple[int, list[tuple[Any, int]]]:
        """Distinct visitors in the window, and (bucket, visitors) per bucket."""
        total = self.all("SELECT COUNT(DISTINCT visitor) FROM temp.visits")[0][0]
        per = self.all(
            "SELECT k, COUNT(DISTINCT visitor) FROM temp.visits WHERE k <> -1 "
            "GROUP BY k ORDER BY k"
        )
        return total, per

    def clients(self, limit: int) -> tuple[int, list[tuple[Any, float]]]:
        """Distinct client addresses, and the ``limit`` sending the most requests."""
        count = self.all("SELECT COUNT(DISTINCT client_ip) FROM temp.visits")[0][0]
        top = self.all(
            f"SELECT client_ip, {self.dialect.total('n')} AS c FROM temp.visits "
            "WHERE client_ip IS NOT NULL "
            "GROUP BY client_ip ORDER BY c DESC, client_ip LIMIT ?", (int(limit),)
        )
        return count, top

    def durations_in(
        self, buckets: Iterable[int], keyed: Iterable[tuple[int, int]]
    ) -> list[tuple[Any, ...]]:
        """(src, path id, route id, duration, bucket) of the rows whose latency bucket is one
        of ``buckets`` (any row), or whose ``(src, key)`` is in ``keyed``, key as in
        :meth:`key_groups`."""
        wanted = sorted({int(b) for b in buckets})
        per_file: dict[int, set[int]] = {}
        for src, key in keyed:
            per_file.setdefault(int(src), set()).add(int(key))
        parts = []
        for f in self.files:
            conditions = []
            if wanted:
                if self.bucket_in_sql:
                    conditions.append(f"{self.bucket} IN ({', '.join(map(str, wanted))})")
                else:  # the tree is costly: the buckets' bounds are the same literals
                    for bucket in wanted:
                        low, high = bounds(bucket)
                        conditions.append(f"(duration_raw >= {low!r}" + (
                            f" AND duration_raw < {high!r})" if high is not None else ")"))
            keys = per_file.get(f.index)
            if keys:
                conditions.append(f"{_PATH_ROUTE} * {BUCKET_UNITS} + {self.bucket} IN "
                                  f"({', '.join(map(str, sorted(keys)))})")
            if conditions:
                bucket = self.bucket if self.bucket_in_sql else "NULL"
                parts.append(
                    f"SELECT {f.index}, path, route, duration, {bucket} FROM r{f.index} "
                    f"WHERE duration IS NOT NULL AND (" + " OR ".join(conditions) + ")"
                )
        if not parts:
            return []
        rows = self.all("\nUNION ALL\n".join(parts))
        if self.bucket_in_sql:
            return rows
        return [(src, p, r, d, bucket_of(d)) for src, p, r, d, _ in rows]

    # ---- names -----------------------------------------------------------------------------
    def names(self, table: str, ids: Iterable[tuple[int, Any]]) -> dict[tuple[int, Any], str | None]:
        """``(src, id) -> name`` in lookup ``table`` for the ids given; a missing table or id
        (a damaged file) gives None."""
        wanted: dict[int, set[int]] = {}
        for src, ident in ids:
            if isinstance(ident, int):
                wanted.setdefault(src, set()).add(ident)
        found: dict[tuple[int, Any], str | None] = {}
        for f in self.files:
            chosen = wanted.get(f.index)
            if not chosen or table not in f.tables:
                continue
            rows = self.all(
                f"SELECT id, name FROM {self.dialect.table(f.index, table)} "
                f"WHERE id IN {self.dialect.id_list()}",
                (json.dumps(sorted(chosen)),),
            )
            for ident, name in rows:
                found[(f.index, ident)] = as_text(name)
        return found
