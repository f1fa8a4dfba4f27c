"""The Datasette plugin: log Datasette's own traffic, describe log databases, keep the log private.

Loaded by Datasette through the ``datasette`` entry point, so nothing here runs (or imports
Datasette) unless Datasette is installed. It speaks to both Datasette 0.65 and the 1.0
pre-releases, whose hooks differ:

* **Logging** (``asgi_wrapper``): configured with ``{"plugins": {"asgi-log-to-sqlite":
  {"file": "log.db", ...}}}``. One middleware (so one writer thread) per Datasette, however often
  Datasette builds its ASGI app (1.0 builds one per internal client request).
* **Bad configuration** stops start-up with ``Error: ...`` naming the option: the error is both
  Datasette's ``StartupError`` and a ``click.ClickException``, so ``datasette serve`` prints it
  cleanly wherever it surfaces.
* **Privacy**: the configured log file, when Datasette also serves it, is readable only by the
  root actor and the actors matched by the ``allow`` option (0.65: ``permission_allowed``;
  1.0: ``permission_resources_sql``).
* **Metadata** for every database that is a log (detected by its schema): 0.65 through
  ``get_metadata``, 1.0 by writing it into the internal catalog and configuration at start-up,
  never over what the user configured.
* **The traffic dashboard** of every log database, in datasette-dashboards' configuration
  (0.65's ``get_metadata`` for the ``plugins`` key), as private as the log: see
  :mod:`.datasette_dashboard`.
* **The whole configuration is checked at start-up**, ``allow`` included (Datasette reads an allow
  block only while answering a permission check, so a bad one would fail every page later).
"""

from __future__ import annotations

import contextvars
import copy
import http.cookies
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import click
from datasette import hookimpl
from datasette.utils import StartupError

from . import dashboard
from . import datasette_dashboard as served_dashboard
from . import metadata as log_metadata
from .middleware import AsgiLogToSqlite
from .options import Options, option_names
from .rotation import is_rotated_file
from .schema import is_log_database, open_readonly

PLUGIN_NAME = "asgi-log-to-sqlite"
# Options of the plugin itself; every other key is passed to the middleware.
PLUGIN_OPTIONS = ("allow", "log_actor")
ROOT_ALLOW = {"id": "root"}
# How long "this database is not a log" is believed before the file is looked at again.
NEGATIVE_CACHE_SECONDS = 5.0

# 0.65 action names that read a database; 1.0 actions are recognised by their resource class.
READ_ACTIONS_065 = (
    "view-database",
    "view-database-download",
    "view-table",
    "view-query",
    "execute-sql",
)


class ConfigurationError(StartupError, click.ClickException):
    """Invalid plugin configuration: ``datasette serve`` prints the message and exits with 1."""

    def __init__(self, message: str) -> None:
        click.ClickException.__init__(self, message)


