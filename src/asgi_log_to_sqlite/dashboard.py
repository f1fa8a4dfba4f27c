"""The live traffic dashboard of a log database, as configuration for datasette-dashboards.

datasette-dashboards draws Vega-Lite charts from SQL that the browser runs through Datasette's
JSON API, so every chart obeys Datasette's permissions on the log. This module only builds that
configuration (standard library only): the Datasette plugin serves it for every log database it
opens, and ``asgi-log-to-sqlite metadata`` prints the same for hand-made configurations.

**Filters** are query-string parameters that become SQL parameters: the time range (``period``,
counted back from the newest request, or the days ``since`` and ``until``), then host, route,
status class and method. Optional ones sit in datasette-dashboards' ``[[ ... ]]`` blocks, which
it drops when the filter is empty (a block holds one parameter and no line break).

**Drill-down**: every bar and point carries an ``href`` to the rows behind it on the
``requests`` table page (the same time slice and filters as Datasette table filters), so a click
opens them.

**Where the numbers come from.** A range of a day or less (the default: the last 24 hours) is
counted from its rows, exactly, through the index on ``requests.start``. A longer range is read
from the hourly rollups (rollups.py) where they can answer: each bucket of a chart is cut into
*pieces*, the whole hours that the rollups hold (whole UTC days from the daily rows, once the
writer has folded them), and the rest from the rows: the part-hours at the ends of the range and
the newest hour or so, which the writer may not have added up yet. So a long range reads a few
thousand rollup rows instead of a million requests, and counts the same totals as the rows.
Rollups keep routes, status classes, 404s, bytes and a latency histogram; what they do not keep
(hosts, methods, instances, bytes or latency per status class, paths of routed requests,
referrers, user agents) is read from the rows, and from an evenly spread sample of them (every
k-th row, counts times k) when those rows span more than a day: the tooltip of each bar says
what it was counted from. Charts over time count each bucket with a subquery of its own, an
index range search per piece, instead of sorting the range to group it.

**Seams**: a filter for ``instance`` appears for logs that have that column and its lookup table
(logs pulled from several instances).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .rollups import DAY, HOUR, has_rollups
from .sql_fragments import iso_time, milliseconds, readable_bytes, sample_weighted

__all__ = [
    "CHARTS",
    "DASHBOARDS_PLUGIN",
    "FILTERS",
    "dashboard_config",
    "dashboard_slug",
    "dashboards_config",
    "table_path",
]

DASHBOARDS_PLUGIN = "datasette-dashboards"
DEFAULT_PERIOD = "24h"
# period -> seconds counted back from the newest request (None: the whole log)
PERIODS: dict[str, int | None] = {
    "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "all": None
}
TOP = 15  # bars in a "top" chart
# The one bar of a ranking with nothing to rank: an empty chart would look broken.
NOTHING = "'(nothing in this range)'"
# The Vega-Lite that datasette-dashboards 0.8 ships (it would announce v5 otherwise, and warn).
VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
#: A range longer than this (seconds) reads the rollups where they answer, and samples rows
#: where they do not; a range up to this long is counted from every row.
LONG_RANGE = 86400
#: Hours that ended less than this long (seconds) before the newest request are read from the
#: rows: the writer adds rows to the rollups a few seconds after it stores them.
FRESH = 300
#: Rows read where a range's rows are sampled: every k-th row, so that about this many to twice
#: as many are read (k = rows // SAMPLE).
SAMPLE = 50_000

# The time range and bucket width, as integer unix seconds [lo, hi). ``until`` and ``since`` are
# dates (UTC days, both included); otherwise the range ends just after the newest request and
# ``period`` counts back from there. Buckets: a minute up to 3 hours, an hour up to 7 days, a
# day up to 180 days, then a week, so that no chart needs more than about 1,000 rows.
_PERIOD_SECONDS = " ".join(
    f"WHEN '{name}' THEN {seconds}" for name, seconds in PERIODS.items() if seconds
)
RANGE_CTE = f"""span AS (
  SELECT lo, hi,
    CASE WHEN hi - lo <= 10800 THEN 60 WHEN hi - lo <= 604800 THEN 3600
      WHEN hi - lo <= 15552000 THEN 86400 ELSE 604800 END AS width
  FROM (
    SELECT hi,
      CASE WHEN :since <> '' THEN CAST(strftime('%s', :since) AS INTEGER)
        WHEN :period = 'all' THEN (SELECT CAST(min(start) AS INTEGER) FROM requests)
        ELSE hi - CASE :period {_PERIOD_SECONDS} ELSE {PERIODS[DEFAULT_PERIOD]} END
      END AS lo
    FROM (
      SELECT CASE WHEN :until <> '' THEN CAST(strftime('%s', :until, '+1 day') AS INTEGER)
        ELSE (SELECT CAST(max(start) AS INTEGER) + 1 FROM requests) END AS hi
    )
  )
)"""
IN_SPAN = "requests.start >= span.lo AND requests.start < span.hi"


@dataclasses.dataclass(frozen=True)
class Filter:
    """One dashboard filter: its form field, its SQL condition, and the same as table filters."""

    key: str
    title: str
    needs: frozenset[str]  # columns of requests
    # SQL condition on ``requests`` using ``:key``. Its columns are written ``+requests.x``: the
    # unary plus keeps SQLite from reading the table by them (an automatic index on ``host``
    # is a scan of the whole log); the time index finds the rows, the filter only tests them.
    where: str
    link: str  # SQL text: the Datasette table filters it stands for, ``'&name=value...'``
    options: tuple[str, ...] = ()
    lookup: str | None = None  # table whose names are the options
    # The same condition on ``rollups``, where they keep what it tests (None: they do not).
    rollup_where: str | None = None

    def applies(self, columns: set[str], tables: Iterable[str]) -> bool:
        return self.needs <= columns and (self.lookup is None or self.lookup in tables)

    def config(self, database: str) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.title, "type": "select"}
        if self.lookup:
            config["db"] = database
            config["query"] = f"SELECT name FROM {self.lookup} WHERE name IS NOT NULL ORDER BY name"
        else:
            config["options"] = list(self.options)
        return config


def _lookup_filter(key: str, title: str, table: str, in_rollups: bool = False) -> Filter:
    row_id = f"(SELECT id FROM {table} WHERE name = :{key})"
    return Filter(
        key=key,
        title=title,
        needs=frozenset({key}),
        where=f"+requests.{key} = {row_id}",
        link=f"'&{key}=' || {row_id}",
        lookup=table,
        rollup_where=f"rollups.{key} = {row_id}" if in_rollups else None,
    )


_CLASS = "100 * CAST(substr(:status, 1, 1) AS INTEGER)"
FILTERS: tuple[Filter, ...] = (
    _lookup_filter("host", "Host", "hosts"),
    # Rollups count a request with a route under its route (and one without under its path).
    _lookup_filter("route", "Route", "routes", in_rollups=True),
    # Rollups keep status classes as columns: charts that read them pick the class's column
    # (see _status_column) rather than filtering rows.
    Filter(
        key="status",
        title="Status class",
        needs=frozenset({"http_status"}),
        where=f"+requests.http_status >= {_CLASS} AND +requests.http_status < {_CLASS} + 100",
        link=f"'&http_status__gte=' || ({_CLASS}) || '&http_status__lt=' || ({_CLASS} + 100)",
        options=("1xx", "2xx", "3xx", "4xx", "5xx"),
    ),
    Filter(
        key="method",
        title="Method",
        needs=frozenset({"method"}),
        where="+requests.method = :method",
        link="'&method=' || :method",
        options=("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"),
    ),
    # The seam for logs pulled from several instances: used once such a log has the column.
    _lookup_filter("instance", "Instance", "instances"),
)

TIME_FILTERS: dict[str, dict[str, Any]] = {
    "period": {
        "name": "Period (back from the newest request)",
        "type": "select",
        "options": list(PERIODS),
        "default": DEFAULT_PERIOD,
    },
    "since": {"name": "Since (UTC day)", "type": "date"},
    "until": {"name": "Until (UTC day, included)", "type": "date"},
}


# ---- where each bucket is read from ------------------------------------------------------------
# Placeholders in chart SQL, filled in by _render_sql: @RANGE@ the range CTE; @PIECES@ the
# pieces of each slice (see below); @ROLLABLE@ the filters rollups cannot apply, all empty;
# @FILTERS@ the filters on requests (`` AND ...`` blocks); @ROLLUP_FILTERS@ those that rollups
# keep, on rollups; @LINK@ the filters as table filters (an SQL string); @TABLE@ the address of
# the requests table page (an SQL string); @SAMPLE@ the SAMPLE below.
#
# A chart reads ``slices`` (bucket, lo, hi): its time buckets cut to the range. @PIECES@ cuts
# each slice into ``pieces`` (bucket, lo, hi, tier): tier 0 is read from the rows, 3600 from
# the hourly rollups, 86400 from the daily ones. Where a chart cannot read rollups (a filter
# they do not keep, a log without them, a range of a day or less) a slice is one piece of rows.
#
# ``tiers`` says where rollups answer: from ``rolled_from``, the first hour they hold whole
# (NULL: not for this range or these filters; an hour after their first when the file has older
# rows, which a log's first opening by this version rolled up only in part), up to
# ``fresh_until`` (hours that ended FRESH seconds before the newest request), daily rows for
# days before ``days_until`` (days the writer has folded whole).
_TIERS = f"""tiers AS (
  SELECT CASE WHEN span.hi - span.lo > {LONG_RANGE}@ROLLABLE@ THEN (
      SELECT CASE WHEN first_row < first_hour THEN first_hour + {HOUR} ELSE first_hour END
      FROM (SELECT (SELECT min(start) FROM rollups WHERE period = {HOUR}) AS first_hour,
        (SELECT min(start) FROM requests) AS first_row)
    ) END AS rolled_from,
    ((SELECT CAST(max(start) AS INTEGER) FROM requests) - {FRESH}) / {HOUR} * {HOUR}
      AS fresh_until,
    coalesce((SELECT value FROM rollups_state WHERE name = 'folded_until'), 0) / {DAY} * {DAY}
      AS days_until
  FROM span
)"""
# Each slice [lo, hi) as lo <= a <= b <= c <= d <= hi: rows [lo, a), hours [a, b), days
# [b, c), hours [c, d), rows [d, hi). Without whole hours a = d = hi; without whole days
# b = c = d.
_ROLLED_PIECES = f"""{_TIERS}, cuts AS (
  SELECT bucket, lo, hi, a, d,
    CASE WHEN b < c THEN b ELSE d END AS b, CASE WHEN b < c THEN c ELSE d END AS c
  FROM (
    SELECT *, (a + {DAY - 1}) / {DAY} * {DAY} AS b, min(d / {DAY} * {DAY}, days_until) AS c
    FROM (
      SELECT bucket, lo, hi, days_until,
        CASE WHEN h_lo < h_hi THEN h_lo ELSE hi END AS a,
        CASE WHEN h_lo < h_hi THEN h_hi ELSE hi END AS d
      FROM (
        SELECT slices.*, tiers.days_until,
          max((slices.lo + {HOUR - 1}) / {HOUR} * {HOUR}, tiers.rolled_from) AS h_lo,
          min(slices.hi / {HOUR} * {HOUR}, tiers.fresh_until) AS h_hi
        FROM slices CROSS JOIN tiers
      )
    )
  )
), pieces(bucket, lo, hi, tier) AS (
  SELECT bucket, lo, a, 0 FROM cuts WHERE lo < a
  UNION ALL SELECT bucket, a, b, {HOUR} FROM cuts WHERE a < b
  UNION ALL SELECT bucket, b, c, {DAY} FROM cuts WHERE b < c
  UNION ALL SELECT bucket, c, d, {HOUR} FROM cuts WHERE c < d
  UNION ALL SELECT bucket, d, hi, 0 FROM cuts WHERE d < hi
)"""
_ROW_PIECES = "pieces(bucket, lo, hi, tier) AS (SELECT bucket, lo, hi, 0 FROM slices)"

IN_PIECE = "requests.start >= pieces.lo AND requests.start < pieces.hi"
IN_ROLLUP_PIECE = (
    "rollups.period = pieces.tier AND rollups.start >= pieces.lo AND rollups.start < pieces.hi"
)


def _sampling(when: str) -> str:
    """``every``: rows read from pieces of rows are every k-th (by rowid, which follows time,
    so each bucket gets its share) when ``when`` holds, k = rows // SAMPLE; else 1. The count is
    a subquery of its own, not correlated with the rows, so SQLite runs it once."""
    return f"""sampling AS (
  SELECT CASE WHEN {when} THEN max(1, (
      SELECT count(*) FROM pieces CROSS JOIN requests WHERE pieces.tier = 0 AND {IN_PIECE}
    ) / @SAMPLE@) ELSE 1 END AS every
  FROM (SELECT coalesce(sum(hi - lo), 0) AS row_seconds FROM pieces WHERE tier = 0)
)"""


# Counting charts read every row of a range up to LONG_RANGE long; latency percentiles sort
# durations, so they sample beyond 2 * SAMPLE rows whatever the range.
_SAMPLE_LONG = _sampling(f"row_seconds > {LONG_RANGE}")
_SAMPLE_MANY = _sampling("1")
EVERY = "(SELECT every FROM sampling)"
SAMPLED = f"requests.rowid % {EVERY} = 0"
# What a bar was counted from, for its tooltip (``tier``: the highest tier of its pieces).
_COUNTED = f"""CASE WHEN @TIER@ = {DAY} THEN 'daily and hourly rollups'
    WHEN @TIER@ = {HOUR} THEN 'hourly rollups'
    WHEN sampling.every > 1 THEN 'a sample: 1 request in ' || sampling.every
    ELSE 'every request' END AS counted"""


def _counted(tier: str) -> str:
    return _COUNTED.replace("@TIER@", tier)


def _status_column(measures: dict[str, str]) -> str:
    """The rollup column that answers the status class filter: ``measures`` maps a class's
    first digit (``''``: no filter) to its column; any other class has nothing."""
    whens = " ".join(f"WHEN '{digit}' THEN {column}" for digit, column in measures.items())
    return f"CASE substr(:status, 1, 1) {whens} ELSE 0 END"


def _class_column(digit: str, column: str) -> str:
    """A rollup column of one status class (or of 404s), nothing when another class is picked."""
    return f"CASE WHEN substr(:status, 1, 1) IN ('', '{digit}') THEN {column} ELSE 0 END"


_ROLLUP_REQUESTS = _status_column(
    {"": "rollups.requests", **{str(c): f"rollups.status_{c}xx" for c in range(1, 6)}}
)


@dataclasses.dataclass(frozen=True)
class Chart:
    """One chart: SQL (a template, see :func:`_render_sql`) and a Vega-Lite specification.

    ``sql(rolled)`` is the template for a log whose rollups the chart reads (``rolled``) or
    not. ``rollups`` says whether the chart can read them at all; ``status_in_rollups`` whether
    what it reads there follows the status class filter.
    """

    slug: str
    title: str
    needs: frozenset[str]
    sql: Callable[[bool], str]
    display: dict[str, Any]
    wide: bool = False  # spans the dashboard's two columns
    lookup: str | None = None
    rollups: bool = False
    status_in_rollups: bool = False


# Charts over time count each piece with a subquery of its own, an index range search per
# piece: a GROUP BY over the range would sort every row of it first, four times slower.
_SLICES = """buckets(bucket) AS (
  SELECT CAST(lo / width AS INTEGER) * width FROM span WHERE lo < hi
  UNION ALL
  SELECT buckets.bucket + span.width FROM buckets CROSS JOIN span
  WHERE buckets.bucket + span.width < span.hi
), slices AS (
  SELECT bucket, max(bucket, span.lo) AS lo, min(bucket + span.width, span.hi) AS hi
  FROM buckets CROSS JOIN span
)"""
# Rankings: one slice, the whole range.
_WHOLE_RANGE = "slices AS (SELECT 0 AS bucket, lo, hi FROM span WHERE lo < hi)"
# Counts are computed once per piece: SQLite would otherwise copy ("flatten") the counting
# subquery into every place the outer query names its result. A LIMIT keeps a subquery that a
# join reads from being flattened, in every SQLite version (``AS MATERIALIZED`` needs 3.35), so
# the outer queries read ``counted`` in a join.
_ONCE = "LIMIT -1"
_SLICE_TIMES = f"""{iso_time("slices.lo")} AS time,
  {iso_time("slices.hi")} AS time_end,
  strftime('%Y-%m-%d %H:%M UTC', slices.lo, 'unixepoch') AS from_utc,
  slices.bucket"""
_SLICE_ROWS = (
    "@TABLE@ || '?_sort_desc=start&start__gte=' || slices.lo || '&start__lt=' || slices.hi"
)
_SPAN_ROWS = "@TABLE@ || '?_sort_desc=start&start__gte=' || span.lo || '&start__lt=' || span.hi"


def _rows_value(aggregate: str, where: str = "") -> str:
    """A subquery: ``aggregate`` over the (sampled) rows of a piece that pass the filters."""
    return f"""(
      SELECT {aggregate} FROM requests
      WHERE {IN_PIECE} AND {SAMPLED}@FILTERS@{where}
    )"""


def _piece_value(rows: str, rolled: str | None, where: str = "") -> str:
    """A piece's value: from its rows, or from its rollups when ``rolled`` (their aggregate)."""
    from_rows = _rows_value(rows, where)
    if rolled is None:
        return from_rows
    return f"""CASE WHEN pieces.tier = 0 THEN {from_rows} ELSE (
      SELECT {rolled} FROM rollups WHERE {IN_ROLLUP_PIECE}@ROLLUP_FILTERS@
    ) END"""


