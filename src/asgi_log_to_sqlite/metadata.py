"""Datasette metadata for a log database: what each table and column means, and the questions a
site owner asks of an access log, as canned queries.

The metadata is built from the file's actual schema, so a log written by an older version (or one
with extra columns added by newer features) gets descriptions for what it has and only the
queries that can run on it. The same dictionary feeds the Datasette plugin and the
``asgi-log-to-sqlite metadata`` command; :func:`split_for_datasette_1` cuts it into the metadata
and configuration halves Datasette 1.0 reads from separate files.

Standard library only: Datasette is not needed to build or print it.
"""

from __future__ import annotations

import copy
import os
import sqlite3
from pathlib import Path
from typing import Any

from .dashboard import DASHBOARDS_PLUGIN, dashboards_config
from .sql_fragments import iso_time, milliseconds, readable_bytes, sample_weighted

__all__ = [
    "COLUMN_DESCRIPTIONS",
    "QUERIES",
    "database_name_for",
    "log_metadata",
    "metadata_for_file",
    "split_for_datasette_1",
    "table_columns",
]

# Column descriptions of ``requests`` (and of the view, which shows the same facts as text).
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "id": "Row id of the request in the requests table",
    "time": "When the request arrived, ISO 8601 UTC",
    "start": "When the request arrived: unix time, in seconds (UTC)",
    "method": "HTTP method: GET, POST, ...",
    "path": "Path requested, without the query string",
    "query_string": "Query string, with its leading ?",
    "user_agent": "User-Agent request header",
    "referer": "Referer request header: the page that linked here",
    "accept_language": "Accept-Language request header",
    "http_status": "HTTP status code sent (101 or 403 for WebSocket connections)",
    "content_type": "Content-Type of the response",
    "client_ip": "Client address as the server saw it",
    "duration": "Time from the request's arrival to its last response byte, in seconds",
    "body_size": "Response body sent, in bytes",
    "host": "Host request header",
    "scheme": "http, https, ws or wss",
    "http_version": "HTTP version: 1.0, 1.1, 2...",
    "request_body_size": "Request body received, in bytes",
    "ttfb": "Time to first byte: from arrival until status and headers were sent, in seconds",
    "exception": "Exception type when the application raised",
    "disconnected": "1 when the client went away before the response completed",
    "connection_type": "http or websocket",
    "actor": "Authenticated user who made the request",
    "route": "Route template the framework matched, e.g. /items/{item_id}",
    "peer_ip": "Address of the immediate peer (a proxy, when trusted proxies are configured)",
    "sample_rate": "Fraction of requests recorded when this row was written (1 = all)",
    "visitor": "Daily-salted hash standing for one visitor (no address is stored)",
    "instance": "Host or container that served the request (the instance option)",
}

UNITS: dict[str, str] = {
    "duration": "s",
    "ttfb": "s",
    "body_size": "B",
    "request_body_size": "B",
}

LOOKUP_DESCRIPTIONS: dict[str, str] = {
    "paths": "Distinct paths requested",
    "query_strings": "Distinct query strings",
    "user_agents": "Distinct User-Agent headers",
    "referers": "Distinct Referer headers",
    "accept_languages": "Distinct Accept-Language headers",
    "content_types": "Distinct response Content-Types",
    "hosts": "Distinct Host headers",
    "actors": "Distinct authenticated users",
    "routes": "Distinct route templates",
    "instances": "Hosts and containers that wrote rows",
    "header_names": "Names of the captured headers",
    "header_values": "Distinct values of the captured headers",
    "header_lists": "Distinct header lists of captured requests and responses (JSON)",
}

FACETS = ["http_status", "method", "content_type", "host"]

# Reused SQL fragments. Times are UTC; "start" is unix seconds. ``COUNT_ALL`` and ``TOTAL(x)``
# are counted as sql_fragments.sample_weighted says. People read these results: durations are
# milliseconds rounded to 0.1, bytes integers beside the same as Datasette writes sizes, times
# ISO 8601; the raw numbers stay in their own columns, for sorting.
_HOUR = "strftime('%Y-%m-%dT%H:00:00Z', requests.start, 'unixepoch')"
_DAY = "date(requests.start, 'unixepoch')"
_AVG_MS = f"{milliseconds('avg(requests.duration)')} AS avg_ms"
_TRAFFIC_COLUMNS = f"""COUNT_ALL AS requests,
    TOTAL(requests.http_status >= 400 AND requests.http_status < 500) AS client_errors,
    TOTAL(requests.http_status >= 500) AS server_errors,
    TOTAL(requests.body_size) AS bytes_sent,
    {_AVG_MS}"""


