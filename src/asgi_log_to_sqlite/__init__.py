"""Record every request an ASGI application serves into a SQLite database."""

from .middleware import AsgiLogToSqlite

__version__ = "0.2.0"
__all__ = ["AsgiLogToSqlite", "__version__"]
