"""The PostgreSQL sink: one log for many hosts, written with ``COPY``.

Each batch is one transaction: its ids are taken from the sequence up front, the rows go in with
one binary ``COPY`` (captured headers and captures with theirs), then late exceptions and drop
and exclusion counts. Lookup values are resolved before that, with two set operations per table
for the names not cached yet (``INSERT ... ON CONFLICT DO NOTHING`` in a fixed order, then one
``SELECT``), each committed at once; ids are cached per process. So many processes on many hosts
write at the same time without unique violations or deadlocks: nothing is inserted twice and
every lock is taken in the same order.

When the database cannot be reached (down, restarting, wrong credentials), a batch is retried
for :data:`SPILL_AFTER` seconds, then kept in a local SQLite file (:mod:`.spill`) and shipped
from there, oldest first, once the database answers again. Values the database refuses as data
raise :class:`~.base.DataError`, so that the writer sets the offending rows apart.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ..batch import Batch
from ..postgresql_schema import (
    REQUEST_TYPES,
    SHIP_LOCK,
    WATERMARK_LOCK,
    SchemaError,
    connect,
    day_of,
    days_around,
    delete_older_than,
    ensure_partitions,
    ensure_schema,
    parse_url,
    psycopg,
)
from ..schema import LOOKUP_POSITIONS, REQUEST_COLUMNS
from .base import DataError
from .spill import SHIP_CHUNK

__all__ = ["PostgreSQLSink"]

logger = logging.getLogger("asgi_log_to_sqlite")

#: Seconds an outage lasts before batches go to the spill file instead of being retried.
SPILL_AFTER = 1.0
#: While the database is away, seconds between two attempts to reach it.
RECONNECT_EVERY = 1.0
#: Seconds of spill shipping one batch or one idle call does at most.
SHIP_SLICE = 2.0
#: Seconds between the idle checks (spill left by another process, retention, partitions).
IDLE_EVERY = 5.0
#: Seconds between two retention passes; between two checks of the partitions ahead.
RETAIN_EVERY = 300.0
PARTITIONS_EVERY = 3600.0
#: Lookup ids remembered per table; past it the cache starts again (ids stay valid).
CACHE_LIMIT = 100_000
#: Rows whose id is remembered for late exceptions.
PLACES_LIMIT = 100_000
ROTATION_OPTIONS = ("rotate", "max_bytes", "max_rows", "keep")

COLUMNS = ("id", *REQUEST_COLUMNS)
_PG_TYPES = {"double precision": "float8", "bigint": "int8", "text": "text"}
COPY_TYPES = ["int8"] + [_PG_TYPES[REQUEST_TYPES[c].split(" NOT NULL")[0]] for c in REQUEST_COLUMNS]
COPY_REQUESTS = f"COPY requests ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
COPY_HEADERS = (
    "COPY captured_headers (request, direction, name, value, start) FROM STDIN (FORMAT BINARY)"
)
HEADER_TYPES = ["int8", "text", "int8", "int8", "float8"]
INSERT_CAPTURE = (
    "INSERT INTO captures (request, raw_path, raw_query, request_headers, request_body, "
    "request_body_sha256, request_body_kept, response_headers, response_body, "
    "response_body_sha256, response_body_kept, response_chunks, start) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (request) DO NOTHING"
)
START = 0


def default_spill(digest: str) -> str:
    """The spill file when none is given: in the system's temp folder, named after the log."""
    return os.path.join(tempfile.gettempdir(), f"asgi-log-to-sqlite-spill-{digest}.db")


def _now_hour() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:00")


