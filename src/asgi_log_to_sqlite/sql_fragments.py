"""SQL shared by the canned queries and the dashboard: human units, and counts of sampled logs.

**Human units.** The log stores unix seconds, float seconds and byte counts, which sort and sum
well but read badly (``0.040107872000021416``). Queries a person reads present them through these
expressions, next to the raw values, which stay available for sorting. Bytes are written the way
Datasette writes file sizes on its own pages (``datasette.utils.format_bytes``: 1024-based,
``"512 bytes"``, ``"1.2 MB"``), so a log's numbers read like the rest of Datasette. Each function
takes an SQL expression and returns one; pass a column or an alias, since the expression may be
evaluated more than once.

**Sampling.** Query templates write ``COUNT_ALL`` and ``TOTAL(x)``; :func:`sample_weighted` turns
them into ``count(*)`` and ``sum(x)``, or, in a log with a ``sample_rate`` column, the same scaled
by each row's sample rate, so that sampled logs show estimated real totals.
"""

from __future__ import annotations

import itertools
import re

__all__ = ["iso_time", "milliseconds", "readable_bytes", "sample_weighted"]

_BYTE_UNITS = (("KB", 1024), ("MB", 1024**2), ("GB", 1024**3), ("TB", 1024**4))


def iso_time(unix_seconds: str) -> str:
    """ISO 8601 in UTC, to the second: ``2026-11-23T14:00:00Z``."""
    return f"strftime('%Y-%m-%dT%H:%M:%SZ', {unix_seconds}, 'unixepoch')"


def milliseconds(seconds: str) -> str:
    """Seconds as milliseconds rounded to 0.1."""
    return f"round(1000.0 * ({seconds}), 1)"


def readable_bytes(count: str) -> str:
    """A byte count as Datasette writes sizes: ``"999 bytes"``, ``"1.5 KB"``, ``"2.0 GB"``.

    (An exact tie such as 1280 bytes, 1.25 KB, reads "1.3 KB" here and "1.2 KB" in Python.)
    """
    steps = [f"WHEN {count} < 1024 THEN CAST({count} AS INTEGER) || ' bytes'"]
    for (unit, size), (_, next_size) in itertools.pairwise(_BYTE_UNITS):
        steps.append(f"WHEN {count} < {next_size} THEN printf('%.1f {unit}', {count} / {size}.0)")
    unit, size = _BYTE_UNITS[-1]
    return (
        f"CASE WHEN {count} IS NULL THEN NULL {' '.join(steps)} "
        f"ELSE printf('%.1f {unit}', {count} / {size}.0) END"
    )


_WEIGHT = "coalesce(nullif(requests.sample_rate, 0), 1)"


def sample_weighted(template: str, sampled: bool) -> str:
    """``COUNT_ALL`` and ``TOTAL(x)`` as plain or sample-weighted integer aggregates."""
    if not sampled:
        sql = template.replace("COUNT_ALL", "count(*)")
        return re.sub(r"TOTAL\(([^()]*)\)", r"sum(\1)", sql)
    sql = template.replace("COUNT_ALL", f"CAST(round(sum(1.0 / {_WEIGHT})) AS INTEGER)")
    return re.sub(
        r"TOTAL\(([^()]*)\)",
        lambda m: f"CAST(round(sum(({m.group(1)}) / {_WEIGHT})) AS INTEGER)",
        sql,
    )
