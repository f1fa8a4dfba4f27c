"""The ``asgi-log-to-sqlite`` program's entry point, importable without the ``cli`` extra.

The program is installed with the core package, whose only dependency is the standard library;
without the extra it says what to install instead of failing with a traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .cli import cli
    except ImportError as error:
        sys.exit(
            f"asgi-log-to-sqlite: the command line needs the 'cli' extra ({error}):\n"
            "  pip install 'asgi-log-to-sqlite[cli]'"
        )
    cli()