class PostgreSQLSink:
    def __init__(self, url: str, options: Any) -> None:
        for option in ROTATION_OPTIONS:
            if getattr(options, option, None) is not None:
                raise ValueError(
                    f"option {option!r} rotates log files and does not apply to a PostgreSQL "
                    "log; use retain='30d' to delete old rows"
                )
        self.pg = psycopg()  # ImportError with the install hint
        self.info = parse_url(url, options.schema)
        self.target = url
        self.name = self.info.display
        self.options = options
        self._clock: Callable[[], float] = options.clock or time.time
        spill = options.spill
        self.spill_path: str | None = None
        if spill is not False:
            from .sqlite import validated_path

            try:
                self.spill_path = validated_path(spill or default_spill(self.info.digest()))
            except (TypeError, ValueError, OSError) as error:
                raise ValueError(f"option 'spill': {error}") from None
        self._spill: Any = None
        self._spill_waiting = bool(self.spill_path and os.path.exists(self.spill_path))
        self._conn: Any = None
        self._cache: dict[str, dict[str, int]] = {}
        self._days: set[int] = set()
        self._places: dict[int, tuple[int, float]] = {}
        self._outage_since: float | None = None
        self._next_attempt = 0.0
        self._warned_credentials = False
        self._next_idle = time.monotonic() + IDLE_EVERY
        self._next_retain = float("-inf")
        self._next_partitions = time.monotonic() + PARTITIONS_EVERY
        # A commit whose answer was lost: (batch, its first id, its first start).
        self._uncertain: tuple[Batch, int, float] | None = None
        self.spilled = 0
        self.shipped = 0
        self.connect_errors = 0
        self.bad_rows = 0  # kept rows the database refused when shipped

    # ---- the Sink interface ------------------------------------------------------------------
    def prepare(self) -> None:
        """Create or upgrade the log now if the database answers; if it does not, say so and go
        on (rows wait in the spill file): an app must start while its log database is away."""
        try:
            self._connection()
        except SchemaError as error:
            raise ValueError(f"cannot log to {self.name}: {error}") from error
        except Exception as error:
            self._unreachable(error)
        finally:
            self._disconnect()

    def write(self, batch: Batch) -> None:
        now = time.monotonic()
        if self._outage_since is not None and now < self._next_attempt:
            self._while_away(batch, None)  # not time to try the database again yet
            return
        try:
            if self._spill_waiting and not self._ship(now + SHIP_SLICE):
                self._to_spill(batch)  # older rows still wait: these go behind them
                return
            self._write_batch(batch)
        except DataError:
            raise
        except Exception as error:
            self._unreachable(error)
            self._while_away(batch, error)
            return
        self._reachable()

    def _while_away(self, batch: Batch, error: Exception | None) -> None:
        """The database is away: past :data:`SPILL_AFTER` the batch goes to the spill file;
        before that (or without a spill file) the writer retries it."""
        assert self._outage_since is not None
        if self.spill_path is not None and time.monotonic() - self._outage_since >= SPILL_AFTER:
            self._to_spill(batch)
            return
        if error is not None:
            raise error
        raise ConnectionError(f"{self.name} cannot be reached; trying again shortly")

    def idle(self) -> None:
        now = time.monotonic()
        if now < self._next_idle or (self._outage_since is not None and now < self._next_attempt):
            return
        self._next_idle = now + IDLE_EVERY
        try:
            if self.spill_path is not None and not self._spill_waiting:
                self._spill_waiting = self._spill_file().pending()  # left by another process
            if self._spill_waiting:
                self._ship(now + SHIP_SLICE)
            self._maintain()
            self._reachable()
        except Exception as error:
            self._unreachable(error)

    def close(self) -> None:
        self._disconnect()
        if self._spill is not None:
            self._spill.close()

    @property
    def away(self) -> bool:
        """The database is away: rows written now are kept in the spill file (the writer must
        not take their storing for the database being back)."""
        return self._outage_since is not None

    def handoff(self) -> dict[str, bool]:
        """What this sink (the one built to check the log at construction) already reported, for
        the sink of a writer process: refused credentials and an outage are logged once per app,
        not once per process."""
        return {"warned_credentials": self._warned_credentials, "away": self.away}

    def resume(self, state: dict[str, bool]) -> None:
        """Take over what :meth:`handoff` reported (in a writer process)."""
        self._warned_credentials = self._warned_credentials or bool(state.get("warned_credentials"))
        if state.get("away") and self._outage_since is None:
            self._outage_since = time.monotonic()

    def stats(self) -> dict[str, int]:
        return {
            "spilled": self.spilled,
            "shipped": self.shipped,
            "connect_errors": self.connect_errors,
            "spill_refused": self.bad_rows,
        }

    # ---- connection ------------------------------------------------------------------------------
    def _connection(self) -> Any:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        self._conn = None
        self._next_attempt = time.monotonic() + RECONNECT_EVERY
        conn = connect(self.info)
        try:
            ensure_schema(conn, self.info)
            self._days = ensure_partitions(conn, self.info, days_around(self._clock()))
        except BaseException:
            conn.close()
            raise
        self._cache.clear()  # the tables may have been made again since
        self._conn = conn
        return conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _unreachable(self, error: Exception) -> None:
        """The database failed us (not a data error): drop the connection, note the outage, and
        say so once per outage (and once at all for refused credentials)."""
        self._disconnect()
        self.connect_errors += 1
        now = time.monotonic()
        self._next_attempt = now + RECONNECT_EVERY
        text = " ".join(str(error).split())
        if _refused_credentials(error):
            if not self._warned_credentials:
                self._warned_credentials = True
                logger.error(
                    "asgi-log-to-sqlite: PostgreSQL refused the credentials for %s (%s); "
                    "rows are kept in %s until it accepts them",
                    self.name, text, self.spill_path or "memory (spill=False)",
                )
        if self._outage_since is None:
            self._outage_since = now
            logger.warning(
                "asgi-log-to-sqlite: cannot write to %s (%s); retrying, then keeping rows in %s",
                self.name, text, self.spill_path or "memory (spill=False)",
            )

    def _reachable(self) -> None:
        if self._outage_since is not None:
            self._outage_since = None
            logger.warning("asgi-log-to-sqlite: writing to %s works again", self.name)

    # ---- the spill -------------------------------------------------------------------------------
    def _spill_file(self) -> Any:
        if self._spill is None:
            from .spill import Spill

            assert self.spill_path is not None
            self._spill = Spill(self.spill_path, self.options)
        return self._spill

    def _to_spill(self, batch: Batch) -> None:
        """Keep the batch in the spill file (an error here is the writer's to retry)."""
        if not batch.rows and not batch.amends and not batch.excluded and not batch.dropped:
            return
        rows = len(batch.rows) - batch.done
        if not self._spill_waiting:
            logger.warning("asgi-log-to-sqlite: %s is away; keeping rows in %s",
                           self.name, self.spill_path)
        uncertain = self._uncertain
        self._uncertain = None
        spill = self._spill_file()
        spill.put(batch)
        if uncertain is not None and uncertain[0] is batch:
            # Its commit may have happened: the shipment asks first (no row stored twice).
            spill.note_uncertain(uncertain[1], uncertain[2], rows)
        self._spill_waiting = True
        self.spilled += rows

    def _ship(self, deadline: float) -> bool:
        """Ship the spill file, oldest rows first, until it is empty (True) or ``deadline``
        passes (False). Another process shipping the same file: False."""
        spill = self._spill_file()
        conn = self._connection()
        spill_id, applied = spill.identity()
        lock = int.from_bytes(bytes.fromhex(spill_id)[:4], "big", signed=True)
        if not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (SHIP_LOCK, lock)).fetchone()[0]:
            return False
        try:
            # What the last shipment stored but could not take out of the file yet.
            found = conn.execute(
                "SELECT seq, upto, counts FROM spill_shipments WHERE spill = %s", (spill_id,)
            ).fetchone()
            if found is not None and found[0] > applied:
                import json

                spill.shipped(spill_id, found[0], found[1], json.loads(found[2]))
                spill_id, applied = spill.identity()
            for first_id, first_start, rows in spill.uncertain():
                stored = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM requests WHERE id = %s AND start = %s)",
                    (first_id, first_start),
                ).fetchone()[0]
                spill.settle(first_id, first_start, rows, stored)
            limit = SHIP_CHUNK
            locked = spill_id
            while True:
                if spill_id != locked and spill.pending():
                    return False  # emptied and renamed, then filled: shipped under its new id
                shipment = spill.next_shipment(spill_id, applied + 1, limit)
                if shipment.empty or spill_id != locked:
                    self._spill_waiting = False
                    logger.warning("asgi-log-to-sqlite: the rows kept while %s was away are "
                                   "stored in it now", self.name)
                    return True
                shipped = len(shipment.batch.rows)
                try:
                    self._write_batch(shipment.batch, shipment)
                except ShippedElsewhere:
                    return False
                except DataError as error:
                    if limit > 1:  # smaller shipments, down to the row the database refuses
                        limit = max(1, limit // 4)
                        continue
                    logger.error("asgi-log-to-sqlite: a kept request could not be stored in "
                                 "%s (%s); dropped", self.name, error)
                    self.bad_rows += 1
                    shipped = 0
                    shipment.batch = Batch()  # shipped without its row: counted, not retried
                    self._write_batch(shipment.batch, shipment)
                spill.shipped(spill_id, shipment.seq, shipment.upto, shipment.counts)
                self.shipped += shipped
                limit = SHIP_CHUNK
                spill_id, applied = spill.identity()
                if time.monotonic() >= deadline:
                    return False
        finally:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (SHIP_LOCK, lock))
            except Exception:
                self._disconnect()  # the session lock goes with the session

    # ---- writing ---------------------------------------------------------------------------------
    def _write_batch(self, batch: Batch, shipment: Any = None) -> None:
        """Store the batch in one transaction (with a spill shipment's record, if any)."""
        try:
            self._write_once(batch, shipment)
        except DataError as error:
            if "no partition" in str(error):
                # A day this process thought was there was dropped since (retention by
                # another process): ask again, and make it if it is wanted.
                self._days = set()
            elif "0x00" in str(error) or "NUL" in str(error):
                # PostgreSQL text cannot hold NUL characters: written as \x00, the way other
                # bytes that are not text are.
                _escape_nul(batch)
            else:
                raise
            self._write_once(batch, shipment)

    def _write_once(self, batch: Batch, shipment: Any) -> None:
        pg = self.pg
        start = batch.done
        try:
            conn = self._connection()
            if self._uncertain is not None and self._uncertain[0] is batch:
                # The last commit of this very batch lost its answer: was it stored?
                _, first_id, first_start = self._uncertain
                self._uncertain = None
                if conn.execute("SELECT EXISTS (SELECT 1 FROM requests WHERE id = %s AND "
                                "start = %s)", (first_id, first_start)).fetchone()[0]:
                    self._done(batch, start, [])
                    return
            rows = batch.rows[start:] if start else batch.rows
            columns: list[Any] = list(zip(*rows, strict=True)) if rows else []
            if rows:
                for position, table in LOOKUP_POSITIONS:
                    columns[position] = self._ids(conn, table, columns[position])
                days = _days_of(columns[START])
                if not days <= self._days:
                    self._days = ensure_partitions(conn, self.info, days | self._days)
            headers = self._header_ids(conn, batch, start) if batch.captured else None
            lists = self._list_ids(conn, batch, start) if batch.captures else {}
            with conn.transaction(), conn.cursor() as cur:
                # Shared with every other writer; pull takes it alone for a moment to learn
                # which ids are all committed (postgresql_schema.committed_upto).
                cur.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)",
                            (WATERMARK_LOCK, self.info.key))
                ids: list[int] = []
                if rows:
                    # One array of ids (not a row per id): parsed in C, in one go.
                    ids = cur.execute(
                        "SELECT array_agg(nextval('requests_id_seq')) "
                        "FROM generate_series(1, %s)",
                        (len(rows),), binary=True,
                    ).fetchone()[0]
                    with cur.copy(COPY_REQUESTS) as copy:
                        copy.set_types(COPY_TYPES)
                        write_row = copy.write_row
                        for row in zip(ids, *columns, strict=True):
                            write_row(row)
                    if headers:
                        with cur.copy(COPY_HEADERS) as copy:
                            copy.set_types(HEADER_TYPES)
                            for index, direction, name, value in headers:
                                copy.write_row((ids[index], direction, name, value,
                                                rows[index][START]))
                    if batch.captures:
                        self._captures(cur, batch, start, ids, rows, lists)
                if batch.amends:
                    self._amend(cur, batch, start, ids)
                if start == 0:
                    self._count(cur, "excluded_requests",
                                [(h, r, n) for (h, r), n in batch.excluded.items()])
                    self._count(cur, "dropped",
                                [(_now_hour(), r, n) for r, n in batch.dropped.items() if n])
                if shipment is not None:
                    for table, counts in shipment.counts.items():
                        self._count(cur, table, counts)
                    recorded = cur.execute(
                        "INSERT INTO spill_shipments (spill, seq, upto, counts) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (spill) DO UPDATE SET "
                        "seq = EXCLUDED.seq, upto = EXCLUDED.upto, counts = EXCLUDED.counts, "
                        "shipped_at = now() WHERE spill_shipments.seq < EXCLUDED.seq",
                        shipment.record(),
                    ).rowcount
                    if recorded != 1:  # another process shipped these rows: not twice
                        raise ShippedElsewhere(shipment.spill_id)
                if ids:
                    # If the answer to COMMIT is lost, the retry asks whether it happened.
                    self._uncertain = (batch, ids[0], rows[0][START])
            self._uncertain = None
        except (pg.DataError, pg.IntegrityError, OverflowError, TypeError, ValueError,
                UnicodeError) as error:
            self._uncertain = None
            raise DataError(" ".join(str(error).split())) from error
        self._done(batch, start, ids)

    def _done(self, batch: Batch, start: int, ids: list[int]) -> None:
        batch.done = len(batch.rows)
        if start == 0:
            batch.excluded.clear()
            batch.dropped = {}
        batch.amends = []
        places = self._places
        if ids:
            if len(places) > PLACES_LIMIT:
                for key in list(places)[: len(places) - PLACES_LIMIT // 2]:
                    del places[key]
            rows = batch.rows
            for offset, key in enumerate(batch.keys[start:]):
                if key:
                    places[key] = (ids[offset], rows[start + offset][START])

    def _ids(self, conn: Any, table: str, names: tuple[Any, ...]) -> list[int | None]:
        """Lookup names swapped for their ids; names not seen yet inserted and fetched with one
        statement each, in a fixed order (no deadlock between writers), committed at once."""
        cache = self._cache.setdefault(table, {})
        missing = set(names).difference(cache)
        missing.discard(None)
        if missing:
            if len(cache) + len(missing) > CACHE_LIMIT:
                cache.clear()
                missing = set(names)
                missing.discard(None)
            wanted = sorted(missing)
            conn.execute(
                f"INSERT INTO {table} (name) SELECT n FROM unnest(%s::text[]) AS u(n) "
                "ORDER BY n ON CONFLICT ((md5(name))) DO NOTHING",
                (wanted,),
            )
            cache.update(conn.execute(
                f"SELECT l.name, l.id FROM {table} AS l JOIN unnest(%s::text[]) AS u(n) "
                "ON md5(l.name) = md5(u.n) AND l.name = u.n",
                (wanted,),
            ).fetchall())
        return list(map(cache.get, names))

    def _header_ids(self, conn: Any, batch: Batch, start: int) -> list[tuple[int, str, Any, Any]]:
        found = [(index - start, direction, name, value)
                 for index, headers in batch.captured if index >= start
                 for direction, name, value in headers]
        names = self._ids(conn, "header_names", tuple(f[2] for f in found))
        values = self._ids(conn, "header_values", tuple(f[3] for f in found))
        return [(index, direction, names[i], values[i])
                for i, (index, direction, _, _) in enumerate(found)]

    def _list_ids(self, conn: Any, batch: Batch, start: int) -> dict[Any, int | None]:
        """Ids of the header lists (JSON text) of the batch's captures."""
        lists = tuple(row[i] for index, row in batch.captures if index >= start for i in (2, 6))
        return dict(zip(lists, self._ids(conn, "header_lists", lists), strict=True))

    @staticmethod
    def _captures(cur: Any, batch: Batch, start: int, ids: list[int], rows: list[Any],
                  lists: dict[Any, int | None]) -> None:
        cur.executemany(INSERT_CAPTURE, [
            (ids[index - start], *row[:2], lists.get(row[2]), *row[3:6], lists.get(row[6]),
             *row[7:], rows[index - start][START])
            for index, row in batch.captures if index >= start
        ])

    def _amend(self, cur: Any, batch: Batch, start: int, ids: list[int]) -> None:
        """Store the exception types that came after their rows were queued."""
        here = {key: (ids[offset], batch.rows[start + offset][START])
                for offset, key in enumerate(batch.keys[start:]) if key}
        for amend in batch.amends:
            place = here.get(amend.key) or self._places.get(amend.key)
            if place is None:
                continue  # left out of the log, or written too long ago
            cur.execute(
                "UPDATE requests SET exception = %s "
                "WHERE id = %s AND start = %s AND exception IS NULL",
                (amend.exception, place[0], place[1]),
            )

    @staticmethod
    def _count(cur: Any, table: str, counts: list[tuple[str, str, int]]) -> None:
        # Sorted: writers that add to the same rows lock them in the same order.
        counts = sorted(c for c in counts if c[2])
        if counts:
            cur.executemany(
                f"INSERT INTO {table} (hour, reason, count) VALUES (%s, %s, %s) "
                f"ON CONFLICT (hour, reason) DO UPDATE SET count = {table}.count + EXCLUDED.count",
                counts,
            )

    # ---- retention and partitions ahead ----------------------------------------------------------
    def _maintain(self) -> None:
        now = time.monotonic()
        conn = self._connection()
        if now >= self._next_partitions:
            self._next_partitions = now + PARTITIONS_EVERY
            self._days = ensure_partitions(conn, self.info, days_around(self._clock()))
        retain = self.options.retain
        if retain is not None and now >= self._next_retain:
            self._next_retain = now + RETAIN_EVERY
            done = delete_older_than(conn, self.info, self._clock() - retain)
            if done is not None and (done.partitions_dropped or done.rows_deleted):
                self._days = set()  # asked again before the next batch
                logger.info(
                    "asgi-log-to-sqlite: retention on %s dropped %d day(s), deleted %d row(s)",
                    self.name, done.partitions_dropped, done.rows_deleted,
                )


class ShippedElsewhere(Exception):
    """Another process stored this shipment first (its transaction is rolled back)."""


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _days_of(starts: tuple[Any, ...]) -> set[int]:
    """The UTC days of a batch's ``start`` values (rows out of any day's range are left to
    the database to refuse)."""
    try:
        low, high = min(starts), max(starts)  # a batch spans minutes: two C-speed scans
        if _finite(low) and _finite(high) and high - low < 7 * 86400:
            return set(range(day_of(low), day_of(high) + 1))
    except TypeError:  # a None among them
        pass
    return {day_of(s) for s in starts if _finite(s)}


def _refused_credentials(error: Exception) -> bool:
    state = getattr(error, "sqlstate", None)
    text = str(error).lower()
    return state in ("28000", "28P01") or any(words in text for words in (
        "authentication failed", "not permitted to log in", "no pg_hba.conf entry",
        "no password supplied", "password authentication",
    )) or ("role" in text and "does not exist" in text)


def _escape_nul(batch: Batch) -> None:
    """NUL characters in the batch's text written as ``\\x00``."""
    def clean(value: Any) -> Any:
        return value.replace("\x00", "\\x00") if type(value) is str and "\x00" in value else value

    batch.rows = [tuple(clean(v) for v in row) for row in batch.rows]
    batch.captured = [(i, [(d, clean(n), clean(v)) for d, n, v in found])
                      for i, found in batch.captured]
    batch.captures = [(i, tuple(clean(v) for v in row)) for i, row in batch.captures]
