"""Reading one access-log source for ``import``: its bytes, what of it was imported before, and
its rows, a chunk at a time. Nothing here touches the database.

A source is a file (gzip or not: recognised by its first bytes, not its name) or standard input.
Its content is recognised by hashes, not by name (see :mod:`.importer` for the table that keeps
them): :func:`read_source` first reads past what an earlier import of the same content covered,
then yields :class:`Chunk` messages of whole lines, parsed and ready to store. The reading side
is plain data in, plain data out, so that it can run in a process of its own while the other
writes.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import sys
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from .logformats import FORMATS, LogFormat, detect

__all__ = ["Chunk", "Closed", "Held", "Opened", "Record", "Source", "read_source"]

#: Bytes read at a time; their whole lines are parsed as one chunk.
CHUNK_BYTES = 1 << 20
#: A "line" this long without a line end is cut (a binary file would otherwise fill memory).
MAX_LINE = 1 << 20
#: Bytes at the start of a content that find earlier imports of it.
HEAD_BYTES = 4096
#: Lines that did not parse kept (to be shown) per source.
SHOWN_FAILURES = 5

GZIP_MAGIC = b"\x1f\x8b"


# ---- messages -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Record:
    """What an earlier import of a content covered: its first ``bytes``, hashed, in ``lines``."""

    id: int
    bytes: int
    sha256: str
    lines: int
    head_bytes: int = 0
    head_sha256: str = ""


@dataclasses.dataclass
class Opened:
    """A source was opened; ``record``: the earlier import it continues (None: new content)."""

    name: str
    record: Record | None


@dataclasses.dataclass
class Chunk:
    """Whole lines of a source, parsed: rows ready to store, and where the source now stands."""

    parts: list[dict[str, list[Any]]]  # rows by column, one dict per format met
    rows: int
    lines: int  # lines in this chunk
    unparsed: int
    failures: list[tuple[int, str]]  # (line number, text) of the first lines that did not parse
    format: str | None
    position: int  # content bytes read, through this chunk
    sha256: str  # of those bytes
    line: int  # lines read, through this chunk
    head: bytes  # the content's first bytes (up to HEAD_BYTES)
    disk_position: int | None  # bytes of the file on disk read (for progress)


@dataclasses.dataclass
class Held:
    """The source's last line has no line end and does not parse yet: it was not read."""

    text: str


@dataclasses.dataclass
class Closed:
    """The source was read to its end, or ``error`` says why it stopped (what was read counts)."""

    error: str | None = None