def _traffic(period: str, label: str) -> str:
    return f"""SELECT {label}, requests, client_errors, server_errors,
  bytes_sent, {readable_bytes("bytes_sent")} AS sent, avg_ms
FROM (
  SELECT {period} AS {label},
    {_TRAFFIC_COLUMNS}
  FROM requests
  GROUP BY {label}
)
ORDER BY {label} DESC
LIMIT 1000"""


def _percentile_ms(fraction: str) -> str:
    return milliseconds(f"min(CASE WHEN ranked.position >= {fraction} * ranked.n "
                        "THEN ranked.duration END)")


# name -> (columns of ``requests`` it needs, the query). Order is the order Datasette lists them.
QUERIES: dict[str, tuple[frozenset[str], dict[str, Any]]] = {
    "traffic_per_hour": (
        frozenset({"start", "http_status", "body_size", "duration"}),
        {
            "title": "Traffic per hour",
            "description": "Requests, errors, bytes sent and mean duration (ms) for each hour, "
            "UTC, newest first; sampled rows count for the requests they stand for",
            "sql": _traffic(_HOUR, "hour"),
        },
    ),
    "traffic_per_day": (
        frozenset({"start", "http_status", "body_size", "duration"}),
        {
            "title": "Traffic per day",
            "description": "Requests, errors, bytes sent and mean duration (ms) for each day, "
            "UTC, newest first; sampled rows count for the requests they stand for",
            "sql": _traffic(_DAY, "day"),
        },
    ),
    "top_paths": (
        frozenset({"path", "http_status", "body_size", "duration"}),
        {
            "title": "Top paths",
            "description": "The 100 most requested paths, with errors, bytes sent and mean "
            "duration (ms)",
            "sql": f"""SELECT paths.name AS path, top.requests, top.errors,
  top.bytes_sent, {readable_bytes("top.bytes_sent")} AS sent, top.avg_ms
FROM (
  SELECT requests.path AS id,
    COUNT_ALL AS requests,
    TOTAL(requests.http_status >= 400) AS errors,
    TOTAL(requests.body_size) AS bytes_sent,
    {_AVG_MS}
  FROM requests
  GROUP BY requests.path
) AS top
LEFT JOIN paths ON paths.id = top.id
ORDER BY top.requests DESC, path
LIMIT 100""",
        },
    ),
    "slowest_endpoints": (
        frozenset({"method", "path", "duration"}),
        {
            "title": "Slowest endpoints",
            "description": "Duration percentiles in milliseconds (nearest rank) per method and "
            "path, slowest 95th percentile first",
            "sql": f"""WITH ranked AS (
  SELECT requests.method, requests.path, requests.duration,
    row_number() OVER (
      PARTITION BY requests.method, requests.path ORDER BY requests.duration
    ) AS position,
    count(*) OVER (PARTITION BY requests.method, requests.path) AS n
  FROM requests
  WHERE requests.duration IS NOT NULL
)
SELECT ranked.method, paths.name AS path,
  ranked.n AS requests,
  {_percentile_ms("0.50")} AS p50_ms,
  {_percentile_ms("0.95")} AS p95_ms,
  {_percentile_ms("0.99")} AS p99_ms,
  {milliseconds("max(ranked.duration)")} AS max_ms
FROM ranked
LEFT JOIN paths ON paths.id = ranked.path
GROUP BY ranked.method, ranked.path
ORDER BY p95_ms DESC, requests DESC
LIMIT 100""",
        },
    ),
    "error_paths": (
        frozenset({"start", "path", "http_status"}),
        {
            "title": "Error paths",
            "description": "Paths answered with a server error (status 500 and above)",
            "sql": f"""SELECT paths.name AS path, requests.http_status,
  COUNT_ALL AS requests,
  {iso_time("max(requests.start)")} AS last_seen
FROM requests
LEFT JOIN paths ON paths.id = requests.path
WHERE requests.http_status >= 500
GROUP BY requests.path, requests.http_status
ORDER BY requests DESC, path
LIMIT 100""",
        },
    ),
    "not_found_paths": (
        frozenset({"start", "path", "http_status"}),
        {
            "title": "404 paths",
            "description": "Paths answered with 404 Not Found: broken links and probes",
            "sql": f"""SELECT paths.name AS path,
  COUNT_ALL AS requests,
  {iso_time("max(requests.start)")} AS last_seen
FROM requests
LEFT JOIN paths ON paths.id = requests.path
WHERE requests.http_status = 404
GROUP BY requests.path
ORDER BY requests DESC, path
LIMIT 100""",
        },
    ),
    "top_referrers": (
        frozenset({"referer"}),
        {
            "title": "Top referrers",
            "description": "Pages that sent visitors here (the Referer header)",
            "sql": """SELECT referers.name AS referrer, COUNT_ALL AS requests
FROM requests
JOIN referers ON referers.id = requests.referer
GROUP BY requests.referer
ORDER BY requests DESC, referrer
LIMIT 100""",
        },
    ),
    "top_user_agents": (
        frozenset({"user_agent"}),
        {
            "title": "User agents",
            "description": "Browsers, bots and clients, by number of requests",
            "sql": """SELECT user_agents.name AS user_agent, COUNT_ALL AS requests
FROM requests
LEFT JOIN user_agents ON user_agents.id = requests.user_agent
GROUP BY requests.user_agent
ORDER BY requests DESC, user_agent
LIMIT 100""",
        },
    ),
    "bandwidth_per_day": (
        frozenset({"start", "body_size", "request_body_size"}),
        {
            "title": "Bandwidth per day",
            "description": "Bytes sent and received each day, UTC, newest first",
            "sql": f"""SELECT day, requests,
  bytes_sent, {readable_bytes("bytes_sent")} AS sent,
  bytes_received, {readable_bytes("bytes_received")} AS received
FROM (
  SELECT {_DAY} AS day,
    COUNT_ALL AS requests,
    TOTAL(requests.body_size) AS bytes_sent,
    TOTAL(requests.request_body_size) AS bytes_received
  FROM requests
  GROUP BY day
)
ORDER BY day DESC
LIMIT 1000""",
        },
    ),
    "bandwidth_by_content_type": (
        frozenset({"content_type", "body_size"}),
        {
            "title": "Bandwidth by content type",
            "description": "Bytes sent per response Content-Type, largest first",
            "sql": f"""SELECT content_types.name AS content_type, by_type.requests,
  by_type.bytes_sent, {readable_bytes("by_type.bytes_sent")} AS sent,
  by_type.avg_bytes
FROM (
  SELECT requests.content_type AS id,
    COUNT_ALL AS requests,
    TOTAL(requests.body_size) AS bytes_sent,
    CAST(round(avg(requests.body_size)) AS INTEGER) AS avg_bytes
  FROM requests
  GROUP BY requests.content_type
) AS by_type
LEFT JOIN content_types ON content_types.id = by_type.id
ORDER BY by_type.bytes_sent DESC
LIMIT 100""",
        },
    ),
}


