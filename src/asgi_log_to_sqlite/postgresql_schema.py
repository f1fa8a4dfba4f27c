"""The log database as PostgreSQL holds it: the URL, the tables, ordered migrations, the readable
view, daily partitions and retention. Shared by the PostgreSQL sink (writing), ``pull`` and the
reports (reading), so none of them imports another.

The logical schema is SQLite's (:mod:`asgi_log_to_sqlite.schema`): the same lookup tables, the
same ``requests`` columns (lookup columns hold ids), ``requests_view``, ``dropped`` and
``excluded_requests``, ``captured_headers`` and ``captures``. What differs, and why:

* ``requests`` is partitioned by day on ``start`` (``requests_dYYYYMMDD``, UTC): retention drops
  a whole day with one cheap statement instead of deleting rows one by one.
* ``requests.id`` comes from a sequence (SQLite's rowid): writers take ids for a batch up front,
  so late exceptions and captures can point at their rows.
* Lookup names are unique by their MD5 (a B-tree entry cannot hold a 4 KB value), and no
  foreign key is *declared* from ``requests`` to them: PostgreSQL checks a declared key row by
  row, with a row lock on the lookup row, which measured six to eight times slower ``COPY``
  (8,000 rows/s instead of 60,000) and makes every writer lock the same popular rows. The ids
  are only ever taken from the lookup tables themselves, and lookup rows are never deleted, so
  every id resolves; ``requests_view`` joins them, and ``pull`` writes a SQLite file with its
  declared foreign keys for Datasette.
* ``captured_headers`` and ``captures`` carry the ``start`` of their request, for retention.

Versions are rows of ``schema_migrations``. Twenty processes may start at once on several hosts:
creation and upgrades run in one transaction under an advisory lock, every statement idempotent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from .schema import VIEW_BODY

__all__ = [
    "LOOKUP_TABLES",
    "MIGRATIONS",
    "REQUEST_TYPES",
    "SchemaError",
    "Target",
    "connect",
    "ensure_partitions",
    "ensure_schema",
    "is_postgresql_url",
    "parse_url",
    "psycopg",
]

SCHEMES = ("postgresql", "postgres")
DEFAULT_SCHEMA = "public"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
#: Seconds a connection attempt waits at most (libpq's smallest useful value is 2).
CONNECT_TIMEOUT = 3
DAY = 86400

#: Advisory lock classes (the first key; the second is the schema's hash): schema creation,
#: partition creation, retention, and the pull watermark (shared by writers, exclusive for pull).
SCHEMA_LOCK = 0x41534C01
PARTITION_LOCK = 0x41534C02
RETENTION_LOCK = 0x41534C03
WATERMARK_LOCK = 0x41534C04
SHIP_LOCK = 0x41534C05

#: Column of ``requests`` -> its PostgreSQL type (lookup columns hold ids: bigint). Every
#: column of :data:`schema.REQUEST_COLUMNS` must be here (a test checks it).
REQUEST_TYPES: dict[str, str] = {
    "start": "double precision NOT NULL",
    "method": "text",
    "path": "bigint",
    "query_string": "bigint",
    "user_agent": "bigint",
    "referer": "bigint",
    "accept_language": "bigint",
    "http_status": "bigint",
    "content_type": "bigint",
    "client_ip": "text",
    "duration": "double precision",
    "body_size": "bigint",
    "host": "bigint",
    "scheme": "text",
    "http_version": "text",
    "request_body_size": "bigint",
    "ttfb": "double precision",
    "exception": "text",
    "disconnected": "bigint",
    "connection_type": "text",
    "peer_ip": "text",
    "route": "bigint",
    "actor": "bigint",
    "sample_rate": "double precision",
    "visitor": "text",
    "instance": "bigint",
}

LOOKUP_TABLES = (
    "paths",
    "query_strings",
    "user_agents",
    "referers",
    "accept_languages",
    "content_types",
    "hosts",
    "routes",
    "actors",
    "instances",
    "header_names",
    "header_values",
    "header_lists",
)


class SchemaError(Exception):
    """The database holds a log this version cannot write (a newer schema)."""


def psycopg() -> Any:
    """psycopg 3, or an ImportError that says how to install it."""
    try:
        import psycopg as module
    except ImportError as error:
        raise ImportError(
            f"a PostgreSQL log needs psycopg 3 ({error}): "
            "pip install 'asgi-log-to-sqlite[postgresql]'"
        ) from None
    return module


# ---- the URL -------------------------------------------------------------------------------------
def is_postgresql_url(target: Any) -> bool:
    return isinstance(target, str) and target.split("://", 1)[0].lower() in SCHEMES and (
        "://" in target
    )


@dataclasses.dataclass(frozen=True)
class Target:
    """A PostgreSQL log: how to connect (``url``, for libpq), which schema holds it, and how to
    name it in messages (``display``: the URL without its password)."""

    url: str
    schema: str
    display: str

    @property
    def key(self) -> int:
        """The second key of this log's advisory locks (one log per database and schema)."""
        return int.from_bytes(hashlib.sha256(self.schema.encode()).digest()[:4], "big", signed=True)

    def digest(self) -> str:
        """A short name for this log (the default spill file's name)."""
        return hashlib.sha256(f"{self.display}#{self.schema}".encode()).hexdigest()[:12]