# What a piece's count stands for: ``every`` requests each where rows are sampled.
_SCALE = "CASE WHEN pieces.tier = 0 THEN sampling.every ELSE 1 END AS scale"


def _time_series(
    value: str, rolled: str, name: str, extra_columns: str = ""
) -> Callable[[bool], str]:
    """SQL of a chart over time: one row per bucket, ``value`` (an aggregate over the bucket's
    requests) or ``rolled`` (the same over its rollups) added up over its pieces as ``name``,
    and the address of the bucket's rows."""

    def sql(rollups: bool) -> str:
        piece = _piece_value(value, rolled if rollups else None)
        return f"""WITH RECURSIVE @RANGE@, {_SLICES}, @PIECES@, {_SAMPLE_LONG}, counted AS (
  SELECT pieces.bucket, pieces.tier, {_SCALE}, {piece} AS value
  FROM pieces CROSS JOIN sampling
  {_ONCE}
), totals AS (
  SELECT bucket, CAST(round(coalesce(sum(value * scale), 0)) AS INTEGER) AS {name},
    max(tier) AS tier
  FROM counted GROUP BY bucket
)
SELECT {_SLICE_TIMES},
  totals.{name}{extra_columns},
  {_counted("totals.tier")},
  {_SLICE_ROWS} || @LINK@ AS rows_url
FROM slices JOIN totals ON totals.bucket = slices.bucket CROSS JOIN span CROSS JOIN sampling
ORDER BY slices.bucket"""

    return sql


def _stacked_series(
    name: str, series: list[tuple[str, str, str, str]], where: str = ""
) -> Callable[[bool], str]:
    """SQL of stacked bars over time: per bucket, one row per series (``(name, condition on the
    request, its rollup measure, its table filters)``) that has requests, all counted in one
    pass over each piece."""
    # (no parentheses inside a condition: sample_weighted rewrites ``TOTAL(...)`` by pattern)
    totals = ", ".join(f"TOTAL({condition})" for _, condition, _, _ in series)
    rolled = ", ".join(f"sum({measure})" for _, _, measure, _ in series)
    values = ", ".join(
        f"({i}, '{label}', '{link}')" for i, (label, _, _, link) in enumerate(series)
    )

    def sql(rollups: bool) -> str:
        piece = _piece_value(
            f"json_array({totals})", f"json_array({rolled})" if rollups else None, where
        )
        return f"""WITH RECURSIVE @RANGE@, {_SLICES}, @PIECES@, {_SAMPLE_LONG}, counted AS (
  SELECT pieces.bucket, pieces.tier, {_SCALE}, {piece} AS counts
  FROM pieces CROSS JOIN sampling
  {_ONCE}
), series(position, name, link) AS (
  VALUES {values}
), totals AS (
  SELECT counted.bucket, series.position, series.name, series.link, max(counted.tier) AS tier,
    CAST(round(coalesce(sum(
      json_extract(counted.counts, '$[' || series.position || ']') * counted.scale), 0))
      AS INTEGER) AS requests
  FROM counted CROSS JOIN series
  GROUP BY counted.bucket, series.position
)
SELECT {_SLICE_TIMES},
  totals.name AS {name},
  totals.requests,
  {_counted("totals.tier")},
  {_SLICE_ROWS} || totals.link || @LINK@ AS rows_url
FROM totals JOIN slices ON slices.bucket = totals.bucket CROSS JOIN span CROSS JOIN sampling
WHERE totals.requests > 0
ORDER BY slices.bucket, totals.position"""

    return sql


