"""The middleware's contract, for any exchange: property-based, with hypothesis.

Whatever the scope, the messages and the app's behaviour:

* every message reaches the other side unchanged, and every exception the app raises reaches
  the server as the same object;
* every HTTP request and WebSocket connection becomes a row, a counted drop or a counted
  exclusion, and nothing else;
* the writer is alive afterwards and keeps writing.

One middleware per writer strategy serves all examples, as a server would.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgi_log_to_sqlite import AsgiLogToSqlite

EXAMPLES = 1500


class Broken(Exception):
    """An app's own exception; its name holds a lone surrogate some of the time."""


class OddName(Exception):
    pass


OddName.__qualname__ = "Odd\udcffName"
OddName.__module__ = "mod\udcfe"

texts = st.text(max_size=40)
blobs = st.binary(max_size=40)
odd = st.one_of(st.none(), st.integers(), st.floats(), texts, blobs, st.booleans())
header_items = st.one_of(
    st.tuples(st.sampled_from([b"host", b"user-agent", b"referer", b"User-Agent",
                               b"accept-language", b"authorization", b"x-forwarded-for"]),
              blobs),
    st.tuples(blobs, blobs),
    st.lists(blobs, min_size=2, max_size=2),
    odd,
)
header_lists = st.one_of(st.lists(header_items, max_size=6), odd)
statuses = st.one_of(
    st.sampled_from([200, 204, 301, 404, 500]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
    st.none(),
)
bodies = st.one_of(blobs, st.just(b""), st.none(), texts, st.integers())


@st.composite
def scopes(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["http", "http", "http", "websocket"]))
    scope: dict[str, Any] = {"type": kind}
    for key, values in (
        ("method", st.one_of(st.sampled_from(["GET", "POST", "HEAD"]), odd)),
        ("path", st.one_of(st.just("/"), st.from_regex(r"\A/[a-z/%.]{0,20}\Z"), texts, odd)),
        ("raw_path", st.one_of(blobs, odd)),
        ("query_string", st.one_of(blobs, st.just(b"token=s3cret&page=2"), odd)),
        ("headers", header_lists),
        ("client", st.one_of(st.tuples(texts, st.integers()), odd)),
        ("server", st.one_of(st.tuples(texts, st.integers()), odd)),
        ("scheme", st.one_of(st.sampled_from(["http", "https"]), odd)),
        ("http_version", st.one_of(st.sampled_from(["1.1", "2"]), odd)),
    ):
        if draw(st.booleans()) or key in ("path", "method"):
            scope[key] = draw(values)
    return scope


messages = st.one_of(
    st.builds(lambda s, h, t: {"type": "http.response.start", "status": s, "headers": h,
                               "trailers": t},
              statuses, header_lists, st.booleans()),
    st.builds(lambda b, m: {"type": "http.response.body", "body": b, "more_body": m},
              bodies, st.booleans()),
    st.builds(lambda p: {"type": "http.response.pathsend", "path": p}, odd),
    st.builds(lambda c: {"type": "http.response.zerocopysend", "file": None, "count": c},
              st.one_of(st.integers(min_value=-(2**70), max_value=2**70), odd)),
    st.just({"type": "http.response.trailers", "headers": [], "more_trailers": False}),
    st.just({"type": "websocket.accept"}),
    st.builds(lambda t: {"type": "websocket.send", "text": t}, texts),
    st.just({"type": "websocket.close", "code": 1000}),
    st.builds(lambda s, h: {"type": "websocket.http.response.start", "status": s, "headers": h},
              statuses, header_lists),
    st.builds(lambda m: m, st.dictionaries(texts, odd, max_size=3)),  # junk
)
failures = st.one_of(st.none(), st.sampled_from(["before", "after"]))
exceptions = st.sampled_from([Broken, OddName, ValueError, KeyError])


