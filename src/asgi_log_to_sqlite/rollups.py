"""Hourly and daily rollups per route: the traffic figures that outlive pruned rows.

For every hour and every route, a row of ``rollups`` keeps the requests, their status classes,
404s, bytes both ways and time taken, and ``rollup_latency`` keeps how many durations fell in
each fixed latency bucket (histogram.py), from which percentiles are read within 5%. A request
with a route template counts under its route; one without (an app with no router) under its
path. Daily rows (``period`` 86400) add up the hours of each UTC day, so that a report over a
year reads a few thousand rows rather than a hundred thousand.

They are kept as batches commit: :func:`add_rows` runs in the transaction that inserted the
rows and adds them to the hourly rollups, with work in proportion to the batch, never a rescan.
Hours reach the daily rows once, when the writer has moved past them ("folding"): the table
``rollups_state`` says up to which hour that has happened (``folded_until``), and a row that
arrives late for an hour already folded is added to both. A reader takes a day from its daily
row only when the whole day is folded.

``merge`` adds each file's hourly rollups to the output and folds them; ``prune`` and retention
delete rows and keep rollups. Sampled rows (the ``sample`` option) count for ``1 / sample_rate``
requests, as in reports; ``rows`` keeps the rows themselves, and the latency histogram counts
rows. Requests dated before 1970 or after 9999 are not rolled up.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Any

from .dialect import END_SECOND, SQLITE, Dialect
from .histogram import BUCKETS, LOWER, bounds, bucket_sql, estimate, label

__all__ = [
    "DAY",
    "HOUR",
    "ROLLUP_MEASURES",
    "Accumulator",
    "add_aggregates",
    "add_rows",
    "aggregate_sql",
    "copy_rollups",
    "delete_before",
    "fill_buckets",
    "folded_until",
    "has_rollups",
]

logger = logging.getLogger("asgi_log_to_sqlite")

HOUR = 3600
DAY = 86400

#: Summed columns of ``rollups``, in order, with how two rows add up: "sum" or "max".
ROLLUP_MEASURES: dict[str, str] = {
    "rows": "sum",
    "requests": "sum",
    "status_1xx": "sum",
    "status_2xx": "sum",
    "status_3xx": "sum",
    "status_4xx": "sum",
    "status_5xx": "sum",
    "not_found": "sum",
    "bytes_sent": "sum",
    "bytes_received": "sum",
    "timed": "sum",
    "duration_total": "sum",
    "duration_max": "max",
}
KEY = ("period", "start", "route", "path")
ROLLUP_TABLES = ("rollups", "rollup_latency", "latency_buckets", "rollups_state")

CONFLICT = "(period, start, COALESCE(route, 0), COALESCE(path, 0))"


def fill_buckets(conn: sqlite3.Connection) -> None:
    """The rows of the bucket table Datasette labels the histogram with."""
    conn.executemany(
        "INSERT OR IGNORE INTO latency_buckets (bucket, low, high, mid, label) "
        "VALUES (?, ?, ?, ?, ?)",
        [(b, *bounds(b), estimate(b), label(b)) for b in range(BUCKETS)],
    )


def has_rollups(tables: Iterable[str]) -> bool:
    return {"rollups", "rollup_latency", "rollups_state"} <= set(tables)


# ---- aggregating request rows -----------------------------------------------------------------
# One aggregate per (hour, route or path, latency bucket), grouped on a single integer that packs
# the three: SQLite sorts one integer key about twice as fast as three columns, and this runs
# for every batch the writer commits. k = (hour * 2**28 + id) * 2**8 + bucket, where hour counts
# from 1970, id is 2 * route id + 1 or 2 * path id (ids from 2**27 up are left out: they would
# not fit) and bucket 255 means "no duration". k stays below 2**63: exact in SQLite and in a
# PostgreSQL bigint.
_ID_LIMIT = 2**27
_BUCKET_UNITS = 2**8
_HOUR_UNITS = 2**36
UNTIMED = 255

_ENTRY = f"((k / {_BUCKET_UNITS}) % {2 * _ID_LIMIT})"
#: SQL taking the packed key ``k`` apart: the hour's start, the route, the path, the bucket.
K_START = f"((k / {_HOUR_UNITS}) * {HOUR})"
K_ROUTE = f"(CASE WHEN {_ENTRY} % 2 = 1 THEN {_ENTRY} / 2 END)"
K_PATH = f"(CASE WHEN {_ENTRY} % 2 = 0 AND {_ENTRY} > 0 THEN {_ENTRY} / 2 END)"
K_BUCKET = f"(k % {_BUCKET_UNITS})"


def aggregate_sql(
    source: str, where: str, columns: Iterable[str], dialect: Dialect = SQLITE
) -> str:
    """SELECT k, start, route, path, bucket and the :data:`ROLLUP_MEASURES` of the request rows
    of ``source`` matching ``where``: one row per hour, route or path, and latency bucket.

    Values a column should not hold (text where a number belongs, infinities: a damaged file)
    read as NULL rather than failing the batch or skewing a sum; a column ``source`` lacks (a
    log from before it existed) reads as NULL.
    """
    have = set(columns)

    def col(name: str) -> str:
        return name if name in have else "NULL"

    start, duration, status = col("start"), col("duration"), col("http_status")
    route, path, rate = col("route"), col("path"), col("sample_rate")
    # Comparisons do the cleaning cheaply: text and blobs sort after every number, so
    # "x < 9e999" (9e999 reads as infinity) is false for them as for infinity.
    finite = f"{duration} > -9e999 AND {duration} < 9e999"
    d = f"(CASE WHEN {finite} THEN {duration} END)"
    hour = f"CAST({start} / {HOUR} AS INTEGER)"
    entry = (
        f"(CASE WHEN {route} >= 1 AND {route} < {_ID_LIMIT} THEN CAST({route} AS INTEGER) * 2 + 1"
        f" WHEN {path} >= 1 AND {path} < {_ID_LIMIT} THEN CAST({path} AS INTEGER) * 2 ELSE 0 END)"
    )
    bucket = f"(CASE WHEN {finite} THEN {bucket_sql(duration)} ELSE {UNTIMED} END)"
    k = f"(({hour} * {2 * _ID_LIMIT} + {entry}) * {_BUCKET_UNITS} + {bucket})"
    w = f"(CASE WHEN {rate} > 0 AND {rate} < 1 THEN 1.0 / {rate} ELSE 1 END)"

    def share(condition: str) -> str:
        return f"SUM(CASE WHEN {condition} THEN {w} ELSE 0 END)"

    def size(name: str) -> str:
        value = col(name)
        return dialect.total(f"(CASE WHEN {value} >= 0 AND {value} < 9e18 THEN {value} END) * {w}")

    measures = ", ".join(ROLLUP_MEASURES)
    return f"""SELECT k, {K_START} AS start, {K_ROUTE} AS route, {K_PATH} AS path,
            {K_BUCKET} AS bucket, {measures}
        FROM (SELECT {k} AS k, COUNT(*) AS rows, SUM({w}) AS requests,
            {share(f"{status} BETWEEN 100 AND 199")} AS status_1xx,
            {share(f"{status} BETWEEN 200 AND 299")} AS status_2xx,
            {share(f"{status} BETWEEN 300 AND 399")} AS status_3xx,
            {share(f"{status} BETWEEN 400 AND 499")} AS status_4xx,
            {share(f"{status} BETWEEN 500 AND 599")} AS status_5xx,
            {share(f"{status} = 404")} AS not_found,
            {size("body_size")} AS bytes_sent,
            {size("request_body_size")} AS bytes_received,
            COUNT({d}) AS timed, {dialect.total(d)} AS duration_total, MAX({d}) AS duration_max
        FROM {source}
        WHERE ({where}) AND {start} >= 0 AND {start} < {END_SECOND}
        GROUP BY 1) AS a"""


def _sums(prefix: str = "") -> str:
    return ", ".join(
        f"{'SUM' if how == 'sum' else 'MAX'}({prefix}{m}) AS {m}"
        for m, how in ROLLUP_MEASURES.items()
    )


def _day(start: str) -> str:
    # Rolled-up times are never negative: integer division is the floor.
    return f"(({start}) / {DAY}) * {DAY}"


def _upsert_rows(select: str, dialect: Dialect = SQLITE) -> str:
    """Add rollup rows (``KEY`` and measures, from ``select``) to ``rollups``."""
    names = ", ".join((*KEY, *ROLLUP_MEASURES))
    updates = ", ".join(
        f"{m} = " + (f"rollups.{m} + excluded.{m}" if how == "sum"
                     else dialect.greatest(f"rollups.{m}", f"excluded.{m}"))
        for m, how in ROLLUP_MEASURES.items()
    )
    return (
        f"INSERT INTO rollups ({names}) SELECT {names} FROM ({select}) AS n WHERE true "
        f"ON CONFLICT {CONFLICT} DO UPDATE SET {updates}"
    )


def _upsert_latency(select: str) -> str:
    """Add histogram counts (``period, start, route, path, bucket, count``) to their rollups."""
    return f"""INSERT INTO rollup_latency (rollup, bucket, count)
        SELECT u.id, l.bucket, l.count FROM ({select}) AS l
        JOIN rollups AS u ON u.period = l.period AND u.start = l.start
            AND COALESCE(u.route, 0) = COALESCE(l.route, 0)
            AND COALESCE(u.path, 0) = COALESCE(l.path, 0)
        WHERE true
        ON CONFLICT (rollup, bucket) DO UPDATE SET count = rollup_latency.count + excluded.count"""


# ---- the writer's part ---------------------------------------------------------------------------
BATCH = "temp.rollup_batch"
_BATCH_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS rollup_batch "
    f"(k INTEGER, start INTEGER, route INTEGER, path INTEGER, bucket INTEGER, "
    f"{', '.join(ROLLUP_MEASURES)})"
)
# Hours of the batch into the hourly rollups: the buckets added up (grouping on k without its
# bucket, one integer); then its histogram counts, one per batch row.
_HOURS = _upsert_rows(
    f"SELECT {HOUR} AS period, MIN(start) AS start, MIN(route) AS route, MIN(path) AS path, "
    f"{_sums()} FROM {BATCH} GROUP BY k / {_BUCKET_UNITS}"
)
_HOURS_LATENCY = _upsert_latency(
    f"SELECT {HOUR} AS period, start, route, path, bucket, rows AS count "
    f"FROM {BATCH} WHERE bucket < {UNTIMED}"
)
# Late rows (hours already folded) go to their days too.
_LATE_DAYS = _upsert_rows(
    f"SELECT {DAY} AS period, {_day('start')} AS start, route, path, {_sums()} "
    f"FROM {BATCH} WHERE start < :folded GROUP BY {_day('start')}, route, path"
)
_LATE_DAYS_LATENCY = _upsert_latency(
    f"SELECT {DAY} AS period, {_day('start')} AS start, route, path, bucket, SUM(rows) AS count "
    f"FROM {BATCH} WHERE start < :folded AND bucket < {UNTIMED} "
    f"GROUP BY {_day('start')}, route, path, bucket"
)
# Folding: the hourly rollups of [:low, :high) into their days.
_FOLD = _upsert_rows(
    f"SELECT {DAY} AS period, {_day('start')} AS start, route, path, {_sums()} FROM rollups "
    f"WHERE period = {HOUR} AND start >= :low AND start < :high "
    f"GROUP BY {_day('start')}, route, path"
)
_FOLD_LATENCY = _upsert_latency(
    f"SELECT {DAY} AS period, {_day('u.start')} AS start, u.route AS route, u.path AS path, "
    f"l.bucket AS bucket, SUM(l.count) AS count "
    f"FROM rollups AS u JOIN rollup_latency AS l ON l.rollup = u.id "
    f"WHERE u.period = {HOUR} AND u.start >= :low AND u.start < :high "
    f"GROUP BY {_day('u.start')}, u.route, u.path, l.bucket"
)
_FILL: dict[tuple[str, ...], str] = {}
_LOWER = LOWER
_INF = math.inf
_NUMBERS = (int, float)


def add_rows(
    conn: sqlite3.Connection, first_rowid: int, last_rowid: int, now: float | None = None
) -> None:
    """Add the ``requests`` rows with ``first_rowid <= rowid <= last_rowid`` to the rollups.

    Meant to run inside the transaction that inserted those rows, so rows and rollups commit
    together: one grouped read of the new rows into a temporary table, then a few statements
    over its far fewer rows. It never fails that transaction: if the rollups cannot be updated
    (tables dropped by hand, a disk error), its changes are rolled back to a savepoint, a
    warning is logged, and the rows are still written.
    """
    if last_rowid < first_rowid:
        return
    conn.execute("SAVEPOINT rollups")
    try:
        columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(requests)"))
        fill = _FILL.get(columns)
        if fill is None:
            fill = _FILL[columns] = f"INSERT INTO {BATCH} " + aggregate_sql(
                "requests", "rowid BETWEEN :first AND :last", columns
            )
        conn.execute(_BATCH_TABLE)
        conn.execute(f"DELETE FROM {BATCH}")
        conn.execute(fill, {"first": int(first_rowid), "last": int(last_rowid)})
        _add_batch(conn, now)
    except sqlite3.Error as error:
        conn.execute("ROLLBACK TO rollups")
        logger.warning("asgi-log-to-sqlite: rollups not updated for rows %d-%d: %s",
                       first_rowid, last_rowid, error)
    finally:
        conn.execute("RELEASE rollups")


class Accumulator:
    """The writer's rollups, kept in memory between commits and written every
    :data:`WRITE_EVERY` seconds (and before the file is closed or rotated).

    Why not with every batch: a batch of 2,000 requests spread over 500 paths and the latency
    buckets makes about 1,000 rollup rows to upsert, nearly one per request; five seconds of
    traffic make a few times fewer, and the cost of rollups to the writer falls from about 5 µs
    to 1 µs a row. Rows are never held back, only their sums: a writer killed outright loses up
    to five seconds of rollups (its rows are all stored). A batch's sums join the accumulator
    only once that batch is committed.
    """

    def __init__(self) -> None:
        self.groups: dict[int, list[Any]] = {}
        self.written_at = time.monotonic()

    def __len__(self) -> int:
        return len(self.groups)

    def due(self, more: int = 0) -> bool:
        return bool(self.groups or more) and (
            time.monotonic() - self.written_at >= WRITE_EVERY
            or len(self.groups) + more >= MAX_GROUPS
        )

    def rows(self, batch: list[tuple[Any, ...]] = ()) -> list[tuple[Any, ...]]:  # type: ignore[assignment]
        """The accumulated sums with ``batch``'s added, as rows to write (nothing changes)."""
        merged = {k: list(v) for k, v in self.groups.items()}
        _merge(merged, batch)
        return [tuple(v) for v in merged.values()]

    def add(self, batch: list[tuple[Any, ...]]) -> None:
        """A committed batch's sums, kept for the next write."""
        _merge(self.groups, batch)

    def written(self) -> None:
        """Everything was written, and committed: start again from nothing."""
        self.groups = {}
        self.written_at = time.monotonic()