# ---- rollups (rollups.py): hourly and daily figures per route that outlive pruned rows --------
ROLLUP_TABLES: dict[str, dict[str, Any]] = {
    "rollups": {
        "description": "Requests per hour (period 3600) and per UTC day (86400), per route "
        "template, or per path for requests without one; kept when old rows are pruned. "
        "Sampled rows count for the requests they stand for.",
        "sort_desc": "start",
        "facets": ["period"],
        "columns": {
            "id": "Key rollup_latency refers to",
            "period": "3600 (an hour) or 86400 (a UTC day)",
            "start": "Start of the hour or day: unix time, in seconds (UTC)",
            "route": "Route template, when the framework named one",
            "path": "Path, for requests without a route template",
            "rows": "Rows recorded",
            "requests": "Requests they stand for (more than rows when sampled)",
            "status_1xx": "Requests answered 1xx",
            "status_2xx": "Requests answered 2xx",
            "status_3xx": "Requests answered 3xx",
            "status_4xx": "Requests answered 4xx",
            "status_5xx": "Requests answered 5xx (server errors)",
            "not_found": "Requests answered 404",
            "bytes_sent": "Response body bytes",
            "bytes_received": "Request body bytes",
            "timed": "Rows with a duration",
            "duration_total": "Sum of their durations, in seconds",
            "duration_max": "Longest duration, in seconds",
        },
        "units": {"bytes_sent": "B", "bytes_received": "B", "duration_total": "s",
                  "duration_max": "s"},
    },
    "rollup_latency": {
        "description": "Latency histogram of each rollup: how many durations fell in each "
        "fixed bucket (percentiles read from it are within 5%)",
        "columns": {
            "rollup": "The rollup (hour or day, route) counted",
            "bucket": "The latency bucket",
            "count": "Durations in that bucket",
        },
    },
    "latency_buckets": {
        "description": "The fixed latency buckets: each 10% wider than the one before, from "
        "10 µs; a percentile that falls in a bucket is shown as its middle value",
        "label_column": "label",
        "columns": {
            "bucket": "Bucket number",
            "low": "Shortest duration in the bucket, in seconds",
            "high": "Duration where the next bucket starts, in seconds",
            "mid": "The value a percentile in this bucket is shown as, in seconds",
            "label": "The bucket's range, for people",
        },
    },
    "rollups_state": {
        "description": "How far the rollups have got: folded_until is the start (unix time) "
        "of the first hour not yet added to the daily rollups",
        "columns": {"name": "What is recorded", "value": "Its value"},
    },
}

