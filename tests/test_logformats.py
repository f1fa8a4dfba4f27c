"""Access-log formats: every field of every format, the escapes, and lines that are not logs."""

from __future__ import annotations

import calendar
import json

import pytest
from accesslogs import generate

from asgi_log_to_sqlite import jsonlines
from asgi_log_to_sqlite.logformats import (
    CommonLogFormat,
    JsonLinesFormat,
    RequestLines,
    UvicornFormat,
    detect,
    parse_clf_time,
    parse_iso_time,
    unescape,
)
from asgi_log_to_sqlite.schema import REQUEST_COLUMNS


def rows(parsed) -> list[dict]:
    names = list(parsed.columns)
    values = zip(*parsed.columns.values(), strict=True)
    return [dict(zip(names, row, strict=True)) for row in values]


def utc(*fields: int) -> float:
    return float(calendar.timegm((*fields, 0, 0, 0)))


# ---- common and combined -------------------------------------------------------------------
APACHE = (
    '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 '
    '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"'
)


def test_the_apache_documentation_example():
    (row,) = rows(CommonLogFormat().parse(APACHE))
    assert row == {
        "client_ip": "127.0.0.1",
        "actor": "frank",
        "start": utc(2000, 10, 10, 20, 55, 36),
        "method": "GET",
        "path": "/apache_pb.gif",
        "query_string": None,
        "http_version": "1.0",
        "host": None,
        "scheme": None,
        "http_status": 200,
        "body_size": 2326,
        "referer": "http://www.example.com/start.html",
        "user_agent": "Mozilla/4.08 [en] (Win98; I ;Nav)",
    }


def test_common_format_has_no_referer_or_agent_and_a_dash_for_no_body():
    chunk = (
        '::1 - - [01/Jan/2026:00:00:00 +0000] "HEAD /x?a=1 HTTP/1.1" 304 -\n'
        '10.0.0.1 - - [01/Jan/2026:00:00:01 +0530] "GET / HTTP/2.0" 200 0'
    )
    first, second = rows(CommonLogFormat().parse(chunk))
    assert first["body_size"] == 0  # "-": no body
    assert first["referer"] is None and first["user_agent"] is None
    assert first["client_ip"] == "::1" and first["actor"] is None
    assert first["query_string"] == "?a=1"
    assert second["http_version"] == "2"
    assert second["start"] == utc(2025, 12, 31, 18, 30, 1)  # +0530 taken off


def test_nginx_main_format_extra_fields_are_ignored():
    line = ('203.0.113.9 - - [07/Dec/2026:10:00:00 +0000] "GET /a HTTP/1.1" 200 12 "-" '
            '"curl/8" "198.51.100.1, 10.0.0.2"')
    parsed = CommonLogFormat().parse(line + "\n" + line)
    assert parsed.rows == 2 and not parsed.failed
    assert rows(parsed)[0]["user_agent"] == "curl/8"
    # and a trailing unquoted field (request time) too
    (row,) = rows(CommonLogFormat().parse(line + " 0.004"))
    assert row["path"] == "/a"


def test_escapes_are_undone_and_paths_decoded_as_the_middleware_stores_them():
    line = (
        r'1.2.3.4 - - [07/Dec/2026:10:00:00 +0000] "GET /caf%C3%A9/a%20b?q=%C3%A9 HTTP/1.1" 200 1 '
        r'"https://r.example/\"x\"" "Agent \xE2\x80\x94 \\ \"q\" \x01"'
    )
    (row,) = rows(CommonLogFormat().parse(line))
    assert row["path"] == "/caf\u00e9/a b"
    assert row["query_string"] == "?q=%C3%A9"  # raw, as ASGI's query_string
    assert row["referer"] == 'https://r.example/"x"'
    assert row["user_agent"] == 'Agent \u2014 \\ "q" \x01'


