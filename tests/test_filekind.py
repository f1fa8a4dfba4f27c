"""special_file_kind: what a path is when SQLite must not be asked to open it."""

from __future__ import annotations

import os

from asgi_log_to_sqlite.filekind import special_file_kind


def test_special_file_kind(tmp_path):
    regular = tmp_path / "log.db"
    regular.write_bytes(b"")
    os.symlink(regular, tmp_path / "link.db")
    os.mkfifo(tmp_path / "pipe.db")
    assert special_file_kind(regular) is None
    assert special_file_kind(tmp_path / "link.db") is None  # links are followed
    assert special_file_kind(tmp_path / "missing.db") is None  # nothing there to refuse
    assert special_file_kind(tmp_path) == "a folder"
    assert special_file_kind(tmp_path / "pipe.db") == "a named pipe"
    assert special_file_kind(os.devnull) == "a character device"