_ROLLUP_PERCENTILE = milliseconds("min(b{p}.mid, r.duration_max)") + " AS p{p}_ms"
ROLLUP_QUERIES: dict[str, dict[str, Any]] = {
    "route_latency_over_time": {
        "title": "Route latency over time",
        "description": "Requests, server errors and mean and p50/p95/p99 duration "
        "(milliseconds; percentiles within 5%) per hour and route, newest first, from the "
        "hourly rollups: complete even where old rows were pruned. Leave route empty for "
        "every route",
        "sql": f"""WITH rolled AS (
  SELECT u.id, u.start, COALESCE(routes.name, paths.name) AS route, u.requests,
    u.status_5xx, u.timed, u.duration_total, u.duration_max
  FROM rollups AS u
  LEFT JOIN routes ON routes.id = u.route
  LEFT JOIN paths ON paths.id = u.path
  WHERE u.period = 3600
    AND (:route = '' OR COALESCE(routes.name, paths.name) = :route)
),
running AS (
  SELECT l.rollup, l.bucket,
    sum(l.count) OVER (PARTITION BY l.rollup ORDER BY l.bucket) AS seen,
    sum(l.count) OVER (PARTITION BY l.rollup) AS n
  FROM rollup_latency AS l
  WHERE l.rollup IN (SELECT id FROM rolled)
),
ranked AS (
  SELECT rollup,
    min(CASE WHEN seen * 100 >= 50 * n THEN bucket END) AS b50,
    min(CASE WHEN seen * 100 >= 95 * n THEN bucket END) AS b95,
    min(CASE WHEN seen * 100 >= 99 * n THEN bucket END) AS b99
  FROM running
  GROUP BY rollup
)
SELECT {iso_time("r.start")} AS hour, r.route,
  r.requests, r.status_5xx AS server_errors,
  round(1.0 * r.status_5xx / r.requests, 4) AS error_rate,
  {milliseconds("r.duration_total / r.timed")} AS avg_ms,
  {_ROLLUP_PERCENTILE.format(p=50)},
  {_ROLLUP_PERCENTILE.format(p=95)},
  {_ROLLUP_PERCENTILE.format(p=99)}
FROM rolled AS r
LEFT JOIN ranked AS k ON k.rollup = r.id
LEFT JOIN latency_buckets AS b50 ON b50.bucket = k.b50
LEFT JOIN latency_buckets AS b95 ON b95.bucket = k.b95
LEFT JOIN latency_buckets AS b99 ON b99.bucket = k.b99
ORDER BY r.start DESC, r.requests DESC
LIMIT 1000""",
    },
}


