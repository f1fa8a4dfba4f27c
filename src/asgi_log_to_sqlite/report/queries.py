"""The SQL behind a report: every aggregate is computed inside SQLite, never row by row in Python.

Several log files (a live log and its rotated predecessors) are read as one: each file is
attached read-only to an in-memory connection, and temporary views put their ``requests`` rows
(``temp.r``) and their lookup tables (``temp.n_paths``...) side by side with a ``src`` column.
Lookup ids are only meaningful inside their own file, so queries group by ``(src, id)`` first,
which is cheap integer work, then join the names and group again by name: a path logged in two
files is counted once, with both files' requests.

Percentiles use the nearest-rank definition: for ``n`` durations sorted ascending, the p-th
percentile is the value at rank ``ceil(p / 100 * n)`` (1-based). One window-function query sorts
the durations once for p50, p95 and p99.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PERCENTILES", "LogSet", "ReportError", "Window", "rank"]

PERCENTILES = (50, 95, 99)
# Above this many timed requests, percentiles are found from a sample's brackets (still exact).
SAMPLED_PERCENTILES_FROM = 200_000
PERCENTILE_SAMPLE = 20_000

# Columns a report reads from ``requests``; a column a file lacks (older schema) reads as NULL.
_COLUMNS = (
    "start",
    "method",
    "path",
    "user_agent",
    "referer",
    "http_status",
    "client_ip",
    "duration",
    "body_size",
    "host",
    "request_body_size",
)
# Lookup columns -> lookup table.
LOOKUPS = {"path": "paths", "user_agent": "user_agents", "referer": "referers", "host": "hosts"}
# A pseudonymous visitor column, if the schema has one, is preferred to the client address.
_VISITOR_COLUMNS = ("visitor", "visitor_hash", "visitor_id")
_REQUIRED = {"start", "path", "http_status", "duration"}


def rank(p: int, n: int) -> int:
    """The nearest rank of the p-th percentile among n values: ceil(p * n / 100), exactly."""
    return max(1, (p * n + 99) // 100)


class ReportError(Exception):
    """A log cannot be reported on (missing, not a log database...); the message says why."""


@dataclass(frozen=True)
class Window:
    """The time range a report covers: unix seconds, either end open (None)."""

    since: float | None = None
    until: float | None = None

    def sql(self) -> str:
        parts = []
        if self.since is not None:
            parts.append(f"start >= {float(self.since)!r}")
        if self.until is not None:
            parts.append(f"start < {float(self.until)!r}")
        return " AND ".join(parts) or "1"


def _uri(path: str) -> str:
    return "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"


class LogSet:
    """One or more log databases opened read-only and queried as one log."""

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        window: Window | None = None,
        weighted: bool = True,
    ):
        """``weighted=False`` counts rows as they are, for a window the summary found unsampled:
        weighting every row by its sample rate costs about a fifth of a report's time."""
        if not paths:
            raise ReportError("no log database given")
        self.paths = [os.fspath(p) for p in paths]
        self.window = window or Window()
        self.weighted = weighted
        self._count = "TOTAL(w)" if weighted else "COUNT(*)"
        self._times_w = " * w" if weighted else ""
        self.conn = sqlite3.connect(":memory:", uri=True)
        # Sorting and grouping a million rows: in memory, with SQLite's helper threads.
        self.conn.execute("PRAGMA temp_store=MEMORY")
        self.conn.execute("PRAGMA threads=4")
        try:
            self._attach()
        except BaseException:
            self.conn.close()
            raise

    # ---- opening ---------------------------------------------------------------------------
    def _attach(self) -> None:
        columns_per_file: list[set[str]] = []
        tables_per_file: list[set[str]] = []
        for i, path in enumerate(self.paths):
            if not os.path.exists(path):
                raise ReportError(f"{path}: no such file")
            if os.path.isdir(path):
                raise ReportError(f"{path}: is a folder, not a log database")
            try:
                self.conn.execute(f"ATTACH DATABASE ? AS db{i}", (_uri(path),))
                self.conn.execute(f"PRAGMA db{i}.cache_size=-65536")
                tables = {
                    row[0]
                    for row in self.conn.execute(
                        f"SELECT name FROM db{i}.sqlite_master WHERE type IN ('table', 'view')"
                    )
                }
                columns = {row[1] for row in self.conn.execute(f"PRAGMA db{i}.table_info(requests)")}
            except sqlite3.OperationalError as error:
                if "too many attached" in str(error):
                    raise ReportError(
                        f"too many log files at once ({len(self.paths)}); "
                        f"this SQLite reads at most {i} together"
                    ) from None
                raise ReportError(f"{path}: cannot be read as a SQLite database ({error})") from None
            except sqlite3.DatabaseError as error:
                raise ReportError(f"{path}: not a SQLite database ({error})") from None
            if not _REQUIRED <= columns:
                raise ReportError(
                    f"{path}: not an asgi-log-to-sqlite log (no 'requests' table with "
                    "start, path, http_status and duration columns)"
                )
            columns_per_file.append(columns)
            tables_per_file.append(tables)
        # A visitor hash (privacy option) counts visitors where it was recorded; rows without
        # one (the option off, older rows) fall back to the client address.
        hashed = next((c for c in _VISITOR_COLUMNS if any(c in cols for cols in columns_per_file)), None)
        for i, columns in enumerate(columns_per_file):
            exprs = [f"{i} AS src", "rowid AS rid"] + [
                (c if c in columns else f"NULL AS {c}") for c in _COLUMNS
            ]
            if hashed and hashed in columns:
                exprs.append(f"COALESCE({hashed}, client_ip) AS visitor")
            else:
                exprs.append("client_ip AS visitor" if "client_ip" in columns else "NULL AS visitor")
            # A row recorded with ``sample`` stands for 1/sample_rate requests: counts and
            # bytes are scaled by it (as Datasette's canned queries are), durations are not.
            if self.weighted and "sample_rate" in columns:
                exprs.append("1.0 / COALESCE(NULLIF(sample_rate, 0), 1) AS w")
            else:
                exprs.append("1 AS w")
            self.conn.execute(
                f"CREATE TEMP VIEW r{i} AS SELECT {', '.join(exprs)} "
                f"FROM db{i}.requests WHERE {self.window.sql()}"
            )
        for table in LOOKUPS.values():
            parts = [
                f"SELECT {i} AS src, id, name FROM db{i}.[{table}]"
                if table in tables
                else "SELECT NULL AS src, NULL AS id, NULL AS name WHERE 0"
                for i, tables in enumerate(tables_per_file)
            ]
            self.conn.execute(f"CREATE TEMP VIEW n_{table} AS " + " UNION ALL ".join(parts))
        self.visitor_column = hashed or "client_ip"

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> LogSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def each(self, template: str) -> str:
        """``template`` (which reads ``{r}``, ``{src}``) once per file, joined by UNION ALL.

        SQLite cannot flatten a compound view into an aggregate query and would copy every
        row first; aggregating inside each file's branch keeps the work a plain scan.
        """
        return "\nUNION ALL\n".join(
            template.format(r=f"r{i}", src=i) for i in range(len(self.paths))
        )

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as error:
            raise ReportError(f"cannot read {', '.join(self.paths)}: {error}") from None

    # ---- whole-log figures -----------------------------------------------------------------
    def total_rows(self) -> int:
        """Rows in all files, ignoring the time window (an empty log is an error for reports)."""
        return sum(self._all(f"SELECT COUNT(*) FROM db{i}.requests")[0][0] for i in range(len(self.paths)))

    def summary(self) -> dict[str, Any]:
        """Figures that need the whole window at once: distinct visitors, first and last."""
        parts = self.each(
            f"SELECT {self._count} AS n, MIN(start) AS first, MAX(start) AS last, "
            "TOTAL(duration) AS d, MAX(duration) AS dmax, COUNT(duration) AS dn, MAX(w) AS wmax "
            "FROM {r}"
        )
        row = self._all(
            "SELECT CAST(ROUND(TOTAL(n)) AS INTEGER), MIN(first), MAX(last), SUM(d), MAX(dmax), "
            f"SUM(dn), MAX(wmax) FROM ({parts})"
        )[0]
        sampled = row[6] is not None and row[6] > 1
        visitors = self._all(
            "SELECT COUNT(DISTINCT visitor) FROM ("
            + self.each("SELECT DISTINCT visitor FROM {r}")
            + ")"
        )[0][0]
        row = (row[0], visitors, row[1], row[2], (row[3] / row[5]) if row[5] else None, row[4], row[5])
        return {
            "requests": row[0],
            "visitors": row[1],
            "first": row[2],
            "last": row[3],
            "avg_duration": row[4],
            "max_duration": row[5],
            "timed": row[6],
            "visitor_column": self.visitor_column,
            "sampled": sampled,
        }

    def percentiles(self, timed: int) -> dict[str, float | None]:
        """Exact nearest-rank p50/p95/p99 of ``duration`` over the window.

        Sorting every duration is the costliest step of a report on a big log, so a large log
        takes a detour that is still exact: a sorted 1-in-N sample brackets each rank between
        two durations ``lo`` and ``hi``; one scan counts the durations below each ``lo``; one
        more sorts only the durations inside the brackets and picks the rank. If a bracket
        missed its rank (an unlucky sample), the full sort answers.
        """
        if not timed:
            return {f"p{p}": None for p in PERCENTILES}
        ranks = {p: rank(p, timed) for p in PERCENTILES}
        durations = self.each("SELECT duration FROM {r} WHERE duration IS NOT NULL")
        if timed > SAMPLED_PERCENTILES_FROM:
            found = self._bracketed(ranks, timed)
            if found is not None:
                return found
        rows = dict(
            self._all(
                f"""SELECT rn, duration FROM (
                       SELECT duration, ROW_NUMBER() OVER (ORDER BY duration) AS rn
                       FROM ({durations}))
                   WHERE rn IN (?, ?, ?)""",
                [ranks[p] for p in PERCENTILES],
            )
        )
        return {f"p{p}": rows.get(ranks[p]) for p in PERCENTILES}

    def _bracketed(self, ranks: dict[int, int], timed: int) -> dict[str, float | None] | None:
        step = max(1, timed // PERCENTILE_SAMPLE)
        sample = [
            row[0]
            for row in self._all(
                "SELECT duration FROM ("
                + self.each(f"SELECT duration FROM {{r}} WHERE duration IS NOT NULL AND rid % {step} = 0")
                + ") ORDER BY duration"
            )
        ]
        m = len(sample)
        if m < 20:
            return None
        brackets = []
        for p in PERCENTILES:
            share = ranks[p] / timed
            # Six standard deviations of the sample's rank, plus slack: misses are very rare.
            margin = int(6 * (m * share * (1 - share)) ** 0.5) + 5
            at = int(share * m)
            lo = sample[at - margin] if at - margin >= 0 else None
            hi = sample[at + margin] if at + margin < m else None
            brackets.append((p, lo, hi))
        durations = self.each("SELECT duration FROM {r} WHERE duration IS NOT NULL")
        below = self._all(
            "SELECT "
            + ", ".join(
                "0" if lo is None else f"COALESCE(SUM(duration < {float(lo)!r}), 0)"
                for _, lo, _ in brackets
            )
            + f" FROM ({durations})"
        )[0]
        bounds = ", ".join(
            f"({i}, {float(lo) if lo is not None else float('-inf')!r}, "
            f"{float(hi) if hi is not None else float('inf')!r}, {ranks[p] - below[i]})"
            for i, (p, lo, hi) in enumerate(brackets)
        ).replace("inf", "9e999")
        rows = self._all(
            f"""WITH b(w, lo, hi, want) AS (VALUES {bounds}),
                    inside AS (SELECT b.w AS w, b.want AS want, d.duration AS duration,
                                      COUNT(*) OVER (PARTITION BY b.w) AS n,
                                      ROW_NUMBER() OVER (PARTITION BY b.w ORDER BY d.duration) AS rn
                               FROM ({durations}) AS d
                               JOIN b ON d.duration >= b.lo AND d.duration <= b.hi)
                SELECT w, duration, n, want FROM inside WHERE rn = want"""
        )
        found = {w: duration for w, duration, n, want in rows if 1 <= want <= n}
        if len(found) != len(brackets):
            return None
        return {f"p{p}": found[i] for i, (p, _, _) in enumerate(brackets)}

    def breakdown(self, width: int) -> list[tuple[Any, ...]]:
        """Requests and bytes per (time bucket of ``width`` s, status, method), in one scan.

        Timeline, status classes, statuses and methods are all sums over these groups (a few
        thousand at most), so the rows are read once for the four of them.
        """
        return self._all(
            self.each(
                f"SELECT CAST(start / {int(width)} AS INTEGER) * {int(width)} AS bucket, "
                f"http_status, method, {self._count}, TOTAL(body_size{self._times_w}), "
                f"TOTAL(request_body_size{self._times_w}) "
                "FROM {r} GROUP BY bucket, http_status, method"
            )
        )

    # ---- lookup columns --------------------------------------------------------------------
    def by_name(
        self,
        column: str,
        where: str = "1",
        limit: int | None = 10,
        order: str = "requests DESC",
        having: str = "1",
        skip_null: bool = True,
        detail: bool = True,
    ) -> list[dict[str, Any]]:
        """Requests, bytes and time per name of a lookup column, across every file.

        Grouping by ``(src, id)`` first keeps the heavy part to integers; names are joined on
        the (few) groups, then grouped again so that one name from several files adds up.
        """
        table = LOOKUPS[column]
        null_filter = f" AND {column} IS NOT NULL" if skip_null else ""
        tail = f" LIMIT {int(limit)}" if limit else ""
        # Only what is asked for: SQLite sorts the rows to group them, and narrower rows sort
        # faster.
        measures = (
            f"TOTAL(body_size{self._times_w}) AS b, TOTAL(duration) AS d, "
            f"COUNT(duration) AS dc, TOTAL((http_status = 404){self._times_w}) AS nf"
            if detail
            else "0 AS b, 0 AS d, 0 AS dc, 0 AS nf"
        )
        inner = (
            f"SELECT {{src}} AS src, {column} AS k, {self._count} AS c, {measures} "
            f"FROM {{r}} WHERE ({where}){null_filter} GROUP BY k"
        )
        rows = self._all(
            f"""SELECT n.name AS name, CAST(ROUND(SUM(g.c)) AS INTEGER) AS requests,
                       SUM(g.b) AS bytes, SUM(g.d) AS total_duration, SUM(g.dc) AS timed,
                       CAST(ROUND(SUM(g.nf)) AS INTEGER) AS not_found
                FROM ({self.each(inner)}) AS g
                LEFT JOIN n_{table} AS n ON n.src = g.src AND n.id = g.k
                GROUP BY n.name
                HAVING {having}
                ORDER BY {order}, n.name{tail}"""
        )
        return [
            {
                "name": name,
                "requests": requests,
                "bytes": round(b or 0),
                "avg_duration": (d / dc) if dc else None,
                "timed": dc,
                "not_found": nf,
            }
            for name, requests, b, d, dc, nf in rows
        ]

    def path_percentiles(self, names: Sequence[str]) -> dict[str, dict[str, float | None]]:
        """Nearest-rank p50/p95/p99 per path name (a few names: the slowest endpoints)."""
        if not names:
            return {}
        marks = ", ".join("?" for _ in names)
        ids = self._all(f"SELECT src, id, name FROM n_paths WHERE name IN ({marks})", list(names))
        if not ids:
            return {}
        # Each file's branch picks its rows by integer id and tags them with the name's
        # position in ``names`` (a CASE over a few ids), so no join runs over the rows.
        position = {name: i for i, name in enumerate(names)}
        per_file: dict[int, list[str]] = {}
        for src, id_, name in ids:
            per_file.setdefault(src, []).append(f"WHEN {int(id_)} THEN {position[name]}")
        branches = "\nUNION ALL\n".join(
            f"SELECT CASE path {' '.join(whens)} END AS k, duration FROM r{src} "
            f"WHERE k IS NOT NULL AND duration IS NOT NULL"
            for src, whens in sorted(per_file.items())
        )
        # ceil(p * n / 100) in integer arithmetic: SQLite may lack its math functions.
        ranks = " OR ".join(f"rn = MAX(1, ({p} * n + 99) / 100)" for p in PERCENTILES)
        found = self._all(
            f"""SELECT k, rn, n, duration FROM (
                    SELECT k, duration,
                           ROW_NUMBER() OVER (PARTITION BY k ORDER BY duration) AS rn,
                           COUNT(*) OVER (PARTITION BY k) AS n
                    FROM ({branches}))
                WHERE {ranks}"""
        )
        rows = [(names[k], rn, n, duration) for k, rn, n, duration in found]
        out: dict[str, dict[str, float | None]] = {
            name: {f"p{p}": None for p in PERCENTILES} for name in names
        }
        for name, rn, n, duration in rows:
            for p in PERCENTILES:
                if rn == rank(p, n):
                    out[name][f"p{p}"] = duration
        return out

