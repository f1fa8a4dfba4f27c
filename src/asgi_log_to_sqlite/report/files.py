"""Opening log files for reading: refusing what is not one, at once, and leaving nothing behind.

A report or ``tail`` only reads. Three things make that harder than ``mode=ro``:

- A FIFO or a device given as a log would make SQLite's open block (or read forever): anything
  but a regular file is refused before SQLite sees it.
- Opening a WAL-mode file read-only creates ``-wal`` and ``-shm`` files beside it when no
  program has it open, and a read-only connection cannot remove them again. When the file has
  no ``-wal`` (no writer has it open), it is opened ``immutable`` instead, which creates
  nothing; a writer that starts meanwhile is noticed afterwards (:meth:`Snapshot.changed`) and
  the caller reads again the ordinary way.
- File names that are not valid UTF-8 (POSIX allows any bytes) must still open, and print.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from ..filekind import special_file_kind
from ..schema import WAL_SUFFIX, readonly_uri

__all__ = ["SQL_ERRORS", "ReportError", "Snapshot", "check_file", "display", "read_uri",
           "reason"]

#: What reading a damaged file can raise: sqlite3's errors, and UnicodeDecodeError when the
#: message itself quotes bytes that are not UTF-8 (a damaged name in the schema).
SQL_ERRORS = (sqlite3.DatabaseError, UnicodeDecodeError)


class ReportError(Exception):
    """A log cannot be reported on (missing, not a log database...); the message says why."""


def reason(error: BaseException) -> str:
    """The database's message: for a UnicodeDecodeError, the message it could not decode."""
    if isinstance(error, UnicodeDecodeError) and isinstance(error.object, bytes):
        return error.object.decode("utf-8", "backslashreplace")
    return str(error)


def display(path: str | os.PathLike[str]) -> str:
    """``path`` as printable text: bytes that are not UTF-8 become ``\\xNN``."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_file(path: str) -> os.stat_result:
    """Raise :class:`ReportError` unless ``path`` is a regular file (symlinks followed)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ReportError(f"{display(path)}: no such file") from None
    except OSError as error:
        raise ReportError(f"{display(path)}: cannot be read ({error.strerror})") from None
    kind = special_file_kind(path)
    if kind is not None:
        raise ReportError(f"{display(path)}: is {kind}, not a log database")
    return st


@dataclass(frozen=True)
class Snapshot:
    """What a file looked like when it was opened without locks (``immutable``)."""

    path: str
    size: int
    mtime_ns: int

    def changed(self) -> bool:
        """True if a program wrote to the file (or started writing) since."""
        if os.path.exists(self.path + WAL_SUFFIX):
            return True
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_size, st.st_mtime_ns) != (self.size, self.mtime_ns)


def _is_wal(path: str) -> bool:
    """The file's header says WAL mode (read and write versions 2)."""
    try:
        with open(path, "rb") as file:
            header = file.read(20)
    except OSError:
        return False
    return (len(header) == 20 and header[:16] == b"SQLite format 3\x00"
            and header[18:20] == b"\x02\x02")


def read_uri(path: str, quiet: bool = True) -> tuple[str, Snapshot | None]:
    """A read-only ``file:`` URI for ``path`` and, when it is opened without locks, the
    :class:`Snapshot` to check afterwards. ``quiet=False`` always asks for the ordinary
    read-only open (the second attempt after a snapshot changed)."""
    st = check_file(path)
    if quiet and _is_wal(path) and not os.path.exists(path + WAL_SUFFIX):
        return readonly_uri(path, immutable=True), Snapshot(path, st.st_size, st.st_mtime_ns)
    return readonly_uri(path), None
