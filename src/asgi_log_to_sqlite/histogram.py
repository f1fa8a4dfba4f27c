"""The fixed latency buckets that rollups keep and reports rank durations with.

Bucket 0 holds durations under 10 µs; bucket ``i`` (1 to 239) holds ``[10 µs x 1.1^(i-1),
10 µs x 1.1^i)``; bucket 240 holds everything from about 22 hours up. A percentile that falls in
bucket ``i`` is reported as the bucket's geometric middle, ``10 µs x 1.1^(i-0.5)``, which is
within ``sqrt(1.1) - 1`` (4.9%) of any duration in the bucket: a percentile read from a
histogram is within 5% of the exact one for durations from 10 µs to 22 hours. (Counts are
exact; only where inside its bucket the ranked duration lies is unknown.)

The bucket of a duration is computed in SQL with a tree of comparisons against the bounds
below, the same literals everywhere, so a bucket means exactly the same thing when the writer
fills rollups, when a report reads them, and when a report refines an exact percentile from raw
rows; no math functions are needed (SQLite may be built without them).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping

__all__ = [
    "BUCKETS",
    "bounds",
    "bucket_of",
    "bucket_sql",
    "estimate",
    "label",
    "percentile_bucket",
]

BASE = 1e-5
RATIO = 1.1
BUCKETS = 241
#: ``LOWER[i]`` is the smallest duration in bucket ``i`` (0.0 for bucket 0).
LOWER: tuple[float, ...] = (0.0, *(BASE * RATIO ** (i - 1) for i in range(1, BUCKETS)))


def bounds(bucket: int) -> tuple[float, float | None]:
    """``(low, high)`` of a bucket in seconds; high is None for the last one."""
    return LOWER[bucket], (LOWER[bucket + 1] if bucket + 1 < BUCKETS else None)


def estimate(bucket: int) -> float:
    """The value a percentile that falls in ``bucket`` is reported as."""
    if bucket <= 0:
        return BASE / 2
    return BASE * RATIO ** (bucket - 0.5)


def bucket_of(duration: float) -> int:
    """The bucket of one duration, as :func:`bucket_sql` computes it."""
    return max(0, bisect_right(LOWER, duration) - 1)


def bucket_sql(expr: str) -> str:
    """SQL for the bucket of ``expr`` (NULL stays NULL): a balanced tree of comparisons."""

    def tree(lo: int, hi: int) -> str:
        if lo == hi:
            return str(lo)
        mid = (lo + hi + 1) // 2
        low, high = tree(lo, mid - 1), tree(mid, hi)
        return f"CASE WHEN {expr} < {LOWER[mid]!r} THEN {low} ELSE {high} END"

    return f"(CASE WHEN {expr} IS NULL THEN NULL ELSE {tree(0, BUCKETS - 1)} END)"


def label(bucket: int) -> str:
    """``"1 ms to 1.1 ms"``: the bucket for people (the Datasette label)."""

    def show(seconds: float) -> str:
        if seconds >= 1:
            return f"{seconds:.3g} s"
        if seconds >= 1e-3:
            return f"{seconds * 1e3:.3g} ms"
        return f"{seconds * 1e6:.3g} µs"

    low, high = bounds(bucket)
    if high is None:
        return f"{show(low)} and more"
    if bucket == 0:
        return f"under {show(high)}"
    return f"{show(low)} to {show(high)}"


def rank(p: float, n: int) -> int:
    """The nearest rank of the p-th percentile among n values: ceil(p * n / 100), exactly."""
    return max(1, -(-int(p * 1000) * n // 100_000))


def percentile_bucket(
    counts: Mapping[int, int] | Iterable[tuple[int, int]], p: float
) -> tuple[int, int] | None:
    """``(bucket, offset)``: the bucket holding the p-th percentile of a histogram, and the
    1-based position of the ranked duration inside it; None for an empty histogram."""
    items = sorted(counts.items() if isinstance(counts, Mapping) else counts)
    n = sum(count for _, count in items)
    if n <= 0:
        return None
    wanted = rank(p, n)
    seen = 0
    for bucket, count in items:
        if seen + count >= wanted:
            return bucket, wanted - seen
        seen += count
    return None  # pragma: no cover - the counts add up to n