def _merge(groups: dict[int, list[Any]], rows: list[tuple[Any, ...]]) -> None:
    last = 4 + len(ROLLUP_MEASURES)  # duration_max: the one measure that is a maximum
    for row in rows:
        found = groups.get(row[0])
        if found is None:
            groups[row[0]] = list(row)
            continue
        for i in range(5, last):
            found[i] += row[i]
        if row[last] is not None and (found[last] is None or row[last] > found[last]):
            found[last] = row[last]


#: Seconds a writer keeps rollup sums in memory at most, and groups at most.
WRITE_EVERY = 5.0
MAX_GROUPS = 50_000


def add_aggregates(
    conn: sqlite3.Connection, rows: list[tuple[Any, ...]], now: float | None = None
) -> None:
    """Add aggregate rows (as :func:`aggregate_columns` makes them) to the rollups, in the
    caller's transaction; a failure is rolled back to a savepoint and logged, never raised."""
    if not rows:
        return
    conn.execute("SAVEPOINT rollups")
    try:
        conn.execute(_BATCH_TABLE)
        conn.execute(f"DELETE FROM {BATCH}")
        marks = ", ".join("?" for _ in range(5 + len(ROLLUP_MEASURES)))
        conn.executemany(f"INSERT INTO {BATCH} VALUES ({marks})", rows)
        _add_batch(conn, now)
    except sqlite3.Error as error:
        conn.execute("ROLLBACK TO rollups")
        logger.warning("asgi-log-to-sqlite: %d rollup sums not written: %s", len(rows), error)
    finally:
        conn.execute("RELEASE rollups")


