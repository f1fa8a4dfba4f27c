"""Real ``datasette serve`` processes on 127.0.0.1, spoken to over HTTP, for Datasette 0.65 (from
this virtualenv) and the newest 1.0 pre-release (from ``.venv-datasette1``, made by ``make
test``): start-up from a configuration file, rows in the log, privacy, bad configuration, and the
original ``datasette-configure-asgi`` recipe."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from itsdangerous import URLSafeSerializer
from support import BIN, ROOT, Server, free_port
from test_dashboard import make_known_log as make_dashboard_log
from test_datasette_metadata import EXPECTED, assert_matches, make_known_log

from asgi_log_to_sqlite.schema import connect, ensure_schema

SECRET = "a-known-secret-for-these-tests"
DATASETTE_1 = ROOT / ".venv-datasette1" / "bin" / "datasette"

VERSIONS = [
    pytest.param(BIN / "datasette", id="datasette-0.65"),
    pytest.param(
        DATASETTE_1,
        id="datasette-1.0",
        marks=pytest.mark.skipif(
            not DATASETTE_1.exists(),
            reason=".venv-datasette1 is absent: `make test` creates it (Datasette 1.0 pre-release)",
        ),
    ),
]

pytestmark = pytest.mark.timeout(120)


def client(server: Server, actor_id: str | None = None) -> httpx.Client:
    """An HTTP client; with ``actor_id``, it carries a ``ds_actor`` cookie signed with the
    server's ``--secret`` (kept across Datasette's redirects)."""
    cookies = {}
    if actor_id is not None:
        cookies["ds_actor"] = URLSafeSerializer(SECRET, "actor").dumps({"a": {"id": actor_id}})
    return httpx.Client(base_url=server.url, timeout=30, follow_redirects=True, cookies=cookies)


def make_data(folder: Path) -> str:
    path = folder / "data.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO items (name) VALUES ('one')")
    conn.commit()
    conn.close()
    return str(path)


def make_log(path: Path) -> str:
    conn = connect(str(path))
    ensure_schema(conn)
    conn.close()
    return str(path)


def write_config(datasette: Path, folder: Path, plugins: dict) -> list[str]:
    """0.65 reads plugin configuration from metadata; 1.0 from datasette.yaml."""
    if datasette == DATASETTE_1:
        path = folder / "datasette.yaml"
        path.write_text(json.dumps({"plugins": plugins}))  # JSON is YAML
        return ["-c", str(path)]
    path = folder / "metadata.json"
    path.write_text(json.dumps({"plugins": plugins}))
    return ["-m", str(path)]


def serve(datasette: Path, folder: Path, files: list[str], config: list[str], env=None) -> Server:
    port = free_port()
    args = [str(datasette), "serve", *files, *config, "--host", "127.0.0.1",
            "--port", str(port), "--secret", SECRET]
    return Server(args, port, cwd=folder, env=env, log=folder / "datasette.out")


def wait_for_rows(log: str, predicate, timeout: float = 15) -> list[dict]:
    """The log's rows once ``predicate(rows)`` holds (the writer commits every 0.2 s)."""
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        conn = sqlite3.connect(log)
        conn.row_factory = sqlite3.Row
        try:
            rows = [dict(r) for r in conn.execute("SELECT * FROM requests_view ORDER BY id")]
        except sqlite3.OperationalError:
            rows = []
        finally:
            conn.close()
        if predicate(rows):
            return rows
        time.sleep(0.05)
    raise AssertionError(f"the log never matched; it holds {rows}")


PRIVATE_URLS = [
    "/log",
    "/log/requests",
    "/log/requests.json",
    "/log/requests.csv",
    "/log.json?sql=select+count(*)+from+requests",
    "/log?sql=select+count(*)+from+requests",
    "/log/top_paths",
    "/log/top_paths.json",
]


