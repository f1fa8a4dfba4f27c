"""Record every request an ASGI application serves into a SQLite database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
__all__ = ["AsgiLogToSqlite", "__version__"]

if TYPE_CHECKING:
    from .middleware import AsgiLogToSqlite


def __getattr__(name: str) -> Any:
    # The middleware (and asyncio with it) loads when first used, so that the command line,
    # which mostly reads logs, starts without it.
    if name == "AsgiLogToSqlite":
        from .middleware import AsgiLogToSqlite

        return AsgiLogToSqlite
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