def parse_url(url: str, schema: str | None = None, option: str = "file") -> Target:
    """Check a ``postgresql://`` URL now, so that a bad one fails at construction naming the
    option. ``?schema=`` (not a libpq parameter) is taken out; ``schema`` (the option) must
    agree with it."""
    if not isinstance(url, str):
        raise TypeError(f"option {option!r} must be a path or a URL, got {url!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as error:
        raise ValueError(
            f"option {option!r}: {_hidden(url)!r} is not a usable URL ({error})"
        ) from None
    if parts.scheme.lower() not in SCHEMES:
        given = f"{parts.scheme}://" if parts.scheme else repr(_hidden(url))
        raise ValueError(
            f"option {option!r}: {given} is not a PostgreSQL URL (postgresql://user@host/database)"
        )
    if "\x00" in url or any(c in url for c in "\r\n"):
        raise ValueError(f"option {option!r}: the URL holds control characters")
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    named = [value for key, value in query if key == "schema"]
    kept = [(key, value) for key, value in query if key != "schema"]
    if len(named) > 1:
        raise ValueError(f"option {option!r}: the URL names the schema twice")
    from_url = named[0] if named else None
    for value, source in ((from_url, f"option {option!r}: ?schema="), (schema, "option 'schema'")):
        if value is not None and not _IDENTIFIER.match(value):
            raise ValueError(
                f"{source} must be a name of letters, digits and underscores, got {value!r}"
            )
    if from_url is not None and schema is not None and from_url != schema:
        raise ValueError(
            f"option 'schema' ({schema!r}) and the URL's ?schema= ({from_url!r}) disagree"
        )
    libpq_url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(kept)))
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        pass  # checked when the sink is built, with the install hint
    else:
        try:
            conninfo_to_dict(libpq_url)
        except Exception as error:  # noqa: BLE001 - libpq's parser: unknown parameters...
            reason = " ".join(str(error).split())  # libpq's message ends with a newline
            raise ValueError(
                f"option {option!r}: {_hidden(url)!r} is not a usable PostgreSQL URL ({reason})"
            ) from None
    return Target(libpq_url, from_url or schema or DEFAULT_SCHEMA, _hidden(libpq_url))


def _hidden(url: str) -> str:
    """The URL with its password replaced by ``***``: fit for messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rpartition("@")[2]
        user = parts.netloc.rpartition("@")[0].partition(":")[0]
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "postgresql://…"


def connect(target: Target, autocommit: bool = True, timeout: float = CONNECT_TIMEOUT) -> Any:
    """A connection whose ``search_path`` is the log's schema (the schema may not exist yet)."""
    pg = psycopg()
    return pg.connect(
        target.url,
        autocommit=autocommit,
        connect_timeout=max(2, int(timeout)),
        application_name="asgi-log-to-sqlite",
        options=f"-c search_path={target.schema}",
    )


