"""``import``: access logs of any origin into a log database, each line once.

Sources are read and parsed by :mod:`.logsources` (formats in :mod:`.logformats`); this module
applies the middleware's privacy rules (:mod:`.logprivacy`) and stores the rows: lookup ids
resolved a set at a time, multi-row inserts (:mod:`.bulk`), up to :data:`BATCH_ROWS` per
transaction. For large files the reading side runs in a second process, so that parsing and
SQLite's work overlap on two cores (see docs/benchmarks.md for what it gains).

The SQLite sink (:mod:`.sinks.sqlite`) stores the middleware's batches with the same
:mod:`.bulk` functions, but it takes rows of every column and owns its transaction; an import
must commit each source's position in the same transaction as its rows (or a crash would import
lines twice), and keeps rows as columns (formats fill half of them): measured, the sink's path
costs about a third more per row.

Which content was imported, and how far, lives in the log database's ``imported_files`` table:
the SHA-256 of a content's first 4 KiB finds earlier imports of it, and the SHA-256 of
everything read so far proves it still starts with what was imported. Names play no part, so
importing a file again adds nothing, a file that has grown since (a live log, or the rotated
copy of one, compressed or not) adds only its new lines, and the same lines piped to standard
input are recognised too. Each transaction commits rows and the source's new position together:
an import interrupted at any point goes on where it stopped the next time.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import hashlib
import io
import multiprocessing
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from . import bulk, rollups
from .filekind import special_file_kind
from .logfiles import describe
from .logformats import FORMATS
from .logprivacy import Privacy
from .logsources import (
    HEAD_BYTES,
    Chunk,
    Closed,
    Held,
    Opened,
    Record,
    Source,
    build_formats,
    read_source,
)
from .schema import (
    IMPORTED_FILES_INDEX_SQL,
    IMPORTED_FILES_SQL,
    REQUEST_COLUMNS,
    SchemaError,
    begin_immediate,
    commit,
    connect,
    ensure_schema,
    is_log_database,
    rollback,
)

__all__ = ["FileResult", "ImportFailed", "ImportOptions", "import_logs"]

#: Rows committed per transaction at most (with the source's new position).
BATCH_ROWS = 100_000
#: Lookup ids kept in memory per table; past it the cache starts again.
CACHE_LIMIT = 1_000_000
#: Seconds a transaction holds the write lock at most (give or take a chunk).
MAX_TRANSACTION = 0.5
#: Input bytes from which the reading side runs in a second process (when "auto").
PARALLEL_BYTES = 32 << 20

_LOOKUPS = {column: table for column, table in REQUEST_COLUMNS.items() if table}


class ImportFailed(Exception):
    """The import cannot go on; the message says why, for a person."""


@dataclasses.dataclass(frozen=True)
class ImportOptions:
    """What ``import`` does beyond reading: the privacy rules, the format, the processes."""

    #: Record health checks and probes instead of counting them in ``excluded_requests``.
    keep_health_checks: bool = False
    #: Truncate addresses, as the middleware's ``anonymize_ip`` (True: IPv4 /24, IPv6 /48).
    anonymize_ip: Any = None
    #: Record client addresses at all.
    client_ip: bool = True
    #: Query keys whose values are redacted beyond the defaults; keys whose values are kept.
    redact_query: tuple[str, ...] = ()
    keep_query: tuple[str, ...] = ()
    #: Paths and user agents left out (the middleware's ``exclude``, ``exclude_user_agents``).
    exclude: tuple[str, ...] = ()
    exclude_user_agents: tuple[str, ...] = ()
    #: ``jsonlines``, ``combined`` or ``uvicorn``: every line read in that format only.
    format: str | None = None
    #: Read in a second process: True, False, or None for "when the files are large".
    parallel: bool | None = None

    def privacy(self) -> Privacy:
        """The rules, validated by the middleware's own option checks."""
        from .options import Options

        return Privacy(Options.from_kwargs({
            "exclude_health_checks": not self.keep_health_checks,
            "anonymize_ip": self.anonymize_ip,
            "client_ip": self.client_ip,
            "redact_query": self.redact_query,
            "keep_query": self.keep_query,
            "exclude": self.exclude,
            "exclude_user_agents": self.exclude_user_agents,
        }))


