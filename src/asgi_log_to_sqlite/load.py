"""Per-host SQLite log files loaded into a PostgreSQL log: the way from one file per host to
one central log (``asgi-log-to-sqlite merge postgresql://... web-1.db web-2.db``).

Each file is read in rowid order, in chunks, and stored the way the sink stores a spill file's
rows: each chunk in one transaction that also records, in ``spill_shipments``, how far that file
was loaded (under a key made from its first row). Loading a file again, after an interruption
or once it has grown, adds only what is missing; every row keeps its ``start``. A file older
than the ``instance`` column has its rows marked with the file's name (``web-1`` for
``web-1.db``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
from collections.abc import Callable
from typing import Any

from .batch import Batch
from .schema import open_readonly
from .sinks.spill import SHIP_CHUNK, Shipment, read_batch

__all__ = ["LoadError", "LoadResult", "load_files"]


class LoadError(Exception):
    """A file or the database cannot be used; the message says why."""


@dataclasses.dataclass
class LoadResult:
    loaded: dict[str, int]  # file -> rows added now
    skipped: list[str]  # files loaded in full before


def _key(conn: sqlite3.Connection) -> str:
    """A name for the file, whatever it is called, that rows appended later do not change: a
    digest of its first row."""
    facts = conn.execute(
        "SELECT rowid, start, duration, method, path FROM requests ORDER BY rowid LIMIT 1"
    ).fetchone()
    return "file:" + hashlib.sha256(repr(facts).encode()).hexdigest()[:32]


def load_files(url: str, paths: list[str], progress: Callable[[int], Any] | None = None,
               schema: str | None = None) -> LoadResult:
    """Add the rows of each SQLite log file in ``paths`` to the PostgreSQL log at ``url``."""
    from .options import Options
    from .sinks.postgresql import PostgreSQLSink

    try:
        options = Options.from_kwargs({"spill": False, "schema": schema})
        sink = PostgreSQLSink(url, options)
    except (ImportError, TypeError, ValueError) as error:
        raise LoadError(str(error)) from None
    result = LoadResult({}, [])
    try:
        for path in paths:
            if not os.path.isfile(path):
                raise LoadError(f"{path}: no such file")
            try:
                conn = open_readonly(path)
                columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
            except sqlite3.DatabaseError as error:
                raise LoadError(f"{path}: not a SQLite database ({error})") from None
            try:
                if not {"start", "path", "http_status", "duration"} <= columns:
                    raise LoadError(f"{path}: not an asgi-log-to-sqlite log")
                added = _load(sink, conn, path, progress)
            except sqlite3.DatabaseError as error:
                raise LoadError(f"{path}: cannot be read ({error})") from None
            finally:
                conn.close()
            if added is None:
                result.skipped.append(path)
            else:
                result.loaded[path] = added
    except LoadError:
        raise
    except Exception as error:  # noqa: BLE001 - the database: unreachable, refused...
        raise LoadError(f"cannot load into {sink.name}: {' '.join(str(error).split())}"
                        ) from None
    finally:
        sink.close()
    return result


def _load(sink: Any, conn: sqlite3.Connection, path: str,
          progress: Callable[[int], Any] | None) -> int | None:
    """The rows of one file added (None: it was loaded in full before)."""
    from .sinks.postgresql import ShippedElsewhere

    key = _key(conn)
    instance = os.path.splitext(os.path.basename(path))[0] or None
    db = sink._connection()
    found = db.execute("SELECT seq, upto FROM spill_shipments WHERE spill = %s",
                       (key,)).fetchone()
    seq, upto = found or (0, 0)
    total = conn.execute("SELECT max(rowid) FROM requests").fetchone()[0] or 0
    if found is not None and upto >= total:
        return None
    added = 0
    counts = _counts(conn) if seq == 0 else {}
    while True:
        batch, last = read_batch(conn, upto, SHIP_CHUNK, instance=instance)
        if not batch.rows and not counts:
            return added
        seq += 1
        shipment = Shipment(key, seq, last, batch, counts)
        try:
            sink._write_batch(shipment.batch if batch.rows else Batch(), shipment)
        except ShippedElsewhere:
            raise LoadError(f"{path}: another merge is loading it right now") from None
        added += len(batch.rows)
        upto, counts = last, {}
        if progress is not None:
            progress(len(batch.rows))
        if not batch.rows:
            return added


def _counts(conn: sqlite3.Connection) -> dict[str, list[tuple[str, str, int]]]:
    """The file's drop and exclusion counts, loaded with its first chunk."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    return {
        table: [tuple(row) for row in conn.execute(
            f"SELECT hour, reason, count FROM {table} WHERE hour IS NOT NULL AND reason IS NOT "
            "NULL AND typeof(count) = 'integer' AND count > 0")]
        for table in ("dropped", "excluded_requests") if table in tables
    }
