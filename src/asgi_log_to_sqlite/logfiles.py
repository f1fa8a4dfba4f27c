"""What a log file must be before a command reads or changes it, checked first, with errors
meant for a person: not a regular file, not SQLite, not a log database, a schema newer than this
version. What goes wrong once a file is open (a damaged page, a full disk, a lock held too long)
is reported the same way, naming the file (:func:`failing_as`). ``rotate``, ``prune``,
``vacuum`` (maintenance.py) and ``merge`` (merge.py) share these checks.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from collections.abc import Iterator

from .filekind import special_file_kind
from .schema import SchemaError, is_log_database, latest_version, open_readonly

__all__ = [
    "MaintenanceError",
    "NotALogError",
    "check_connection",
    "check_log_file",
    "check_regular_file",
    "check_requests_table",
    "describe",
    "failing_as",
    "lenient_text",
    "open_lenient",
]


class MaintenanceError(ValueError):
    """A file cannot be used for the requested operation; the message says why."""


class NotALogError(MaintenanceError):
    """A SQLite database without the log's tables (or one a rotation is just creating)."""


#: Text that is not valid UTF-8 (a damaged page, a hand edit) is read with replacement characters
#: instead of failing the whole operation.
lenient_text = functools.partial(str, encoding="utf-8", errors="replace")


def check_regular_file(path: str) -> None:
    """Raise :class:`MaintenanceError` unless ``path`` is a regular file (or a link to one)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        raise MaintenanceError(f"{path}: no such file") from None
    except (OSError, ValueError) as error:
        raise MaintenanceError(f"{path}: {describe(error)}") from None
    kind = special_file_kind(path)
    if kind is not None:
        raise MaintenanceError(f"{path}: not a regular file ({kind})")


def describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if isinstance(error, UnicodeDecodeError) and isinstance(error.object, bytes):
        # Python could not decode SQLite's own message (it quotes damaged bytes): show it anyway.
        return error.object.decode("utf-8", "replace")
    return str(error)


@contextlib.contextmanager
def failing_as(what: str) -> Iterator[None]:
    """Errors once a file is open (a damaged page, undecodable names, a full disk, a lock held
    too long) as a :class:`MaintenanceError` that says which file and what went wrong."""
    try:
        yield
    except (sqlite3.Error, OSError, UnicodeError, SchemaError) as error:
        raise MaintenanceError(f"{what} ({describe(error)})") from None


def open_lenient(path: str) -> sqlite3.Connection:
    conn = open_readonly(path)
    conn.text_factory = lenient_text
    return conn


def check_connection(path: str, conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA schema_version").fetchone()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        log = is_log_database(conn)
    except (sqlite3.DatabaseError, UnicodeError) as error:
        # SQLite's message quotes the damaged bytes, which may not even decode.
        if "not a database" in str(error):
            raise MaintenanceError(f"{path}: not a SQLite database ({describe(error)})") from None
        raise MaintenanceError(f"{path}: cannot be read ({describe(error)})") from None
    if not log:
        raise NotALogError(f"{path}: not a log database (it has no 'requests' table)")
    if version > latest_version():
        raise MaintenanceError(
            f"{path}: schema version {version} is newer than this asgi-log-to-sqlite supports "
            f"({latest_version()}); upgrade asgi-log-to-sqlite"
        )


def check_log_file(path: str) -> None:
    """Raise :class:`MaintenanceError` unless ``path`` is a log database this version can use."""
    check_regular_file(path)
    try:
        conn = open_lenient(path)
    except sqlite3.Error as error:
        raise MaintenanceError(f"{path}: cannot be opened ({error})") from None
    try:
        check_connection(path, conn)
    finally:
        conn.close()


def check_requests_table(path: str, conn: sqlite3.Connection) -> None:
    """Rows can only be deleted from, or added to, a ``requests`` that is a table."""
    kind = conn.execute(
        "SELECT type FROM sqlite_master WHERE name = 'requests' COLLATE NOCASE"
    ).fetchone()
    if kind is not None and kind[0] != "table":
        raise MaintenanceError(f"{path}: 'requests' is a {kind[0]}, not a table")
