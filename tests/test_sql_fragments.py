"""Human units in SQL: sizes read as Datasette writes them, milliseconds to 0.1, ISO times."""

from __future__ import annotations

import sqlite3

import pytest
from datasette.utils import format_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_log_to_sqlite.sql_fragments import (
    iso_time,
    milliseconds,
    readable_bytes,
    sample_weighted,
)


def value(expression: str, **params):
    return sqlite3.connect(":memory:").execute(f"SELECT {expression}", params).fetchone()[0]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(0, 1024**5 - 1), st.sampled_from(
    [0, 1, 1023, 1024, 1025, 1048575, 1048576, 1073741823, 1073741824, 1024**4, 1024**5 - 1]
)))
def test_sizes_read_as_datasette_writes_them(size):
    # Up to a pebibyte: past it Datasette divides once more but still says TB.
    ours, datasettes = value(readable_bytes(":size"), size=size), format_bytes(size)
    if ours != datasettes:
        # An exact tie (1280 bytes is 1.25 KB): SQLite rounds it up, Python to the even digit.
        number, unit = ours.split()
        theirs, their_unit = datasettes.split()
        assert unit == their_unit and unit != "bytes"
        scale = 1024 ** ["KB", "MB", "GB", "TB"].index(unit) * 1024
        assert size * 10 % scale == scale // 2
        assert float(number) - float(theirs) == pytest.approx(0.1)


def test_a_missing_size_stays_missing():
    assert value(readable_bytes(":size"), size=None) is None


@given(st.floats(0, 10_000, allow_nan=False))
def test_milliseconds_rounded_to_a_tenth(seconds):
    ms = value(milliseconds(":s"), s=seconds)
    assert ms == round(ms, 1)
    assert abs(ms - seconds * 1000) <= 0.05 + 1e-9 * seconds * 1000


def test_iso_time():
    assert value(iso_time(":t"), t=1704067200.75) == "2024-01-01T00:00:00Z"


def test_counts_plain_or_weighted_by_the_sample_rate():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE requests (body_size INTEGER, sample_rate FLOAT)")
    conn.executemany("INSERT INTO requests VALUES (?, ?)", [(10, 0.1), (10, 0.1), (7, 1.0)])
    template = "SELECT COUNT_ALL, TOTAL(requests.body_size) FROM requests"
    assert conn.execute(sample_weighted(template, sampled=False)).fetchone() == (3, 27)
    assert conn.execute(sample_weighted(template, sampled=True)).fetchone() == (21, 207)