def _status_series(c: int) -> tuple[str, str, str, str]:
    return (
        f"{c}xx",
        f"requests.http_status BETWEEN {c}00 AND {c}99",
        _class_column(str(c), f"rollups.status_{c}xx"),
        f"&http_status__gte={c}00&http_status__lt={c + 1}00",
    )


_STATUS_SERIES = [_status_series(c) for c in range(1, 6)] + [(
    "other",
    "requests.http_status IS NULL OR requests.http_status NOT BETWEEN 100 AND 599",
    _status_column({"": "rollups.requests - rollups.status_1xx - rollups.status_2xx"
                        " - rollups.status_3xx - rollups.status_4xx - rollups.status_5xx"}),
    "&http_status__isnull=1",
)]
_STATUS_COLORS = {
    "domain": ["1xx", "2xx", "3xx", "4xx", "5xx", "other"],
    "range": ["#9e9e9e", "#4caf50", "#2196f3", "#ff9800", "#e53935", "#616161"],
}
_ERROR_SERIES = [
    ("404", "requests.http_status = 404",
     _class_column("4", "rollups.not_found"), "&http_status=404"),
    ("5xx", "requests.http_status BETWEEN 500 AND 599",
     _class_column("5", "rollups.status_5xx"),
     "&http_status__gte=500&http_status__lt=600"),
]
_ERROR_KIND = "CASE WHEN requests.http_status >= 500 THEN '5xx' ELSE '404' END"
_IS_ERROR = " AND (requests.http_status BETWEEN 500 AND 599 OR requests.http_status = 404)"
_ERROR_KIND_LINK = (
    " || CASE kind WHEN '404' THEN '&http_status=404'"
    " ELSE '&http_status__gte=500&http_status__lt=600' END"
)
_ERROR_COLORS = {"domain": ["404", "5xx"], "range": ["#ff9800", "#e53935"]}