@pytest.mark.parametrize("datasette", VERSIONS)
def test_serve_logs_its_traffic_and_keeps_the_log_private(datasette, tmp_path):
    data = make_data(tmp_path)
    log = make_log(tmp_path / "log.db")
    config = write_config(
        datasette, tmp_path,
        {"asgi-log-to-sqlite": {"file": {"$env": "ACCESS_LOG"}, "allow": ["alice"]}},
    )
    with serve(datasette, tmp_path, [data, log], config, env={"ACCESS_LOG": log}) as server:
        with client(server) as anonymous:
            assert anonymous.get("/data/items.json").status_code == 200
            rows = wait_for_rows(
                log, lambda rows: any(r["path"] == "/data/items.json" for r in rows)
            )
            row = next(r for r in rows if r["path"] == "/data/items.json")
            assert row["http_status"] == 200 and row["client_ip"] == "127.0.0.1"
            for url in PRIVATE_URLS:
                assert anonymous.get(url).status_code == 403, url
        with client(server, "bob") as bob:
            for url in PRIVATE_URLS:
                assert bob.get(url).status_code == 403, url
        for actor in ("root", "alice"):
            with client(server, actor) as allowed:
                for url in PRIVATE_URLS:
                    response = allowed.get(url)
                    assert response.status_code == 200, (actor, url, response.text[:300])
        with client(server, "alice") as alice:
            count = alice.get("/log.json?sql=select+count(*)+as+n+from+requests&_shape=array")
            assert count.json()[0]["n"] >= 1
            alice.get("/data.json")
            rows = wait_for_rows(log, lambda rows: any(r["path"] == "/data.json" for r in rows))
            if "actor" in rows[0]:
                assert next(r for r in rows if r["path"] == "/data.json")["actor"] == "alice"
        before = len(wait_for_rows(log, lambda rows: True))
        assert server.stop(signal.SIGTERM) is not None
    # Every request served before the shutdown is in the log.
    rows = wait_for_rows(log, lambda rows: len(rows) >= before, timeout=5)
    assert len(rows) >= 2 + 2 * len(PRIVATE_URLS)


@pytest.mark.parametrize("datasette", VERSIONS)
def test_root_login_url(datasette, tmp_path):
    log = make_log(tmp_path / "log.db")
    config = write_config(datasette, tmp_path, {"asgi-log-to-sqlite": {"file": log}})
    server = serve(datasette, tmp_path, [log], config)
    server.args.append("--root")
    with server, client(server) as http:
        assert http.get("/log/requests.json").status_code == 403
        deadline = time.monotonic() + 10
        while "auth-token" not in server.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        url = next(w for w in server.output().split() if "auth-token" in w)
        http.get(url[len(server.url):])  # sets the ds_actor cookie
        assert "ds_actor" in http.cookies
        assert http.get("/log/requests.json").status_code == 200


@pytest.mark.parametrize("datasette", VERSIONS)
def test_metadata_and_canned_queries_on_a_known_log(datasette, tmp_path):
    log = str(tmp_path / "log.db")
    make_known_log(log)
    # Opened without the middleware: descriptions, facets and canned queries all the same.
    with serve(datasette, tmp_path, [log], []) as server, client(server) as http:
        for name in EXPECTED:
            response = http.get(f"/log/{name}.json?_shape=array")
            assert response.status_code == 200, (name, response.text[:300])
            assert_matches(name, response.json())
        page = http.get("/log/requests").text
        assert "One row per HTTP request" in page
        assert "in seconds" in page  # column descriptions
        table = http.get("/log/requests.json?_shape=objects&_labels=on&_size=2").json()
        starts = [row["start"] for row in table["rows"]]
        assert starts == sorted(starts, reverse=True)
        assert table["rows"][0]["path"] == {"value": 4, "label": "/boom"}
        # 1.0 computes facets from the table page, 0.65 returns them in the JSON
        if "facet_results" in table:
            assert "http_status" in table["facet_results"]
        else:
            assert "http_status" in http.get("/log/requests").text