def make_app(sent: list[Any], fail: str | None, error: type[Exception], reads: int) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        for _ in range(reads):
            await receive()
        if fail == "before":
            raise error("before the response")
        for message in sent:
            await send(message)
        if fail == "after":
            raise error("after the response")

    return app


def run_one(log: AsgiLogToSqlite, scope: dict[str, Any], sent: list[Any], fail: str | None,
            error: type[Exception], incoming: list[Any]) -> None:
    log.app = make_app(sent, fail, error, len(incoming))
    received: list[Any] = []
    given_out: list[Any] = []
    inbox = list(incoming)

    async def receive() -> Any:
        message = inbox.pop(0) if inbox else {"type": "http.disconnect"}
        given_out.append(message)
        return message

    async def send(message: Any) -> None:
        received.append(message)

    async def main() -> None:
        try:
            await log(scope, receive, send)
        except Exception as raised:  # noqa: BLE001 - whatever it is, it must be the app's
            assert fail is not None, f"the middleware raised on its own: {raised!r}"
            assert type(raised) is error and raised.args[0].endswith("the response")
        else:
            assert fail is None, "the app's exception was swallowed"

    asyncio.run(main())
    # The same message objects, in the same order, went to the server.
    expected = [] if fail == "before" else sent
    assert len(received) == len(expected)
    assert all(a is b for a, b in zip(received, expected, strict=True))


def totals(log: AsgiLogToSqlite, path: str) -> int:
    """Rows, counted drops and counted exclusions together."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        excluded = conn.execute(
            "SELECT coalesce(sum(count), 0) FROM excluded_requests"
        ).fetchone()[0]
    finally:
        conn.close()
    stats = log.stats()
    dropped = stats["dropped_queue_full"] + stats["dropped_write_failed"] + stats[
        "dropped_bad_record"]
    return rows + excluded + dropped


@pytest.fixture(scope="module", params=["thread", "inline", "process", "inline response",
                                        "process response"])
def served(request, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("properties") / "log.db")
    writer, _, flush = request.param.partition(" ")
    log = AsgiLogToSqlite(lambda *a: None, path, writer=writer, flush=flush or "batch",
                          flush_interval=0.05)
    state = {"log": log, "path": path, "requests": 0, "writer": writer}
    yield state
    log.close(60)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scope=scopes(), sent=st.lists(messages, max_size=5), fail=failures, error=exceptions,
       incoming=st.lists(st.one_of(
           st.builds(lambda b: {"type": "http.request", "body": b, "more_body": False}, bodies),
           st.just({"type": "http.disconnect"}),
           st.builds(lambda t: {"type": "websocket.receive", "text": t}, texts),
       ), max_size=3))
def test_any_exchange_passes_through_and_is_accounted_for(served, scope, sent, fail, error,
                                                            incoming):
    run_one(served["log"], scope, sent, fail, error, incoming)
    served["requests"] += 1


def test_every_request_was_a_row_a_drop_or_an_exclusion_and_the_writer_lives(served):
    log, path = served["log"], served["path"]
    if served["requests"] == 0:
        # The property test above ran elsewhere (another worker of pytest-xdist) or not at all:
        # the accounting is checked on requests of this test's own.
        for i in range(3):
            run_one(log, {"type": "http", "method": "GET", "path": f"/alone/{i}"},
                    [{"type": "http.response.start", "status": 200, "headers": []},
                     {"type": "http.response.body", "body": b"ok"}], None, Broken, [])
            served["requests"] += 1
    asyncio.run(log.aflush(60)) if served["writer"] == "inline" else log.flush(60)
    assert totals(log, path) == served["requests"]
    # Still writing after all that.
    before = log.stats()["written"]
    run_one(log, {"type": "http", "method": "GET", "path": "/still-here"},
            [{"type": "http.response.start", "status": 200, "headers": []},
             {"type": "http.response.body", "body": b"ok"}], None, Broken, [])
    if served["writer"] == "inline":
        asyncio.run(log.aflush(60))
    else:
        log.flush(60)
    assert log.stats()["written"] == before + 1