def _ranking(label: str, encoding: dict[str, Any]) -> dict[str, Any]:
    """Horizontal bars, the largest first, each linked to its rows.

    A fixed height: a height made of steps would make Vega-Lite warn that it cannot also fit
    the card's width.
    """
    return {
        "height": 18 * TOP,
        "mark": {"type": "bar", "tooltip": True, "size": 14},
        "encoding": {
            "y": {"field": label, "type": "nominal", "sort": "-x", "title": None,
                  "axis": {"labelLimit": 260}},
            "href": {"field": "rows_url"},
            **encoding,
        },
    }


_COUNTED_TOOLTIP = {"field": "counted", "title": "counted from"}


def _top(
    slug: str, title: str, column: str, table: str, label: str, skip_null: bool,
    rollups: bool = False,
) -> Chart:
    """The most requested values of a lookup column, each bar linked to its rows; ``rollups``:
    the column is ``route``, which rollups keep."""
    not_null = f" AND requests.{column} IS NOT NULL" if skip_null else ""

    def sql(rolled: bool) -> str:
        from_rollups = f"""
  UNION ALL
  SELECT rollups.route, sum({_ROLLUP_REQUESTS})
  FROM pieces CROSS JOIN rollups
  WHERE {IN_ROLLUP_PIECE} AND rollups.route IS NOT NULL@ROLLUP_FILTERS@
  GROUP BY rollups.route""" if rolled else ""
        return f"""WITH @RANGE@, {_WHOLE_RANGE}, @PIECES@, {_SAMPLE_LONG}, counted AS (
  SELECT requests.{column} AS id, COUNT_ALL * {EVERY} AS requests
  FROM pieces CROSS JOIN requests
  WHERE pieces.tier = 0 AND {IN_PIECE} AND {SAMPLED}@FILTERS@{not_null}
  GROUP BY requests.{column}{from_rollups}
), top AS (
  SELECT id, CAST(round(sum(requests)) AS INTEGER) AS requests
  FROM counted
  GROUP BY id
  ORDER BY requests DESC
  LIMIT {TOP}
)
SELECT coalesce({table}.name, '(none)') AS {label}, top.requests,
  {_counted("(SELECT max(tier) FROM pieces)")},
  {_SPAN_ROWS}
    || CASE WHEN top.id IS NULL THEN '&{column}__isnull=1' ELSE '&{column}=' || top.id END
    || @LINK@ AS rows_url
FROM top CROSS JOIN span CROSS JOIN sampling
LEFT JOIN {table} ON {table}.id = top.id
UNION ALL
SELECT {NOTHING}, 0, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM top)
ORDER BY 2 DESC, 1"""

    display = _ranking(label, {
        "x": {"field": "requests", "type": "quantitative", "title": "requests", "stack": None,
              "scale": {"domain": {"unionWith": [0, 1]}}},
        "tooltip": [{"field": label}, {"field": "requests"}, _COUNTED_TOOLTIP],
    })
    return Chart(slug, title, frozenset({column}), sql, display, lookup=table,
                 rollups=rollups, status_in_rollups=rollups)