def test_raw_utf8_bytes_in_a_request_line_are_the_characters():
    line = (r'1.2.3.4 - - [07/Dec/2026:10:00:00 +0000] "GET /caf\xC3\xA9/%E2%82%AC HTTP/1.1" 200 1 '
            r'"-" "-"')
    (row,) = rows(CommonLogFormat().parse(line))
    assert row["path"] == "/caf\u00e9/\u20ac"


def test_bytes_that_are_not_utf8_stay_escaped():
    line = r'1.2.3.4 - - [07/Dec/2026:10:00:00 +0000] "GET /%E9t\xE9 HTTP/1.1" 200 1 "-" "\xff"'
    (row,) = rows(CommonLogFormat().parse(line))
    assert row["path"] == "/%E9t%E9"  # as the middleware stores such a path
    assert row["user_agent"] == "\\xff"


@pytest.mark.parametrize(
    ("target", "stored"),
    [
        ("/a%2Fb", "/a%2Fb"),
        ("/a/b", "/a/b"),
        ("/100%25", "/100%25"),
        ("/100%", "/100%25"),
        ("/q%3Fx%23y", "/q%3Fx%23y"),
        ("/caf%c3%a9%20au%20lait", "/caf\u00e9 au lait"),
        ("/nul%00", "/nul%00"),
    ],
)
def test_paths_are_stored_as_the_middleware_stores_the_raw_path(target, stored):
    """Escapes whose decoding would change the path (``%2F``, ``%25``...) are kept, so
    ``/a%2Fb`` and ``/a/b`` stay two paths; the rest is decoded."""
    line = f'1.2.3.4 - - [07/Dec/2026:10:00:00 +0000] "GET {target} HTTP/1.1" 200 1 "-" "-"'
    (row,) = rows(CommonLogFormat().parse(line))
    assert row["path"] == stored
    uvicorn = f'INFO:     1.2.3.4:5 - "GET {target} HTTP/1.1" 200 OK'
    (row,) = rows(UvicornFormat().parse(uvicorn))
    assert row["path"] == stored


@pytest.mark.parametrize(
    ("request_line", "expected"),
    [
        ("-", (None, None, None, None, None, None)),
        ("\\x16\\x03\\x01\\x02\\x00", (None, None, None, None, None, None)),
        ("GET /", ("GET", "/", None, None, None, None)),
        ("GET /a b HTTP/1.1", ("GET", "/a b", None, "1.1", None, None)),
        ("OPTIONS * HTTP/1.1", ("OPTIONS", "*", None, "1.1", None, None)),
        ("PROPFIND /dav HTTP/1.1", ("PROPFIND", "/dav", None, "1.1", None, None)),
        ("GET http://example.com:8080/p?x=1 HTTP/1.1",
         ("GET", "/p", "?x=1", "1.1", "example.com:8080", "http")),
        ("GET https://example.com HTTP/1.1", ("GET", "/", None, "1.1", "example.com", "https")),
        ("GET /q? HTTP/1.0", ("GET", "/q", None, "1.0", None, None)),
        ("GET /h HTTP/3", ("GET", "/h", None, "3", None, None)),
    ],
)
def test_request_lines(request_line, expected):
    assert RequestLines(escaped=True).lines[request_line] == expected


def test_times_with_fractions_offsets_and_nonsense():
    assert parse_clf_time("10/Oct/2000:13:55:36 -0700") == utc(2000, 10, 10, 20, 55, 36)
    assert parse_clf_time("10/Oct/2000:13:55:36.250 +0100") == utc(2000, 10, 10, 12, 55, 36) + 0.25
    assert parse_clf_time("10/oct/2000:13:55:36") == utc(2000, 10, 10, 13, 55, 36)  # no zone: UTC
    assert parse_clf_time("31/Foo/2000:13:55:36 +0000") is None
    assert parse_clf_time("32/Oct/2000:13:55:36 +0000") is None
    assert parse_clf_time("yesterday") is None
    assert parse_iso_time("2026-12-07T10:00:00.5Z") == utc(2026, 12, 7, 10, 0, 0) + 0.5
    assert parse_iso_time("2026-12-07 10:00:00,123+02:00") == utc(2026, 12, 7, 8, 0, 0) + 0.123


