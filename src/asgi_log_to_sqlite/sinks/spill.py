"""The spill: a local SQLite log where a PostgreSQL sink keeps batches while the database is
away, and the shipment of those rows once it is back, oldest first, each row once.

Spilling is the SQLite sink's work (:class:`~.sqlite.SQLiteSink`: rows, lookups, captures, drop
and exclusion counts), so a spill file is an ordinary log file that Datasette and the reports
open too. Shipping reads it back in rowid order, in chunks, as batches of plain values (each row
keeps its own ``start`` and ``instance``).

Exactly once across two databases: every chunk is stored in PostgreSQL in one transaction that
also records, in ``spill_shipments``, the spill file's id, a shipment number, the last rowid and
the counts shipped. Only then are those rows deleted from the file (and the counts subtracted),
recording the shipment number there. A crash between the two is mended by the next shipment,
which first finishes the deletion the last one recorded. The file's id changes whenever it is
emptied, so rowids that SQLite hands out again never meet an old shipment.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

from ..batch import Batch
from ..schema import REQUEST_COLUMNS, SPILL_META_SQL, transaction
from .sqlite import SQLiteSink

__all__ = ["Shipment", "Spill", "read_batch"]

#: Rows per shipment (one PostgreSQL transaction).
SHIP_CHUNK = 5_000
COUNT_TABLES = ("dropped", "excluded_requests")
INSTANCE = list(REQUEST_COLUMNS).index("instance")


def _select_rows(columns: set[str]) -> str:
    """Rows of a log file as the writer builds them: lookup columns as their text; columns the
    file lacks (an older schema) as NULL."""
    fields, joins = ["requests.rowid"], []
    for column, table in REQUEST_COLUMNS.items():
        if column not in columns:
            fields.append("NULL")
        elif table is None:
            fields.append(f"requests.[{column}]")
        else:
            fields.append(f"l_{column}.name")
            joins.append(
                f"LEFT JOIN [{table}] AS l_{column} ON l_{column}.id = requests.[{column}]"
            )
    return f"SELECT {', '.join(fields)} FROM requests {' '.join(joins)}"


def read_batch(
    conn: sqlite3.Connection, after: int, limit: int, instance: str | None = None
) -> tuple[Batch, int]:
    """Up to ``limit`` rows of the log file after rowid ``after``, with their captured headers and
    captures, as a batch; and the last rowid read (``after`` when none was left). ``instance``
    fills the column where a row has none (a file older than the column)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    found = conn.execute(
        _select_rows(columns) + " WHERE requests.rowid > ? ORDER BY requests.rowid LIMIT ?",
        (after, limit),
    ).fetchall()
    batch = Batch()
    if not found:
        return batch, after
    position = {rowid: index for index, (rowid, *_) in enumerate(found)}
    last = found[-1][0]
    for row in found:
        values = row[1:]
        if instance is not None and values[INSTANCE] is None:
            values = (*values[:INSTANCE], instance, *values[INSTANCE + 1:])
        batch.rows.append(values)
        batch.keys.append(0)
    if "captured_headers" in tables:
        captured: dict[int, list[tuple[str, Any, Any]]] = {}
        for request, direction, name, value in conn.execute(
            "SELECT c.request, c.direction, n.name, v.name FROM captured_headers AS c "
            "LEFT JOIN header_names AS n ON n.id = c.name "
            "LEFT JOIN header_values AS v ON v.id = c.value "
            "WHERE c.request > ? AND c.request <= ? ORDER BY c.rowid",
            (after, last),
        ):
            if request in position and direction is not None:
                captured.setdefault(position[request], []).append((direction, name, value))
        batch.captured = sorted(captured.items())
    if "captures" in tables:
        batch.captures = [
            (position[row[0]], tuple(row[1:]))
            for row in conn.execute(
                "SELECT c.request, c.raw_path, c.raw_query, q.name, c.request_body, "
                "c.request_body_sha256, c.request_body_kept, s.name, c.response_body, "
                "c.response_body_sha256, c.response_body_kept, c.response_chunks "
                "FROM captures AS c "
                "LEFT JOIN header_lists AS q ON q.id = c.request_headers "
                "LEFT JOIN header_lists AS s ON s.id = c.response_headers "
                "WHERE c.request > ? AND c.request <= ? ORDER BY c.request",
                (after, last),
            )
            if row[0] in position
        ]
    return batch, last


class Shipment:
    """One chunk of a spill file on its way: the batch, the counts beside it (per table, as
    ``(hour, reason, count)``), and what ``spill_shipments`` records for it."""

    def __init__(self, spill_id: str, seq: int, upto: int, batch: Batch,
                 counts: dict[str, list[tuple[str, str, int]]]) -> None:
        self.spill_id = spill_id
        self.seq = seq
        self.upto = upto
        self.batch = batch
        self.counts = counts

    @property
    def empty(self) -> bool:
        return not self.batch.rows and not any(self.counts.values())

    def record(self) -> tuple[str, int, int, str]:
        """The ``spill_shipments`` row of this shipment."""
        return self.spill_id, self.seq, self.upto, json.dumps(self.counts)


