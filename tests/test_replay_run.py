"""The replay loop against an ASGI app in this process: bounds, loops, noise, interrupts, and
logging the replay into a second log."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from apps.replay_app import app_v1, app_v2, build
from replay_support import add_capture, make_log, rowids

from asgi_log_to_sqlite.replay.client import Outcome, Sender
from asgi_log_to_sqlite.replay.diff import Diff, FailOn
from asgi_log_to_sqlite.replay.pacing import FixedRate, OriginalPace
from asgi_log_to_sqlite.replay.plan import Planner
from asgi_log_to_sqlite.replay.run import Replay
from asgi_log_to_sqlite.replay.select import Selection

TRAFFIC = [
    ("GET", "/items/1?page=2", {}),
    ("HEAD", "/items/2", {}),
    ("GET", "/boom", {}),
    ("GET", "/go", {}),
    ("GET", "/stream", {}),
    ("GET", "/noise", {}),
    ("POST", "/login", {"json": {"user": "bob", "password": "hunter2"}}),
]


def replay(log, app, **kwargs) -> dict:
    fail_on = kwargs.pop("fail_on", None)

    async def main() -> Diff:
        async with Sender(app=app, log_to=kwargs.pop("log_to", None)) as sender:
            return await Replay(log, sender, **kwargs).run()

    return asyncio.run(main()).report(fail_on=fail_on)


def routes(report) -> dict:
    return {r["route"]: r for r in report["routes"]}


@pytest.fixture
def log(tmp_path):
    path = str(tmp_path / "log.db")
    make_log(path, app_v1, TRAFFIC)
    return path


def test_replay_against_a_new_build_names_the_changed_route(log):
    report = replay(log, app_v2, fail_on=FailOn(status=True))
    assert report["summary"]["replayed"] == 6  # GET and HEAD only
    assert report["summary"]["from_access_log"] == 6
    assert [f["route"] for f in report["failures"]] == ["/boom"]
    boom = routes(report)["/boom"]
    assert boom["status_changes"] == [
        {"from": 200, "to": 500, "requests": 1, "examples": ["GET /boom"]}
    ]
    assert routes(report)["/go"]["status_changes"] == []  # the 302 is compared, not followed
    same = replay(log, build(1), fail_on=FailOn(status=True))
    assert same["failures"] == [] and same["summary"]["status_changes"] == 0


def test_captured_requests_replay_with_their_body_and_secrets_filled(tmp_path):
    path = str(tmp_path / "log.db")
    make_log(path, app_v1, [
        ("GET", "/private", {"headers": {"Authorization": "Bearer good"}}),
        ("POST", "/login", {"json": {"user": "bob", "password": "hunter2"}}),
        ("GET", "/items/7?page=3", {}),
    ])
    private, login, item = rowids(path)
    add_capture(path, private, raw_path=b"/private",
                headers=[["authorization", "{{authorization}}"]], response_body=b"welcome")
    add_capture(path, login, raw_path=b"/login",
                headers=[["content-type", "application/json"]],
                body=b'{"user":"bob","password":"{{password}}"}',
                response_body=b'{"user":"bob","ok":true}')
    add_capture(path, item, raw_path=b"/items/7", raw_query=b"page=3",
                response_body=b'{"id":"7","page":"3"}')
    planner = Planner({"authorization": "Bearer good", "password": "hunter2"})
    report = replay(path, app_v1, selection=Selection(all_methods=True), planner=planner,
                    fail_on=FailOn(status=True, body=True))
    assert report["failures"] == []
    assert report["summary"]["bodies_compared"] == 3
    assert report["summary"]["body_mismatches"] == 0
    assert report["summary"]["from_access_log"] == 0

    unfilled = replay(path, app_v1, selection=Selection(all_methods=True))
    assert unfilled["summary"]["unfilled_placeholders"] == {"authorization": 1, "password": 1}
    assert {(r["route"], c["from"], c["to"]) for r in unfilled["routes"]
            for c in r["status_changes"]} == {("/private", 200, 401), ("/login", 200, 403)}


def test_limit_loop_and_a_fixed_rate(log):
    report = replay(log, app_v1, limit=3)
    assert report["summary"]["replayed"] == 3
    looped = replay(log, app_v1, loop=True, limit=15, pace=FixedRate(10_000))
    assert looped["summary"]["replayed"] == 15
    # Two passes over the 6 rows, then the first 3 (two of them items) of a third.
    assert routes(looped)["/items/{item_id}"]["replayed"] == 6
    with pytest.raises(ValueError, match="needs a bound"):
        Replay(log, None, loop=True)  # type: ignore[arg-type]


def test_original_pace_with_speed(log):
    # The rows were logged within moments; a high speed makes the replay immediate.
    report = replay(log, app_v1, pace=OriginalPace(1000))
    assert report["summary"]["replayed"] == 6


def test_check_noise_finds_the_route_that_answers_differently(log):
    report = replay(log, app_v1, check_noise=True, fail_on=FailOn(status=True, body=True))
    assert report["noisy_routes"] == [{"route": "/noise", "noisy": {"status": False, "body": True}}]
    assert report["failures"] == []


class Interrupting:
    """A sender that interrupts the replay at its n-th request, optionally never answering."""

    def __init__(self, inner, at, times=1, hang=False):
        self.inner, self.at, self.times, self.hang = inner, at, times, hang
        self.calls = 0
        self.replay = None

    async def send(self, outgoing):
        self.calls += 1
        if self.calls == self.at:
            for _ in range(self.times):
                self.replay.interrupt()
            if self.hang:
                await asyncio.Event().wait()
        return await self.inner.send(outgoing)


def test_interrupt_stops_sending_and_lets_requests_in_flight_finish(log):
    async def main(times, hang):
        async with Sender(app=app_v1) as real:
            sender = Interrupting(real, at=3, times=times, hang=hang)
            sender.replay = Replay(log, sender, concurrency=1)  # type: ignore[arg-type]
            return await sender.replay.run(), sender.calls

    diff, calls = asyncio.run(main(times=1, hang=False))
    assert diff.interrupted and calls == 3 and diff.completed == 3
    assert diff.report()["interrupted"] is True

    diff, calls = asyncio.run(main(times=2, hang=True))
    assert diff.interrupted and calls == 3 and diff.completed == 2 and diff.cancelled == 1


def test_the_replay_can_be_logged_into_a_second_log(log, tmp_path):
    second = str(tmp_path / "replayed.db")
    report = replay(log, app_v2, log_to=second)
    conn = sqlite3.connect(second)
    rows = conn.execute("SELECT path, http_status FROM requests_view ORDER BY id").fetchall()
    conn.close()
    assert len(rows) == report["summary"]["replayed"] == 6
    assert ("/boom", 500) in rows


def test_a_connection_error_is_a_status_change(log):
    class Refused:
        async def send(self, outgoing):
            return Outcome(None, 0.001, error="ConnectError")

    diff = asyncio.run(Replay(log, Refused(), limit=1).run())  # type: ignore[arg-type]
    change = diff.report()["routes"][0]["status_changes"][0]
    assert change["to"] == "ConnectError"


def test_a_log_captured_by_the_middleware_replays_exactly(tmp_path):
    path = str(tmp_path / "log.db")
    make_log(path, app_v1, [
        ("GET", "/private", {"headers": {"Authorization": "Bearer good"}}),
        ("POST", "/login", {"json": {"user": "bob", "password": "hunter2"}}),
        ("POST", "/upload", {"data": {"note": "hi"}, "files": {"f": ("a.txt", b"abc" * 100)}}),
        ("GET", "/stream", {}),
        ("GET", "/boom", {}),
        ("GET", "/go", {}),
    ], capture_requests=True, flush_interval=0.05)
    planner = Planner({"authorization": "Bearer good", "password": "hunter2"})
    report = replay(path, app_v2, selection=Selection(all_methods=True), planner=planner,
                    fail_on=FailOn(status=True, body=True))
    assert report["summary"]["from_access_log"] == 0
    assert report["summary"]["bodies_compared"] == 6
    assert report["summary"]["unfilled_placeholders"] == {}
    assert {(f["route"], f["check"]) for f in report["failures"]} == {
        ("/boom", "status"), ("/boom", "body")
    }


SEEN_COOKIES: list[bytes] = []


async def cookie_app(scope, receive, send):
    """``/set`` sets a cookie; every path remembers the Cookie header it got."""
    if scope["type"] != "http":
        raise RuntimeError("HTTP only")  # as many hand-written apps do: no lifespan
    headers = [(b"content-type", b"text/plain")]
    if scope["path"] == "/set":
        headers.append((b"set-cookie", b"sid=from-the-response; Path=/"))
    SEEN_COOKIES.append(dict(scope["headers"]).get(b"cookie", b""))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def test_cookies_a_response_sets_are_not_sent_with_later_requests(tmp_path):
    path = str(tmp_path / "log.db")
    make_log(path, cookie_app, [("GET", "/set", {}), ("GET", "/echo", {})],
             capture_requests=True, flush_interval=0.05)
    SEEN_COOKIES.clear()
    report = replay(path, cookie_app, concurrency=1)
    assert report["summary"]["replayed"] == 2
    # The logged /echo carried the cookie (a placeholder in the log); nobody gave its value.
    assert report["summary"]["unfilled_placeholders"] == {"cookie": 1}
    assert SEEN_COOKIES == [b"", b""]


def test_a_schedule_may_finish_late_requests_a_little_after_its_end(log):
    replay_ = Replay(log, None, duration=10.0, pace=FixedRate(5))  # type: ignore[arg-type]
    assert replay_._deadline(paced=True) == 11.0
    assert replay_._deadline(paced=False) == 10.0
    assert Replay(log, None, duration=600.0)._deadline(paced=True) == 605.0  # type: ignore[arg-type]
