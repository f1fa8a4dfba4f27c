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

**Speed**: the range is a one-row CTE of integer constants (``span``), so every chart reads only
the rows of the range, through the index on ``requests.start``; charts over time search the
index once per bucket instead of sorting the range to group it. The default range is the last 24
hours of the log. Long ranges still read ``requests`` row by row; once hourly rollup tables
exist, they are the place to read long ranges from (``span`` already yields the bucket width a
rollup would serve, and the bucket slices are built apart from what is counted in them).

**Seams**: a filter for ``instance`` appears for logs that have that column and its lookup table
(logs pulled from several instances).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

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


def _lookup_filter(key: str, title: str, table: str) -> Filter:
    row_id = f"(SELECT id FROM {table} WHERE name = :{key})"
    return Filter(
        key=key,
        title=title,
        needs=frozenset({key}),
        where=f"+requests.{key} = {row_id}",
        link=f"'&{key}=' || {row_id}",
        lookup=table,
    )


_CLASS = "100 * CAST(substr(:status, 1, 1) AS INTEGER)"
FILTERS: tuple[Filter, ...] = (
    _lookup_filter("host", "Host", "hosts"),
    _lookup_filter("route", "Route", "routes"),
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


@dataclasses.dataclass(frozen=True)
class Chart:
    """One chart: SQL (a template, see :func:`_render_sql`) and a Vega-Lite specification."""

    slug: str
    title: str
    needs: frozenset[str]
    sql: str
    display: dict[str, Any]
    wide: bool = False  # spans the dashboard's two columns
    lookup: str | None = None


# Placeholders in chart SQL, filled in by _render_sql: @RANGE@ the range CTE, @WHERE@ the rows
# of the range that pass the filters, @FILTERS@ the filters alone (`` AND ...`` blocks), @LINK@
# the filters as table filters (an SQL string), @TABLE@ the address of the requests table page
# (an SQL string), @SAMPLE@ the SAMPLE below.

# Charts over time count each bucket with a subquery of its own, an index range search per
# bucket: a GROUP BY over the range would sort every row of it first, four times slower.
_SLICES = """buckets(bucket) AS (
  SELECT CAST(lo / width AS INTEGER) * width FROM span WHERE lo < hi
  UNION ALL
  SELECT buckets.bucket + span.width FROM buckets CROSS JOIN span
  WHERE buckets.bucket + span.width < span.hi
), slices AS (
  SELECT bucket, max(bucket, span.lo) AS lo, min(bucket + span.width, span.hi) AS hi
  FROM buckets CROSS JOIN span
)"""
IN_SLICE = "requests.start >= slices.lo AND requests.start < slices.hi"
# Counts are computed once per bucket: SQLite would otherwise copy ("flatten") the counting
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


def _time_series(value: str, name: str, extra_columns: str = "") -> str:
    """SQL of a chart over time: one row per bucket, ``value`` (an aggregate over the bucket's
    requests) as ``name``, and the address of the bucket's rows."""
    return f"""WITH RECURSIVE @RANGE@, {_SLICES}, counted AS (
  SELECT slices.*,
    coalesce((SELECT {value} FROM requests WHERE {IN_SLICE}@FILTERS@), 0) AS {name}
  FROM slices
  {_ONCE}
)
SELECT {_SLICE_TIMES.replace("slices.", "counted.")},
  counted.{name}{extra_columns},
  {_SLICE_ROWS.replace("slices.", "counted.")} || @LINK@ AS rows_url
FROM counted CROSS JOIN span
ORDER BY counted.bucket"""


def _stacked_series(name: str, series: list[tuple[str, str, str]], where: str = "") -> str:
    """SQL of stacked bars over time: per bucket, one row per series (``(name, condition on the
    request, its table filters)``) that has requests, all counted in one pass over the bucket."""
    # (no parentheses inside a condition: sample_weighted rewrites ``TOTAL(...)`` by pattern)
    totals = ", ".join(f"TOTAL({condition})" for _, condition, _ in series)
    values = ", ".join(
        f"({i}, '{label}', '{link}')" for i, (label, _, link) in enumerate(series)
    )
    return f"""WITH RECURSIVE @RANGE@, {_SLICES}, series(position, name, link) AS (
  VALUES {values}
), counted AS (
  SELECT slices.*,
    (SELECT json_array({totals}) FROM requests WHERE {IN_SLICE}@FILTERS@{where}) AS counts
  FROM slices
  {_ONCE}
)
SELECT {_SLICE_TIMES.replace("slices.", "counted.")},
  series.name AS {name},
  json_extract(counted.counts, '$[' || series.position || ']') AS requests,
  {_SLICE_ROWS.replace("slices.", "counted.")} || series.link || @LINK@ AS rows_url
FROM counted CROSS JOIN series
WHERE json_extract(counted.counts, '$[' || series.position || ']') > 0
ORDER BY counted.bucket, series.position"""


_STATUS_SERIES = [
    (f"{c}xx", f"requests.http_status BETWEEN {c}00 AND {c}99",
     f"&http_status__gte={c}00&http_status__lt={c + 1}00")
    for c in range(1, 6)
] + [("other", "requests.http_status IS NULL OR requests.http_status NOT BETWEEN 100 AND 599",
      "&http_status__isnull=1")]
_STATUS_COLORS = {
    "domain": ["1xx", "2xx", "3xx", "4xx", "5xx", "other"],
    "range": ["#9e9e9e", "#4caf50", "#2196f3", "#ff9800", "#e53935", "#616161"],
}
_ERROR_SERIES = [
    ("404", "requests.http_status = 404", "&http_status=404"),
    ("5xx", "requests.http_status >= 500", "&http_status__gte=500"),
]
_ERROR_KIND = "CASE WHEN requests.http_status >= 500 THEN '5xx' ELSE '404' END"
_IS_ERROR = " AND (requests.http_status >= 500 OR requests.http_status = 404)"
_ERROR_KIND_LINK = (
    " || CASE kind WHEN '404' THEN '&http_status=404' ELSE '&http_status__gte=500' END"
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


def _top(slug: str, title: str, column: str, table: str, label: str, skip_null: bool) -> Chart:
    """The most requested values of a lookup column, each bar linked to its rows."""
    not_null = f" AND requests.{column} IS NOT NULL" if skip_null else ""
    sql = f"""WITH @RANGE@, top AS (
  SELECT requests.{column} AS id, COUNT_ALL AS requests
  FROM span CROSS JOIN requests
  WHERE @WHERE@{not_null}
  GROUP BY requests.{column}
  ORDER BY requests DESC
  LIMIT {TOP}
)
SELECT coalesce({table}.name, '(none)') AS {label}, top.requests,
  @TABLE@ || '?_sort_desc=start&start__gte=' || span.lo || '&start__lt=' || span.hi
    || CASE WHEN top.id IS NULL THEN '&{column}__isnull=1' ELSE '&{column}=' || top.id END
    || @LINK@ AS rows_url
FROM top CROSS JOIN span
LEFT JOIN {table} ON {table}.id = top.id
UNION ALL
SELECT {NOTHING}, 0, NULL WHERE NOT EXISTS (SELECT 1 FROM top)
ORDER BY 2 DESC, 1"""
    display = _ranking(label, {
        "x": {"field": "requests", "type": "quantitative", "title": "requests", "stack": None,
              "scale": {"domain": {"unionWith": [0, 1]}}},
        "tooltip": [{"field": label}, {"field": "requests"}],
    })
    return Chart(slug, title, frozenset({column}), sql, display, lookup=table)


# Percentiles sort durations, each bucket its own (sorting the whole range at once is twice as
# slow): exact up to 2 * SAMPLE requests in the range, beyond that from every k-th row (rowid
# order is time order, so each bucket gets its share), so that a week of a busy log answers as
# fast as a day (until long ranges read hourly rollups). The count is a subquery of its own, not
# correlated with the rows, so SQLite runs it once.
SAMPLE = 50_000
_PERCENTILES = ", ".join(
    f"min(CASE WHEN position >= {p} * n THEN duration END)" for p in ("0.50", "0.95", "0.99")
)
_LATENCY_SQL = f"""WITH RECURSIVE @RANGE@, {_SLICES}, sampling AS (
  SELECT max(1, (SELECT count(*) FROM span CROSS JOIN requests WHERE @WHERE@) / @SAMPLE@) AS every
), counted AS (
  SELECT slices.*, (
    SELECT json_array(max(n), {_PERCENTILES})
    FROM (
      SELECT requests.duration AS duration,
        row_number() OVER (ORDER BY requests.duration) AS position, count(*) OVER () AS n
      FROM requests
      WHERE {IN_SLICE}@FILTERS@ AND requests.duration IS NOT NULL
        AND requests.rowid % (SELECT every FROM sampling) = 0
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
  @TABLE@ || '?_sort_desc=duration&start__gte=' || counted.lo || '&start__lt=' || counted.hi
    || @LINK@ AS rows_url
FROM counted CROSS JOIN span
WHERE json_extract(counted.found, '$[0]') > 0
ORDER BY counted.bucket"""

_ERROR_PATHS_SQL = f"""WITH @RANGE@, counted AS (
  SELECT requests.path AS id, {_ERROR_KIND} AS kind, COUNT_ALL AS requests
  FROM span CROSS JOIN requests
  WHERE @WHERE@{_IS_ERROR}
  GROUP BY requests.path, kind
), top AS (
  SELECT id, sum(requests) AS total FROM counted GROUP BY id ORDER BY total DESC LIMIT {TOP}
)
SELECT coalesce(paths.name, '(none)') AS path, counted.kind, counted.requests, top.total,
  @TABLE@ || '?_sort_desc=start&start__gte=' || span.lo || '&start__lt=' || span.hi
    || CASE WHEN counted.id IS NULL THEN '&path__isnull=1' ELSE '&path=' || counted.id END
    {_ERROR_KIND_LINK} || @LINK@ AS rows_url
FROM counted JOIN top ON top.id IS counted.id CROSS JOIN span
LEFT JOIN paths ON paths.id = counted.id
UNION ALL
SELECT {NOTHING}, '5xx', 0, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM top)
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
        + [{"field": name, "title": label} for name, label in tooltip],
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
        _time_series("COUNT_ALL", "requests"),
        _over_time("requests", "requests", ("requests", "requests")),
        wide=True,
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
    ),
    Chart(
        "latency",
        "Latency percentiles (ms)",
        frozenset({"duration"}),
        _LATENCY_SQL,
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
                "tooltip": [_FROM,
                            {"field": "percentile"}, {"field": "ms"}, {"field": "requests"}],
            },
        },
    ),
    Chart(
        "bytes_sent",
        "Bytes sent",
        frozenset({"body_size"}),
        _time_series(
            "TOTAL(requests.body_size)", "bytes_sent",
            extra_columns=f",\n  {readable_bytes('counted.bytes_sent')} AS sent",
        ),
        _over_time(
            "bytes_sent", "bytes", ("sent", "sent"), ("bytes_sent", "bytes"),
            axis={"format": "~s"},
        ),
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
    ),
    Chart(
        "error_paths",
        "Paths answered with 5xx or 404",
        frozenset({"path", "http_status"}),
        _ERROR_PATHS_SQL,
        _ranking("path", {
            "x": {"field": "requests", "type": "quantitative", "stack": True, "title": "requests",
                  "scale": {"domain": {"unionWith": [0, 1]}}},
            "color": {"field": "kind", "type": "nominal", "title": None, "scale": _ERROR_COLORS},
            "tooltip": [{"field": "path"}, {"field": "kind", "title": "answer"},
                        {"field": "requests"}],
        }),
        lookup="paths",
    ),
    _top("top_paths", "Top paths", "path", "paths", "path", skip_null=False),
    _top("top_routes", "Top routes", "route", "routes", "route", skip_null=True),
    _top("top_referrers", "Top referrers", "referer", "referers", "referrer", skip_null=True),
    _top("top_user_agents", "Top user agents", "user_agent", "user_agents", "user_agent",
         skip_null=False),
)


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _render_sql(chart: Chart, filters: list[Filter], table_url: str, sampled: bool) -> str:
    """The chart's SQL with the range, the filters that apply, and the rows' address filled in."""
    only = "".join(f" [[ AND {f.where} ]]" for f in filters)
    link = "''" + "".join(f" [[ || {f.link} ]]" for f in filters)
    sql = chart.sql.replace("@RANGE@", RANGE_CTE).replace("@WHERE@", IN_SPAN + only)
    sql = sql.replace("@FILTERS@", only)
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
                "query": _render_sql(c, filters, table_url, sampled),
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