# Percentiles rank durations, each bucket its own (ranking the whole range at once is twice as
# slow). Rows are ranked exactly (nearest rank), up to 2 * SAMPLE of them, beyond that from
# every k-th row. Rollups add their latency histogram: each latency bucket's count, added up
# first (a few dozen points to rank rather than thousands), at the bucket's middle, which is
# within 5% of every duration in it, so the rank found is within 5% too. A point of no weight
# at the longest duration they hold keeps a percentile from passing it.
_PERCENTILES = ", ".join(
    f"min(CASE WHEN upto >= {p} * n THEN value END)" for p in ("0.50", "0.95", "0.99")
)
_LATENCY_FROM_ROLLUPS = f"""
        UNION ALL
        SELECT (SELECT mid FROM latency_buckets WHERE bucket = counts.bucket), counts.n
        FROM (
          SELECT rollup_latency.bucket, sum(rollup_latency.count) AS n
          FROM pieces CROSS JOIN rollups JOIN rollup_latency ON rollup_latency.rollup = rollups.id
          WHERE pieces.bucket = slices.bucket AND {IN_ROLLUP_PIECE}@ROLLUP_FILTERS@
          GROUP BY rollup_latency.bucket
        ) AS counts
        UNION ALL
        SELECT max(rollups.duration_max), 0
        FROM pieces CROSS JOIN rollups
        WHERE pieces.bucket = slices.bucket AND {IN_ROLLUP_PIECE}@ROLLUP_FILTERS@
        HAVING max(rollups.duration_max) IS NOT NULL"""


def _latency_sql(rolled: bool) -> str:
    return f"""WITH RECURSIVE @RANGE@, {_SLICES}, @PIECES@, {_SAMPLE_MANY}, counted AS (
  SELECT slices.*, (SELECT max(tier) FROM pieces WHERE pieces.bucket = slices.bucket) AS tier, (
    SELECT json_array(max(n), {_PERCENTILES})
    FROM (
      SELECT value, sum(weight) OVER (ORDER BY value ROWS UNBOUNDED PRECEDING) AS upto,
        sum(weight) OVER () AS n
      FROM (
        SELECT requests.duration AS value, 1 AS weight
        FROM pieces CROSS JOIN requests
        WHERE pieces.bucket = slices.bucket AND pieces.tier = 0 AND {IN_PIECE}
          AND requests.duration IS NOT NULL AND {SAMPLED}@FILTERS@{
          _LATENCY_FROM_ROLLUPS if rolled else ""}
      )
    )
  ) AS found
  FROM slices
  {_ONCE}
)
SELECT {_SLICE_TIMES.replace("slices.", "counted.")},
  {milliseconds("json_extract(counted.found, '$[1]')")} AS p50_ms,
  {milliseconds("json_extract(counted.found, '$[2]')")} AS p95_ms,
  {milliseconds("json_extract(counted.found, '$[3]')")} AS p99_ms,
  json_extract(counted.found, '$[0]') AS requests,
  {_counted("counted.tier")},
  @TABLE@ || '?_sort_desc=duration&start__gte=' || counted.lo || '&start__lt=' || counted.hi
    || @LINK@ AS rows_url
FROM counted CROSS JOIN span CROSS JOIN sampling
WHERE json_extract(counted.found, '$[0]') > 0
ORDER BY counted.bucket"""


def _error_paths_sql(rolled: bool) -> str:
    return f"""WITH @RANGE@, {_WHOLE_RANGE}, @PIECES@, {_SAMPLE_LONG}, counted AS (
  SELECT requests.path AS id, {_ERROR_KIND} AS kind, COUNT_ALL * {EVERY} AS requests
  FROM pieces CROSS JOIN requests
  WHERE pieces.tier = 0 AND {IN_PIECE} AND {SAMPLED}@FILTERS@{_IS_ERROR}
  GROUP BY requests.path, kind
), top AS (
  SELECT id, sum(requests) AS total FROM counted GROUP BY id ORDER BY total DESC LIMIT {TOP}
)
SELECT coalesce(paths.name, '(none)') AS path, counted.kind, counted.requests, top.total,
  {_counted("0")},
  {_SPAN_ROWS}
    || CASE WHEN counted.id IS NULL THEN '&path__isnull=1' ELSE '&path=' || counted.id END
    {_ERROR_KIND_LINK} || @LINK@ AS rows_url
FROM counted JOIN top ON top.id IS counted.id CROSS JOIN span CROSS JOIN sampling
LEFT JOIN paths ON paths.id = counted.id
UNION ALL
SELECT {NOTHING}, '5xx', 0, NULL, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM top)
ORDER BY 4 DESC, 1, 2"""


