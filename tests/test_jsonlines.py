"""The JSON-lines codec: one line per row, read back to the same values."""

from __future__ import annotations

import json
import math

import pytest

from asgi_log_to_sqlite import jsonlines
from asgi_log_to_sqlite.schema import REQUEST_COLUMNS

ROW = {
    "start": 1796637600.123456,
    "method": "GET",
    "path": "/caf\u00e9/\\xe9",
    "query_string": "?page=2&token=REDACTED",
    "user_agent": 'Mozilla/5.0 "quoted"',
    "referer": "https://example.com/",
    "accept_language": "fr-FR",
    "http_status": 200,
    "content_type": "text/html; charset=utf-8",
    "client_ip": "203.0.113.7",
    "duration": 0.0123,
    "body_size": 5120,
    "host": "example.com",
    "scheme": "https",
    "http_version": "2",
    "request_body_size": 0,
    "ttfb": 0.001,
    "exception": None,
    "disconnected": 0,
    "connection_type": "http",
    "peer_ip": "10.0.0.1",
    "route": "/caf\u00e9/{name}",
    "actor": "alice",
    "sample_rate": 1.0,
    "visitor": "0123456789abcdef",
    "instance": "web-3",
}


def as_tuple(row: dict) -> tuple:
    return tuple(row[name] for name in REQUEST_COLUMNS)


def test_a_line_holds_the_marker_the_time_and_every_column_in_order():
    line = jsonlines.encode(as_tuple(ROW))
    assert "\n" not in line
    assert line.isascii()  # no console or shipper along the way can mangle it
    document = json.loads(line)
    assert list(document) == [jsonlines.MARKER, "time", *REQUEST_COLUMNS]
    assert document[jsonlines.MARKER] == 1
    assert document["time"] == "2026-12-07T10:00:00.123Z"
    assert line.startswith('{"asgi_log_to_sqlite":1,"time":"2026-12-07T10:00:00.123Z","start":')


def test_decode_gives_back_the_same_values_and_types():
    row = as_tuple(ROW)
    decoded = jsonlines.decode(jsonlines.encode(row))
    assert decoded == row
    assert [type(v) for v in decoded] == [type(v) for v in row]


def test_a_mapping_and_bytes_and_missing_columns():
    line = jsonlines.encode({"start": 1.5, "path": b"/bytes\xff", "http_status": 404})
    decoded = dict(zip(REQUEST_COLUMNS, jsonlines.decode(line), strict=True))
    assert decoded["path"] == "/bytes\\xff"
    assert decoded["http_status"] == 404
    assert decoded["method"] is None and decoded["duration"] is None


def test_values_json_cannot_hold_become_null():
    row = dict(ROW, duration=math.nan, ttfb=math.inf)
    decoded = dict(zip(REQUEST_COLUMNS, jsonlines.decode(jsonlines.encode(row)), strict=True))
    assert decoded["duration"] is None and decoded["ttfb"] is None


def test_a_row_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="values"):
        jsonlines.encode((1.0, "GET"))


def test_unknown_keys_are_ignored_and_missing_ones_are_null():
    line = json.dumps({"asgi_log_to_sqlite": 1, "start": 2.0, "instance": "i-1", "new": [1]})
    row = dict(zip(REQUEST_COLUMNS, jsonlines.decode(line), strict=True))
    assert row["start"] == 2.0 and row["instance"] == "i-1"
    assert all(value is None for name, value in row.items() if name not in ("start", "instance"))


def test_numbers_are_read_as_the_log_stores_them():
    line = json.dumps({"asgi_log_to_sqlite": 1, "start": 5, "http_status": 200.0, "actor": 42,
                       "path": ""})
    row = dict(zip(REQUEST_COLUMNS, jsonlines.decode(line), strict=True))
    assert row["start"] == 5.0 and type(row["start"]) is float
    assert row["http_status"] == 200 and type(row["http_status"]) is int
    assert row["actor"] == "42"
    assert row["path"] is None  # empty values are NULL


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "[1, 2]",
        '{"start": 1.0}',  # no marker
        '{"asgi_log_to_sqlite": "yes", "start": 1.0}',
        '{"asgi_log_to_sqlite": 1, "start": "yesterday"}',
        '{"asgi_log_to_sqlite": 1, "start": 1.0, "http_status": 200.5}',
        '{"asgi_log_to_sqlite": 1, "start": 1.0, "path": {"a": 1}}',
        '{"asgi_log_to_sqlite": 1, "start": true}',
        '{"asgi_log_to_sqlite": 1}',  # every row the log stores has a start
        '{"asgi_log_to_sqlite": 1, "start": null, "path": "/"}',
        '{"asgi_log_to_sqlite": 1, "start": 1e400, "path": "/"}',
    ],
)
def test_what_is_not_a_row_raises_value_error(line):
    with pytest.raises(ValueError):
        jsonlines.decode(line)


def test_is_ours():
    assert jsonlines.is_ours({"asgi_log_to_sqlite": 2})
    assert not jsonlines.is_ours({"asgi_log_to_sqlite": True})
    assert not jsonlines.is_ours({"log": "asgi-log-to-sqlite"})
    assert not jsonlines.is_ours("asgi_log_to_sqlite")