# ---- migrations ----------------------------------------------------------------------------------
Migration = Callable[[Any], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


def latest_version() -> int:
    return len(MIGRATIONS)


@migration
def m001_log_tables(cur: Any) -> None:
    """The log as SQLite holds it (with ``instance``), ``requests`` partitioned by day."""
    for table in LOOKUP_TABLES:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL)"
        )
        cur.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_name ON {table} (md5(name))")
    cur.execute("CREATE SEQUENCE IF NOT EXISTS requests_id_seq")
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in REQUEST_TYPES.items())
    cur.execute(
        "CREATE TABLE IF NOT EXISTS requests (\n"
        "    id bigint NOT NULL DEFAULT nextval('requests_id_seq'),\n"
        f"    {columns}\n"
        ") PARTITION BY RANGE (start)"
    )
    cur.execute("ALTER SEQUENCE requests_id_seq OWNED BY requests.id")
    # Rows are appended in about start and id order, so block-range indexes serve time ranges
    # (reports, retention's boundary day) and id ranges (pull, tail, late exceptions) at a
    # fraction of a B-tree's cost to every COPY.
    cur.execute("CREATE INDEX IF NOT EXISTS requests_start ON requests USING brin (start)")
    cur.execute("CREATE INDEX IF NOT EXISTS requests_id ON requests USING brin (id)")
    for table in ("dropped", "excluded_requests"):
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (hour text NOT NULL, reason text NOT NULL, "
            "count bigint NOT NULL, PRIMARY KEY (hour, reason))"
        )
    cur.execute(
        """CREATE TABLE IF NOT EXISTS captured_headers (
            request bigint NOT NULL,
            direction text NOT NULL,
            name bigint,
            value bigint,
            start double precision
        )"""
    )
    cur.execute(
        "CREATE INDEX IF NOT EXISTS captured_headers_request ON captured_headers (request)"
    )
    cur.execute(
        """CREATE TABLE IF NOT EXISTS captures (
            request bigint PRIMARY KEY,
            raw_path bytea,
            raw_query bytea,
            request_headers bigint,
            request_body bytea,
            request_body_sha256 text,
            request_body_kept bigint NOT NULL DEFAULT 0,
            response_headers bigint,
            response_body bytea,
            response_body_sha256 text,
            response_body_kept bigint NOT NULL DEFAULT 0,
            response_chunks text,
            start double precision
        )"""
    )
    for table in ("captured_headers", "captures"):
        cur.execute(f"CREATE INDEX IF NOT EXISTS {table}_start ON {table} USING brin (start)")
    # Spill files shipped: per file, the last shipment (see sinks/spill.py), so that a
    # shipment cut short is neither lost nor stored twice.
    cur.execute(
        """CREATE TABLE IF NOT EXISTS spill_shipments (
            spill text PRIMARY KEY,
            seq bigint NOT NULL,
            upto bigint NOT NULL,
            counts text NOT NULL,
            shipped_at timestamptz NOT NULL DEFAULT now()
        )"""
    )


# The readable view, rebuilt with every migration (it lists every column).
VIEW_SQL = (
    "CREATE OR REPLACE VIEW requests_view AS SELECT\n    requests.id,\n"
    "    to_char(to_timestamp(requests.start) AT TIME ZONE 'UTC',\n"
    "            'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS time,\n" + VIEW_BODY
)

CAPTURED_HEADERS_VIEW_SQL = """CREATE OR REPLACE VIEW captured_headers_view AS SELECT
    captured_headers.request,
    captured_headers.direction,
    header_names.name AS name,
    header_values.name AS value
FROM captured_headers
LEFT JOIN header_names ON header_names.id = captured_headers.name
LEFT JOIN header_values ON header_values.id = captured_headers.value"""


def schema_version(cur: Any) -> int:
    """Migrations applied (0: no log here yet)."""
    pg = psycopg()
    try:
        with cur.connection.transaction():
            row = cur.execute("SELECT max(version) FROM schema_migrations").fetchone()
    except pg.errors.UndefinedTable:
        return 0
    return row[0] or 0


