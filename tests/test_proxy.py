"""The reverse proxy of ``record`` and the mock's fallback, in front of a real uvicorn server."""

from __future__ import annotations

import asyncio
import gzip
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
import pytest
from apps.service_app import BIG
from asgi_lifespan import LifespanManager
from support import Server, free_port, uvicorn

from asgi_log_to_sqlite.proxy import AnswerUpstreamErrors, ReverseProxy, check_url


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("proxy") / "service.log"
    with Server(uvicorn("apps.service_app:app", port), port, log=log) as server:
        yield server.url


def through(app: Any, requests: list[tuple[str, str, dict]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            # A client that keeps no cookies: any cookie the upstream sees came from the proxy.
            jar = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
            async with httpx.AsyncClient(transport=transport, base_url="http://proxy",
                                         cookies=jar) as client:
                return [await client.request(m, url, **kw) for m, url, kw in requests]

    return asyncio.run(run())


def test_requests_go_on_as_they_came(upstream):
    headers = [("X-Dup", "one"), ("X-Dup", "two"), ("User-Agent", "tester/1"),
               ("Keep-Alive", "timeout=5")]
    (answer,) = through(ReverseProxy(upstream), [
        ("PUT", "/echo/a%20b?x=1&x=2&y=", {"headers": headers, "content": b"payload"})])
    echo = answer.json()
    assert (echo["method"], echo["path"], echo["query"], echo["body"]) == (
        "PUT", "/echo/a b", "x=1&x=2&y=", "payload")
    sent = [(name.lower(), value) for name, value in echo["headers"]]
    assert [v for n, v in sent if n == "x-dup"] == ["one", "two"]
    assert ("user-agent", "tester/1") in sent
    assert ("host", upstream.removeprefix("http://")) in sent
    assert ("content-length", "7") in sent
    assert not {n for n, _ in sent} & {"keep-alive", "connection"}


def test_answers_come_back_as_the_upstream_sent_them(upstream):
    login = {"json": {"user": "ann", "password": "s3cr3t-password"}}
    redirect, big, logged_in, after = through(ReverseProxy(upstream), [
        ("GET", "/go", {}), ("GET", "/big", {}), ("POST", "/login", login),
        ("GET", "/echo/x", {}),
    ])
    assert redirect.status_code == 302 and redirect.headers["location"] == "/items/1?page=1"
    assert big.headers["content-encoding"] == "gzip"
    assert big.headers["content-length"] == str(len(BIG))
    assert big.content == gzip.decompress(BIG)
    assert "session=" in logged_in.headers["set-cookie"]
    # The server in front of the proxy sets its own: two Date headers would be wrong.
    assert not {"date", "server"} & {name.lower() for name in big.headers}
    # The cookie went to the client that logged in, never with anyone's later requests.
    assert "cookie" not in {name.lower() for name, _ in after.json()["headers"]}


def test_the_upstream_may_have_a_path(upstream):
    (answer,) = through(ReverseProxy(upstream + "/echo/"), [("GET", "/deeper?q=1", {})])
    assert answer.json()["path"] == "/echo/deeper" and answer.json()["query"] == "q=1"


def test_an_upstream_that_does_not_answer_is_a_502_or_a_504(upstream):
    down = AnswerUpstreamErrors(ReverseProxy(f"http://127.0.0.1:{free_port()}"))
    (answer,) = through(down, [("GET", "/x", {})])
    assert answer.status_code == 502 and "gave no answer" in answer.text
    slow = AnswerUpstreamErrors(ReverseProxy(upstream, timeout=0.2))
    (answer,) = through(slow, [("GET", "/slow?seconds=3", {})])
    assert answer.status_code == 504 and "did not answer in time" in answer.text


def test_without_a_lifespan_the_client_is_made_with_the_first_request(upstream):
    proxy = ReverseProxy(upstream)

    async def run() -> str:
        transport = httpx.ASGITransport(app=proxy)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            text = (await client.get("/counter")).text
        await proxy.aclose()
        await proxy.aclose()  # twice is fine
        return text

    assert asyncio.run(run()).isdigit()


@pytest.mark.parametrize("url, message", [
    ("api.example.com", "must be a URL"),
    ("ftp://api.example.com", "must be a URL"),
    ("https://", "must be a URL"),
    ("https://api.example.com/?a=1", "must not have a query"),
])
def test_upstream_urls_are_checked(url, message):
    with pytest.raises(ValueError, match=message):
        check_url(url, "--upstream")
    assert check_url("https://api.example.com/v1/", "--upstream") == "https://api.example.com/v1"