@pytest.mark.parametrize("datasette", VERSIONS)
@pytest.mark.parametrize(
    "options, option",
    [
        ({"flush_interval": -1}, "flush_interval"),
        ({"no_such_option": True}, "no_such_option"),
        ({"allow": 5}, "allow"),
        ({"allow": {"id": {"x": 1}}}, "allow"),
        ({"file": None}, "file"),
    ],
)
def test_invalid_configuration_stops_start_up(datasette, tmp_path, options, option):
    config = write_config(
        datasette, tmp_path, {"asgi-log-to-sqlite": {"file": str(tmp_path / "log.db"), **options}}
    )
    data = make_data(tmp_path)
    result = subprocess.run(
        [str(datasette), "serve", data, *config, "--host", "127.0.0.1", "--port",
         str(free_port())],
        check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"'{option}'" in output, output
    assert "Traceback" not in output, output
    assert "Error: asgi-log-to-sqlite" in output, output


@pytest.mark.parametrize("datasette", VERSIONS)
def test_datasette_configure_asgi_recipe(datasette, tmp_path):
    data = make_data(tmp_path)
    log = str(tmp_path / "log.db")
    plugins = {"datasette-configure-asgi": [
        {"class": "asgi_log_to_sqlite.AsgiLogToSqlite", "args": {"file": log}}
    ]}
    with serve(datasette, tmp_path, [data], write_config(datasette, tmp_path, plugins)) as server:
        with client(server) as http:
            assert http.get("/data/items.json").status_code == 200
        rows = wait_for_rows(log, lambda rows: any(r["path"] == "/data/items.json" for r in rows))
        assert rows[-1]["http_status"] == 200


@pytest.mark.parametrize("datasette", VERSIONS)
def test_the_users_choices_win_and_crossdb_stays_private(datasette, tmp_path):
    log = str(tmp_path / "log.db")
    make_known_log(log)
    data = make_data(tmp_path)
    mine = {"tables": {"requests": {"description": "My own words", "sort": "duration"}}}
    (tmp_path / "metadata.json").write_text(json.dumps({"databases": {"log": mine}}))
    config = write_config(datasette, tmp_path, {"asgi-log-to-sqlite": {"file": log}})
    if datasette != DATASETTE_1:  # 0.65 has one file for both
        both = {"databases": {"log": mine}, "plugins": {"asgi-log-to-sqlite": {"file": log}}}
        (tmp_path / "metadata.json").write_text(json.dumps(both))
        config = []
    files = [data, log, "-m", str(tmp_path / "metadata.json"), *config, "--crossdb"]
    with serve(datasette, tmp_path, files, []) as server:
        with client(server, "root") as root:
            assert "My own words" in root.get("/log/requests").text
            rows = root.get("/log/requests.json?_shape=array&_size=2").json()
            assert [row["duration"] for row in rows] == [0.001, 0.002]
            cross = "/_memory.json?sql=select+count(*)+as+n+from+log.requests&_shape=array"
            assert root.get(cross).json()[0]["n"] >= 117  # and what the plugin logged since
        with client(server) as anonymous:
            assert anonymous.get(cross).status_code == 403
            assert anonymous.get("/data/items.json").status_code == 200


@pytest.mark.parametrize("datasette", VERSIONS)
def test_the_dashboard_follows_the_logs_permissions(datasette, tmp_path):
    """The traffic dashboard of a private log: nothing of it for anonymous visitors or others.

    Datasette 0.65 serves it to root and the allowed actors. Datasette 1.0 gets none:
    datasette-dashboards 0.8 cannot serve pages there, and the plugin configures nothing."""
    data = make_data(tmp_path)
    log = str(tmp_path / "log.db")
    make_dashboard_log(log)
    config = write_config(
        datasette, tmp_path, {"asgi-log-to-sqlite": {"file": log, "allow": ["alice"]}}
    )
    pages = ["/-/dashboards/traffic-log", "/-/dashboards/traffic-log?period=all",
             "/-/dashboards/traffic-log/top_paths?period=all",
             "/-/dashboards/traffic-log/embed?period=all"]
    with serve(datasette, tmp_path, [data, log], config) as server:
        for actor in (None, "bob"):
            with client(server, actor) as http:
                listing = http.get("/-/dashboards")
                assert "traffic-log" not in listing.text
                for url in pages:
                    response = http.get(url)
                    assert response.status_code != 200, (actor, url)
                    if datasette != DATASETTE_1:
                        assert response.status_code == 403, (actor, url)
                    assert "b.example" not in response.text and "/api" not in response.text
                assert http.get("/log.json?sql=select+1+from+requests").status_code == 403
        if datasette == DATASETTE_1:
            return
        for actor in ("root", "alice"):
            with client(server, actor) as http:
                assert "Traffic: log" in http.get("/-/dashboards").text
                page = http.get("/-/dashboards/traffic-log?period=all")
                assert page.status_code == 200 and "b.example" in page.text
                assert http.get(pages[2]).status_code == 200
