"""The rollups as Datasette shows them: labels for routes and paths, and the canned query for
route latency over time, on a real ``datasette serve`` over HTTP."""

from __future__ import annotations

import sqlite3
from math import ceil

import pytest
from test_datasette_serve import VERSIONS, client, serve

from asgi_log_to_sqlite import rollups
from asgi_log_to_sqlite.schema import connect, ensure_schema

HOUR = 1_750_000_000 // 3600 * 3600
pytestmark = pytest.mark.timeout(120)


def make_routed_log(path: str) -> None:
    """Two hours of /items/{id} (a route) and /about (a path only), durations known."""
    conn = connect(path)
    ensure_schema(conn)
    conn.execute("INSERT INTO routes (name) VALUES ('/items/{id}')")
    conn.execute("INSERT INTO paths (name) VALUES ('/items/1'), ('/about')")
    conn.execute("BEGIN IMMEDIATE")
    rows = []
    for hour in range(2):
        for i in range(1, 201):
            rows.append((HOUR + hour * 3600 + i, 1, 1, 500 if i % 50 == 0 else 200,
                         i / 1000 * (hour + 1)))
        for i in range(1, 11):
            rows.append((HOUR + hour * 3600 + i, None, 2, 200, 0.002 * i))
    conn.executemany("INSERT INTO requests (start, route, path, http_status, duration) "
                     "VALUES (?, ?, ?, ?, ?)", rows)
    rollups.add_rows(conn, 1, len(rows), now=HOUR + 86400)
    conn.execute("COMMIT")
    conn.close()


def exact(path: str, route: str, hour: int, p: int) -> float:
    conn = sqlite3.connect(path)
    durations = sorted(
        d for (d,) in conn.execute(
            "SELECT duration FROM requests_view WHERE COALESCE(route, path) = ? "
            "AND start >= ? AND start < ?", (route, hour, hour + 3600))
    )
    conn.close()
    return durations[max(1, ceil(p * len(durations) / 100)) - 1]


@pytest.mark.parametrize("datasette", VERSIONS)
def test_rollups_have_labels_and_a_latency_query(datasette, tmp_path):
    log = str(tmp_path / "log.db")
    make_routed_log(log)
    with serve(datasette, tmp_path, [log], []) as server, client(server) as http:
        table = http.get("/log/rollups.json?_shape=objects&_labels=on&period=3600"
                         "&_sort=id").json()
        first = table["rows"][0]
        assert first["route"] == {"value": 1, "label": "/items/{id}"}
        about = [r for r in table["rows"] if r["path"] and r["path"]["label"] == "/about"]
        assert len(about) == 2 and about[0]["route"] is None
        latency = http.get("/log/rollup_latency.json?_shape=objects&_labels=on&_size=1").json()
        assert " to " in latency["rows"][0]["bucket"]["label"]  # e.g. "1 ms to 1.1 ms"

        response = http.get("/log/route_latency_over_time.json?_shape=array&route=/items/{id}")
        assert response.status_code == 200, response.text[:300]
        hours = response.json()
        assert [h["hour"] for h in hours] == ["2025-06-15T16:00:00Z", "2025-06-15T15:00:00Z"]
        for h, start in zip(hours, (HOUR + 3600, HOUR), strict=True):
            assert h["requests"] == 200 and h["server_errors"] == 4
            assert h["error_rate"] == 0.02
            for p in (50, 95, 99):
                want = exact(log, "/items/{id}", start, p)
                # Milliseconds, rounded to 0.1, as the other canned queries give durations.
                assert abs(h[f"p{p}_ms"] / 1000 - want) <= 0.05 * want + 1e-4, (p, h, want)
        every = http.get("/log/route_latency_over_time.json?_shape=array&route=").json()
        assert {h["route"] for h in every} == {"/items/{id}", "/about"}
