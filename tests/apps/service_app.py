"""A Starlette app standing for a remote service, for the mock and record tests.

Secrets come from the environment (``SERVICE_SECRET``), so that tests can look for them in the
log's bytes. Routes:

- ``/items/{item_id}?page=N``: JSON; ``/search?q=..&api_key=..``: JSON (403 without a key);
- ``/events``: server-sent events, ``SERVICE_EVENTS`` of them ``SERVICE_GAP`` seconds apart;
- ``/login`` (POST JSON): a token in the body and a session cookie; ``/private``: 401 unless
  ``Authorization: Bearer <secret>-token``;
- ``/counter``: 1, 2, 3... (one answer per call); ``/binary``: fixed random bytes;
- ``/big``: a gzip-compressed text; ``/gone``: a 404 of its own; ``/go``: a redirect;
- ``/echo``: what it was asked (method, path, query, headers in order, body) as JSON;
- ``/slow?seconds=S``: answers after S seconds.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import os
import random

from starlette.applications import Starlette
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

SECRET = os.environ.get("SERVICE_SECRET", "s3cr3t")
EVENTS = int(os.environ.get("SERVICE_EVENTS", "3"))
GAP = float(os.environ.get("SERVICE_GAP", "0.05"))
BINARY = random.Random(7).randbytes(3000)
BIG = gzip.compress(b"".join(b"line %d of a long text\n" % i for i in range(2000)), mtime=0)


def build() -> Starlette:
    counter = itertools.count(1)

    async def item(request):
        return JSONResponse({"id": request.path_params["item_id"],
                             "page": request.query_params.get("page")})

    async def search(request):
        if request.query_params.get("api_key") != f"{SECRET}-key":
            return JSONResponse({"error": "no key"}, status_code=403)
        return JSONResponse({"q": request.query_params.get("q"), "hits": [1, 2, 3]})

    async def events(request):
        async def stream():
            for i in range(EVENTS):
                if i:
                    await asyncio.sleep(GAP)
                yield f"id: {i}\nevent: tick\ndata: tick {i}\n\n".encode()

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def login(request):
        data = await request.json()
        if data.get("password") != f"{SECRET}-password":
            return JSONResponse({"ok": False}, status_code=403)
        response = JSONResponse({"user": data.get("user"), "token": f"{SECRET}-token"})
        response.set_cookie("session", f"{SECRET}-session")
        return response

    async def private(request):
        if request.headers.get("authorization") != f"Bearer {SECRET}-token":
            return PlainTextResponse("who are you?", status_code=401)
        return PlainTextResponse("welcome")

    async def count(request):
        return PlainTextResponse(str(next(counter)))

    async def binary(request):
        return Response(BINARY, media_type="application/octet-stream")

    async def big(request):
        return Response(BIG, media_type="text/plain", headers={"content-encoding": "gzip"})

    async def gone(request):
        return PlainTextResponse("gone for good", status_code=404)

    async def go(request):
        return RedirectResponse("/items/1?page=1", status_code=302)

    async def echo(request):
        return JSONResponse({
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")]
                        for k, v in request.headers.raw],
            "body": (await request.body()).decode("latin-1"),
        })

    async def slow(request):
        await asyncio.sleep(float(request.query_params.get("seconds", "1")))
        return PlainTextResponse("late")

    return Starlette(routes=[
        Route("/echo/{rest:path}", echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Route("/slow", slow),
        Route("/items/{item_id}", item),
        Route("/search", search),
        Route("/events", events),
        Route("/login", login, methods=["POST"]),
        Route("/private", private),
        Route("/counter", count),
        Route("/binary", binary),
        Route("/big", big),
        Route("/gone", gone),
        Route("/go", go),
    ])


app = build()
