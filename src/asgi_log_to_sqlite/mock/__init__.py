"""A mock of any logged service: the responses a log captured, served for the requests that
match them, so that tests run without the real service or its credentials.

``mock_app("api.db")`` is an ASGI app (mount it under ``httpx.ASGITransport``);
``asgi-log-to-sqlite mock api.db`` serves it under uvicorn. The log comes from an app logged
with ``capture_requests=True, capture_responses=True``, or from ``asgi-log-to-sqlite record``
in front of a remote service. Matching: :mod:`.matching`; serving: :mod:`.app`; reading the
log: :mod:`.recordings`. Needs httpx only for ``fallback``.
"""

from __future__ import annotations

from .app import UNMATCHED_HEADER, MockApp, mock_app
from .recordings import MockError, Recording, load, placeholders

__all__ = ["UNMATCHED_HEADER", "MockApp", "MockError", "Recording", "load", "mock_app",
           "placeholders"]
