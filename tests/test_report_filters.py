"""--path, --route, --status, --host, --method: a filtered report equals the unfiltered
computation done here in SQL on the matching rows only; and tail applies the same filters."""

from __future__ import annotations

import sqlite3

import pytest
from test_report import NOW, check_against_sql

from asgi_log_to_sqlite.demo import synthetic_log
from asgi_log_to_sqlite.report import Filters, ReportError, build_report, parse_methods
from asgi_log_to_sqlite.report.tail import tail


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("filters") / "log.db"
    synthetic_log(path, 5000, end=NOW, days=3, seed=7)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO routes (name) VALUES ('/products/{id}')")
        conn.execute("UPDATE requests SET route = 1 WHERE path IN "
                     "(SELECT id FROM paths WHERE name LIKE '/products/%')")
    conn.close()
    return str(path)


CASES = {
    "path prefix": (Filters(paths=("/blog",)), "(path = '/blog' OR path GLOB '/blog/*')"),
    "path glob": (Filters(paths=("/products/1*",)), "path GLOB '/products/1*'"),
    "two paths": (Filters(paths=("/docs", "/about")),
                  "(path = '/docs' OR path GLOB '/docs/*' OR path = '/about')"),
    "route": (Filters(routes=("/products/{id}",)), "route = '/products/{id}'"),
    "status class": (Filters(statuses=((400, 499),)), "http_status BETWEEN 400 AND 499"),
    "statuses": (Filters(statuses=((404, 404), (500, 599))),
                 "(http_status = 404 OR http_status >= 500)"),
    "host": (Filters(hosts=("api.example.com",)), "host = 'api.example.com'"),
    "host glob": (Filters(hosts=("*example.com",)), "host GLOB '*example.com'"),
    "method": (Filters(methods=parse_methods(["post"])), "method = 'POST'"),
    "all together": (
        Filters(paths=("/",), statuses=((200, 299),), methods=("GET",), hosts=("example.com",)),
        "path GLOB '/*' AND http_status BETWEEN 200 AND 299 AND method = 'GET' "
        "AND host = 'example.com'",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_filtered_report_is_the_report_of_the_matching_rows(log, name):
    filters, where = CASES[name]
    report = build_report([log], filters=filters)
    conn = sqlite3.connect(log)
    source = f"(SELECT * FROM requests_view WHERE {where})"
    assert report["summary"]["requests"] == conn.execute(
        f"SELECT COUNT(*) FROM {source}").fetchone()[0] > 0
    check_against_sql(report, conn, source)
    assert {k: v for k, v in report["filters"].items() if v}


def test_filters_with_a_window(log):
    filters = Filters(statuses=((500, 599),))
    report = build_report([log], since=NOW - 86400, filters=filters)
    conn = sqlite3.connect(log)
    check_against_sql(report, conn, "(SELECT * FROM requests_view WHERE http_status >= 500 "
                                    f"AND start >= {NOW - 86400})")


def test_a_filter_matching_nothing_gives_zeros(log):
    report = build_report([log], filters=Filters(paths=("/no/such/path",)))
    assert report["summary"]["requests"] == 0 and report["top_paths"] == []


def test_bad_filter_values_are_refused():
    with pytest.raises(ValueError, match="--path"):
        Filters(paths=("",))
    with pytest.raises(ValueError, match="HTTP method"):
        parse_methods(["GET;DROP"])
    with pytest.raises(ReportError, match="instance"):
        Filters(instances=("a",)).raw_sql(None, {"start"}, set())


def test_tail_applies_the_same_filters(log):
    lines: list[str] = []
    tail(log, lines=10_000, filters=Filters(methods=("POST",), hosts=("api.example.com",)),
         emit=lines.append)
    conn = sqlite3.connect(log)
    want = conn.execute("SELECT COUNT(*) FROM requests_view WHERE method = 'POST' AND "
                        "host = 'api.example.com'").fetchone()[0]
    assert len(lines) == want > 0
    assert all('"POST ' in line for line in lines)
    lines.clear()
    tail(log, lines=10_000, filters=Filters(routes=("/products/*",)), emit=lines.append)
    assert lines and all('"GET /products/' in line or '"POST /products/' in line
                         for line in lines)
