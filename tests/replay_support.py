"""Helpers for the replay tests: logs made by the middleware in this process, captures added."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

import httpx

from asgi_log_to_sqlite import AsgiLogToSqlite

Request = tuple[str, str, dict[str, Any]]


def make_log(path: str, app: Any, requests: Sequence[Request], **options: Any) -> None:
    """Serve each (method, url, httpx keyword arguments) through ``app`` in the middleware."""

    async def serve() -> None:
        log = AsgiLogToSqlite(app, path, **options)
        transport = httpx.ASGITransport(app=log)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for method, url, kwargs in requests:
                await client.request(method, url, **kwargs)
        await log.aclose()

    asyncio.run(serve())


def add_capture(
    path: str,
    rowid: int,
    *,
    raw_path: bytes,
    raw_query: bytes = b"",
    headers: Sequence[Sequence[str]] = (),
    body: bytes | None = b"",
    kept: bool = True,
    response_body: bytes | None = None,
) -> None:
    """What capture stores for request ``rowid`` (placeholders already in the values)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        listed = json.dumps([list(h) for h in headers])
        conn.execute("INSERT OR IGNORE INTO header_lists (name) VALUES (?)", (listed,))
        list_id = conn.execute(
            "SELECT id FROM header_lists WHERE name = ?", (listed,)
        ).fetchone()[0]
        response_hash = None
        if response_body is not None:
            response_hash = hashlib.sha256(response_body).hexdigest()
        conn.execute(
            "INSERT INTO captures (request, raw_path, raw_query, request_headers, request_body, "
            "request_body_sha256, request_body_kept, response_body_sha256) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (rowid, raw_path, raw_query, list_id, body if kept else None,
             hashlib.sha256(body or b"").hexdigest(), int(kept), response_hash),
        )
    finally:
        conn.close()


def rowids(path: str, where: str = "1") -> list[int]:
    conn = sqlite3.connect(path)
    try:
        sql = f"SELECT id FROM requests_view WHERE {where} ORDER BY id"
        return [r[0] for r in conn.execute(sql)]
    finally:
        conn.close()