@dataclasses.dataclass
class FileResult:
    """What importing one source did."""

    name: str
    #: new (never imported), grown (new lines after those imported before), unchanged, empty
    status: str = "new"
    format: str | None = None
    lines: int = 0  # lines read this time
    rows: int = 0  # rows added
    excluded: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    unparsed: int = 0
    failures: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (line, text)
    skipped_lines: int = 0  # lines imported by an earlier run
    held: str | None = None  # a last line without a line end that does not parse (yet): unread
    error: str | None = None  # why the source was not read to its end

    def summary(self) -> str:
        """One line: what was added, what was left out, what did not parse."""
        held = ""
        if self.held is not None:
            held = ("; its last line has no line end and does not parse (yet): left for the next "
                    "import")
        if self.status == "empty":
            return f"{self.name}: empty"
        if self.status == "unreadable":
            return f"{self.name}: not read"
        if self.status == "unchanged":
            before = f"{self.skipped_lines:,}"
            return f"{self.name}: already imported ({before} lines), nothing new{held}"
        new = "new " if self.status == "grown" else ""
        text = f"{self.name}: {self.rows:,} {new}row(s) from {self.lines:,} {new}line(s)"
        details = [self.format or "no format recognised"]
        if self.status == "grown":
            details.append(f"{self.skipped_lines:,} lines imported before")
        text += f" ({'; '.join(details)})"
        left_out = [f"{count:,} {reason.replace('_', ' ')}(s)"
                    for reason, count in sorted(self.excluded.items())]
        if left_out:
            text += "; left out: " + ", ".join(left_out)
        if self.unparsed:
            text += f"; {self.unparsed:,} line(s) not parsed"
        return text + held