# The start of a bucket, in a tooltip: text from SQL, in UTC like the axis.
_FROM = {"field": "from_utc", "type": "nominal", "title": "from"}


def _over_time(
    field: str,
    title: str,
    *tooltip: tuple[str, str],
    color: dict[str, Any] | None = None,
    axis: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Bars over time, each spanning its bucket (``time`` to ``time_end``), stacked by
    ``color`` if given, each linked to its rows."""
    y: dict[str, Any] = {"field": field, "type": "quantitative", "title": title}
    if axis:
        y["axis"] = axis
    encoding: dict[str, Any] = {
        "x": {"field": "time", "type": "temporal", "title": None, "scale": {"type": "utc"}},
        "x2": {"field": "time_end"},
        "y": y,
        "y2": {"datum": 0},
        "href": {"field": "rows_url"},
        "tooltip": [_FROM]
        + [{"field": name, "title": label} for name, label in tooltip]
        + [_COUNTED_TOOLTIP],
    }
    spec: dict[str, Any] = {"mark": {"type": "bar", "tooltip": True}, "encoding": encoding}
    if color:
        # Bars that span an interval are not stacked by Vega-Lite itself: stack them here.
        encoding["color"] = color
        spec["transform"] = [{
            "stack": field,
            "groupby": ["time"],
            "sort": [{"field": color["field"]}],
            "as": ["stack_start", "stack_end"],
        }]
        encoding["y"] = {**y, "field": "stack_end"}
        encoding["y2"] = {"field": "stack_start"}
    return spec


CHARTS: tuple[Chart, ...] = (
    Chart(
        "requests",
        "Requests per hour (per minute, day or week as the range asks)",
        frozenset({"start"}),
        _time_series("COUNT_ALL", f"sum({_ROLLUP_REQUESTS})", "requests"),
        _over_time("requests", "requests", ("requests", "requests")),
        wide=True,
        rollups=True,
        status_in_rollups=True,
    ),
    Chart(
        "status_classes",
        "Status classes over time",
        frozenset({"http_status"}),
        _stacked_series("status_class", _STATUS_SERIES),
        _over_time(
            "requests", "requests", ("status_class", "status"), ("requests", "requests"),
            color={"field": "status_class", "type": "nominal", "title": "status",
                   "scale": _STATUS_COLORS},
        ),
        rollups=True,
        status_in_rollups=True,
    ),
    Chart(
        "latency",
        "Latency percentiles (ms)",
        frozenset({"duration"}),
        _latency_sql,
        {
            "transform": [{"fold": ["p50_ms", "p95_ms", "p99_ms"], "as": ["percentile", "ms"]}],
            "mark": {"type": "line", "tooltip": True, "point": True},
            "encoding": {
                "x": {"field": "time", "type": "temporal", "title": None,
                      "scale": {"type": "utc"}},
                "y": {"field": "ms", "type": "quantitative", "title": "milliseconds"},
                "color": {"field": "percentile", "type": "nominal", "title": None,
                          "scale": {"domain": ["p50_ms", "p95_ms", "p99_ms"],
                                    "range": ["#4caf50", "#ff9800", "#e53935"]}},
                "href": {"field": "rows_url"},
                "tooltip": [_FROM, {"field": "percentile"}, {"field": "ms"},
                            {"field": "requests"}, _COUNTED_TOOLTIP],
            },
        },
        rollups=True,
    ),
    Chart(
        "bytes_sent",
        "Bytes sent",
        frozenset({"body_size"}),
        _time_series(
            "TOTAL(requests.body_size)", "sum(rollups.bytes_sent)", "bytes_sent",
            extra_columns=f",\n  {readable_bytes('totals.bytes_sent')} AS sent",
        ),
        _over_time(
            "bytes_sent", "bytes", ("sent", "sent"), ("bytes_sent", "bytes"),
            axis={"format": "~s"},
        ),
        rollups=True,
    ),
    Chart(
        "errors",
        "Server errors (5xx) and 404s over time",
        frozenset({"http_status"}),
        _stacked_series("kind", _ERROR_SERIES, where=_IS_ERROR),
        _over_time(
            "requests", "requests", ("kind", "answer"), ("requests", "requests"),
            color={"field": "kind", "type": "nominal", "title": None, "scale": _ERROR_COLORS},
        ),
        rollups=True,
        status_in_rollups=True,
    ),
    Chart(
        "error_paths",
        "Paths answered with 5xx or 404",
        frozenset({"path", "http_status"}),
        _error_paths_sql,
        _ranking("path", {
            "x": {"field": "requests", "type": "quantitative", "stack": True, "title": "requests",
                  "scale": {"domain": {"unionWith": [0, 1]}}},
            "color": {"field": "kind", "type": "nominal", "title": None, "scale": _ERROR_COLORS},
            "tooltip": [{"field": "path"}, {"field": "kind", "title": "answer"},
                        {"field": "requests"}, _COUNTED_TOOLTIP],
        }),
        lookup="paths",
    ),
    # Rollups count a routed request under its route, not its path: paths are read from rows.
    _top("top_paths", "Top paths", "path", "paths", "path", skip_null=False),
    _top("top_routes", "Top routes", "route", "routes", "route", skip_null=True, rollups=True),
    _top("top_referrers", "Top referrers", "referer", "referers", "referrer", skip_null=True),
    _top("top_user_agents", "Top user agents", "user_agent", "user_agents", "user_agent",
         skip_null=False),
)


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _render_sql(
    chart: Chart, filters: list[Filter], table_url: str, sampled: bool, rollups: bool
) -> str:
    """The chart's SQL with the range, the filters that apply, the pieces it reads (rollups
    where the log has them and the chart can read them), and the rows' address filled in."""
    rolled = rollups and chart.rollups
    only = "".join(f" [[ AND {f.where} ]]" for f in filters)
    in_rollups = "".join(f" [[ AND {f.rollup_where} ]]" for f in filters if f.rollup_where)
    # Rollups answer only while the filters they cannot apply are empty.
    rollable = "".join(
        f" AND :{f.key} = ''" for f in filters
        if f.rollup_where is None and not (f.key == "status" and chart.status_in_rollups)
    )
    link = "''" + "".join(f" [[ || {f.link} ]]" for f in filters)
    sql = chart.sql(rolled).replace("@RANGE@", RANGE_CTE)
    sql = sql.replace("@PIECES@", _ROLLED_PIECES if rolled else _ROW_PIECES)
    sql = sql.replace("@ROLLABLE@", rollable)
    sql = sql.replace("@FILTERS@", only).replace("@ROLLUP_FILTERS@", in_rollups)
    sql = sql.replace("@LINK@", link).replace("@TABLE@", _sql_string(table_url))
    sql = sql.replace("@SAMPLE@", str(SAMPLE))
    return sample_weighted(sql, sampled)