# ---- bytes ----------------------------------------------------------------------------------
class Source:
    """A source's content (gzip recognised by its first bytes and decompressed), read in
    order, with bytes read ahead put back in front."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = path
        self.seekable = path != "-"
        self.size = os.path.getsize(path) if self.seekable else None
        self.compressed = False
        self._raw: Any = None
        self._content: BinaryIO
        self._front: BinaryIO | None = None
        self._open()

    def _open(self) -> None:
        if self.path == "-":
            raw: Any = sys.stdin.buffer
            if not hasattr(raw, "peek"):
                raw = io.BufferedReader(raw)  # a replaced sys.stdin (tests, embedding)
        else:
            raw = open(self.path, "rb")
        self._raw = raw
        self.compressed = raw.peek(2)[:2] == GZIP_MAGIC
        self._content = gzip.GzipFile(fileobj=raw, mode="rb") if self.compressed else raw

    def disk_position(self) -> int | None:
        """Bytes of the file on disk read so far (for progress), if known."""
        if not self.seekable:
            return None
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return None

    def read(self, size: int) -> bytes:
        if self._front is not None:
            data = self._front.read(size)
            if data:
                return data
            self._front.close()
            self._front = None
        return self._content.read(size)

    def read_exactly(self, size: int) -> bytes:
        parts = []
        while size > 0:
            data = self.read(min(size, CHUNK_BYTES))
            if not data:
                break
            parts.append(data)
            size -= len(data)
        return b"".join(parts)

    def unread(self, data: BinaryIO | bytes) -> None:
        """Put bytes read ahead back in front of what is still to come."""
        front = io.BytesIO(data) if isinstance(data, bytes) else data
        if self._front is not None:
            front.seek(0, os.SEEK_END)
            front.write(self._front.read())
            self._front.close()
        front.seek(0)
        self._front = front

    def rewind(self, offset: int) -> None:
        """Go back to ``offset`` bytes of content (files only: they are opened again)."""
        self.close()
        self._open()
        if not self.compressed:
            self._raw.seek(offset)
            return
        while offset > 0:
            data = self._content.read(min(offset, CHUNK_BYTES))
            if not data:
                break
            offset -= len(data)

    def close(self) -> None:
        if self._front is not None:
            self._front.close()
            self._front = None
        if self.path != "-" and self._raw is not None:
            self._raw.close()


def _blocks(source: Source) -> Iterator[bytes]:
    """The content in blocks of whole lines; a last line without a line end comes alone."""
    rest = b""
    while True:
        data = source.read(CHUNK_BYTES)
        if not data:
            break
        data = rest + data if rest else data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) < MAX_LINE:
                rest = data
                continue
            cut = len(data)
        block, rest = data[:cut], data[cut:]
        yield block
    if rest:
        yield rest


def _text(block: bytes) -> str:
    """A block's lines as text joined by ``\\n``: bytes that are not UTF-8 as ``\\xHH`` (as
    the middleware stores them), Windows line ends made plain, no last line end."""
    if block.endswith(b"\n"):
        block = memoryview(block)[:-1]  # type: ignore[assignment] (decoded without a copy)
    chunk = str(block, "utf-8", "backslashreplace")
    if "\r" in chunk:
        chunk = chunk.replace("\r\n", "\n").removesuffix("\r")
    return chunk


# ---- what was imported before -----------------------------------------------------------------
def candidates(records: Sequence[Record], head: bytes) -> list[Record]:
    """The earlier imports whose content started as this one does, shortest first."""
    digests: dict[int, str] = {}
    found = []
    for record in records:
        size = record.head_bytes
        if not 0 < size <= len(head):
            continue
        if size not in digests:
            digests[size] = hashlib.sha256(head[:size]).hexdigest()
        if digests[size] == record.head_sha256:
            found.append(record)
    return sorted(found, key=lambda r: r.bytes)


def skip_imported(source: Source, candidates: Sequence[Record]) -> tuple[Record | None, Any, bytes]:
    """Read past what an earlier import of this content covered: (that import, the hash of the
    content skipped, its first bytes). Candidates are checked in one pass; what was read past
    the longest match is put back (read again from a file, kept aside for standard input)."""
    hasher = hashlib.sha256()
    best: Record | None = None
    best_hasher = hashlib.sha256()
    head = b""
    position = 0
    spool = None
    if not source.seekable:  # standard input: what is read cannot be read again
        spool = tempfile.SpooledTemporaryFile(max_size=64 << 20)
    last_byte = best_last = b""
    for candidate in candidates:
        data = source.read_exactly(candidate.bytes - position)
        if data:
            hasher.update(data)
            last_byte = data[-1:]
            head += data[: HEAD_BYTES - len(head)]
            if spool is not None:
                spool.write(data)
            position += len(data)
        if position < candidate.bytes:
            break  # the content is shorter now: neither this nor a longer one matches
        if hasher.hexdigest() == candidate.sha256:
            best, best_hasher, best_last = candidate, hasher.copy(), last_byte
            if spool is not None:
                spool.seek(0)
                spool.truncate()
    start = best.bytes if best is not None else 0
    head = head[:start]
    if position > start:
        if spool is not None:
            source.unread(spool)  # type: ignore[arg-type]
        else:
            source.rewind(start)
    elif spool is not None:
        spool.close()
    if best is not None and best_last != b"\n":
        # The earlier import ended inside a line that has grown since: the rest of that line
        # was counted with it and is not a line of its own.
        skipped = 0
        while True:
            data = source.read(CHUNK_BYTES)
            if not data:
                break
            cut = data.find(b"\n") + 1
            if cut:
                source.unread(data[cut:])
                data = data[:cut]
            best_hasher.update(data)
            head += data[: HEAD_BYTES - len(head)]
            skipped += len(data)
            if cut:
                break
        if skipped:
            best = dataclasses.replace(best, bytes=best.bytes + skipped,
                                       sha256=best_hasher.hexdigest())
    return best, best_hasher, head


# ---- reading a source -----------------------------------------------------------------------
class _Parser:
    """A source's lines into rows: its format found from the first line that parses in one,
    other formats still tried for lines that do not (a file of several logs put together)."""

    def __init__(self, formats: Sequence[LogFormat], forced: bool) -> None:
        self.formats = list(formats)
        self.forced = forced
        self.main: LogFormat | None = self.formats[0] if forced else None
        self.shown = 0

    def parse(self, chunk: str, first_line: int) -> tuple[list[dict[str, list[Any]]], list[int],
                                                          list[str] | None]:
        """(rows by format, indexes of lines no format reads, the chunk's lines if split)."""
        if self.main is None:
            for line in chunk.split("\n"):
                self.main = detect(line, self.formats)
                if self.main is not None:
                    break
            else:
                lines = chunk.split("\n")
                return [], [i for i, line in enumerate(lines) if line.strip()], lines
        parsed = self.main.parse(chunk)
        out = [parsed.columns] if parsed.rows else []
        failed = parsed.failed
        lines = None
        if failed:
            lines = chunk.split("\n")
            if not self.forced:
                for other in self.formats:
                    if other is self.main or not failed:
                        continue
                    tried = other.parse("\n".join(lines[i] for i in failed))
                    if tried.rows:
                        out.append(tried.columns)
                        failed = [failed[i] for i in tried.failed]
        return out, failed, lines


def read_source(source: Source, records: Sequence[Record], formats: Sequence[LogFormat],
                forced: bool) -> Iterator[Opened | Chunk | Held | Closed]:
    """Read one source: an :class:`Opened`, then :class:`Chunk` after chunk of what is new in
    it (maybe a :class:`Held` last line), then a :class:`Closed` (with the reason if it could
    not be read to its end)."""
    try:
        head = source.read_exactly(HEAD_BYTES)
        source.unread(head)
        record, hasher, head = skip_imported(source, candidates(records, head))
        yield Opened(source.name, record)
        parser = _Parser(formats, forced)
        position = record.bytes if record is not None else 0
        line = record.lines if record is not None else 0
        for block in _blocks(source):
            chunk = _text(block)
            count = chunk.count("\n") + 1
            parts, failed, lines = parser.parse(chunk, line)
            if failed and not block.endswith(b"\n") and len(block) < MAX_LINE:
                # The last line has no line end and does not parse: most likely a line being
                # written right now. It is left for the next import to read whole.
                yield Held(chunk)
                break
            hasher.update(block)
            if len(head) < HEAD_BYTES:
                head += block[: HEAD_BYTES - len(head)]
            rows = sum(len(next(iter(columns.values()))) for columns in parts)
            failures = []
            if failed and parser.shown < SHOWN_FAILURES:
                assert lines is not None
                shown = failed[: SHOWN_FAILURES - parser.shown]
                failures = [(line + i + 1, lines[i]) for i in shown]
                parser.shown += len(failures)
            position += len(block)
            line += count
            yield Chunk(parts, rows, count, len(failed), failures,
                        parser.main.name if parser.main else None, position, hasher.hexdigest(),
                        line, head, source.disk_position())
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        # A damaged or still-growing gzip file, a read error: what was read is kept.
        yield Closed(str(error) or type(error).__name__)
        return
    yield Closed()


def build_formats(name: str | None) -> tuple[list[LogFormat], bool]:
    """The formats to try (all, in detection order, or the one asked for) and whether forced."""
    formats = [kind() for kind in FORMATS]
    if name is None:
        return formats, False
    return [f for f in formats if f.name == name], True