# ---- storing ------------------------------------------------------------------------------------
class Store:
    """Rows into the log database: lookup ids a set at a time, multi-row inserts (bulk.py)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._cache: dict[str, dict[str, int]] = {table: {} for table in set(_LOOKUPS.values())}
        existing = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
        # Columns this file has, in the table's order (a newer line's extra keys are ignored).
        self.columns = [name for name in REQUEST_COLUMNS if name in existing]

    def insert(self, columns: dict[str, list[Any]]) -> int:
        """Insert the rows of ``columns`` (in the caller's transaction); how many."""
        names, values = [], []
        count = len(next(iter(columns.values()))) if columns else 0
        for name in self.columns:
            column = columns.get(name)
            if column is None or column.count(None) == count:
                continue  # NULL is what a column left out gets
            table = _LOOKUPS.get(name)
            names.append(name)
            values.append(self._ids(table, column) if table is not None else column)
        if names:
            bulk.insert_columns(self.conn, "requests", names, values)
        elif count:
            self.conn.executemany("INSERT INTO requests DEFAULT VALUES", [()] * count)
        return count

    def _ids(self, table: str, names: list[Any]) -> list[Any]:
        cache = self._cache[table]
        missing = set(names)
        missing.difference_update(cache)
        missing.discard(None)
        if missing:
            if len(cache) + len(missing) > CACHE_LIMIT:
                cache.clear()
                missing = set(names)
                missing.discard(None)
            cache.update(bulk.lookup_ids(self.conn, table, sorted(missing)))
        return list(map(cache.get, names))

    def forget(self) -> None:
        """After a rollback: the ids of names inserted in it are not in the file."""
        for cache in self._cache.values():
            cache.clear()

    def count_excluded(self, excluded: collections.Counter[tuple[str, str]]) -> None:
        self.conn.executemany(
            "INSERT INTO excluded_requests (hour, reason, count) VALUES (?, ?, ?) "
            "ON CONFLICT (hour, reason) DO UPDATE SET count = count + excluded.count",
            [(hour, reason, count) for (hour, reason), count in sorted(excluded.items())],
        )


def _records(conn: sqlite3.Connection) -> list[Record]:
    return [
        Record(*row) for row in conn.execute(
            "SELECT id, bytes, sha256, lines, head_bytes, head_sha256 FROM imported_files")
    ]


class _Source:
    """One source being stored: the open transaction, and the source's bookkeeping row."""

    def __init__(self, store: Store, privacy: Privacy, name: str, record: Record | None,
                 known: set[int]) -> None:
        self.store = store
        self.privacy = privacy
        self.record = record
        self.known = known  # the imports the reading side compared this source with
        self.result = FileResult(name)
        if record is not None:
            self.result.status = "grown"
            self.result.skipped_lines = record.lines
        self.last: Chunk | None = None  # the last chunk stored, not yet committed
        self.rows = self.unparsed = 0
        self.excluded: collections.Counter[tuple[str, str]] = collections.Counter()
        self.began = 0.0
        self.first_rowid = 0

    def add(self, chunk: Chunk) -> None:
        """Store a chunk's rows, in the open transaction (begun if need be)."""
        result, conn = self.result, self.store.conn
        result.format = result.format or chunk.format
        result.lines += chunk.lines
        result.unparsed += chunk.unparsed
        result.failures += chunk.failures
        if not conn.in_transaction:
            begin_immediate(conn)
            self.began = time.monotonic()
            # This transaction holds the write lock: its rows get the row ids after this one.
            self.first_rowid = conn.execute(
                "SELECT coalesce(max(rowid), 0) + 1 FROM requests").fetchone()[0]
        try:
            for columns in chunk.parts:
                columns = self.privacy.apply(columns, self.excluded)
                if next(iter(columns.values())):
                    self.rows += self.store.insert(columns)
        except BaseException:
            self._rollback()
            raise
        self.unparsed += chunk.unparsed
        self.last = chunk

    def age(self) -> float:
        """Seconds the open transaction has held the write lock."""
        return time.monotonic() - self.began if self.store.conn.in_transaction else 0.0

    def commit(self) -> None:
        """Commit the stored rows with the source's new position."""
        if self.last is None:
            return
        conn = self.store.conn
        try:
            if self.rows:  # the hourly and daily rollups, committed with the rows
                rollups.add_rows(conn, self.first_rowid, self.first_rowid + self.rows - 1)
            self.store.count_excluded(self.excluded)
            self._save(self.last, self.rows, sum(self.excluded.values()), self.unparsed)
            commit(conn)
        except BaseException:
            self._rollback()
            raise
        self.result.rows += self.rows
        for (_, reason), count in self.excluded.items():
            self.result.excluded[reason] += count
        self.last, self.rows, self.unparsed = None, 0, 0
        self.excluded = collections.Counter()

    def _rollback(self) -> None:
        rollback(self.store.conn)
        self.store.forget()

    def _save(self, chunk: Chunk, rows: int, excluded: int, unparsed: int) -> None:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        head = chunk.head[: min(chunk.position, HEAD_BYTES)]
        head_sha = hashlib.sha256(head).hexdigest()
        conn, record, name = self.store.conn, self.record, self.result.name
        if record is None:
            # A new content; unless another import of it committed since this one started.
            for (other,) in conn.execute(
                "SELECT id FROM imported_files WHERE head_sha256 = ? AND head_bytes = ?",
                (head_sha, len(head)),
            ):
                if other not in self.known:
                    raise ImportFailed(
                        f"{name}: being imported by another process at the same time")
            cursor = conn.execute(
                "INSERT INTO imported_files (head_sha256, head_bytes, bytes, sha256, lines, rows, "
                "excluded, unparsed, format, name, first_imported, last_imported) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (head_sha, len(head), chunk.position, chunk.sha256, chunk.line, rows, excluded,
                 unparsed, self.result.format, name, now, now),
            )
            record_id = cursor.lastrowid
            assert record_id is not None
        else:
            # Only if no other import moved it meanwhile (the same file imported twice at once).
            changed = conn.execute(
                "UPDATE imported_files SET head_sha256 = ?, head_bytes = ?, bytes = ?, "
                "sha256 = ?, lines = ?, rows = rows + ?, excluded = excluded + ?, "
                "unparsed = unparsed + ?, format = coalesce(?, format), name = ?, "
                "last_imported = ? WHERE id = ? AND bytes <= ? AND lines <= ?",
                (head_sha, len(head), chunk.position, chunk.sha256, chunk.line, rows, excluded,
                 unparsed, self.result.format, name, now, record.id, record.bytes, record.lines),
            ).rowcount
            if not changed:
                raise ImportFailed(f"{name}: being imported by another process at the same time")
            record_id = record.id
        self.record = Record(record_id, chunk.position, chunk.sha256, chunk.line, len(head),
                             head_sha)

    def close(self, closed: Closed) -> FileResult:
        self.commit()
        result = self.result
        if closed.error:
            read = result.skipped_lines + result.lines
            result.error = (f"{result.name}: reading stopped after line {read:,} ({closed.error}); "
                            "what was read is kept, import it again for the rest")
        if result.status == "grown" and result.lines == 0:
            result.status = "unchanged"
        elif self.record is None and result.lines == 0:
            result.status = "empty"
        return result


