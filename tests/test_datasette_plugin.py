"""The Datasette plugin inside a real Datasette (the version installed here), driven through
``datasette.client``: logging, configuration errors, privacy of the log, metadata."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import tempfile
import time
from pathlib import Path

import click
import pytest
from datasette.app import Datasette
from datasette.utils import StartupError
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from test_datasette_metadata import assert_matches, make_known_log

from asgi_log_to_sqlite import datasette_plugin
from asgi_log_to_sqlite.schema import connect, ensure_schema

SECRET = "test-secret-for-signing-cookies"


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def datasettes():
    """Datasette instances built by a test; their log writers are closed afterwards."""
    made: list[Datasette] = []

    def make(*args, **kwargs) -> Datasette:
        kwargs.setdefault("secret", SECRET)
        ds = Datasette(*args, **kwargs)
        made.append(ds)
        run(ds.invoke_startup())
        return ds

    yield make
    for ds in made:
        close_datasette(ds)


def close_datasette(ds: Datasette) -> None:
    """The log writer the plugin made, and what Datasette itself leaves open: its query threads
    and their database connections (a whole test run would otherwise end with hundreds of each)."""
    state = datasette_plugin._states.get(ds)
    if state is not None and state.middleware is not None:
        state.middleware.close(timeout=10)
    if ds.executor is not None:
        ds.executor.shutdown(wait=True)
    for database in [*ds.databases.values(), getattr(ds, "_internal_database", None)]:
        if database is not None:
            database.close()  # its write thread, if any, waits on its queue for ever: left


def plugin(**config) -> dict:
    return {"plugins": {"asgi-log-to-sqlite": config}}


def cookies(ds: Datasette, actor_id: str | None) -> dict:
    if actor_id is None:
        return {}
    return {"ds_actor": ds.sign({"a": {"id": actor_id}}, "actor")}


def get(ds: Datasette, path: str, actor: str | None = None):
    return run(ds.client.get(path, cookies=cookies(ds, actor)))


def flush(ds: Datasette) -> None:
    datasette_plugin._state(ds).middleware.flush(timeout=10)


def logged(log_path: str) -> list[dict]:
    conn = sqlite3.connect(log_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM requests_view ORDER BY id")]
    finally:
        conn.close()


def make_log(path: str) -> str:
    conn = connect(path)
    ensure_schema(conn)
    conn.close()
    return path


# ---- logging -----------------------------------------------------------------------------------
def test_datasette_traffic_is_logged(datasettes, data_db, log_path):
    ds = datasettes([data_db], metadata=plugin(file=log_path, flush_interval=0.05))
    assert get(ds, "/data/items.json?_shape=array").json() == [
        {"id": 1, "name": "one"}, {"id": 2, "name": "two"}
    ]
    assert get(ds, "/data/nope.json").status_code == 404
    flush(ds)
    rows = logged(log_path)
    assert [(r["path"], r["http_status"]) for r in rows] == [
        ("/data/items.json", 200), ("/data/nope.json", 404)
    ]
    assert rows[0]["query_string"] == "?_shape=array"
    assert rows[0]["content_type"].startswith("application/json")
    assert rows[0]["body_size"] > 0


def test_one_middleware_however_often_datasette_builds_its_app(datasettes, data_db, log_path):
    ds = datasettes([data_db], metadata=plugin(file=log_path))
    first = datasette_plugin._state(ds).middleware
    ds.app()
    ds.app()
    assert datasette_plugin._state(ds).middleware is first
    get(ds, "/data.json")
    flush(ds)
    assert len(logged(log_path)) == 1


def test_secrets_in_configuration_come_from_the_environment(
    datasettes, data_db, log_path, monkeypatch
):
    monkeypatch.setenv("ASGI_LOG_FILE", log_path)
    ds = datasettes([data_db], metadata=plugin(file={"$env": "ASGI_LOG_FILE"}))
    get(ds, "/data.json")
    flush(ds)
    assert [r["path"] for r in logged(log_path)] == ["/data.json"]


def test_the_actor_is_recorded(datasettes, data_db, log_path):
    ds = datasettes([data_db], metadata=plugin(file=log_path))
    get(ds, "/data.json", actor="alice")
    get(ds, "/data.json")
    forged = {"ds_actor": "eyJhIjp7ImlkIjoibWFsbG9yeSJ9fQ.forged"}
    run(ds.client.get("/data.json", cookies=forged))
    flush(ds)
    rows = logged(log_path)
    if "actor" not in rows[0]:
        pytest.skip("this version records no actor column")
    assert [r["actor"] for r in rows] == ["alice", None, None]


def test_no_plugin_configuration_means_no_logging(datasettes, data_db):
    ds = datasettes([data_db])
    assert datasette_plugin._state(ds).middleware is None
    assert get(ds, "/data.json").status_code == 200


# ---- bad configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config, option",
    [
        ({"flush_interval": -1}, "flush_interval"),
        ({"flush_interval": "soon"}, "flush_interval"),
        ({"no_such_option": 1}, "no_such_option"),
        ({"allow": 5}, "allow"),
        ({"log_actor": "yes"}, "log_actor"),
        ({"file": None}, "file"),
        ({"file": 12}, "file"),
        ({"file": "/no/such/folder/log.db"}, "file"),
    ],
)
def test_invalid_configuration_names_the_option(tmp_path, data_db, config, option):
    config = {"file": str(tmp_path / "log.db"), **config}
    with pytest.raises(StartupError, match=f"'{option}'") as raised:
        ds = Datasette([data_db], metadata=plugin(**config))
        run(ds.invoke_startup())
    assert "asgi-log-to-sqlite" in str(raised.value)


@pytest.mark.parametrize(
    "config, option",
    [
        # An allow block Datasette could not compare with an actor: checked at start-up, since
        # Datasette reads it only while answering a permission check, on every page.
        ({"allow": {"id": {"x": 1}}}, "allow"),
        ({"allow": {"id": [["alice"]]}}, "allow"),
        ({"allow": {"roles": [{"staff": True}]}}, "allow"),
        ({"allow": {1: "alice"}}, "allow"),
        ({"allow": ["alice", 3]}, "allow"),
        ({"allow": 2.5}, "allow"),
        # Middleware errors name their option, even one raised from deeper down.
        ({"visitor_hash": "\udc80" * 20}, "visitor_hash"),
        ({"flush_interval": 10**400}, "flush_interval"),
        ({"exclude": ["re:" + "(" * 1000]}, "exclude"),
        ({"rotate": "daily", "keep": 2, "visitor_hash": "\udc80" * 20}, "visitor_hash"),
        ({"keep": 2}, "keep"),
    ],
)
def test_every_bad_value_is_named_at_start_up(tmp_path, data_db, config, option):
    config = {"file": str(tmp_path / "log.db"), **config}
    with pytest.raises(StartupError) as raised:
        ds = Datasette([data_db], metadata=plugin(**config))
        run(ds.invoke_startup())
    message = str(raised.value)
    assert message.startswith("asgi-log-to-sqlite: ")
    assert f"option '{option}'" in message or f"option(s): '{option}'" in message, message
    if option != "file":
        assert "'file'" not in message
    assert isinstance(raised.value, click.ClickException)


def test_an_actor_datasette_cannot_compare_breaks_no_page(datasettes, data_db, tmp_path):
    log = make_log(str(tmp_path / "log.db"))
    ds = datasettes([data_db, log], metadata=plugin(file=log, allow={"id": ["alice"]}))
    odd = {"ds_actor": ds.sign({"a": {"id": {"x": 1}, "roles": [["a"]]}}, "actor")}
    for url in ("/", "/data", "/data/items.json", "/-/dashboards"):
        assert run(ds.client.get(url, cookies=odd)).status_code == 200, url
    assert run(ds.client.get("/log/requests.json", cookies=odd)).status_code == 403


def test_configuration_that_is_not_an_object(data_db):
    with pytest.raises(StartupError, match="must be an object"):
        ds = Datasette([data_db], metadata={"plugins": {"asgi-log-to-sqlite": "log.db"}})
        run(ds.invoke_startup())


# ---- privacy -----------------------------------------------------------------------------------
LOG_URLS = [
    "/log",
    "/log.json",
    "/log/requests",
    "/log/requests.json",
    "/log/requests.csv",
    "/log/requests_view.json",
    "/log/paths.json",
    "/log?sql=select+count(*)+from+requests",
    "/log.json?sql=select+count(*)+from+requests",
    "/log.csv?sql=select+count(*)+from+requests",
    "/log/top_paths",
    "/log/top_paths.json",
]


@pytest.fixture
def served_log(datasettes, data_db, tmp_path):
    """``datasette data.db log.db`` logging into log.db, with alice allowed to read it."""
    log = make_log(str(tmp_path / "log.db"))

    def serve(**extra) -> Datasette:
        config = {"file": log, "allow": ["alice"], **extra}
        return datasettes([data_db, log], metadata=plugin(**config))

    return serve


@pytest.mark.parametrize("url", [*LOG_URLS, "/log.db", "/log/requests/1.json"])
def test_anonymous_visitors_cannot_read_the_log(served_log, url):
    ds = served_log()
    assert get(ds, url).status_code == 403
    assert get(ds, url, actor="bob").status_code == 403


@pytest.mark.parametrize("actor", ["root", "alice"])
@pytest.mark.parametrize("url", LOG_URLS)
def test_root_and_configured_actors_can(served_log, url, actor):
    ds = served_log()
    assert get(ds, url, actor=actor).status_code == 200


def test_the_log_is_not_listed_for_anonymous_visitors(served_log):
    ds = served_log()
    assert "log" not in get(ds, "/.json").json()
    assert "log" in get(ds, "/.json", actor="root").json()
    assert get(ds, "/data/items.json").status_code == 200  # the rest stays public


def test_opening_it_up_is_explicit(served_log):
    ds = served_log(allow=True)
    for url in LOG_URLS:
        assert get(ds, url).status_code == 200, url


def test_allow_block_syntax(served_log):
    ds = served_log(allow={"roles": ["staff"]})
    staff = {"ds_actor": ds.sign({"a": {"id": "carol", "roles": ["staff"]}}, "actor")}
    assert run(ds.client.get("/log/requests.json", cookies=staff)).status_code == 200
    assert get(ds, "/log/requests.json", actor="alice").status_code == 403


def test_cross_database_sql_cannot_reach_the_log(datasettes, data_db, tmp_path):
    log = make_log(str(tmp_path / "log.db"))
    ds = datasettes([data_db, log], metadata=plugin(file=log), crossdb=True)
    url = "/_memory.json?sql=select+count(*)+from+log.requests"
    assert get(ds, url).status_code == 403
    assert get(ds, url, actor="root").status_code == 200


def test_rotated_files_of_the_log_are_private_too(datasettes, data_db, tmp_path):
    log = make_log(str(tmp_path / "log.db"))
    rotated = make_log(str(tmp_path / "log-2026-11-24T19-44-52.db"))
    daily = make_log(str(tmp_path / "log-2026-11-23_001.db"))
    other = make_log(str(tmp_path / "logbook-2026-11-23.db"))  # another log: not this one's
    ds = datasettes([data_db, log, rotated, daily, other],
                    metadata=plugin(file=log, rotate="daily", allow=["alice"]))
    for name in ("log-2026-11-24T19-44-52", "log-2026-11-23_001"):
        assert get(ds, f"/{name}/requests_view.json").status_code == 403, name
        assert get(ds, f"/{name}/requests_view.json", actor="alice").status_code == 200, name
    assert get(ds, "/logbook-2026-11-23/requests_view.json").status_code == 200


def test_the_anonymous_requests_are_still_logged(served_log, tmp_path):
    ds = served_log()
    get(ds, "/log/requests.json")
    flush(ds)
    rows = logged(str(tmp_path / "log.db"))
    assert [(r["path"], r["http_status"]) for r in rows] == [("/log/requests.json", 403)]


# ---- metadata ----------------------------------------------------------------------------------
@pytest.fixture
def known_log(tmp_path):
    path = str(tmp_path / "log.db")
    make_known_log(path)
    return path


def test_a_log_opened_without_the_middleware_is_described(datasettes, known_log):
    ds = datasettes([known_log])
    page = get(ds, "/log/requests").text
    assert "One row per HTTP request" in page
    table = get(ds, "/log/requests.json?_shape=objects&_size=3&_labels=on").json()
    # newest first
    starts = [row["start"] for row in table["rows"]]
    assert starts == sorted(starts, reverse=True)
    # labels for every lookup
    assert table["rows"][0]["path"] == {"value": 4, "label": "/boom"}
    # suggested facets
    assert {"http_status", "method", "content_type", "host"} <= set(table["facet_results"])
    status = {f["value"]: f["count"] for f in table["facet_results"]["http_status"]["results"]}
    assert status == {200: 110, 404: 5, 500: 2}
    content_types = table["facet_results"]["content_type"]["results"]
    assert {f["label"] for f in content_types} == {"text/html", "application/json", "text/plain"}
    # descriptions and units
    assert ds.table_metadata("log", "requests")["units"]["duration"] == "s"
    assert "seconds" in ds.table_metadata("log", "requests")["columns"]["duration"]


def test_canned_queries_through_datasette(datasettes, known_log):
    from test_datasette_metadata import EXPECTED

    ds = datasettes([known_log])
    for name in EXPECTED:
        response = get(ds, f"/log/{name}.json?_shape=array")
        assert response.status_code == 200, (name, response.text)
        assert_matches(name, response.json())


def test_the_users_own_metadata_wins(datasettes, known_log):
    mine = {"databases": {"log": {"tables": {"requests": {
        "description": "My description", "sort": "duration"
    }}}}}
    ds = datasettes([known_log], metadata=mine)
    assert "My description" in get(ds, "/log/requests").text
    rows = get(ds, "/log/requests.json?_shape=array&_size=2").json()
    assert [row["duration"] for row in rows] == [0.001, 0.002]
    assert ds.table_metadata("log", "requests")["facets"]  # ours still fills the rest


def test_other_databases_get_no_log_metadata(datasettes, data_db):
    ds = datasettes([data_db])
    assert ds.metadata("description", database="data") is None
    assert get(ds, "/data/top_paths.json").status_code == 404


def test_a_database_becoming_a_log_is_noticed(datasettes, tmp_path, monkeypatch):
    monkeypatch.setattr(datasette_plugin, "NEGATIVE_CACHE_SECONDS", 0.0)
    path = str(tmp_path / "later.db")
    sqlite3.connect(path).execute("VACUUM")
    ds = datasettes([path])
    assert get(ds, "/later/top_paths.json").status_code == 404
    make_log(path)
    time.sleep(0.01)
    assert get(ds, "/later/top_paths.json").status_code == 200


# ---- the original recipe -------------------------------------------------------------------------
def test_datasette_configure_asgi_recipe(datasettes, data_db, log_path):
    config = {"plugins": {"datasette-configure-asgi": [
        {"class": "asgi_log_to_sqlite.AsgiLogToSqlite",
         "args": {"file": log_path, "flush_interval": 0.05}}
    ]}}
    ds = datasettes([data_db], metadata=config)
    assert get(ds, "/data/items.json").status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        paths = [r["path"] for r in logged(log_path)]
        if "/data/items.json" in paths:
            break
        time.sleep(0.05)
    assert "/data/items.json" in paths


# ---- any configuration: a named error at start-up, or a Datasette whose pages all answer ---------
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 10**30), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["daily", "24h", "1MB", "re:(", "\udc80" * 16, "*"]),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["id", "roles", "unauthenticated", "x"]),
                    st.one_of(_SCALARS, st.lists(_SCALARS, max_size=2),
                              st.dictionaries(st.text(max_size=2), _SCALARS, max_size=1)),
                    max_size=2),
)
_KEYS = st.sampled_from([
    "allow", "log_actor", "flush_interval", "batch_size", "max_queue", "busy_timeout", "exclude",
    "exclude_user_agents", "anonymize_ip", "visitor_hash", "client_ip", "sample", "methods",
    "rotate", "keep", "retain", "max_bytes", "max_rows", "trusted_proxies", "redact_query",
    "capture_request_headers", "allow_secret_headers", "forwarded_header", "file", "no_such_option",
])
_GOOD = st.sampled_from([
    ("allow", ["alice"]), ("allow", {"roles": ["staff"], "id": "*"}), ("allow", True),
    ("allow", {"unauthenticated": True}), ("allow", None), ("log_actor", False),
    ("exclude", ["/health", "re:^/static/"]), ("anonymize_ip", True), ("sample", 0.5),
    ("rotate", "daily"), ("visitor_hash", True), ("methods", ["GET"]), ("max_queue", 10),
    ("client_ip", False), ("trusted_proxies", ["10.0.0.0/8"]), ("redact_query", ["token"]),
])
# Good options, then (half the time) a few arbitrary ones on top.
_CONFIGS = st.tuples(
    st.lists(_GOOD, max_size=3).map(dict),
    st.one_of(st.just({}), st.dictionaries(_KEYS, _VALUES, max_size=2)),
).map(lambda parts: {**parts[0], **parts[1]})
_PAGES = ("/", "/data/items.json", "/log", "/log/requests.json", "/-/dashboards",
          "/-/dashboards/traffic-log?period=24h")


@pytest.mark.timeout(120)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extra=_CONFIGS)
@example(extra={"file": "1MB"})  # a relative path: it once left a log in the working tree
def test_any_configuration_fails_by_name_or_serves_every_page(extra):
    # In the folder: a drawn ``file`` is a relative path ("1MB"), and the log goes there.
    with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder):
        data = str(Path(folder) / "data.db")
        conn = sqlite3.connect(data)
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        conn.commit()
        conn.close()
        log = make_log(str(Path(folder) / "log.db"))
        config = {"file": log, "flush_interval": 0.05, **extra}
        try:
            ds = Datasette([data, log], metadata=plugin(**config), secret=SECRET)
            run(ds.invoke_startup())
            ds.app()
        except StartupError as error:
            message = str(error)
            assert isinstance(error, click.ClickException)
            assert message.startswith("asgi-log-to-sqlite: ") and "\n" not in message.strip()
            named = re.findall(r"option(?:\(s\))?:? '(\w+)'", message)
            assert named and set(named) <= set(config), (config, message)
            event("refused at start-up")
            return
        event("started")
        try:
            for actor in (None, "bob", "root"):
                for page in _PAGES:
                    response = get(ds, page, actor=actor)
                    assert response.status_code < 500, (config, actor, page, response.text[-500:])
        finally:
            close_datasette(ds)
