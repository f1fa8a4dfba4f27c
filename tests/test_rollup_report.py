"""Reports over windows whose rows were pruned: read from the rollups, and saying so.

The report of the whole log before pruning is exact; after pruning, the same report comes from
the rollups: the same counts, bytes, statuses, timeline and top paths, percentiles within 5%.
"""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from asgi_log_to_sqlite.demo import synthetic_log
from asgi_log_to_sqlite.maintenance import prune
from asgi_log_to_sqlite.report import (
    Filters,
    ReportError,
    build_report,
    render_html,
    render_json,
    render_text,
)

NOW = 1_750_003_000.0
DAY = 86400


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """(the full log, the same pruned to its last 5 days, its report before pruning)."""
    folder = tmp_path_factory.mktemp("rolled")
    full = folder / "full.db"
    synthetic_log(full, 8000, end=NOW, days=10, seed=5)
    pruned = folder / "pruned.db"
    shutil.copy(full, pruned)
    result = prune(str(pruned), 5 * DAY, now=NOW)
    assert result.deleted > 3000
    return str(full), str(pruned)


def same_counts(raw: dict, rolled: dict) -> None:
    for key in ("requests", "bytes_sent", "bytes_received", "server_errors", "client_errors",
                "error_rate", "client_error_rate", "static_requests"):
        assert rolled["summary"][key] == raw["summary"][key], key
    assert rolled["status_classes"] == raw["status_classes"]
    assert sum(p["requests"] for p in rolled["timeline"]["points"]) == raw["summary"]["requests"]
    assert rolled["top_paths"] == [
        {**p, "avg_duration": pytest.approx(p["avg_duration"])} for p in raw["top_paths"]]
    assert rolled["not_found"] == raw["not_found"]
    assert rolled["hours_of_day"] == raw["hours_of_day"]
    for p in (50, 95, 99):
        exact = raw["summary"]["latency"][f"p{p}"]
        assert abs(rolled["summary"]["latency"][f"p{p}"] - exact) <= 0.05 * exact
    assert rolled["summary"]["latency"]["max"] == raw["summary"]["latency"]["max"]
    for row, want in zip(rolled["slowest_paths"], raw["slowest_paths"], strict=True):
        for p in (50, 95, 99):
            assert abs(row[f"p{p}"] - want[f"p{p}"]) <= 0.05 * want[f"p{p}"]


def test_a_window_whose_rows_are_gone_is_read_from_the_rollups(logs):
    full, pruned = logs
    raw = build_report([full])
    assert raw["source"]["rows"] == "raw"
    rolled = build_report([pruned])
    assert rolled["source"]["rows"] == "rollups"
    assert "gone" in rolled["source"]["note"] and rolled["source"]["raw_rows_from"]
    assert rolled["source"]["percentiles"] == "estimated within 5%"
    same_counts(raw, rolled)
    for key in ("statuses", "methods", "http_versions", "hosts", "referrers", "clients",
                "referring_domains", "user_agents", "visitors_per_day"):
        assert rolled[key] is None, key
    assert rolled["summary"]["visitors"] is None
    # Every format says so, and renders the sections that are missing.
    text = render_text(rolled)
    assert "rollups" in text and "not kept in rollups" in text
    assert "not kept in rollups" in render_html(rolled)
    assert json.loads(render_json(rolled))["source"]["rows"] == "rollups"