# ---- reading in this process or in another ------------------------------------------------------
class _InProcess:
    """The reading side called directly, one source after the other."""

    def __init__(self, options: ImportOptions) -> None:
        self.options = options

    def read(self, path: str, records: list[Record]) -> Iterator[Opened | Chunk | Held | Closed]:
        try:
            source = Source(path)
        except OSError as error:
            yield Closed(error.strerror or str(error))
            return
        formats, forced = build_formats(self.options.format)
        try:
            yield from read_source(source, records, formats, forced)
        finally:
            source.close()

    def ready(self, path: str) -> bool:
        """Whether the next message comes without waiting for input: files, yes; standard
        input only when something has arrived (a pipe may stay quiet for a long time)."""
        if path != "-":
            return True
        try:
            import select

            return bool(select.select([sys.stdin], [], [], 0.05)[0])
        except (OSError, ValueError, TypeError, io.UnsupportedOperation):
            return False

    def close(self) -> None:
        pass


def _reader_process(channel: Any, options: ImportOptions) -> None:
    """The second process: read the sources the first names, send back what they hold."""
    gc.disable()
    reader = _InProcess(options)
    try:
        while True:
            request = channel.recv()
            if request is None:
                return
            path, records = request
            for message in reader.read(path, records):
                channel.send(message)
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        return
    except Exception as error:  # noqa: BLE001 (reported by the first process, which stops)
        with contextlib.suppress(Exception):
            channel.send(ImportFailed(f"reading failed: {type(error).__name__}: {error}"))


class _InAnotherProcess:
    """The reading side in a process of its own (spawned, so no state is shared by accident);
    messages come through a pipe while this process writes."""

    def __init__(self, options: ImportOptions) -> None:
        context = multiprocessing.get_context("spawn")
        self.channel, child = context.Pipe()
        self.process = context.Process(
            target=_reader_process, args=(child, options), name="asgi-log-to-sqlite import reader",
            daemon=True,
        )
        self.process.start()
        child.close()

    def read(self, path: str, records: list[Record]) -> Iterator[Opened | Chunk | Held | Closed]:
        self.channel.send((path, records))
        while True:
            try:
                message = self.channel.recv()
            except EOFError:
                raise ImportFailed("the reading process ended unexpectedly") from None
            if isinstance(message, ImportFailed):
                raise message
            yield message
            if isinstance(message, Closed):
                return

    def ready(self, path: str) -> bool:
        """Whether the next message comes soon (a chunk takes a few tens of milliseconds)."""
        return self.channel.poll(0.05)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.channel.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self.channel.close()


def _use_parallel(options: ImportOptions, sources: Sequence[str]) -> bool:
    if "-" in sources:
        return False  # standard input belongs to this process
    if options.parallel is not None:
        return options.parallel
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on Unix
        busy = 0.0
    size = sum(os.path.getsize(path) for path in sources)
    # A second process only pays when a second CPU is free: on a busy machine it is slower.
    return cpus >= 2 and busy <= cpus - 1 and size >= PARALLEL_BYTES