def ensure_schema(conn: Any, target: Target) -> None:
    """Create or upgrade the log; safe when many processes on many hosts start at once.

    The usual case (up to date) is one query and takes no lock. Otherwise one transaction takes
    an advisory lock (the others wait for it), reads the version again and migrates.
    """
    with conn.cursor() as cur:
        version = schema_version(cur)
        if version == latest_version():
            return
        if version > latest_version():
            raise SchemaError(
                f"the log in {target.display} (schema {target.schema}) is at schema version "
                f"{version}, newer than this asgi-log-to-sqlite understands "
                f"({latest_version()}); upgrade asgi-log-to-sqlite"
            )
        with conn.transaction():
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (SCHEMA_LOCK, target.key))
            if cur.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (target.schema,)
            ).fetchone() is None:
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {target.schema}")
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            version = cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations"
                                  ).fetchone()[0]
            if version > latest_version():
                raise SchemaError(f"schema version {version} is newer than {latest_version()}")
            for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
                step(cur)
                cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))
            cur.execute(VIEW_SQL)
            cur.execute(CAPTURED_HEADERS_VIEW_SQL)


# ---- daily partitions ----------------------------------------------------------------------------
def day_of(start: float) -> int:
    """The UTC day (days since 1970-01-01) a ``start`` falls in."""
    return int(start // DAY)


def partition_name(day: int) -> str:
    return "requests_d" + datetime.fromtimestamp(day * DAY, timezone.utc).strftime("%Y%m%d")


_PARTITION = re.compile(r"^requests_d(\d{8})$")


def partition_day(name: str) -> int | None:
    match = _PARTITION.match(name)
    if match is None:
        return None
    moment = datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) // DAY


def attached_days(cur: Any) -> set[int]:
    """The days that have their partition now."""
    rows = cur.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'requests'::regclass"
    ).fetchall()
    return {day for (name,) in rows if (day := partition_day(name)) is not None}


#: Days (UTC) whose partition exists ahead of time.
DAYS_AHEAD = 2
#: Oldest and newest day a partition is made for: rows outside are refused as data.
FIRST_DAY, LAST_DAY = day_of(0), day_of(253402214400)  # 1970-01-01 .. 9999-12-31


def ensure_partitions(conn: Any, target: Target, days: Iterable[int]) -> set[int]:
    """Create the partitions of ``days`` that are missing; the days that have one now.

    A new partition is made apart and then attached: ``ATTACH PARTITION`` takes a lock that lets
    other writers' ``COPY`` go on, where ``CREATE TABLE ... PARTITION OF`` would stop them.
    """
    wanted = {day for day in days if FIRST_DAY <= day <= LAST_DAY}
    with conn.cursor() as cur:
        present = attached_days(cur)
        missing = sorted(wanted - present)
        if not missing:
            return present
        with conn.transaction():
            cur.execute("SET LOCAL lock_timeout = '10s'")
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (PARTITION_LOCK, target.key))
            present = attached_days(cur)
            for day in missing:
                if day in present:
                    continue
                name = partition_name(day)
                low, high = day * DAY, (day + 1) * DAY
                if cur.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None:
                    cur.execute(f"CREATE TABLE {name} (LIKE requests INCLUDING DEFAULTS)")
                    # The check lets ATTACH skip scanning the table.
                    cur.execute(
                        f"ALTER TABLE {name} ADD CONSTRAINT {name}_range "
                        f"CHECK (start >= {low} AND start < {high})"
                    )
                cur.execute(
                    f"ALTER TABLE requests ATTACH PARTITION {name} "
                    f"FOR VALUES FROM ({low}) TO ({high})"
                )
                present.add(day)
        return present


def days_around(now: float | None = None) -> list[int]:
    today = day_of(time.time() if now is None else now)
    return list(range(today - 1, today + DAYS_AHEAD + 1))


# ---- retention -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Retained:
    partitions_dropped: int = 0
    rows_deleted: int = 0