def test_windows_are_whole_hours_over_rollups_and_raw_after_the_cutoff(logs):
    full, pruned = logs
    since = NOW - 7 * DAY + 1234  # mid-hour, before the cutoff
    rolled = build_report([pruned], since=since)
    assert rolled["source"]["rows"] == "rollups"
    hour = int(since // 3600) * 3600
    assert rolled["range"]["since"] == build_report([full], since=hour)["range"]["since"]
    same_counts(build_report([full], since=hour), rolled)
    recent = build_report([pruned], since=NOW - 2 * DAY)
    assert recent["source"]["rows"] == "raw"
    assert recent["summary"]["requests"] == build_report([full], since=NOW - 2 * DAY)[
        "summary"]["requests"]


def test_long_windows_read_daily_rollups(tmp_path):
    path = str(tmp_path / "year.db")
    synthetic_log(path, 6000, end=NOW, days=60, seed=9)
    raw = build_report([path])
    assert raw["timeline"]["bucket_seconds"] >= DAY
    prune(path, 30 * DAY, now=NOW)
    rolled = build_report([path])
    assert rolled["source"]["rows"] == "rollups"
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM rollups WHERE period = 86400").fetchone()[0] > 50
    conn.close()
    same_counts(raw, rolled)
    assert [p["requests"] for p in rolled["timeline"]["points"]] == [
        p["requests"] for p in raw["timeline"]["points"]]


def test_filters_over_rollups(logs):
    full, pruned = logs
    rolled = build_report([pruned], filters=Filters(paths=("/blog",)))
    raw = build_report([full], filters=Filters(paths=("/blog",)))
    assert rolled["source"]["rows"] == "rollups"
    assert rolled["summary"]["requests"] == raw["summary"]["requests"] > 0
    assert rolled["top_paths"] == [
        {**p, "avg_duration": pytest.approx(p["avg_duration"])} for p in raw["top_paths"]]
    with pytest.raises(ReportError, match=r"--status, --method cannot be applied.*--since from"):
        build_report([pruned], filters=Filters(statuses=((500, 599),), methods=("GET",)))


def test_a_file_from_before_rollups_is_rolled_up_on_the_fly(logs, tmp_path):
    full, pruned = logs
    old = str(tmp_path / "old.db")
    shutil.copy(full, old)
    conn = sqlite3.connect(old)
    for table in ("rollup_latency", "rollups", "rollups_state", "latency_buckets"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("DELETE FROM requests WHERE start >= ?", (NOW - 5 * DAY,))
    conn.commit()
    conn.close()
    both = build_report([pruned, old])
    assert both["source"]["rows"] == "rollups"
    conn = sqlite3.connect(old)
    old_rows = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    conn.close()
    assert both["summary"]["requests"] == build_report([full])["summary"]["requests"] + old_rows


def test_compare_with_the_previous_window(logs):
    full, _ = logs
    report = build_report([full], since=NOW - 2 * DAY, until=NOW, compare="previous")
    before = build_report([full], since=NOW - 4 * DAY, until=NOW - 2 * DAY)
    comparison = report["comparison"]
    assert comparison["range"] == {"since": before["range"]["since"],
                                   "until": before["range"]["until"]}
    figures = {f["name"]: f for f in comparison["figures"]}
    assert figures["requests"]["current"] == report["summary"]["requests"]
    assert figures["requests"]["previous"] == before["summary"]["requests"]
    assert figures["requests"]["change"] == pytest.approx(
        (report["summary"]["requests"] - before["summary"]["requests"])
        / before["summary"]["requests"], abs=1e-6)
    assert figures["p95"]["previous"] == before["summary"]["latency"]["p95"]
    previous = {p["path"]: p["requests"] for p in before["top_paths"]}
    for row in comparison["top_paths"]:
        assert row["previous"] == previous.get(row["path"], 0) or row["path"] not in previous
    assert "Compared with" in render_text(report)
    assert 'id="comparison"' in render_html(report)
    # A second window given outright; a window before anything logged has zeros, no change.
    other = build_report([full], since=NOW - DAY, compare=(NOW - 9 * DAY, NOW - 8 * DAY))
    assert other["comparison"]["figures"][0]["previous"] > 0
    empty = build_report([full], compare=(NOW - 900 * DAY, NOW - 800 * DAY))
    assert empty["comparison"]["figures"][0]["previous"] == 0
    assert empty["comparison"]["figures"][0]["change"] is None
