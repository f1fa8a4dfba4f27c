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
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..dialect import END_SECOND, FIRST_SECOND, SQLITE, Dialect
from ..histogram import bucket_sql
from .files import ReportError, Snapshot, display, read_uri
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
    ) -> None:
        """``weighted=False`` counts rows as they are, for a window found unsampled: weighting
        every row by its sample rate costs about a fifth of a report's time. ``quiet=False``
        opens every file the ordinary read-only way (see files.py)."""
        if not paths:
            raise ReportError("no log database given")
        self.paths = [str(p) for p in paths]
        self.window = window or Window()
        self.filters = filters or Filters()
        self.weighted = weighted
        self.dialect = dialect
        self.count = "TOTAL(w)" if weighted else "COUNT(*)"
        self.files: list[LogFile] = []
        self.conn = sqlite3.connect(":memory:")
        self.conn.text_factory = _text_factory
        try:
            self._attach(quiet)
        except BaseException:
            self.conn.close()
            raise

    # ---- opening ---------------------------------------------------------------------------
    def _attach(self, quiet: bool) -> None:
        for i, path in enumerate(self.paths):
            uri, snapshot = read_uri(path, quiet)
            log = LogFile(i, path, snapshot=snapshot)
            try:
                self.conn.execute(f"ATTACH DATABASE ? AS db{i}", (uri,))
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
            except sqlite3.DatabaseError as error:
                raise ReportError(f"{display(path)}: not a SQLite database ({error})") from None
            if not _REQUIRED <= log.columns:
                raise ReportError(
                    f"{display(path)}: not an asgi-log-to-sqlite log (no 'requests' table with "
                    "start, path, http_status and duration columns)"
                )
            self.files.append(log)
        hashed = next(
            (c for c in _VISITOR_COLUMNS if any(c in f.columns for f in self.files)), None
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

        def number(name: str, low: str = "-9e999") -> str:
            c = col(name)
            return f"(CASE WHEN {c} > {low} AND {c} < 9e999 THEN {c} END)"

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
            "http_status": number("http_status"),
            "client_ip": col("client_ip"),
            "visitor": visitor,
            "duration": number("duration"),
            "body_size": number("body_size", "-1"),
            "request_body_size": number("request_body_size", "-1"),
            "http_version": col("http_version"),
            "w": weight if self.weighted else "1",
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
        except sqlite3.DatabaseError as error:
            raise ReportError(
                f"cannot read {', '.join(display(p) for p in self.paths)}: {error}"
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
    def time_groups(self, unit: int) -> list[tuple[Any, ...]]:
        """(src, key, requests, bytes sent, received, timed, duration total, max, first, last)
        per (``unit``-second bucket, status): key = bucket * 1024 + status."""
        d = self.dialect
        status = (
            f"COALESCE(CASE WHEN http_status >= 0 AND http_status < {STATUS_NONE} "
            f"THEN CAST(http_status AS INTEGER) END, {STATUS_NONE})"
        )
        key = f"COALESCE({d.bucket('start', unit)}, -1) * {STATUS_UNITS} + {status}"
        w = " * w" if self.weighted else ""
        return self.all(self.each(
            f"SELECT {{src}}, {key} AS k, {self.count}, TOTAL(body_size{w}), "
            f"TOTAL(request_body_size{w}), COUNT(duration), TOTAL(duration), MAX(duration), "
            "MIN(start), MAX(start) FROM {r} GROUP BY k"
        ))

    def key_groups(self, column: str) -> list[tuple[Any, ...]]:
        """Per lookup id of ``column`` (``path`` or ``route``) and latency bucket:
        (src, key, requests, bytes, timed, duration total, 404s, 5xx).

        For ``path``, key = id * 512 + (no route) * 256 + bucket; for ``route`` (rows with a
        route only), key = id * 256 + bucket. Bucket 255: no duration.
        """
        bucket = f"COALESCE({bucket_sql('duration')}, {UNTIMED})"
        if column == "path":
            key = f"COALESCE(path, 0) * 512 + (route IS NULL) * 256 + {bucket}"
            where, files = "1", self.files
        else:
            key = f"route * 256 + {bucket}"
            where, files = "route IS NOT NULL", [f for f in self.files if "route" in f.columns]
        w = " * w" if self.weighted else ""
        return self.all(self.each(
            f"SELECT {{src}}, {key} AS k, {self.count}, TOTAL(body_size{w}), COUNT(duration), "
            f"TOTAL(duration), TOTAL((http_status = 404){w}), TOTAL((http_status >= 500 AND "
            f"http_status < 600){w}) FROM {{r}} WHERE {where} GROUP BY k",
            files,
        ))

    def grouped(self, column: str) -> list[tuple[Any, Any, float]]:
        """(src, value, requests) per value of one column (a lookup id, or text)."""
        return self.all(self.each(
            f"SELECT {{src}}, {column} AS k, {self.count} FROM {{r}} GROUP BY k"
        ))

    def visitor_groups(self, unit: int) -> None:
        """Requests per (``unit`` bucket, visitor, client address) into ``temp.v``, which
        :meth:`visitors` and :meth:`clients` read."""
        d = self.dialect
        same = self.visitor_column == "client_ip"
        visitor = "client_ip" if same else "visitor"
        group = "k, client_ip" if same else "k, visitor, client_ip"
        self.conn.execute("DROP TABLE IF EXISTS temp.v")
        sql = "CREATE TEMP TABLE v AS " + self.each(
            f"SELECT {d.bucket('start', unit)} AS k, {visitor} AS visitor, client_ip, "
            f"{self.count} AS n FROM {{r}} GROUP BY {group}"
        )
        try:
            self.conn.execute(sql)
        except sqlite3.DatabaseError as error:
            raise ReportError(f"cannot read {', '.join(map(display, self.paths))}: {error}") from None

    def visitors(self) -> tuple[int, list[tuple[Any, int, float]]]:
        """Distinct visitors in the window, and (bucket, visitors, requests) per bucket."""
        total = self.all("SELECT COUNT(DISTINCT visitor) FROM temp.v")[0][0]
        per = self.all(
            "SELECT k, COUNT(DISTINCT visitor), TOTAL(n) FROM temp.v WHERE k IS NOT NULL "
            "GROUP BY k ORDER BY k"
        )
        return total, per

    def clients(self, limit: int) -> tuple[int, list[tuple[Any, float]]]:
        """Distinct client addresses, and the ``limit`` sending the most requests."""
        count = self.all("SELECT COUNT(DISTINCT client_ip) FROM temp.v")[0][0]
        top = self.all(
            "SELECT client_ip, TOTAL(n) AS c FROM temp.v WHERE client_ip IS NOT NULL "
            "GROUP BY client_ip ORDER BY c DESC, client_ip LIMIT ?", (int(limit),)
        )
        return count, top

    def durations_in(
        self,
        buckets: Iterable[int],
        keyed: dict[str, Iterable[tuple[int, int, int]]],
    ) -> list[tuple[Any, ...]]:
        """(src, path, route, no route, bucket, duration) of the rows in the given latency
        buckets: ``buckets`` for every row, and ``keyed["path"]``/``["route"]``/``["plain"]``
        (src, id, bucket) for the rows of one path, route, or path without a route."""
        bucket = bucket_sql("duration")
        conditions = []
        wanted = sorted({int(b) for b in buckets})
        if wanted:
            conditions.append(f"b IN ({', '.join(map(str, wanted))})")
        per_file: dict[int, list[str]] = {f.index: list(conditions) for f in self.files}
        for kind, column, extra in (("path", "path", ""), ("route", "route", ""),
                                    ("plain", "path", " AND route IS NULL")):
            by_src: dict[int, set[int]] = {}
            for src, ident, b in keyed.get(kind, ()):
                by_src.setdefault(int(src), set()).add(int(ident) * BUCKET_UNITS + int(b))
            for src, keys in by_src.items():
                if src in per_file:
                    per_file[src].append(
                        f"({column} * {BUCKET_UNITS} + b IN ({', '.join(map(str, sorted(keys)))})"
                        f"{extra})"
                    )
        chosen = [f for f in self.files if per_file[f.index]]
        if not chosen:
            return []
        parts = []
        for f in chosen:
            parts.append(
                f"SELECT {f.index}, path, route, route IS NULL, b, duration FROM "
                f"(SELECT path, route, duration, {bucket} AS b FROM r{f.index} "
                f"WHERE duration IS NOT NULL) AS t WHERE " + " OR ".join(per_file[f.index])
            )
        return self.all("\nUNION ALL\n".join(parts))

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
