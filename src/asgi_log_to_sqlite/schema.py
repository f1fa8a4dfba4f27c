"""The log database as SQLite holds it: tables, ordered migrations, the readable view, and the
habits every module that opens a log file shares (how to connect, write in a transaction, open
read-only, recognise a log, and which files sit beside it).

The schema starts exactly where asgi-log-to-sqlite 0.1.1 left it (migration 1 is a no-op on such
a file), so old logs are upgraded in place. ``PRAGMA user_version`` records the migrations
applied. Several worker processes may open one new file at the same moment: every step runs inside
one ``BEGIN IMMEDIATE`` transaction and is idempotent, and "locked" is retried.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator

from . import rollups

__all__ = [
    "FILE_SUFFIXES",
    "IMPORTED_FILES_SQL",
    "LOOKUP_TABLES",
    "REQUEST_COLUMNS",
    "ROLLUP_TABLES_SQL",
    "WAL_SUFFIX",
    "SchemaError",
    "begin_immediate",
    "commit",
    "connect",
    "ensure_schema",
    "is_log_database",
    "latest_version",
    "open_readonly",
    "remove_files",
    "rollback",
    "transaction",
]

#: The write-ahead log beside a database in WAL mode: its size is the log's too, and its
#: presence says a program has the file open.
WAL_SUFFIX = "-wal"
#: The files SQLite may keep beside a database: a log is all of them, under one name.
FILE_SUFFIXES = ("", WAL_SUFFIX, "-shm", "-journal")

#: What a file knows about itself (when it was started, rotated): made by rotation as needed.
LOG_META_SQL = "CREATE TABLE IF NOT EXISTS log_meta (key TEXT PRIMARY KEY, value TEXT)"
#: The inputs ``merge`` copied into a file, so that merging them again adds nothing.
MERGED_FILES_SQL = """CREATE TABLE IF NOT EXISTS merged_files (
    fingerprint TEXT PRIMARY KEY,
    name TEXT,
    rows INTEGER,
    first_start FLOAT,
    last_start FLOAT,
    merged_at TEXT
)"""

#: A PostgreSQL log's spill file: its id and the last shipment taken out of it (sinks/spill.py).
SPILL_META_SQL = "CREATE TABLE IF NOT EXISTS spill_meta (key TEXT PRIMARY KEY, value TEXT)"
#: What ``pull`` copied into a file from a PostgreSQL log, per source and instance (pull.py).
PULLS_SQL = """CREATE TABLE IF NOT EXISTS pulls (
    source TEXT NOT NULL,
    instance TEXT NOT NULL,
    upto INTEGER NOT NULL,
    since FLOAT,
    pulled_at TEXT,
    PRIMARY KEY (source, instance)
)"""

# column name in ``requests`` -> lookup table holding its text (None: stored as is).
# The order is the order of the tuple the writer inserts.
REQUEST_COLUMNS: dict[str, str | None] = {
    "start": None,
    "method": None,
    "path": "paths",
    "query_string": "query_strings",
    "user_agent": "user_agents",
    "referer": "referers",
    "accept_language": "accept_languages",
    "http_status": None,
    "content_type": "content_types",
    "client_ip": None,
    "duration": None,
    "body_size": None,
    "host": "hosts",
    "scheme": None,
    "http_version": None,
    "request_body_size": None,
    "ttfb": None,
    "exception": None,
    "disconnected": None,
    "connection_type": None,
    # privacy (migration 4)
    "peer_ip": None,
    "route": "routes",
    "actor": "actors",
    "sample_rate": None,
    "visitor": None,
    # which host or container wrote the row (the instance migration)
    "instance": "instances",
}

SEED_LOOKUP_TABLES = (
    "paths",
    "query_strings",
    "user_agents",
    "referers",
    "accept_languages",
    "content_types",
)
LOOKUP_TABLES = tuple(dict.fromkeys(t for t in REQUEST_COLUMNS.values() if t))
#: (position in a row, lookup table) of each column a row holds as a name and stores as an id.
LOOKUP_POSITIONS = [(i, table) for i, table in enumerate(REQUEST_COLUMNS.values()) if table]


class SchemaError(Exception):
    """The file is not a log database this version can write (e.g. a newer schema)."""


Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


def latest_version() -> int:
    return len(MIGRATIONS)


def _lookup_table(conn: sqlite3.Connection, table: str) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS [{table}] (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")


@migration
def m001_seed_tables(conn: sqlite3.Connection) -> None:
    """The 0.1.1 schema, column for column (``IF NOT EXISTS``: a 0.1.1 file keeps its own)."""
    for table in SEED_LOOKUP_TABLES:
        _lookup_table(conn, table)
    conn.execute(
        """CREATE TABLE IF NOT EXISTS requests (
            start FLOAT,
            method TEXT,
            path INTEGER REFERENCES paths(id),
            query_string INTEGER REFERENCES query_strings(id),
            user_agent INTEGER REFERENCES user_agents(id),
            referer INTEGER REFERENCES referers(id),
            accept_language INTEGER REFERENCES accept_languages(id),
            http_status INTEGER,
            content_type INTEGER REFERENCES content_types(id),
            client_ip TEXT,
            duration FLOAT,
            body_size INTEGER
        )"""
    )


@migration
def m002_unique_lookup_names(conn: sqlite3.Connection) -> None:
    """0.1.1 only indexed ``name`` once a value was looked up; lookups need it unique always."""
    for table in SEED_LOOKUP_TABLES:
        unique_name = any(
            row[2]
            and [c[2] for c in conn.execute(f"PRAGMA index_info([{row[1]}])")] == ["name"]
            for row in conn.execute(f"PRAGMA index_list([{table}])")
        )
        if not unique_name:
            conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS [idx_{table}_name] ON [{table}](name)")


@migration
def m003_access_log_columns(conn: sqlite3.Connection) -> None:
    """What an access log needs beyond 0.1.1: where, how, how fast, and what went wrong."""
    _lookup_table(conn, "hosts")
    existing = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    for column, decl in (
        ("host", "INTEGER REFERENCES hosts(id)"),
        ("scheme", "TEXT"),
        ("http_version", "TEXT"),
        ("request_body_size", "INTEGER"),
        ("ttfb", "FLOAT"),
        ("exception", "TEXT"),
        ("disconnected", "INTEGER"),
        ("connection_type", "TEXT"),
    ):
        if column not in existing:
            conn.execute(f"ALTER TABLE requests ADD COLUMN {column} {decl}")
    conn.execute("CREATE INDEX IF NOT EXISTS requests_start ON requests(start)")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS dropped (
            hour TEXT NOT NULL,
            reason TEXT NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (hour, reason)
        )"""
    )