# ---- the command's function -------------------------------------------------------------------
def _open_log(path: str) -> sqlite3.Connection:
    # UnicodeError: SQLite's own message quotes damaged bytes Python cannot decode (describe()).
    try:
        conn = connect(path)
    except (sqlite3.DatabaseError, UnicodeError) as error:
        raise ImportFailed(f"{path}: not a SQLite database ({describe(error)})") from None
    try:
        _make_log(path, conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _make_log(path: str, conn: sqlite3.Connection) -> None:
    """``conn``'s file made a log this version writes (an empty file becomes one), or
    :class:`ImportFailed` saying why it cannot be."""
    try:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except (sqlite3.DatabaseError, UnicodeError) as error:
        raise ImportFailed(f"{path}: not a SQLite database ({describe(error)})") from None
    try:
        log = not tables or is_log_database(conn)
    except (sqlite3.DatabaseError, UnicodeError) as error:  # a damaged schema
        raise ImportFailed(f"{path}: cannot be read ({describe(error)})") from None
    if not log:
        raise ImportFailed(f"{path}: not a log database (it has no 'requests' table)")
    try:
        ensure_schema(conn)
        conn.execute(IMPORTED_FILES_SQL)
        conn.execute(IMPORTED_FILES_INDEX_SQL)
    except SchemaError as error:
        raise ImportFailed(f"{path}: {error}") from None
    except (sqlite3.Error, UnicodeError) as error:
        raise ImportFailed(f"{path}: cannot be written ({describe(error)})") from None


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Millions of short-lived tuples and no cycles: the collector would only cost time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def check_sources(sources: Sequence[str], log: str | None = None) -> None:
    """Every source is a readable file (or ``-``, once) other than the log itself, before
    anything is written."""
    problems = []
    if list(sources).count("-") > 1:
        problems.append("-: standard input can be read only once")
    for path in dict.fromkeys(sources):
        if path == "-":
            continue
        kind = special_file_kind(path)
        if not os.path.exists(path):
            problems.append(f"{path}: no such file")
        elif kind is not None:
            # Files are read twice at times (to find what was imported) and opened again: a
            # stream goes through standard input instead.
            problems.append(f"{path}: not a regular file ({kind}); pipe it into - instead"
                            if kind != "a folder" else f"{path}: is a folder")
        elif not os.access(path, os.R_OK):
            problems.append(f"{path}: cannot be read")
        elif log is not None and os.path.exists(log) and os.path.samefile(path, log):
            problems.append(f"{path}: is the log database itself")
    kind = special_file_kind(log) if log is not None else None
    if kind is not None:
        problems.append(f"{log}: not a regular file ({kind})")
    if problems:
        raise ImportFailed("; ".join(problems))


def import_logs(
    log: str,
    sources: Sequence[str],
    options: ImportOptions | None = None,
    progress: Callable[[str, int | None], Callable[[int], Any] | None] | None = None,
) -> list[FileResult]:
    """Import ``sources`` (paths; ``-`` is standard input) into the log database ``log``
    (created if missing); one :class:`FileResult` per source, in order.

    ``progress(name, size)`` may return a callable that is given the bytes of the file read so
    far, as the import goes. Lines that do not parse are counted, never fatal; a source that
    cannot be read to its end keeps what was read (``FileResult.error``).
    """
    options = options or ImportOptions()
    check_sources(sources, log)
    if options.format is not None and options.format not in {f.name for f in FORMATS}:
        raise ImportFailed(f"unknown format {options.format!r}")
    try:
        privacy = options.privacy()
    except (TypeError, ValueError) as error:
        raise ImportFailed(str(error)) from None
    conn = _open_log(log)
    results: list[FileResult] = []
    reader: _InProcess | _InAnotherProcess | None = None
    try:
        store = Store(conn)
        parallel = _use_parallel(options, sources)
        reader = _InAnotherProcess(options) if parallel else _InProcess(options)
        with _no_cyclic_gc():
            for path in sources:
                size = os.path.getsize(path) if path != "-" else None
                callback = progress(path, size) if progress is not None else None
                results.append(_import_one(store, privacy, reader, path, callback))
    except sqlite3.Error as error:
        raise ImportFailed(f"{log}: {error}") from None
    finally:
        if reader is not None:
            reader.close()
        conn.close()
    return results


def _import_one(store: Store, privacy: Privacy, reader: _InProcess | _InAnotherProcess, path: str,
                progress: Callable[[int], Any] | None) -> FileResult:
    current: _Source | None = None
    records = _records(store.conn)
    known = {record.id for record in records}
    for message in reader.read(path, records):
        if isinstance(message, Opened):
            current = _Source(store, privacy, message.name, message.record, known)
            continue
        if current is None:  # the source could not even be opened
            assert isinstance(message, Closed)
            result = FileResult(path, status="unreadable")
            result.error = f"{path}: {message.error}"
            return result
        if isinstance(message, Closed):
            return current.close(message)
        if isinstance(message, Held):
            current.result.held = message.text
            continue
        current.add(message)
        if progress is not None and message.disk_position is not None:
            progress(message.disk_position)
        # Commit a full batch, and at least a few times a second (others may be waiting to
        # write: a server logging to the same file); and never hold the write lock while
        # waiting for input.
        if current.rows >= BATCH_ROWS or current.age() > MAX_TRANSACTION or not reader.ready(path):
            current.commit()
    raise ImportFailed(f"{path}: reading ended early")
