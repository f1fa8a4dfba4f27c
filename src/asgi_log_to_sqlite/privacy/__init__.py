"""What may be recorded about a request, and in what form: privacy by default.

A request log is personal data and a store of secrets waiting to leak. Each concern has its own
module; row building (:mod:`asgi_log_to_sqlite.prepare`) applies them all in one pass, off the
event loop, before anything reaches a sink (and so SQLite's ``-wal`` or ``-journal`` files):

* :mod:`.redaction`: query values and URLs with secrets replaced by ``REDACTED``;
* :mod:`.filters`: requests left out (health checks, exclusions, methods, sampling);
* :mod:`.addresses`: client addresses through trusted proxies, anonymized, visitor hashes;
* :mod:`.frameworks`: route templates and actors from the scope or the user's callables.

Option validation lives beside the options (:mod:`asgi_log_to_sqlite.validators`).
"""

from .addresses import anonymize, format_ip, parse_ip
from .filters import HEALTH_CHECK_PATHS, HEALTH_CHECK_USER_AGENTS
from .frameworks import framework_actor, framework_route
from .redaction import DEFAULT_REDACT_QUERY, REDACTED, redact_query

__all__ = [
    "DEFAULT_REDACT_QUERY",
    "HEALTH_CHECK_PATHS",
    "HEALTH_CHECK_USER_AGENTS",
    "REDACTED",
    "anonymize",
    "format_ip",
    "framework_actor",
    "framework_route",
    "parse_ip",
    "redact_query",
]