@migration
def m004_privacy_columns(conn: sqlite3.Connection) -> None:
    """Privacy: the raw peer beside the resolved client, route templates, actors, the sample
    rate and visitor hash of each row, captured headers, and counts of requests not recorded."""
    for table in ("routes", "actors", "header_names", "header_values"):
        _lookup_table(conn, table)
    existing = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    for column, decl in (
        ("peer_ip", "TEXT"),
        ("route", "INTEGER REFERENCES routes(id)"),
        ("actor", "INTEGER REFERENCES actors(id)"),
        ("sample_rate", "FLOAT"),
        ("visitor", "TEXT"),
    ):
        if column not in existing:
            conn.execute(f"ALTER TABLE requests ADD COLUMN {column} {decl}")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS captured_headers (
            request INTEGER NOT NULL,
            direction TEXT NOT NULL,
            name INTEGER REFERENCES header_names(id),
            value INTEGER REFERENCES header_values(id)
        )"""
    )
    conn.execute(
        "CREATE INDEX IF NOT EXISTS captured_headers_request ON captured_headers(request)"
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS excluded_requests (
            hour TEXT NOT NULL,
            reason TEXT NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (hour, reason)
        )"""
    )


@migration
def capture_tables(conn: sqlite3.Connection) -> None:
    """Record and replay: what a replay (and a mock) needs of a request and its response, one
    row per captured request beside its ``requests`` row (``captures.request`` is that row's
    rowid). Header lists are JSON ``[[name, value], ...]`` kept once each in ``header_lists``;
    secrets in them, in the query and in bodies are ``{{name}}`` placeholders. A body is kept
    when it is within ``capture_body_limit`` (``*_body_kept`` = 1, its SHA-256 is then of the
    bytes stored, NULL for an empty request body); else only its size (in ``requests``) and the
    SHA-256 of the bytes sent.
    ``response_chunks`` is JSON ``[[seconds after the response started, bytes], ...]``."""
    _lookup_table(conn, "header_lists")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS captures (
            request INTEGER PRIMARY KEY,
            raw_path BLOB,
            raw_query BLOB,
            request_headers INTEGER REFERENCES header_lists(id),
            request_body BLOB,
            request_body_sha256 TEXT,
            request_body_kept INTEGER NOT NULL DEFAULT 0,
            response_headers INTEGER REFERENCES header_lists(id),
            response_body BLOB,
            response_body_sha256 TEXT,
            response_body_kept INTEGER NOT NULL DEFAULT 0,
            response_chunks TEXT
        )"""
    )
    conn.execute("DROP VIEW IF EXISTS captures_view")
    conn.execute(CAPTURES_VIEW_SQL)


#: The rollup tables (rollups.py), and the bucket table Datasette labels the histogram with.
ROLLUP_TABLES_SQL = (
    """CREATE TABLE IF NOT EXISTS latency_buckets (
        bucket INTEGER PRIMARY KEY,
        low FLOAT NOT NULL,
        high FLOAT,
        mid FLOAT NOT NULL,
        label TEXT NOT NULL
    )""",
    # NUMERIC: whole numbers (unsampled counts, byte totals) are stored and shown as integers.
    """CREATE TABLE IF NOT EXISTS rollups (
        id INTEGER PRIMARY KEY,
        period INTEGER NOT NULL,
        start INTEGER NOT NULL,
        route INTEGER REFERENCES routes(id),
        path INTEGER REFERENCES paths(id),
        rows INTEGER NOT NULL DEFAULT 0,
        requests NUMERIC NOT NULL DEFAULT 0,
        status_1xx NUMERIC NOT NULL DEFAULT 0,
        status_2xx NUMERIC NOT NULL DEFAULT 0,
        status_3xx NUMERIC NOT NULL DEFAULT 0,
        status_4xx NUMERIC NOT NULL DEFAULT 0,
        status_5xx NUMERIC NOT NULL DEFAULT 0,
        not_found NUMERIC NOT NULL DEFAULT 0,
        bytes_sent NUMERIC NOT NULL DEFAULT 0,
        bytes_received NUMERIC NOT NULL DEFAULT 0,
        timed INTEGER NOT NULL DEFAULT 0,
        duration_total FLOAT NOT NULL DEFAULT 0,
        duration_max FLOAT
    )""",
    # The key; a NULL route or path (one of them always is) must still conflict.
    """CREATE UNIQUE INDEX IF NOT EXISTS rollups_key
        ON rollups (period, start, COALESCE(route, 0), COALESCE(path, 0))""",
    """CREATE TABLE IF NOT EXISTS rollup_latency (
        rollup INTEGER NOT NULL REFERENCES rollups(id),
        bucket INTEGER NOT NULL REFERENCES latency_buckets(bucket),
        count INTEGER NOT NULL,
        PRIMARY KEY (rollup, bucket)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS rollups_state (
        name TEXT PRIMARY KEY,
        value INTEGER
    )""",
)

#: What `import` knows of each file it read (importer.py): a file is never imported twice.
IMPORTED_FILES_SQL = """CREATE TABLE IF NOT EXISTS imported_files (
    id INTEGER PRIMARY KEY,
    head_sha256 TEXT NOT NULL,
    head_bytes INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    lines INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    excluded INTEGER NOT NULL,
    unparsed INTEGER NOT NULL,
    format TEXT,
    name TEXT,
    first_imported TEXT,
    last_imported TEXT
)"""
IMPORTED_FILES_INDEX_SQL = (
    "CREATE INDEX IF NOT EXISTS imported_files_head ON imported_files(head_sha256)"
)

#: Rows of an existing log the rollups are first filled from: the newest ones, so that opening
#: a big old log takes seconds, not minutes (about 2 s a million rows).
ROLLUP_BACKFILL_ROWS = 1_000_000


@migration
def rollup_tables(conn: sqlite3.Connection) -> None:
    """Hourly and daily rollups per route (rollups.py), filled from the rows already logged
    (the last :data:`ROLLUP_BACKFILL_ROWS` of them)."""
    for sql in ROLLUP_TABLES_SQL:
        conn.execute(sql)
    rollups.fill_buckets(conn)
    first, last = conn.execute("SELECT MIN(rowid), MAX(rowid) FROM requests").fetchone()
    if first is not None:
        rollups.add_rows(conn, max(first, last - ROLLUP_BACKFILL_ROWS + 1), last)


@migration
def instance_column(conn: sqlite3.Connection) -> None:
    """Which host or container wrote each row: several hosts share one log (PostgreSQL), and a
    log pulled or merged from them keeps it."""
    _lookup_table(conn, "instances")
    existing = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    if "instance" not in existing:
        conn.execute("ALTER TABLE requests ADD COLUMN instance INTEGER REFERENCES instances(id)")


# The readable view is rebuilt after every migration so that it always lists every column.
#: The readable view's columns after its id and ISO time, and its joins: the same in every
#: database the log can live in (see postgresql_schema.py).
VIEW_BODY = """    requests.start,
    requests.method,
    hosts.name AS host,
    paths.name AS path,
    query_strings.name AS query_string,
    requests.http_status,
    content_types.name AS content_type,
    requests.duration,
    requests.ttfb,
    requests.body_size,
    requests.request_body_size,
    requests.client_ip,
    user_agents.name AS user_agent,
    referers.name AS referer,
    accept_languages.name AS accept_language,
    requests.scheme,
    requests.http_version,
    requests.connection_type,
    requests.exception,
    requests.disconnected,
    routes.name AS route,
    actors.name AS actor,
    requests.peer_ip,
    requests.sample_rate,
    requests.visitor,
    instances.name AS instance
FROM requests
LEFT JOIN hosts ON hosts.id = requests.host
LEFT JOIN paths ON paths.id = requests.path
LEFT JOIN query_strings ON query_strings.id = requests.query_string
LEFT JOIN content_types ON content_types.id = requests.content_type
LEFT JOIN user_agents ON user_agents.id = requests.user_agent
LEFT JOIN referers ON referers.id = requests.referer
LEFT JOIN accept_languages ON accept_languages.id = requests.accept_language
LEFT JOIN routes ON routes.id = requests.route
LEFT JOIN actors ON actors.id = requests.actor
LEFT JOIN instances ON instances.id = requests.instance"""

VIEW_SQL = (
    "CREATE VIEW requests_view AS SELECT\n    requests.rowid AS id,\n"
    "    strftime('%Y-%m-%dT%H:%M:%fZ', requests.start, 'unixepoch') AS time,\n" + VIEW_BODY
)

CAPTURED_HEADERS_VIEW_SQL = """CREATE VIEW captured_headers_view AS SELECT
    captured_headers.request,
    captured_headers.direction,
    header_names.name AS name,
    header_values.name AS value
FROM captured_headers
LEFT JOIN header_names ON header_names.id = captured_headers.name
LEFT JOIN header_values ON header_values.id = captured_headers.value"""


CAPTURES_VIEW_SQL = """CREATE VIEW captures_view AS SELECT
    captures.request,
    CAST(captures.raw_path AS TEXT) AS raw_path,
    CAST(captures.raw_query AS TEXT) AS raw_query,
    request_header_lists.name AS request_headers,
    captures.request_body,
    captures.request_body_sha256,
    captures.request_body_kept,
    response_header_lists.name AS response_headers,
    captures.response_body,
    captures.response_body_sha256,
    captures.response_body_kept,
    captures.response_chunks
FROM captures
LEFT JOIN header_lists AS request_header_lists
    ON request_header_lists.id = captures.request_headers
LEFT JOIN header_lists AS response_header_lists
    ON response_header_lists.id = captures.response_headers"""


def _refresh_views(conn: sqlite3.Connection) -> None:
    conn.execute("DROP VIEW IF EXISTS requests_view")
    conn.execute(VIEW_SQL)
    conn.execute("DROP VIEW IF EXISTS captured_headers_view")
    conn.execute(CAPTURED_HEADERS_VIEW_SQL)


def connect(path: str, busy_timeout: float = 10.0) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are explicit, see :func:`transaction`."""
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error."""
    begin_immediate(conn)
    try:
        yield conn
        commit(conn)
    except BaseException:
        rollback(conn)
        raise


def begin_immediate(conn: sqlite3.Connection) -> None:
    """Begin a write transaction (for one that outlives a ``with`` block: see
    :func:`transaction` for the usual case).

    IMMEDIATE takes the write lock up front, so writers of several processes queue on the busy
    timeout instead of failing halfway with "database is locked" on their first write.
    """
    conn.execute("BEGIN IMMEDIATE")


def commit(conn: sqlite3.Connection) -> None:
    conn.execute("COMMIT")


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any; never raises (the caller has an error to tell)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def readonly_uri(path: str | os.PathLike[str], immutable: bool = False) -> str:
    """The URI that opens ``path`` read-only (any characters in the name are quoted);
    ``immutable``: without locks, for a file no program writes to (see report/files.py)."""
    # Quoted from bytes: a name that is not UTF-8 (surrogate escapes) cannot be encoded as text.
    quoted = urllib.parse.quote(os.fsencode(os.path.abspath(path)))
    return f"file:{quoted}?immutable=1" if immutable else f"file:{quoted}?mode=ro"


def open_readonly(path: str | os.PathLike[str], timeout: float = 5.0) -> sqlite3.Connection:
    """A read-only connection: reports, merges and checks never write to a log they read."""
    return sqlite3.connect(
        readonly_uri(path), uri=True, timeout=timeout, isolation_level=None,
        check_same_thread=False,
    )


def remove_files(path: str) -> None:
    """Delete a database and the files SQLite keeps beside it."""
    for suffix in FILE_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


def _is_busy(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def ensure_schema(conn: sqlite3.Connection, attempts: int = 50) -> None:
    """Bring the file to the latest schema, in WAL mode; safe from several processes at once."""
    for attempt in range(attempts):
        try:
            _ensure_schema_once(conn)
            return
        except sqlite3.OperationalError as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not _is_busy(error) or attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1))


def _ensure_schema_once(conn: sqlite3.Connection) -> None:
    if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
        # Only possible before the first page is written: lets retention and prune give space
        # back with ``PRAGMA incremental_vacuum`` instead of a full VACUUM.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        conn.execute("PRAGMA journal_mode=WAL")
    version = schema_version(conn)
    if version == latest_version():
        return
    if version > latest_version():
        raise SchemaError(
            f"schema version {version} is newer than this asgi-log-to-sqlite understands "
            f"({latest_version()}); upgrade asgi-log-to-sqlite"
        )
    with transaction(conn):
        version = schema_version(conn)  # another process may have migrated meanwhile
        if version > latest_version():
            raise SchemaError(f"schema version {version} is newer than {latest_version()}")
        for step in MIGRATIONS[version:]:
            step(conn)
        if version < latest_version():
            _refresh_views(conn)
            conn.execute(f"PRAGMA user_version={latest_version()}")


def is_log_database(conn: sqlite3.Connection) -> bool:
    """True for a file holding a ``requests`` table as written by this package or 0.1.1."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    return {"start", "path", "http_status", "duration"} <= columns
