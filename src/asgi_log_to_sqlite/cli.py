"""The ``asgi-log-to-sqlite`` command: thin click commands over the library's functions."""

from __future__ import annotations

import click

from . import __version__


@click.group()
@click.version_option(__version__, prog_name="asgi-log-to-sqlite")
def cli() -> None:
    """Log ASGI requests to SQLite, and turn those logs into answers."""