def table_path(database: str, table: str = "requests", base_url: str = "/") -> str:
    """The address of a table page as Datasette spells it (database names tilde-encoded)."""
    return f"{base_url.rstrip('/')}/{_tilde_encode(database)}/{_tilde_encode(table)}"


def _tilde_encode(name: str) -> str:
    """Datasette's tilde encoding of names in URLs: ``-``, ``_`` and alphanumerics stay.

    (A name from a file name that is not UTF-8 keeps its raw bytes, as ``~XX``.)
    """
    safe = re.compile(r"[A-Za-z0-9_\-]")
    return "".join(
        ch if safe.fullmatch(ch) else (
            "+" if ch == " " else
            "".join(f"~{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
        )
        for ch in name
    )


def dashboard_slug(database: str) -> str:
    """The dashboard's address under ``/-/dashboards/``: URL-safe, from the database name."""
    return "traffic-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", database).strip("-") or "log")


def dashboard_config(
    database: str, tables: Mapping[str, list[str]], table_url: str | None = None
) -> dict[str, Any] | None:
    """The dashboard of one log database, or None when it has no ``requests`` table.

    ``tables`` maps each table to its columns; ``table_url`` is the address of the ``requests``
    table page (default: ``/DATABASE/requests``, as Datasette serves it at the root).
    """
    columns = set(tables.get("requests", ()))
    if not {"start"} <= columns:
        return None
    table_url = table_url or table_path(database)
    filters = [f for f in FILTERS if f.applies(columns, tables)]
    charts = [
        c for c in CHARTS if c.needs <= columns and (c.lookup is None or c.lookup in tables)
    ]
    sampled = "sample_rate" in columns
    rollups = has_rollups(tables) and "latency_buckets" in tables
    return {
        "title": f"Traffic: {database}",
        "description": (
            "Requests served, from the access log. Click a bar or point to open the requests "
            "behind it; times are UTC."
        ),
        "settings": {"allow_fullscreen": True, "autorefresh": 1},
        "layout": _layout(charts),
        "filters": {
            **TIME_FILTERS,
            **{f.key: f.config(database) for f in filters},
        },
        "charts": {
            c.slug: {
                "title": c.title,
                "db": database,
                "query": _render_sql(c, filters, table_url, sampled, rollups),
                "library": "vega-lite",
                "display": {"$schema": VEGA_LITE_SCHEMA, **c.display},
            }
            for c in charts
        },
    }


def _layout(charts: list[Chart]) -> list[list[str]]:
    """Two columns; a wide chart takes a whole row, the others pair up in order."""
    rows: list[list[str]] = []
    waiting: str | None = None
    for chart in charts:
        if chart.wide:
            rows.append([chart.slug, chart.slug])
        elif waiting is None:
            waiting = chart.slug
        else:
            rows.append([waiting, chart.slug])
            waiting = None
    if waiting is not None:
        rows.append([waiting, "."])
    return rows


def dashboards_config(
    databases: Mapping[str, Mapping[str, list[str]]],
    table_urls: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """datasette-dashboards' configuration for several log databases: ``{slug: dashboard}``."""
    dashboards: dict[str, Any] = {}
    for name, tables in databases.items():
        config = dashboard_config(name, tables, (table_urls or {}).get(name))
        if config is None:
            continue
        slug = dashboard_slug(name)
        while slug in dashboards:
            slug += "-"
        dashboards[slug] = config
    return dashboards