def delete_older_than(conn: Any, target: Target, cutoff: float) -> Retained | None:
    """Rows that started before ``cutoff`` deleted: whole days by dropping their partition, the
    rest of the day ``cutoff`` falls in by ``DELETE`` (partition pruning keeps it to that day).
    None if another process is doing it now. ``conn`` must be in autocommit mode."""
    done = Retained()
    with conn.cursor() as cur:
        if not cur.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (RETENTION_LOCK, target.key)
        ).fetchone()[0]:
            return None
        try:
            # A detach cut short earlier (a timeout, a crash) is finished first.
            for (name,) in cur.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'requests'::regclass AND i.inhdetachpending"
            ).fetchall():
                cur.execute(f"ALTER TABLE requests DETACH PARTITION {name} FINALIZE")
            cut_day = day_of(cutoff)
            for day in sorted(attached_days(cur)):
                if day >= cut_day:
                    break
                name = partition_name(day)
                # CONCURRENTLY: writers and readers of other days are never blocked.
                cur.execute("SET statement_timeout = '30s'")
                try:
                    cur.execute(f"ALTER TABLE requests DETACH PARTITION {name} CONCURRENTLY")
                finally:
                    cur.execute("RESET statement_timeout")
                cur.execute(f"DROP TABLE IF EXISTS {name}")
                done.partitions_dropped += 1
            # Partitions detached but not dropped (a crash in between).
            for (name,) in cur.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r' "
                "AND c.relname ~ '^requests_d[0-9]{8}$' AND NOT c.relispartition"
            ).fetchall():
                day = partition_day(name)
                if day is not None and day < cut_day:
                    cur.execute(f"DROP TABLE IF EXISTS {name}")
            with conn.transaction():
                done.rows_deleted = cur.execute(
                    "DELETE FROM requests WHERE start < %s", (cutoff,)
                ).rowcount
                for table in ("captured_headers", "captures"):
                    cur.execute(f"DELETE FROM {table} WHERE start < %s", (cutoff,))
                hour = datetime.fromtimestamp(cutoff, timezone.utc).strftime("%Y-%m-%dT%H:00")
                for table in ("dropped", "excluded_requests"):
                    cur.execute(f"DELETE FROM {table} WHERE hour < %s", (hour,))
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", (RETENTION_LOCK, target.key))
    return done


# ---- the pull watermark --------------------------------------------------------------------------
def committed_upto(conn: Any, target: Target, timeout: float = 60.0) -> int:
    """The largest id below which every row is committed (or never will be): writers hold a
    shared advisory lock from taking their ids until they commit, so once the exclusive lock is
    granted no transaction holding ids is still open. Held for a moment only."""
    with conn.cursor() as cur:
        cur.execute(f"SET lock_timeout = '{int(timeout * 1000)}ms'")
        try:
            with conn.transaction():
                cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (WATERMARK_LOCK, target.key))
                last, called = cur.execute(
                    "SELECT last_value, is_called FROM requests_id_seq"
                ).fetchone()
        finally:
            cur.execute("RESET lock_timeout")
    return last if called else last - 1


# ---- reading rows back ---------------------------------------------------------------------------
def rows_sql() -> str:
    """``id`` and the columns of :data:`schema.REQUEST_COLUMNS` in order, lookup columns as their
    text: rows as the writer builds them (for ``pull``)."""
    from .schema import REQUEST_COLUMNS

    fields, joins = ["r.id"], []
    for column, table in REQUEST_COLUMNS.items():
        if table is None:
            fields.append(f"r.{column}")
        else:
            fields.append(f"l_{column}.name")
            joins.append(f"LEFT JOIN {table} AS l_{column} ON l_{column}.id = r.{column}")
    return f"SELECT {', '.join(fields)} FROM requests AS r {' '.join(joins)}"


def ensure_readable(conn: Any, target: Target) -> None:
    """A clear error when the database holds no log (in that schema), or a newer one."""
    with conn.cursor() as cur:
        version = schema_version(cur)
    if version == 0:
        raise SchemaError(f"no asgi-log-to-sqlite log in schema {target.schema}")
    if version > latest_version():
        raise SchemaError(
            f"the log is at schema version {version}, newer than this asgi-log-to-sqlite "
            f"understands ({latest_version()}); upgrade asgi-log-to-sqlite"
        )