def _rollup_metadata(tables: dict[str, list[str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(table metadata, canned queries) for the rollup tables the file has."""
    described = {
        name: copy.deepcopy(meta) for name, meta in ROLLUP_TABLES.items() if name in tables
    }
    needed = {"rollups", "rollup_latency", "latency_buckets", "routes", "paths"}
    queries = copy.deepcopy(ROLLUP_QUERIES) if needed <= set(tables) else {}
    return described, queries


def table_columns(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Every table and view of the database, with its column names in order."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    return {
        name: [row[1] for row in conn.execute(f"PRAGMA table_info([{name}])")]
        for name in names
    }


def _is_lookup(columns: list[str]) -> bool:
    return columns == ["id", "name"]


def log_metadata(tables: dict[str, list[str]]) -> dict[str, Any]:
    """The metadata of one log database (the value under ``databases.NAME``).

    ``tables`` maps each table or view to its columns (see :func:`table_columns`).
    """
    request_columns = set(tables.get("requests", ()))
    meta_tables: dict[str, Any] = {}
    if request_columns:
        meta_tables["requests"] = {
            "description": "One row per HTTP request or WebSocket connection served. "
            "Times are unix seconds (UTC), durations are seconds, sizes are bytes.",
            "sort_desc": "start",
            "facets": [c for c in FACETS if c in request_columns],
            "columns": {
                c: COLUMN_DESCRIPTIONS[c] for c in tables["requests"] if c in COLUMN_DESCRIPTIONS
            },
            "units": {c: u for c, u in UNITS.items() if c in request_columns},
        }
    if "requests_view" in tables:
        view_columns = set(tables["requests_view"])
        meta_tables["requests_view"] = {
            "description": "The requests, each lookup joined as text, newest first.",
            "sort_desc": "start" if "start" in view_columns else None,
            "facets": [c for c in FACETS if c in view_columns],
            "columns": {
                c: COLUMN_DESCRIPTIONS[c]
                for c in tables["requests_view"]
                if c in COLUMN_DESCRIPTIONS
            },
            "units": {c: u for c, u in UNITS.items() if c in view_columns},
        }
        if meta_tables["requests_view"]["sort_desc"] is None:
            del meta_tables["requests_view"]["sort_desc"]
    if "dropped" in tables:
        meta_tables["dropped"] = {
            "description": "Records that could not be written, counted per hour (UTC) and reason",
            "sort_desc": "hour",
            "columns": {
                "hour": "Hour the records were dropped, UTC",
                "reason": "queue_full, write_failed or bad_record",
                "count": "Number of records dropped",
            },
        }
    if "excluded_requests" in tables:
        meta_tables["excluded_requests"] = {
            "description": "Requests deliberately not recorded (health checks, exclusions, "
            "sampling), counted per hour (UTC) and reason",
            "sort_desc": "hour",
            "columns": {
                "hour": "Hour of the requests, UTC",
                "reason": "Why they were not recorded",
                "count": "Number of requests",
            },
        }
    if "log_meta" in tables:
        meta_tables["log_meta"] = {
            "description": "What the file knows about itself, e.g. when rotation started it",
            "columns": {
                "key": "started: unix time (UTC) of the file's first request",
                "value": "The value, as text",
            },
        }
    if "merged_files" in tables:
        meta_tables["merged_files"] = {
            "description": "Logs merged into this one (asgi-log-to-sqlite merge), one row each",
            "sort_desc": "merged_at",
            "columns": {
                "fingerprint": "Hash of the merged file's rows: merging it again adds nothing",
                "name": "File name it was merged from",
                "rows": "Requests it brought",
                "first_start": "Its first request: unix time, in seconds (UTC)",
                "last_start": "Its last request: unix time, in seconds (UTC)",
                "merged_at": "When it was merged, ISO 8601 UTC",
            },
        }
    for name in ("captured_headers", "captured_headers_view"):
        if name in tables:
            meta_tables[name] = {
                "description": "Headers recorded on request (capture_request_headers, "
                "capture_response_headers), one row per header of a request",
                "columns": {
                    "request": "Row id of the request in the requests table",
                    "direction": "request or response",
                    "name": "Header name, lower case",
                    "value": "Header value",
                },
            }
    for name in ("captures", "captures_view"):
        if name in tables:
            meta_tables[name] = {
                "description": "What a replay needs of a request (capture_requests; see "
                "docs/replay.md), secrets as {{name}} placeholders; one row per captured request",
                "columns": {
                    "request": "Row id of the request in the requests table",
                    "raw_path": "The path's bytes as sent",
                    "raw_query": "The query's bytes as sent, sensitive values as placeholders",
                    "request_headers": "Every request header in order, JSON [[name, value], ...]",
                    "request_body": "The request body (redacted), when within the limit",
                    "request_body_sha256": "SHA-256 of the stored body, or of the sent one when "
                    "too large to keep",
                    "request_body_kept": "1 when request_body is the whole body",
                    "response_headers": "Response headers, JSON (capture_responses)",
                    "response_body": "The response body (redacted, capture_responses)",
                    "response_body_sha256": "SHA-256 of the response body the app sent",
                    "response_body_kept": "1 when response_body is the whole body",
                    "response_chunks": "JSON [[seconds after the response started, bytes], ...]",
                },
            }
    rollup_tables, rollup_queries = _rollup_metadata(tables)
    meta_tables.update(rollup_tables)
    for name, columns in tables.items():
        if name not in meta_tables and _is_lookup(columns):
            meta_tables[name] = {
                "description": LOOKUP_DESCRIPTIONS.get(name, f"Distinct values of {name}"),
                "label_column": "name",
                "columns": {"id": "Key the requests table refers to", "name": "The value"},
            }
    sampled = "sample_rate" in request_columns
    queries = {
        name: {**query, "sql": sample_weighted(query["sql"], sampled)}
        for name, (needs, query) in QUERIES.items()
        if request_columns and needs <= request_columns
    }
    meta: dict[str, Any] = {
        "description": "An access log written by asgi-log-to-sqlite: one row per request.",
        "tables": meta_tables,
    }
    queries.update(rollup_queries)
    if queries:
        meta["queries"] = queries
    return meta


def database_name_for(path: str | os.PathLike[str]) -> str:
    """The name Datasette gives a database file: its file name without the extension."""
    return Path(path).stem


def metadata_for_file(path: str | os.PathLike[str], database: str | None = None) -> dict[str, Any]:
    """A complete Datasette metadata document for the log database at ``path``, with its
    traffic dashboard (datasette-dashboards' plugin configuration).

    Raises ``ValueError`` when the file is not a log database.
    """
    from .filekind import special_file_kind
    from .schema import is_log_database, open_readonly

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    kind = special_file_kind(path)
    if kind is not None:
        raise ValueError(f"{path!r} is not a regular file ({kind})")
    try:
        conn = open_readonly(path)
    except sqlite3.Error as error:
        raise ValueError(f"{path!r} cannot be opened ({error})") from None
    try:
        if not is_log_database(conn):
            raise ValueError(f"{path!r} is not a log database (it has no requests table)")
        tables = table_columns(conn)
    except sqlite3.DatabaseError as error:
        if "not a database" in str(error):
            raise ValueError(f"{path!r} is not a SQLite database ({error})") from None
        raise ValueError(f"{path!r} cannot be read ({error})") from None
    except UnicodeDecodeError:  # a damaged page: names that are not UTF-8
        raise ValueError(f"{path!r} cannot be read (a table or column name is not UTF-8)") from None
    finally:
        conn.close()
    name = database or database_name_for(path)
    return {
        "databases": {name: log_metadata(tables)},
        "plugins": {DASHBOARDS_PLUGIN: dashboards_config({name: tables})},
    }


# Keys Datasette 1.0 reads from its configuration file (datasette.yaml), not from metadata.
_CONFIG_TABLE_KEYS = ("sort", "sort_desc", "facets", "label_column", "hidden", "size")


def split_for_datasette_1(metadata: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a metadata document into Datasette 1.0's ``(metadata, configuration)`` pair.

    Datasette 1.0 keeps descriptions in metadata, but table options, canned queries and plugin
    configuration in its configuration file; it has no column units.
    """
    metadata = copy.deepcopy(metadata)
    config: dict[str, Any] = {"databases": {}}
    if "plugins" in metadata:
        config["plugins"] = metadata.pop("plugins")
    for name, database in (metadata.get("databases") or {}).items():
        db_config: dict[str, Any] = {}
        if "queries" in database:
            db_config["queries"] = database.pop("queries")
        for table_name, table in (database.get("tables") or {}).items():
            table.pop("units", None)
            moved = {k: table.pop(k) for k in _CONFIG_TABLE_KEYS if k in table}
            if moved:
                db_config.setdefault("tables", {})[table_name] = moved
        if db_config:
            config["databases"][name] = db_config
    return metadata, config
