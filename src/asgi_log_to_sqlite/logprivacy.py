"""The middleware's privacy rules applied to imported rows, column by column.

``import`` stores what another server logged, so the same rules apply as in the middleware
(:mod:`.privacy`: the same options, the same code): sensitive query values and the referer's
redacted, health checks and excluded paths or user agents left out and counted per hour,
addresses truncated or dropped on request. Each distinct value is looked at once.
"""

from __future__ import annotations

import collections
from typing import Any

from .logformats import CAP, Memo
from .options import Options
from .prepare import hour_of
from .privacy.addresses import ClientAddresses
from .privacy.filters import RecordingFilter
from .privacy.redaction import Redactor

__all__ = ["Privacy"]


class Privacy:
    """The middleware's privacy rules (:mod:`.privacy`: the same options, the same code),
    applied column by column, once per distinct value."""

    def __init__(self, options: Options) -> None:
        self.redactor = redactor = Redactor(options.redact_query, options.keep_query)
        self.filter = recording = RecordingFilter(options)
        self.addresses = addresses = ClientAddresses(options)
        self.client_ip = options.client_ip
        self.anonymize = options.anonymize_ip is not None
        self._queries = Memo(self._query)
        self._referers = Memo(lambda r: redactor.url(r)[:CAP] or None if r else None)
        self._paths = Memo(lambda p: recording.path_verdict(p or ""))
        self._agents = Memo(recording.user_agent_verdict)
        self._addresses = Memo(lambda a: None if a is None else addresses.storable(a))

    def _query(self, query: str | None) -> str | None:
        # Redacted before it is capped: a cut could otherwise leave a secret's start behind.
        if not query:
            return None
        redacted = self.redactor.query(query.removeprefix("?"))
        return ("?" + redacted)[:CAP] if redacted else None

    def apply(self, columns: dict[str, list[Any]],
              excluded: collections.Counter[tuple[str, str]]) -> dict[str, list[Any]]:
        """The columns as they may be stored; rows left out are counted in ``excluded`` by
        (hour, reason), as the middleware counts them."""
        if "query_string" in columns:
            columns["query_string"] = list(map(self._queries.__getitem__, columns["query_string"]))
        if "referer" in columns:
            columns["referer"] = list(map(self._referers.__getitem__, columns["referer"]))
        for name in ("client_ip", "peer_ip"):
            if name in columns:
                if not self.client_ip:
                    columns[name] = [None] * len(columns[name])
                elif self.anonymize:
                    columns[name] = list(map(self._addresses.__getitem__, columns[name]))
        count = len(next(iter(columns.values())))
        nothing = [None] * count
        paths, agents = columns.get("path"), columns.get("user_agent")
        path_verdicts = list(map(self._paths.__getitem__, paths)) if paths else nothing
        agent_verdicts = list(map(self._agents.__getitem__, agents)) if agents else nothing
        if path_verdicts.count(None) == count and agent_verdicts.count(None) == count:
            return columns
        starts = columns.get("start") or nothing
        keep = []
        reason_of = self.filter.reason
        verdicts = zip(range(count), path_verdicts, agent_verdicts, strict=True)
        for index, path_verdict, agent_verdict in verdicts:
            if path_verdict is None and agent_verdict is None:
                keep.append(index)
                continue
            reason = reason_of(path_verdict, agent_verdict, None)
            if reason is None:
                keep.append(index)
            else:
                excluded[(hour_of(starts[index]), reason)] += 1
        return {name: [values[i] for i in keep] for name, values in columns.items()}