def aggregate_columns(columns: dict[str, Sequence[Any]]) -> list[tuple[Any, ...]]:
    """The rows :func:`aggregate_sql` makes of these requests (``k, start, route, path, bucket``
    and the measures), from Python values. Values are cleaned by the same rules: a duration
    that is not a finite number is untimed, a size outside ``[0, 9e18)`` adds nothing, a route
    or path id outside ``[1, 2**27)`` counts as neither, a start outside 1970-9999 is left out.
    """
    starts = columns.get("start")
    if not starts:
        return []
    nothing = [None] * len(starts)

    def column(name: str) -> Sequence[Any]:
        return columns.get(name) or nothing

    aggregates: dict[int, list[Any]] = {}
    get = aggregates.get
    lower, inf, limit, number = _LOWER, _INF, _ID_LIMIT, _NUMBERS
    for start, route, path, status, duration, sent, received, rate in zip(
        starts, column("route"), column("path"), column("http_status"), column("duration"),
        column("body_size"), column("request_body_size"), column("sample_rate"), strict=True,
    ):
        if type(start) not in number or not 0 <= start < END_SECOND:  # NaN fails it too
            continue
        if type(route) in number and 1 <= route < limit:
            entry = int(route) * 2 + 1
        elif type(path) in number and 1 <= path < limit:
            entry = int(path) * 2
        else:
            entry = 0
        timed = type(duration) in number and -inf < duration < inf
        bucket = max(0, bisect_right(lower, duration) - 1) if timed else UNTIMED
        if rate is None or rate == 1.0:
            w = 1
        else:
            w = 1.0 / rate if type(rate) in number and 0 < rate < 1 else 1
        k = ((int(start) // HOUR) * 2 * limit + entry) * _BUCKET_UNITS + bucket
        found = get(k)
        if found is None:
            found = aggregates[k] = [k, (int(start) // HOUR) * HOUR, entry, bucket,
                                     0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0, 0.0, None]
        found[4] += 1
        found[5] += w
        if type(status) in number:
            if 200 <= status <= 299:
                found[7] += w
            elif 400 <= status <= 499:
                found[9] += w
                if status == 404:
                    found[11] += w
            elif 300 <= status <= 399:
                found[8] += w
            elif 500 <= status <= 599:
                found[10] += w
            elif 100 <= status <= 199:
                found[6] += w
        if type(sent) in number and 0 <= sent < 9e18:
            found[12] += sent * w
        if type(received) in number and 0 <= received < 9e18:
            found[13] += received * w
        if timed:
            found[14] += 1
            found[15] += duration
            if found[16] is None or duration > found[16]:
                found[16] = duration
    out = []
    for k, start, entry, bucket, *measures in aggregates.values():
        route = entry // 2 if entry % 2 == 1 else None
        path = entry // 2 if entry % 2 == 0 and entry > 0 else None
        out.append((k, start, route, path, bucket, *measures))
    return out


def _add_batch(conn: sqlite3.Connection, now: float | None) -> None:
    """The rows of the batch table into the hourly rollups; late hours into their days; then
    fold the hours the batch shows are over."""
    low, high = conn.execute(f"SELECT MIN(start), MAX(start) FROM {BATCH}").fetchone()
    if low is None:
        return
    conn.execute(_HOURS)
    conn.execute(_HOURS_LATENCY)
    folded = folded_until(conn)
    if folded is None:
        folded = low  # a new file: nothing folded yet
        _set_folded(conn, folded)
    if low < folded:
        conn.execute(_LATE_DAYS, {"folded": folded})
        conn.execute(_LATE_DAYS_LATENCY, {"folded": folded})
    # The hours before the batch's newest are over (never past the present hour: a row from
    # a wrong clock must not fold hours that are still coming).
    present = int((time.time() if now is None else now) // HOUR) * HOUR
    fold(conn, folded, min(high, max(present, folded)))


def folded_until(conn: sqlite3.Connection, schema: str = "main") -> int | None:
    """The start of the first hour not yet added to the daily rollups (None: none was)."""
    row = conn.execute(
        f"SELECT value FROM {schema}.rollups_state WHERE name = 'folded_until'"
    ).fetchone()
    return row[0] if row and isinstance(row[0], int) else None


def _set_folded(conn: sqlite3.Connection, value: int) -> None:
    conn.execute(
        "INSERT INTO rollups_state (name, value) VALUES ('folded_until', ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (int(value),),
    )


def fold(conn: sqlite3.Connection, low: int, high: int) -> None:
    """Add the hourly rollups of ``[low, high)`` to the daily ones; hours are folded up to
    ``high`` after. The caller holds the transaction."""
    if high <= low:
        return
    conn.execute(_FOLD, {"low": low, "high": high})
    conn.execute(_FOLD_LATENCY, {"low": low, "high": high})
    _set_folded(conn, high)


# ---- merge and prune ----------------------------------------------------------------------------
def copy_rollups(
    src: sqlite3.Connection,
    out: sqlite3.Connection,
    routes: dict[int, int],
    paths: dict[int, int],
) -> int:
    """Add ``src``'s hourly rollups to ``out``'s, route and path ids translated by the maps
    (source id -> output id), and fold every hour copied into its day; hourly rows copied.
    The caller holds ``out``'s transaction. The source's daily rows are not read: its hours
    make them again, so a day is never counted twice."""
    measures = ", ".join(ROLLUP_MEASURES)
    out.execute("DROP TABLE IF EXISTS temp.incoming_rollups")
    out.execute("DROP TABLE IF EXISTS temp.incoming_latency")
    out.execute(f"CREATE TEMP TABLE incoming_rollups (id, start, route, path, {measures})")
    out.execute("CREATE TEMP TABLE incoming_latency (rollup, bucket, count)")

    def mapped(chunk: list[Sequence[Any]]) -> Iterable[Sequence[Any]]:
        for rid, start, route, path, *values in chunk:
            # A name missing from the source's lookup table cannot be carried over: the rollup
            # is kept without it rather than dropped.
            route = routes.get(route) if route is not None else None
            path = paths.get(path) if path is not None and route is None else None
            yield (rid, start, route, path, *values)

    marks = ", ".join("?" for _ in range(4 + len(ROLLUP_MEASURES)))
    copied = 0
    cursor = src.execute(
        f"SELECT id, start, route, path, {measures} FROM rollups WHERE period = {HOUR}"
    )
    while chunk := cursor.fetchmany(5000):
        out.executemany(f"INSERT INTO temp.incoming_rollups VALUES ({marks})", mapped(chunk))
        copied += len(chunk)
    cursor = src.execute(
        f"SELECT l.rollup, l.bucket, l.count FROM rollup_latency AS l "
        f"JOIN rollups AS u ON u.id = l.rollup WHERE u.period = {HOUR}"
    )
    while chunk := cursor.fetchmany(20000):
        out.executemany("INSERT INTO temp.incoming_latency VALUES (?, ?, ?)", chunk)
    low, high = out.execute("SELECT MIN(start), MAX(start) FROM temp.incoming_rollups").fetchone()
    if low is not None:
        rows = (
            f"SELECT {{period}} AS period, {{start}} AS start, route, path, {_sums()} "
            f"FROM temp.incoming_rollups WHERE {{where}} GROUP BY {{start}}, route, path"
        )
        latency = (
            "SELECT {period} AS period, {start} AS start, i.route AS route, "
            "i.path AS path, l.bucket AS bucket, SUM(l.count) AS count "
            "FROM temp.incoming_latency AS l JOIN temp.incoming_rollups AS i ON i.id = l.rollup "
            "WHERE {where} GROUP BY {start}, i.route, i.path, l.bucket"
        )
        hours = {"period": HOUR, "start": "start", "where": "1"}
        out.execute(_upsert_rows(rows.format(**hours)))
        out.execute(_upsert_latency(latency.format(**{**hours, "start": "i.start"})))
        folded = folded_until(out)
        if folded is None:
            folded = low
        elif low < folded:  # hours the output has folded already: into their days now
            late = {"period": DAY, "where": f"start < {int(folded)}"}
            out.execute(_upsert_rows(rows.format(**late, start=_day("start"))))
            out.execute(_upsert_latency(latency.format(
                period=DAY, start=_day("i.start"), where=f"i.start < {int(folded)}")))
        _set_folded(out, folded)
        fold(out, folded, max(folded, high + HOUR))
    out.execute("DROP TABLE temp.incoming_rollups")
    out.execute("DROP TABLE temp.incoming_latency")
    return copied


def delete_before(conn: sqlite3.Connection, cutoff: float) -> int:
    """Delete the rollups of periods that ended at or before ``cutoff``; rollups deleted.
    The caller holds the transaction."""
    doomed = "SELECT id FROM rollups WHERE start + period <= ?"
    conn.execute(f"DELETE FROM rollup_latency WHERE rollup IN ({doomed})", (cutoff,))
    return conn.execute("DELETE FROM rollups WHERE start + period <= ?", (cutoff,)).rowcount