def test_lines_that_are_not_of_the_format_are_reported_by_index():
    good = '1.2.3.4 - - [07/Dec/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"'
    chunk = "\n".join([
        good,
        "garbage",
        "",  # blank lines are neither rows nor failures
        good.replace("07/Dec/2026", "07/Dec/2026x"),  # a time that does not parse
        good.replace(" 200 ", " OK "),
        good,
    ])
    parsed = CommonLogFormat().parse(chunk)
    assert parsed.rows == 2
    assert parsed.failed == [1, 3, 4]


def test_common_and_combined_lines_in_one_chunk():
    """Read line by line: a common-format line has no referer or agent to unescape."""
    chunk = "\n".join([
        '127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 2326',
        APACHE,
        "not a log line",
    ])
    parsed = CommonLogFormat().parse(chunk)
    assert parsed.failed == [2]
    common, combined = rows(parsed)
    assert common["referer"] is None and common["user_agent"] is None
    assert common["path"] == "/a" and common["body_size"] == 2326
    assert combined["user_agent"] == "Mozilla/4.08 [en] (Win98; I ;Nav)"


def test_the_fast_and_the_line_by_line_reading_agree():
    """A chunk is cut at its quotes when it can be; matching each line must give the same."""
    entries = generate(3000, seed=11)
    chunk = "\n".join(entry.line for entry in entries)
    fmt = CommonLogFormat()
    assert fmt._cut(chunk) is not None  # the fast way applies to the generated log
    fast = fmt.parse(chunk)
    slow = CommonLogFormat().parse(chunk + "\nnot a log line")  # forces line by line
    assert slow.failed == [3000]
    assert slow.columns == fast.columns
    for entry, row in zip(entries, rows(fast), strict=True):
        assert row["start"] == entry.start
        assert row["path"] == entry.path
        assert row["http_status"] == entry.status
        assert row["body_size"] == entry.size
        assert row["user_agent"] == entry.agent
        assert row["referer"] == entry.referer
        assert row["actor"] == entry.user
        assert row["client_ip"] == entry.client
        assert row["query_string"] == (f"?{entry.query}" if entry.query else None)


def test_an_escaped_backslash_before_a_closing_quote():
    line = r'1.2.3.4 - - [07/Dec/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "end\\"'
    parsed = CommonLogFormat().parse(line + "\n" + line)
    assert [r["user_agent"] for r in rows(parsed)] == ["end\\", "end\\"]


# ---- uvicorn ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "client", "start"),
    [
        ('INFO:     127.0.0.1:52134 - "GET /path?x=1 HTTP/1.1" 200 OK', "127.0.0.1", None),
        ('127.0.0.1:52134 - "GET /path?x=1 HTTP/1.1" 200', "127.0.0.1", None),
        (('\x1b[32mINFO\x1b[0m:     ::1:52134 - "\x1b[1mGET /path?x=1 HTTP/1.1\x1b[0m" '
          "\x1b[32m200 OK\x1b[0m"), "::1", None),
        (('2026-12-07 10:00:00,250 INFO uvicorn.access 10.0.0.1:1 - "GET /path?x=1 HTTP/1.1" '
          "200 OK"), "10.0.0.1", utc(2026, 12, 7, 10, 0, 0) + 0.25),
        ('[2026-12-07T10:00:00+01:00] [INFO] 10.0.0.1:1 - "GET /path?x=1 HTTP/1.1" 200 OK',
         "10.0.0.1", utc(2026, 12, 7, 9, 0, 0)),
        ('INFO:      - "GET /path?x=1 HTTP/1.1" 200 OK', None, None),
    ],
)
def test_uvicorn_access_lines(line, client, start):
    (row,) = rows(UvicornFormat().parse(line))
    assert row["client_ip"] == client
    assert row["start"] == start
    assert (row["method"], row["path"], row["query_string"]) == ("GET", "/path", "?x=1")
    assert (row["http_version"], row["http_status"]) == ("1.1", 200)