class PluginConfig:
    """The plugin configuration, validated: the log file, who may read it, middleware options."""

    def __init__(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise ConfigurationError(
                f"{PLUGIN_NAME}: the plugin configuration must be an object such as "
                f'{{"file": "log.db"}}, got {raw!r}'
            )
        raw = dict(raw)
        if "file" not in raw or raw["file"] in (None, ""):
            raise ConfigurationError(
                f"{PLUGIN_NAME}: option 'file' is required: the path of the log database"
            )
        file = raw.pop("file")
        if not isinstance(file, str):
            raise ConfigurationError(
                f"{PLUGIN_NAME}: option 'file' must be a path (a string), got {file!r}"
            )
        self.file = file
        self.allow = _parse_allow(raw.pop("allow", None))
        log_actor = raw.pop("log_actor", True)
        if not isinstance(log_actor, bool):
            raise ConfigurationError(
                f"{PLUGIN_NAME}: option 'log_actor' must be true or false, got {log_actor!r}"
            )
        self.log_actor = log_actor
        self.options = raw

    def may_read(self, actor: dict[str, Any] | None) -> bool:
        """May this actor read the log database?"""
        from datasette.utils import actor_matches_allow

        if self.allow is True:
            return True
        try:
            if actor_matches_allow(actor, ROOT_ALLOW):
                return True
            return self.allow is not None and bool(actor_matches_allow(actor, self.allow))
        except Exception:  # noqa: BLE001 - an odd actor reads nothing, and breaks no page
            return False


def _parse_allow(value: Any) -> Any:
    """``true`` (anyone), a list of actor ids, or a Datasette allow block; ``None``: root only.

    An allow block is checked here, whole, because Datasette only reads it while answering a
    permission check: a bad one would fail every page of the instance, not start-up.
    """
    if value is None or value is False:
        return None
    if value is True:
        return True
    if isinstance(value, str):
        return {"id": [value]}
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return {"id": list(value)}
    if isinstance(value, dict) and all(
        isinstance(key, str) and _allow_values_ok(values) for key, values in value.items()
    ):
        return value
    raise ConfigurationError(
        f"{PLUGIN_NAME}: option 'allow' must be true, a list of actor ids such as "
        f'["alice"], or a Datasette allow block such as {{"id": ["alice"]}} whose values are '
        f"strings, numbers, true/false or lists of them; got {value!r}"
    )


def _allow_values_ok(values: Any) -> bool:
    """What Datasette compares with an actor's values: a scalar or a list of scalars."""
    scalar = (str, int, float, bool, type(None))
    if isinstance(values, list):
        return all(isinstance(item, scalar) for item in values)
    return isinstance(values, scalar)


# ---- one state per Datasette instance ---------------------------------------------------------
class _State:
    def __init__(self) -> None:
        self.loaded = False
        self.error: ConfigurationError | None = None
        self.config: PluginConfig | None = None
        self.middleware: AsgiLogToSqlite | None = None
        self.log_names_key: tuple[Any, ...] | None = None
        self.log_names: frozenset[str] = frozenset()


_states: weakref.WeakKeyDictionary[Any, _State] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()

# The app the shared middleware passes each call to: Datasette may build its ASGI app many times
# (each wrapped by asgi_wrapper), and every one of them shares this Datasette's one middleware.
_current_app: contextvars.ContextVar[Any] = contextvars.ContextVar("asgi_log_to_sqlite_app")


async def _dispatch(scope: Any, receive: Any, send: Any) -> None:
    await _current_app.get()(scope, receive, send)


def _state(datasette: Any) -> _State:
    """This Datasette's configuration and middleware, built once; raises ConfigurationError."""
    with _states_lock:
        state = _states.get(datasette)
        if state is None:
            state = _states[datasette] = _State()
        if not state.loaded:
            state.loaded = True
            try:
                _load(datasette, state)
            except ConfigurationError as error:
                state.error = error
    if state.error is not None:
        raise state.error
    return state


def _load(datasette: Any, state: _State) -> None:
    raw = datasette.plugin_config(PLUGIN_NAME)
    if raw is None:
        return
    config = PluginConfig(raw)
    state.config = config
    options = dict(config.options)
    if config.log_actor and "actor" in option_names() and "actor" not in options:
        options["actor"] = actor_reader(datasette)
    try:
        state.middleware = AsgiLogToSqlite(_dispatch, config.file, **options)
    except Exception as error:  # noqa: BLE001 - every failure is a bad configuration, named
        raise ConfigurationError(f"{PLUGIN_NAME}: {_naming_the_option(error, config)}") from None


_NAMES_AN_OPTION = re.compile(r"\boptions?\b[^'\"]*['\"](\w+)['\"]")


def _naming_the_option(error: Exception, config: PluginConfig) -> str:
    """The middleware's message, sure to name the option at fault.

    The middleware names the option in its messages; an error raised from deeper down that does
    not (``UnicodeEncodeError``, ``RecursionError``...) is pinned on the option that fails the
    same way on its own, else on ``file``.
    """
    message = str(error) or type(error).__name__
    if _NAMES_AN_OPTION.search(message):
        return message
    for name, value in config.options.items():
        try:
            Options.from_kwargs({name: value})
        except Exception as alone:  # noqa: BLE001 - compared with the first failure
            if type(alone) is type(error) and not _NAMES_AN_OPTION.search(str(alone)):
                return f"option {name!r}: {message}"
    return f"option 'file': {message}"


def actor_reader(datasette: Any) -> Callable[[Any], str | None]:
    """A function that tells who made a request, from Datasette's signed ``ds_actor`` cookie.

    Datasette hands its own copy of the scope to its views, so the actor it resolves is never
    seen by a middleware; the cookie is. Runs in the writer thread: it never raises.
    """

    def actor(scope: Any) -> str | None:
        try:
            value = None
            for name, raw in scope.get("headers") or ():
                if bytes(name).lower() == b"cookie":
                    cookie = http.cookies.SimpleCookie()
                    cookie.load(bytes(raw).decode("latin-1"))
                    if "ds_actor" in cookie:
                        value = cookie["ds_actor"].value
            if not value:
                return None
            decoded = datasette.unsign(value, "actor")
            if not isinstance(decoded, dict) or not isinstance(decoded.get("a"), dict):
                return None
            expires = decoded.get("e")
            if expires:
                from datasette.utils import baseconv

                if time.time() > int(baseconv.base62.decode(expires)):
                    return None
            actor_id = decoded["a"].get("id")
            return None if actor_id is None else str(actor_id)
        except Exception:  # noqa: BLE001 - a bad cookie is an unknown actor, never an error
            return None

    return actor


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def private_database_names(datasette: Any) -> frozenset[str]:
    """Names under which Datasette serves the configured log file or its rotated files."""
    try:
        state = _state(datasette)
    except ConfigurationError:
        return frozenset()
    config = state.config
    if config is None or config.allow is True:
        return frozenset()
    databases = datasette.databases
    key = tuple((name, getattr(db, "path", None)) for name, db in databases.items())
    if key != state.log_names_key:
        state.log_names = frozenset(
            name for name, path in key
            if path and (_same_file(path, config.file) or is_rotated_file(path, config.file))
        )
        state.log_names_key = key
    return state.log_names


def _denied_databases(datasette: Any, actor: Any) -> frozenset[str]:
    """The log databases this actor may not read; with ``--crossdb``, ``_memory`` too."""
    names = private_database_names(datasette)
    if not names:
        return names
    state = _states.get(datasette)
    if state is None or state.config is None or state.config.may_read(actor):
        return frozenset()
    if getattr(datasette, "crossdb", False):
        # Cross-database SQL attaches every file to _memory: the log with it.
        names = names | {"_memory"}
    return names


# ---- hooks: logging ---------------------------------------------------------------------------
@hookimpl
def asgi_wrapper(datasette: Any) -> Callable[[Any], Any] | None:
    state = _state(datasette)
    middleware = state.middleware
    if middleware is None:
        return None

    def wrap(app: Any) -> Any:
        async def logged(scope: Any, receive: Any, send: Any) -> None:
            token = _current_app.set(app)
            try:
                await middleware(scope, receive, send)
            finally:
                _current_app.reset(token)

        return logged

    return wrap


@hookimpl
def startup(datasette: Any) -> Any:
    _state(datasette)  # invalid configuration stops start-up here at the latest

    async def inner() -> None:
        if _is_datasette_1(datasette):
            await _apply_metadata_datasette_1(datasette)

    return inner


# ---- hooks: privacy ---------------------------------------------------------------------------
@hookimpl(trylast=True)
def permission_allowed(datasette: Any, actor: Any, action: str, resource: Any) -> Any:
    """Datasette 0.65: deny every read of the log database to actors not allowed to see it.

    SQL on any log database also needs ``view-database`` there: datasette-dashboards asks only
    for ``execute-sql`` before it shows a dashboard (whose filters list the log's hosts and
    routes), so a log made private by Datasette's own ``allow`` keeps its dashboard private too.
    """
    if action not in READ_ACTIONS_065 or resource is None:
        return None
    database = resource[0] if isinstance(resource, (tuple, list)) else resource
    if database in _denied_databases(datasette, actor):
        return False
    if action == "execute-sql" and database in log_databases(datasette):
        async def may_view() -> bool | None:
            for check, on in (("view-instance", None), ("view-database", database)):
                if not await datasette.permission_allowed(actor, check, on, default=True):
                    return False
            return None

        return may_view
    return None


@hookimpl
def permission_resources_sql(datasette: Any, actor: Any, action: str) -> Any:
    """Datasette 1.0: a database-level deny for every database, table and query action.

    Denying ``view-database`` alone would still serve ``/log/requests.json`` in 1.0, so every
    action on a resource inside the log database is denied.
    """
    from datasette.permissions import PermissionSQL
    from datasette.resources import DatabaseResource, QueryResource, TableResource

    action_obj = datasette.actions.get(action) if hasattr(datasette, "actions") else None
    if action_obj is None or action_obj.resource_class not in (
        DatabaseResource,
        TableResource,
        QueryResource,
    ):
        return None
    names = sorted(_denied_databases(datasette, actor))
    if not names:
        return None
    params: dict[str, Any] = {"asgi_log_to_sqlite_reason": f"{PLUGIN_NAME}: the log is private"}
    selects = []
    for i, name in enumerate(names):
        params[f"asgi_log_to_sqlite_db_{i}"] = name
        selects.append(
            f"SELECT :asgi_log_to_sqlite_db_{i} AS parent, NULL AS child, 0 AS allow, "
            ":asgi_log_to_sqlite_reason AS reason"
        )
    return PermissionSQL(sql="\nUNION ALL\n".join(selects), params=params)


@hookimpl(tryfirst=True)
def register_routes(datasette: Any) -> list[tuple[str, Any]]:
    """The list of dashboards, with only those the visitor may read (before the plugin's own)."""
    if not served_dashboard.dashboards_can_run(datasette):
        return []
    return [(r"^/-/dashboards$", served_dashboard.dashboard_list)]


# ---- hooks: metadata ----------------------------------------------------------------------------
class _Log:
    """What the plugin knows of one log database: its tables and columns, and its metadata."""

    def __init__(self, tables: dict[str, list[str]]) -> None:
        self.tables = tables
        self.metadata = log_metadata.log_metadata(tables)


_log_cache: dict[tuple[str, str], tuple[float, _Log | None]] = {}
_log_cache_lock = threading.Lock()


def _read_log(path: str) -> _Log | None:
    """The log database at ``path``, or None when it is not one."""
    try:
        conn = open_readonly(path, timeout=1)
    except sqlite3.Error:
        return None
    try:
        if not is_log_database(conn):
            return None
        return _Log(log_metadata.table_columns(conn))
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _cached_log(name: str, path: str) -> _Log | None:
    key = (name, path)
    now = time.monotonic()
    with _log_cache_lock:
        cached = _log_cache.get(key)
    if cached is not None and (cached[1] is not None or now - cached[0] < NEGATIVE_CACHE_SECONDS):
        return cached[1]
    found = _read_log(path)
    with _log_cache_lock:
        _log_cache[key] = (now, found)
    return found


def log_databases(datasette: Any) -> dict[str, _Log]:
    """Every database this Datasette serves that is a log, by name."""
    logs: dict[str, _Log] = {}
    for name, db in list(datasette.databases.items()):
        path = getattr(db, "path", None)
        if not path or getattr(db, "is_memory", False) or name == "_internal":
            continue
        found = _cached_log(name, path)
        if found is not None:
            logs[name] = found
    return logs


def log_databases_metadata(datasette: Any) -> dict[str, Any]:
    """``{"databases": {name: metadata}}`` for every log database this Datasette serves."""
    databases = {name: log.metadata for name, log in log_databases(datasette).items()}
    return {"databases": databases} if databases else {}


_dashboards_cache: weakref.WeakKeyDictionary[Any, tuple[Any, dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


def log_dashboards(datasette: Any) -> dict[str, Any]:
    """datasette-dashboards' configuration: one traffic dashboard per log database.

    Built again only when the log databases change: datasette-dashboards (and every other
    plugin) reads the plugin configuration several times a request.
    """
    logs = log_databases(datasette)
    key = tuple((name, id(log)) for name, log in logs.items())
    cached = _dashboards_cache.get(datasette)
    if cached is not None and cached[0] == key:
        return cached[1]
    urls = {}
    for name in logs:
        try:
            urls[name] = datasette.urls.table(name, "requests")
        except Exception:  # noqa: BLE001 - a name Datasette cannot spell: Datasette's problem
            urls[name] = dashboard.table_path(name)
    found = dashboard.dashboards_config({name: log.tables for name, log in logs.items()}, urls)
    _dashboards_cache[datasette] = (key, found)
    return found


# Keys found anywhere in our metadata: Datasette asks for others ("allow", "plugins", "source")
# on every permission check, and those lookups need nothing from us.
_OUR_KEYS = frozenset(
    {"databases", "description", "tables", "queries", "columns", "units", "facets", "sort",
     "sort_desc", "label_column"}
)


def _copy_dicts(value: Any) -> Any:
    """A copy of every dict (Datasette merges the user's metadata into them); the rest shared."""
    if isinstance(value, dict):
        return {k: _copy_dicts(v) for k, v in value.items()}
    return value


@hookimpl
def get_metadata(datasette: Any, key: Any, database: Any, table: Any) -> dict[str, Any]:
    """Datasette 0.65: the metadata of the log databases, only what the lookup can use, and the
    traffic dashboards in datasette-dashboards' plugin configuration."""
    if key == "plugins":
        return _dashboards_plugin_config(datasette)
    if key is not None and key not in _OUR_KEYS:
        return {}
    found = log_databases_metadata(datasette)
    if database is not None:
        ours = (found.get("databases") or {}).get(database)
        if ours is None:
            return {}
        found = {"databases": {database: ours}}
    found = _copy_dicts(found)
    local = getattr(datasette, "_metadata_local", None) or {}
    for name, log_database in (found.get("databases") or {}).items():
        user_tables = ((local.get("databases") or {}).get(name) or {}).get("tables") or {}
        _yield_sort_order(log_database.get("tables") or {}, user_tables)
    return found


def _dashboards_plugin_config(datasette: Any) -> dict[str, Any]:
    if not served_dashboard.dashboards_can_run(datasette):
        return {}
    ours = served_dashboard.without_users_slugs(log_dashboards(datasette), datasette)
    if not ours:
        return {}
    return {"plugins": {dashboard.DASHBOARDS_PLUGIN: copy.deepcopy(ours)}}


def _yield_sort_order(ours: dict[str, Any], users: dict[str, Any]) -> None:
    """A sort order the user chose replaces ours: Datasette refuses ``sort`` with ``sort_desc``."""
    for table, user_table in users.items():
        if isinstance(user_table, dict) and ("sort" in user_table or "sort_desc" in user_table):
            our_table = ours.get(table)
            if isinstance(our_table, dict):
                our_table.pop("sort", None)
                our_table.pop("sort_desc", None)


def _is_datasette_1(datasette: Any) -> bool:
    return hasattr(datasette, "set_column_metadata") and hasattr(datasette, "add_query")


async def _apply_metadata_datasette_1(datasette: Any) -> None:
    """Datasette 1.0 has no metadata hook: write ours where it looks, under what users set."""
    found = log_databases_metadata(datasette)
    if not found:
        return
    metadata, config = log_metadata.split_for_datasette_1(found)
    if datasette.config is None:
        datasette.config = {}
    for name, database in metadata["databases"].items():
        existing = await datasette.get_database_metadata(name)
        if "description" not in existing and database.get("description"):
            await datasette.set_database_metadata(name, "description", database["description"])
        for table, table_meta in (database.get("tables") or {}).items():
            existing = await datasette.get_resource_metadata(name, table)
            if "description" not in existing and table_meta.get("description"):
                await datasette.set_resource_metadata(
                    name, table, "description", table_meta["description"]
                )
            for column, description in (table_meta.get("columns") or {}).items():
                existing = await datasette.get_column_metadata(name, table, column)
                if "description" not in existing:
                    await datasette.set_column_metadata(
                        name, table, column, "description", description
                    )
    for name, db_config in config["databases"].items():
        user_db = datasette.config.setdefault("databases", {}).setdefault(name, {})
        _yield_sort_order(db_config.get("tables") or {}, user_db.get("tables") or {})
        for table, table_config in (db_config.get("tables") or {}).items():
            user_table = user_db.setdefault("tables", {}).setdefault(table, {})
            for key, value in table_config.items():
                user_table.setdefault(key, value)
        for query_name, query in (db_config.get("queries") or {}).items():
            if await datasette.get_query(name, query_name) is not None:
                continue
            await datasette.add_query(
                name,
                query_name,
                query["sql"],
                title=query.get("title"),
                description=query.get("description"),
                is_trusted=True,
                source="plugin",
            )
