"""A Starlette app in two builds, for the replay tests: ``app_v1`` (what was logged) and
``app_v2`` (the new build: ``/boom`` answers 500, ``/slow`` takes 3x as long). ``/noise`` answers
differently every time. ``logged_v1`` is build 1 wrapped in the middleware, logging to
``REPLAY_LOG_DB`` with the options in ``REPLAY_LOG_OPTIONS`` (JSON), for servers run by tests.

Paths: ``/items/{item_id}`` (JSON), ``/slow``, ``/boom``, ``/go`` (a redirect), ``/stream``
(a streamed body), ``/upload`` (multipart POST), ``/login`` (JSON POST), ``/private`` (401
unless ``Authorization: Bearer good``), ``/noise``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from starlette.routing import Route

SLOW_SECONDS = float(os.environ.get("REPLAY_SLOW_SECONDS", "0.03"))
#: The bearer token ``/private`` accepts and the password ``/login`` accepts.
TOKEN = os.environ.get("REPLAY_TOKEN", "good")
PASSWORD = os.environ.get("REPLAY_PASSWORD", "hunter2")


def build(version: int) -> Starlette:
    counter = itertools.count()

    async def item(request):
        return JSONResponse({"id": request.path_params["item_id"],
                             "page": request.query_params.get("page")})

    async def slow(request):
        await asyncio.sleep(SLOW_SECONDS * (3 if version == 2 else 1))
        return PlainTextResponse("slow")

    async def boom(request):
        if version == 2:
            return PlainTextResponse("broken", status_code=500)
        return PlainTextResponse("fine")

    async def go(request):
        return RedirectResponse("/items/1", status_code=302)

    async def stream(request):
        async def chunks():
            for i in range(5):
                yield f"chunk {i}\n".encode()
                await asyncio.sleep(0.001)

        return StreamingResponse(chunks(), media_type="text/plain")

    async def upload(request):
        sizes = {}
        async with request.form() as form:  # closes the uploaded files' spooled copies
            for key, value in form.multi_items():
                sizes[key] = len(await value.read()) if hasattr(value, "read") else len(value)
        return JSONResponse({"fields": sizes})

    async def login(request):
        data = await request.json()
        ok = data.get("password") == PASSWORD
        return JSONResponse({"user": data.get("user"), "ok": ok}, status_code=200 if ok else 403)

    async def private(request):
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return PlainTextResponse("who are you?", status_code=401)
        return PlainTextResponse("welcome")

    async def noise(request):
        return PlainTextResponse(f"answer {next(counter)}")

    return Starlette(routes=[
        Route("/items/{item_id}", item, methods=["GET", "HEAD"]),
        Route("/slow", slow),
        Route("/boom", boom),
        Route("/go", go),
        Route("/stream", stream),
        Route("/upload", upload, methods=["POST"]),
        Route("/login", login, methods=["POST"]),
        Route("/private", private),
        Route("/noise", noise),
    ])


app_v1 = build(1)
app_v2 = build(2)


def _logged() -> object:
    from asgi_log_to_sqlite import AsgiLogToSqlite

    options = json.loads(os.environ.get("REPLAY_LOG_OPTIONS", "{}"))
    return AsgiLogToSqlite(build(1), os.environ["REPLAY_LOG_DB"], **options)


def __getattr__(name: str) -> object:  # the logged build only when a server asks for it
    if name == "logged_v1":
        return _logged()
    raise AttributeError(name)