class Spill:
    """A spill file: batches go in with :meth:`put`; :meth:`next_shipment` and :meth:`shipped`
    take them out again, driven by the PostgreSQL sink."""

    def __init__(self, path: str, options: Any) -> None:
        from ..options import Options

        self.path = path
        # A plain local log: no rotation or retention of its own, the writer's timeouts.
        self.sink = SQLiteSink(path, Options.from_kwargs({"busy_timeout": options.busy_timeout}))

    # ---- in -----------------------------------------------------------------------------------
    def put(self, batch: Batch) -> None:
        """Store the batch (its rows, captures, late exceptions and counts), all or nothing."""
        self.sink.write(batch)

    # ---- out ----------------------------------------------------------------------------------
    def exists(self) -> bool:
        return os.path.exists(self.path)

    @contextlib.contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self.sink.connection()
            conn.execute(SPILL_META_SQL)
            yield conn
        except BaseException:
            self.sink.disconnect()
            raise

    def identity(self) -> tuple[str, int]:
        """This file's id and the last shipment whose rows were taken out of it."""
        with self._conn() as conn, transaction(conn):
            return self._identity(conn)

    @staticmethod
    def _identity(conn: sqlite3.Connection) -> tuple[str, int]:
        meta = dict(conn.execute("SELECT key, value FROM spill_meta"))
        if "id" not in meta:
            meta = {"id": uuid.uuid4().hex, "applied": "0"}
            conn.executemany("INSERT OR REPLACE INTO spill_meta VALUES (?, ?)", meta.items())
        return meta["id"], int(meta.get("applied") or 0)

    def pending(self) -> bool:
        """Rows or counts wait in the file."""
        if not self.exists():
            return False
        with self._conn() as conn:
            return any(
                conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()[0]
                for table in ("requests", *COUNT_TABLES)
            )

    def next_shipment(self, spill_id: str, seq: int, limit: int = SHIP_CHUNK) -> Shipment:
        """The oldest rows not shipped yet and every count, as shipment ``seq``."""
        with self._conn() as conn:
            batch, upto = read_batch(conn, 0, limit)
            counts = {
                table: [tuple(row) for row in conn.execute(
                    f"SELECT hour, reason, count FROM {table} WHERE count > 0 "
                    "ORDER BY hour, reason"
                )]
                for table in COUNT_TABLES
            }
        return Shipment(spill_id, seq, upto, batch, counts)  # type: ignore[arg-type]

    def shipped(self, spill_id: str, seq: int, upto: int, counts: dict[str, Any]) -> None:
        """Take out of the file what shipment ``seq`` stored (once: a shipment applied already
        is not applied again). An emptied file gets a new id."""
        with self._conn() as conn, transaction(conn):
            current, applied = self._identity(conn)
            if current != spill_id or seq <= applied:
                return
            conn.execute("DELETE FROM captured_headers WHERE request <= ?", (upto,))
            conn.execute("DELETE FROM captures WHERE request <= ?", (upto,))
            conn.execute("DELETE FROM requests WHERE rowid <= ?", (upto,))
            for table in COUNT_TABLES:
                for hour, reason, count in counts.get(table, ()):
                    conn.execute(
                        f"UPDATE {table} SET count = count - ? WHERE hour = ? AND reason = ?",
                        (count, hour, reason),
                    )
                conn.execute(f"DELETE FROM {table} WHERE count <= 0")
            conn.execute("UPDATE spill_meta SET value = ? WHERE key = 'applied'", (str(seq),))
            if not any(
                conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()[0]
                for table in ("requests", *COUNT_TABLES)
            ):
                conn.execute("UPDATE spill_meta SET value = ? WHERE key = 'id'",
                             (uuid.uuid4().hex,))
                conn.execute("UPDATE spill_meta SET value = '0' WHERE key = 'applied'")

    # ---- batches whose commit in PostgreSQL is uncertain -------------------------------------
    def note_uncertain(self, first_id: int, first_start: float, rows: int) -> None:
        """The batch just put here may be in PostgreSQL already (its commit lost its answer):
        its first row's id there, its start, and how many rows it has."""
        with self._conn() as conn, transaction(conn):
            conn.execute("INSERT OR REPLACE INTO spill_meta VALUES (?, ?)",
                         (f"uncertain:{first_id}", json.dumps([first_start, rows])))

    def uncertain(self) -> list[tuple[int, float, int]]:
        with self._conn() as conn:
            return [(int(key.split(":", 1)[1]), *json.loads(value))
                    for key, value in conn.execute(
                        "SELECT key, value FROM spill_meta WHERE key LIKE 'uncertain:%'")]

    def settle(self, first_id: int, first_start: float, rows: int, stored: bool) -> None:
        """Forget an uncertain batch; ``stored``: PostgreSQL has it, so its rows (consecutive
        here: one transaction wrote them) leave the file unshipped."""
        with self._conn() as conn, transaction(conn):
            if stored:
                found = conn.execute("SELECT min(rowid) FROM requests WHERE start = ?",
                                     (first_start,)).fetchone()[0]
                if found is not None:
                    last = found + rows - 1
                    for table, column in (("captured_headers", "request"),
                                          ("captures", "request"), ("requests", "rowid")):
                        conn.execute(f"DELETE FROM {table} WHERE {column} BETWEEN ? AND ?",
                                     (found, last))
            conn.execute("DELETE FROM spill_meta WHERE key = ?", (f"uncertain:{first_id}",))

    def close(self) -> None:
        self.sink.close()
