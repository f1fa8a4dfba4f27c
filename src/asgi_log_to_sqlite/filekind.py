"""Which files SQLite is never asked to open: named pipes, devices, folders, sockets.

SQLite opens a named pipe and then waits forever for bytes to read, and fails in odd ways on a
device such as ``/dev/null``; the commands refuse such a path at once, saying what it is.
"""

from __future__ import annotations

import os
import stat

__all__ = ["special_file_kind"]

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_file_kind(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it exists but is no regular file ("a named pipe"...), else None.

    Links are followed: a link to a regular file is one.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "a special file")
