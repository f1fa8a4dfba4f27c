"""Run any ASGI app under uvicorn with request logging on, without touching its code.

With several workers uvicorn needs an import string, not an object: each worker process imports
:func:`wrapped_app` (a factory) which reads what to serve from the ``ASGI_LOG_TO_SQLITE_SERVE``
environment variable and wraps the app in its own middleware, so every worker has its own writer.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

from .filekind import special_file_kind

__all__ = ["ENV_VAR", "load_app", "serve", "wrapped_app"]

ENV_VAR = "ASGI_LOG_TO_SQLITE_SERVE"


def load_app(spec: str, app_dir: str | None = None) -> Any:
    """Import ``module:attribute`` (dots allowed in the attribute); ValueError says what failed."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(
            f"APP must look like module:attribute (e.g. myproject.asgi:app), got {spec!r}"
        )
    folder = os.path.abspath(app_dir or os.getcwd())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import module {module_name!r}: {error}") from error
    except Exception as error:  # the app's own code failed: say so in one line
        raise ValueError(
            f"cannot import module {module_name!r}: {type(error).__name__}: {error}"
        ) from error
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise ValueError(f"{spec} is not an ASGI application (not callable)")
    return target


def wrapped_app() -> Any:
    """The factory each uvicorn worker calls: the app named in the environment, logged."""
    from .middleware import AsgiLogToSqlite

    config = json.loads(os.environ[ENV_VAR])
    app = load_app(config["app"], config.get("app_dir"))
    return AsgiLogToSqlite(app, config["db"], **config.get("options", {}))


def serve(
    app: str,
    db: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    options: dict[str, Any] | None = None,
    log_level: str = "info",
) -> None:
    """Check everything up front (app import, options, database), then run uvicorn."""
    import uvicorn

    from .middleware import AsgiLogToSqlite

    options = dict(options or {})
    app_dir = os.getcwd()
    kind = special_file_kind(db)
    if kind is not None and kind != "a folder":  # the middleware says what it says of folders
        raise ValueError(f"cannot log to {db!r}: not a regular file ({kind})")
    target = load_app(app, app_dir)
    # Building the middleware once here validates the options and creates the database, so a
    # mistake is reported before any worker starts; each worker then builds its own.
    try:
        AsgiLogToSqlite(target, db, **options).close()
    except (TypeError, ValueError, OSError):
        raise
    except Exception as error:  # an option value the middleware could not take
        raise ValueError(f"cannot use these options: {type(error).__name__}: {error}") from error
    os.environ[ENV_VAR] = json.dumps(
        {"app": app, "db": os.path.abspath(db), "options": options, "app_dir": app_dir}
    )
    uvicorn.run(
        "asgi_log_to_sqlite.serve:wrapped_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        # Forwarding headers are the middleware's to read, and only from ``trusted_proxies``:
        # uvicorn's own handling would trust X-Forwarded-For from any local client.
        proxy_headers=False,
        # The log is the access log: uvicorn's own would print query strings, secrets and all.
        access_log=False,
    )
