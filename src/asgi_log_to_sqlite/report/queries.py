"""The SQL behind a report: every aggregate is computed inside the database, never row by row.

A report reads one log: SQLite files (a live log and its rotated predecessors, read as one), or
a PostgreSQL log (a URL). The queries are the same for both, written once here; what the two
databases spell differently comes from a :class:`~asgi_log_to_sqlite.dialect.Dialect`.

Each log of the set is a relation ``r0``, ``r1``... giving its ``requests`` rows in the report's
window and filters, every value made safe to add up (text in a number column, an infinity, an
out-of-range time read as NULL: a damaged file gives a report, not an error). Files are attached
read-only to an in-memory connection, each relation a temporary view over its file; queries run
once per file, joined by ``UNION ALL`` (SQLite cannot push an aggregate into a compound view and
would copy every row first). A PostgreSQL log is one log on a connection of its own: its relation
is the same SELECT as a subquery, so the window's condition on ``start`` reaches the partitioned
table (only the window's daily partitions are read, through the ``start`` index), and nothing is
created: the report runs in one read-only transaction, its threads sharing its snapshot.

Grouping is the costly part: SQLite sorts rows to group them, and sorts one integer key about
twice as fast as several columns. So the big scans group on a packed integer (time bucket and
status; lookup id, "has a route" and latency bucket) and Python takes the few thousand groups
apart; SQLite adds rows into a small keyed table, PostgreSQL groups with GROUP BY (it hashes).
Lookup ids only mean something inside their own file: groups carry their file's number, and
names are looked up per file for the ids found, so a path logged in two files is counted once
with both files' requests.

Percentiles are exact, nearest rank (the p-th percentile of n durations sorted ascending is the
one at rank ceil(p * n / 100)), without sorting every duration: the grouped scans count the
durations per fixed latency bucket (histogram.py); the bucket holding each wanted rank is found
from those counts, and one more scan fetches only the durations of those buckets. The same in
PostgreSQL (where ``percentile_disc`` would give the same values but sorts every duration of
every group it ranks).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..dialect import END_SECOND, FIRST_SECOND, POSTGRESQL, SQLITE, Dialect
from ..histogram import BUCKETS, LOWER, RATIO, bounds, bucket_of, bucket_sql
from ..postgresql_schema import is_postgresql_url
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
# the database has math functions, a logarithm finds the same buckets in a third of the time
# (the bounds may differ by a rounding, which does not matter: within one report every query
# uses the same expression, and the bucket found is returned with the rows).
USE_MATH_FUNCTIONS = True  # tests turn it off to check the other way
_BUCKET_TREE = (
    f"(CASE WHEN duration IS NULL THEN {UNTIMED} ELSE {bucket_sql('duration_raw')} END)"
)


def _bucket_ln(d: Dialect) -> str:
    step = d.truncate(f"(ln(duration_raw) - {math.log(LOWER[1])!r}) / {math.log(RATIO)!r}")
    return (
        f"(CASE WHEN duration IS NULL THEN {UNTIMED} WHEN duration_raw < {LOWER[1]!r} THEN 0 "
        f"ELSE {d.least(str(BUCKETS - 1), f'{step} + 1')} END)"
    )


# A row's path and route ids packed in one integer (ids from 2**27 up read as none).
ID_UNITS = 2**27


def _path_route(d: Dialect) -> str:
    return (
        f"((CASE WHEN path_raw >= 1 AND path_raw < {ID_UNITS} THEN {d.as_integer('path_raw')} "
        f"ELSE 0 END) * {ID_UNITS} + (CASE WHEN route_raw >= 1 AND route_raw < {ID_UNITS} "
        f"THEN {d.as_integer('route_raw')} ELSE 0 END))"
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
        return " AND ".join(parts) or dialect.true


@dataclass
class LogFile:
    """One log of the set: its position, name, what its schema has, and the relation giving
    its rows in the report's window (a temporary view's name, or a subquery)."""

    index: int
    path: str
    columns: set[str] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)
    snapshot: Snapshot | None = None
    rows: str = ""


def _one_line(message: str) -> str:
    return " ".join(message.split())


class LogSet:
    """One or more log databases opened read-only and queried as one log: SQLite files, or a
    PostgreSQL log (a URL, alone)."""

    def __init__(
        self,
        paths: Sequence[str],
        window: Window | None = None,
        filters: Filters | None = None,
        weighted: bool = True,
        quiet: bool = True,
        visitor_column: str | None = None,
        snapshot: str | None = None,
    ) -> None:
        """``weighted=False`` counts rows as they are, for a window found unsampled: weighting
        every row by its sample rate costs about a fifth of a report's time. ``quiet=False``
        opens every file the ordinary read-only way (see files.py). ``visitor_column``: what
        another LogSet on the same log found (looking costs a scan when no row has one).
        ``snapshot``: a PostgreSQL snapshot another LogSet on the same log exported
        (:meth:`twin`), to read exactly the rows it reads."""
        if not paths:
            raise ReportError("no log database given")
        self.paths = [str(p) for p in paths]
        central = is_postgresql_url(self.paths[0])
        if len(self.paths) > 1 and any(map(is_postgresql_url, self.paths)):
            raise ReportError("a PostgreSQL URL is a whole log: give it alone")
        self.dialect: Dialect = POSTGRESQL if central else SQLITE
        #: The logs as messages and reports name them (a URL without its password).
        self.labels = [display(p) for p in self.paths]
        self.window = window or Window()
        self.filters = filters or Filters()
        self.weighted = weighted
        self.files: list[LogFile] = []
        self.errors: tuple[type[BaseException], ...] = SQL_ERRORS
        self.conn: Any = None
        self.snapshot = snapshot
        try:
            if central:
                self._connect()
            else:
                self._attach(quiet)
            self.bucket, self.bucket_in_sql = _BUCKET_TREE, False
            if USE_MATH_FUNCTIONS and self._has_math_functions():
                self.bucket, self.bucket_in_sql = _bucket_ln(self.dialect), True
            self._views(visitor_column)
        except BaseException:
            self.close()
            raise

    # ---- opening ---------------------------------------------------------------------------
    def _attach(self, quiet: bool) -> None:
        """The files, attached read-only to an in-memory connection."""
        self.conn = sqlite3.connect(":memory:")
        self.conn.text_factory = _text_factory
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
                raise ReportError(
                    f"{display(path)}: not a SQLite database ({reason(error)})"
                ) from None
            if not _REQUIRED <= log.columns:
                raise ReportError(
                    f"{display(path)}: not an asgi-log-to-sqlite log (no 'requests' table with "
                    "start, path, http_status and duration columns)"
                )
            self.files.append(log)

    def _connect(self) -> None:
        """The PostgreSQL log, on a connection of its own, in a read-only transaction that
        reads one snapshot: the one given, or one it exports for its twins."""
        from ..postgresql_schema import SchemaError, connect, ensure_readable, parse_url, psycopg

        try:
            pg = psycopg()
            target = parse_url(self.paths[0], option="URL")
        except (ImportError, TypeError, ValueError) as error:
            raise ReportError(str(error)) from None
        self.errors = (pg.Error,)
        self.labels = [target.display]
        try:
            self.conn = connect(target, autocommit=True, timeout=10)
        except pg.Error as error:
            raise ReportError(
                f"cannot connect to {target.display}: {_one_line(str(error))}") from None
        try:
            ensure_readable(self.conn, target)
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if self.snapshot is None:
                self.snapshot = self.conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            else:
                self.conn.execute(
                    f"SET TRANSACTION SNAPSHOT {self.dialect.literal(self.snapshot)}")
            columns = {row[0] for row in self.conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = CAST('requests' AS regclass) "
                "AND attnum > 0 AND NOT attisdropped")}
            tables = {row[0] for row in self.conn.execute(
                "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p', 'v') "
                "AND relnamespace = CAST(current_schema() AS regnamespace)")}
        except (pg.Error, SchemaError) as error:
            raise ReportError(
                f"cannot read the log in {target.display}: {_one_line(str(error))}") from None
        self.files.append(LogFile(0, target.display, columns, tables))

    def _has_math_functions(self) -> bool:
        if self.dialect.math_functions is not None:
            return self.dialect.math_functions
        try:
            self.conn.execute("SELECT ln(2)")
        except sqlite3.OperationalError:  # built without its math functions
            return False
        return True

    def _views(self, visitor_column: str | None) -> None:
        # A visitor column counts where some row of the window has a value in it (the privacy
        # option on); else every row falls back to its address and the column is left out
        # (the same counts: only the column's name in the report differs).
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
        """The relation of the log's rows in the window and the filters, values cleaned."""
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
            part for part in (self.window.sql("start", d), self.window.sql(start, d))
            if part != d.true
        ) or d.true
        where = f"({window}) AND ({self.filters.raw_sql(log.index, cols, log.tables, d)})"
        select = (
            "SELECT " + ", ".join(f"{expr} AS {name}" for name, expr in fields.items())
            + f" FROM {d.table(log.index, 'requests')} WHERE {where}"
        )
        if d.temporary_tables:
            self.conn.execute(f"CREATE TEMP VIEW r{log.index} AS {select}")
            log.rows = f"r{log.index}"
        else:  # a subquery: the planner sees the window's condition on the table itself
            log.rows = f"({select}) AS r{log.index}"

    def _has_values(self, log: LogFile, column: str) -> bool:
        """Some row of the window has a value in ``column``."""
        if column not in log.columns:
            return False
        return bool(self.all(
            f"SELECT EXISTS (SELECT 1 FROM {self.dialect.table(log.index, 'requests')} "
            f"WHERE {column} IS NOT NULL AND {self.window.sql(dialect=self.dialect)})"
        )[0][0])

    def twin(self, weighted: bool, quiet: bool = True) -> LogSet:
        """Another LogSet on the same log, for a thread of its own: it counts visitors the
        way this one found, and in PostgreSQL reads this one's snapshot (the threads of a
        report read the same rows while writers add more)."""
        return LogSet(self.paths, self.window, self.filters, weighted, quiet,
                      visitor_column=self.visitor_column, snapshot=self.snapshot)

    def close(self) -> None:
        if self.conn is not None:
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
            return f"SELECT NULL WHERE {self.dialect.false}"
        return "\nUNION ALL\n".join(
            template.format(r=f.rows, src=f.index) for f in chosen
        )

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` (PostgreSQL: values inlined, no parameters, so that a ``%`` in
        it is itself); a database error as a :class:`ReportError`."""
        try:
            cursor = self.conn.execute(sql, params) if params else self.conn.execute(sql)
            return cursor.fetchall() if cursor.description else []
        except self.errors as error:
            raise ReportError(
                f"cannot read {', '.join(self.labels)}: {_one_line(reason(error))}"
            ) from None

    # ---- the window's extent ---------------------------------------------------------------
    def extent(self, first: bool = True, last: bool = True) -> tuple[float | None, float | None]:
        """First and last plausible ``start`` in the window (each only if asked): each through
        one end of the ``start`` index where there is one that has them, else in one scan."""
        d = self.dialect
        ends = [("MIN", f"start >= {FIRST_SECOND}")] * first + [
            ("MAX", f"start < {END_SECOND}")] * last
        found: dict[str, list[Any]] = {how: [] for how, _ in ends}
        low = self.window.sql("start", d)
        for f in self.files:
            table = d.table(f.index, "requests")
            if d.extremes_by_index:
                for how, bound in ends:
                    found[how] += [r[0] for r in self.all(
                        f"SELECT {how}(start) FROM {table} WHERE {bound} AND {low}")]
            elif ends:
                row = self.all(
                    "SELECT " + ", ".join(f"{how}(CASE WHEN {bound} THEN start END)"
                                          for how, bound in ends)
                    + f" FROM {table} WHERE {low}")[0]
                for (how, _), value in zip(ends, row, strict=True):
                    found[how].append(value)
        firsts = [v for v in found.get("MIN", []) if isinstance(v, (int, float))]
        lasts = [v for v in found.get("MAX", []) if isinstance(v, (int, float))]
        return (min(firsts) if firsts else None, max(lasts) if lasts else None)

    def has_rows(self) -> bool:
        """Some file holds a request, whatever the window and filters (an empty log is an
        error); without counting them all."""
        return any(
            self.all(f"SELECT EXISTS (SELECT 1 FROM {self.dialect.table(f.index, 'requests')})"
                     )[0][0]
            for f in self.files
        )

    def sampled(self) -> bool:
        """Any row in the window recorded with a sample rate below 1."""
        for f in self.files:
            if "sample_rate" in f.columns and self.all(
                f"SELECT EXISTS (SELECT 1 FROM {self.dialect.table(f.index, 'requests')} "
                f"WHERE sample_rate > 0 AND sample_rate < 1 AND "
                f"{self.window.sql(dialect=self.dialect)})"
            )[0][0]:
                return True
        return False

    # ---- the grouped scans -----------------------------------------------------------------
    def accumulate(
        self,
        name: str,
        keys: Sequence[tuple[str, str]],
        measures: Sequence[tuple[str, str, str]],
        where: str | None = None,
        files: Iterable[LogFile] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Per distinct key, sums (``"sum"``) and extremes (``"min"``, ``"max"``) of the rows of
        every file: rows of ``(src, *keys, *measures)``.

        ``keys`` are ``(kind, expression)``, kind ``"int"`` or ``"text"``; a key must not be
        NULL (COALESCE it).
        """
        rows = self.all(f"SELECT * FROM {self._groups(name, keys, measures, where, files)}")
        if not self.dialect.temporary_tables:
            # Hashed groups come in no order. In the order of their keys (as a file's keyed
            # table gives them), Python adds their figures up as it does for a file.
            rows.sort(key=lambda row: row[:len(keys)])
        return [(k % MAX_FILES, k // MAX_FILES, *rest) for k, *rest in rows]

    def _groups(
        self,
        name: str,
        keys: Sequence[tuple[str, str]],
        measures: Sequence[tuple[str, str, str]],
        where: str | None = None,
        files: Iterable[LogFile] | None = None,
    ) -> str:
        """A relation of the groups (``k0``, ``k1``... and the measures; the file's number
        packed into ``k0``): a temporary table, or a grouping subquery where the report keeps
        no tables.

        SQLite groups by sorting every row; adding each row into a small temporary table keyed
        by the group instead (an upsert) costs about a third less when the groups are few, and
        grouping is most of a report's time. A database that groups by hashing uses GROUP BY.
        """
        chosen = list(self.files if files is None else files)
        names = [f"k{i}" for i in range(len(keys))]
        columns = [m for m, _, _ in measures]
        packed = len(keys) == 1 and keys[0][0] == "int"
        if keys[0][0] != "int":
            raise ValueError("the first key must be an integer (the file's number joins it)")
        d = self.dialect
        where = where or d.true
        if not d.groups_by_upsert:
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
            if not d.temporary_tables:
                return f"({select}) AS {name}"
            self.all(f"DROP TABLE IF EXISTS temp.{name}")
            self.all(f"CREATE TEMP TABLE {name} AS {select}")
            return f"temp.{name}"
        self.all(f"DROP TABLE IF EXISTS temp.{name}")
        # The file's number is packed into the first (integer) key: one column less to compare.
        if packed:  # one integer key: the fastest table there is
            self.all(f"CREATE TEMP TABLE {name} (k0 INTEGER PRIMARY KEY, {', '.join(columns)})")
        else:
            self.all(
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
            self.all(f"INSERT INTO temp.{name} SELECT {key}, {values} FROM {f.rows} "
                     f"WHERE {where} ON CONFLICT DO UPDATE SET {updates}")
        return f"temp.{name}"

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
            f"THEN {self.dialect.as_integer('status_raw')} ELSE {STATUS_NONE} END)"
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
        key = f"{_path_route(self.dialect)} * {BUCKET_UNITS} + {self.bucket}"
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

    def visits(self, unit: int, limit: int) -> tuple[
            tuple[int, list[tuple[Any, int]]], tuple[int, list[tuple[Any, float]]]]:
        """``(visitors, [(bucket, visitors)...]), (addresses, [(address, requests)...])``:
        distinct visitors in the window and per ``unit`` bucket, distinct client addresses
        and the ``limit`` sending the most requests. The rows are grouped once, per (bucket,
        client address, visitor), and the four figures read from those groups in one query."""
        d = self.dialect
        one, _ = self._counted()
        keys = [("int", f"(CASE WHEN start IS NULL THEN -1 "
                        f"ELSE {d.bucket('start_raw', unit)} END)"),
                ("text", "COALESCE(client_ip, '')")]
        if self.visitor_column != "client_ip":
            keys.append(("text", "COALESCE(visitor, '')"))
        groups = self._groups("v", keys, [("n", one, "sum")])
        visitor = "k1" if self.visitor_column == "client_ip" else "k2"
        # Floor division: the bucket of rows without a time is -1.
        visits = (
            f"SELECT (k0 - ((k0 % {MAX_FILES}) + {MAX_FILES}) % {MAX_FILES}) / {MAX_FILES} "
            f"AS k, NULLIF({visitor}, '') AS visitor, NULLIF(k1, '') AS client_ip, n "
            f"FROM {groups}"
        )
        if d.temporary_tables:
            self.all("DROP VIEW IF EXISTS temp.visits")
            self.all(f"CREATE TEMP VIEW visits AS {visits}")
            figures = ""
        else:
            figures = f"WITH visits AS MATERIALIZED ({visits})\n"
        figures += (
            "SELECT 0 AS part, NULL AS k, NULL AS client_ip, COUNT(DISTINCT visitor) AS n "
            "FROM visits\n"
            "UNION ALL SELECT 1, k, NULL, COUNT(DISTINCT visitor) FROM visits WHERE k <> -1 "
            "GROUP BY k\n"
            "UNION ALL SELECT 2, NULL, NULL, COUNT(DISTINCT client_ip) FROM visits\n"
            f"UNION ALL SELECT 3, NULL, client_ip, c FROM (SELECT client_ip, "
            f"{d.total('n')} AS c FROM visits WHERE client_ip IS NOT NULL GROUP BY client_ip "
            f"ORDER BY c DESC, {d.by_bytes('client_ip')} LIMIT {int(limit)}) AS top"
        )
        rows = self.all(figures)
        visitors = next(int(n) for part, _, _, n in rows if part == 0)
        per = sorted((k, int(n)) for part, k, _, n in rows if part == 1)
        addresses = next(int(n) for part, _, _, n in rows if part == 2)
        top = [(ip, n) for part, _, ip, n in rows if part == 3]
        top.sort(key=lambda row: -row[1])  # stable: ties keep the query's order
        return (visitors, per), (addresses, top)

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
                conditions.append(f"{_path_route(self.dialect)} * {BUCKET_UNITS} + {self.bucket} "
                                  f"IN ({', '.join(map(str, sorted(keys)))})")
            if conditions:
                bucket = self.bucket if self.bucket_in_sql else "NULL"
                parts.append(
                    f"SELECT {f.index}, path, route, duration, {bucket} FROM {f.rows} "
                    f"WHERE duration IS NOT NULL AND (" + " OR ".join(conditions) + ")"
                )
        if not parts:
            return []
        rows = self.all("\nUNION ALL\n".join(parts))
        if self.bucket_in_sql:
            return rows
        return [(src, p, r, d, bucket_of(d)) for src, p, r, d, _ in rows]

    # ---- names -----------------------------------------------------------------------------
    def names(
        self, table: str, ids: Iterable[tuple[int, Any]]
    ) -> dict[tuple[int, Any], str | None]:
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
                f"WHERE id IN ({', '.join(map(str, sorted(chosen)))})"
            )
            for ident, name in rows:
                found[(f.index, ident)] = as_text(name)
        return found