def test_uvicorn_paths_and_odd_statuses():
    lines = (
        'INFO:     1.2.3.4:5 - "GET /caf%C3%A9%22 HTTP/2" 599\n'  # unknown status: no phrase
        "INFO:     1.2.3.4:5 - \"GET /caf\u00c3\u00a9 HTTP/1.1\" 404 Not Found"  # latin-1 raw
    )
    first, second = rows(UvicornFormat().parse(lines))
    assert first["path"] == '/caf\u00e9"' and first["http_status"] == 599
    assert first["http_version"] == "2"
    assert second["path"] == "/caf\u00e9"


@pytest.mark.parametrize(
    "line",
    [
        "INFO:     Started server process [1234]",
        "INFO:     Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)",
        'somebody said - "GET / HTTP/1.1" 200 OK',  # a prefix that is no logging prefix
        APACHE,
    ],
)
def test_other_lines_are_not_uvicorn_access_lines(line):
    assert UvicornFormat().parse(line).failed == [0]


# ---- JSON lines ------------------------------------------------------------------------------
ROW = (1796637600.5, "GET", "/a", "?b=1", "curl/8", None, None, 200, "text/plain", "1.2.3.4",
       0.01, 12, "example.com", "https", "1.1", 0, 0.005, None, 0, "http", None, "/a", None, 1.0,
       None, "web-1")
LINE = jsonlines.encode(ROW)


@pytest.mark.parametrize(
    "line",
    [
        LINE,
        "2026-12-07T10:00:00.000Z " + LINE,  # CloudWatch
        "2026-12-07T10:00:00.000Z\tabc-request-id\tINFO\t" + LINE,  # Lambda's logger
        "2026-12-07T10:00:00.000000000Z stdout F " + LINE,  # Kubernetes (CRI)
        json.dumps({"jsonPayload": json.loads(LINE), "severity": "INFO"}),  # Cloud Logging
        json.dumps({"textPayload": LINE, "timestamp": "2026-12-07T10:00:00Z"}),
        json.dumps({"log": LINE + "\n", "stream": "stdout", "time": "2026-12-07T10:00:00Z"}),
        json.dumps({"timestamp": 1796637600000, "message": LINE}),  # CloudWatch JSON export
        json.dumps({"textPayload": "2026-12-07T10:00:00.000Z " + LINE}),
        LINE + "   ",
    ],
)
def test_json_lines_with_a_platforms_prefix_or_envelope(line):
    (row,) = rows(JsonLinesFormat().parse(line))
    assert tuple(row[name] for name in REQUEST_COLUMNS) == ROW


@pytest.mark.parametrize(
    "line",
    [
        '{"start": 1.0, "path": "/"}',
        '{"asgi_log_to_sqlite": 1, "start": "noon"}',
        "asgi_log_to_sqlite said hello",
        '{"jsonPayload": {"message": "asgi_log_to_sqlite"}}',
        LINE[:-5],
    ],
)
def test_json_lines_that_are_not_rows(line):
    assert JsonLinesFormat().parse(line).failed == [0]


# ---- detection -------------------------------------------------------------------------------
def test_detect_recognises_each_format():
    formats = [JsonLinesFormat(), CommonLogFormat(), UvicornFormat()]
    assert detect(LINE, formats).name == "jsonlines"
    assert detect(APACHE, formats).name == "combined"
    assert detect('INFO:     1.2.3.4:5 - "GET / HTTP/1.1" 200 OK', formats).name == "uvicorn"
    assert detect("hello", formats) is None


def test_unescape_leaves_unknown_escapes_alone():
    assert unescape(r"a\qb") == r"a\qb"
    assert unescape(r"\x4") == r"\x4"
    assert unescape(r"tab\there") == "tab\there"
