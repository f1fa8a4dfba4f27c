"""The diff report: status changes, slower routes, body mismatches, noise, --fail-on."""

from __future__ import annotations

import hashlib

import pytest

from asgi_log_to_sqlite.replay.client import Outcome
from asgi_log_to_sqlite.replay.diff import Diff, FailOn, parse_fail_on, percentile
from asgi_log_to_sqlite.replay.plan import Outgoing
from asgi_log_to_sqlite.replay.select import Recorded

H1 = hashlib.sha256(b"one").hexdigest()
H2 = hashlib.sha256(b"two").hexdigest()


def outgoing(route="/r", path="/r", status=200, duration=0.010, body_hash=H1,
             source="captured") -> Outgoing:
    recorded = Recorded(rowid=1, start=0.0, method="GET", path=path, query_string=None,
                        host=None, scheme=None, user_agent=None, referer=None,
                        accept_language=None, status=status, duration=duration, route=route,
                        request_body_size=0, captured=source == "captured",
                        response_body_sha256=body_hash if source == "captured" else None)
    return Outgoing(recorded, "GET", path, source=source)


def by_route(report):
    return {r["route"]: r for r in report["routes"]}


def test_status_changes_with_examples():
    diff = Diff()
    for i in range(5):
        diff.add(outgoing(path=f"/r/{i}"), Outcome(500 if i < 4 else 200, 0.01, H1))
    diff.add(outgoing(), Outcome(None, 0.5, error="ConnectError"))
    route = by_route(diff.report())["/r"]
    assert route["changed"] == ["status"]
    assert route["status_changes"] == [
        {"from": 200, "to": 500, "requests": 4,
         "examples": ["GET /r/0", "GET /r/1", "GET /r/2"]},
        {"from": 200, "to": "ConnectError", "requests": 1, "examples": ["GET /r"]},
    ]


def test_latency_ratio_and_floor():
    diff = Diff(latency_ratio=1.5, latency_floor=0.005)
    for _ in range(9):
        diff.add(outgoing(route="/slow", duration=0.020), Outcome(200, 0.061, H1))
        # Three times slower too, but by less than the floor: the client's own overhead.
        diff.add(outgoing(route="/fast", duration=0.0004), Outcome(200, 0.0012, H1))
        diff.add(outgoing(route="/same", duration=0.020), Outcome(200, 0.024, H1))
    routes = by_route(diff.report())
    assert routes["/slow"]["changed"] == ["latency"]
    assert routes["/slow"]["latency"]["ratio_p50"] == pytest.approx(3.05)
    assert routes["/fast"]["changed"] == [] and routes["/same"]["changed"] == []
    assert by_route(diff.report(fail_on=FailOn(latency=4.0)))["/slow"]["changed"] == []


def test_the_default_floor_absorbs_a_busy_clients_overhead():
    """Replayed times are the client's: a loaded machine adds a few milliseconds to a route that
    took 0.5 ms, which is not the route getting slower."""
    diff = Diff()
    for _ in range(9):
        diff.add(outgoing(route="/fast", duration=0.0005), Outcome(200, 0.0065, H1))
        diff.add(outgoing(route="/slow", duration=0.010), Outcome(200, 0.031, H1))
    routes = by_route(diff.report())
    assert routes["/fast"]["changed"] == []
    assert routes["/slow"]["changed"] == ["latency"]


def test_body_mismatches_only_where_a_hash_was_captured():
    diff = Diff()
    diff.add(outgoing(), Outcome(200, 0.01, H2))
    diff.add(outgoing(), Outcome(200, 0.01, H1))
    diff.add(outgoing(source="access-log"), Outcome(200, 0.01, H2))
    report = diff.report()
    route = by_route(report)["/r"]
    assert route["body"] == {"compared": 2, "mismatches": 1, "examples": ["GET /r"]}
    assert route["changed"] == ["body"] and route["from_access_log"] == 1
    assert report["summary"]["from_access_log"] == 1


def test_noisy_routes_are_reported_apart_and_do_not_fail():
    diff = Diff()
    diff.add(outgoing(route="/noise"), Outcome(200, 0.01, H2), again=Outcome(200, 0.01, H1))
    diff.add(outgoing(route="/flaky"), Outcome(500, 0.01, H1), again=Outcome(200, 0.01, H1))
    diff.add(outgoing(route="/stable"), Outcome(200, 0.01, H2), again=Outcome(200, 0.01, H2))
    report = diff.report(fail_on=FailOn(status=True, body=True))
    routes = by_route(report)
    assert routes["/noise"]["noisy"] == {"status": False, "body": True}
    assert routes["/noise"]["changed"] == []
    assert routes["/flaky"]["noisy"] == {"status": True, "body": False}
    assert routes["/flaky"]["changed"] == []
    assert routes["/stable"]["changed"] == ["body"]
    assert {r["route"] for r in report["noisy_routes"]} == {"/noise", "/flaky"}
    assert report["failures"] == [{"route": "/stable", "check": "body"}]


def test_fail_on_selects_what_fails():
    diff = Diff()
    diff.add(outgoing(route="/a"), Outcome(500, 0.01, H1))
    diff.add(outgoing(route="/b"), Outcome(200, 0.01, H2))
    assert diff.report()["failures"] == []
    assert [f["route"] for f in diff.report(fail_on=FailOn(status=True))["failures"]] == ["/a"]
    assert len(diff.report(fail_on=FailOn(status=True, body=True))["failures"]) == 2
    assert {r["route"] for r in diff.report()["changed_routes"]} == {"/a", "/b"}


def test_skips_are_counted():
    diff = Diff()
    skipped = outgoing()
    skipped.skip = "request body not captured"
    diff.skip(skipped)
    report = diff.report()
    assert report["summary"]["skipped"] == {"request body not captured": 1}
    assert report["summary"]["replayed"] == 0


def test_parse_fail_on():
    assert parse_fail_on(["status"]) == FailOn(status=True)
    assert parse_fail_on(["latency=1.5", "body"]) == FailOn(latency=1.5, body=True)
    assert parse_fail_on(["status,latency"]) == FailOn(status=True, latency=1.5)
    for bad in ("latency=1", "latency=x", "speed", "status=1"):
        with pytest.raises(ValueError):
            parse_fail_on([bad])


def test_percentile_is_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0
