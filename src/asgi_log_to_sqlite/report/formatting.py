"""Numbers as people read them, shared by the text and HTML reports."""

from __future__ import annotations

__all__ = ["count", "duration", "nbytes", "percent"]


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def percent(share: float | None) -> str:
    if share is None:
        return "-"
    return f"{share * 100:.1f}%" if share >= 0.001 or share == 0 else f"{share * 100:.2f}%"


def duration(seconds: float | None) -> str:
    """``0.0123`` -> ``12.3 ms``; seconds past one second; microseconds below a millisecond."""
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    ms = seconds * 1000
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 1:
        return f"{ms:.1f} ms"
    return f"{ms * 1000:.0f} µs"


def nbytes(value: float | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover
