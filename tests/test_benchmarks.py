"""The benchmark scripts still run and measure what they say (tiny sizes; no speed is asserted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def run_json(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, check=True,
        cwd=BENCHMARKS,
    ).stdout
    return json.loads(out)


def test_writer_bench_commits_every_record(tmp_path):
    result = run_json("writer_bench.py", "--folder", str(tmp_path), "--n", "500", "--repeats", "1")
    assert result["n"] == 500
    assert result["median_rows_per_s"] > 0
    assert 50 < result["median_bytes_per_request"] < 5000


def test_in_process_bench_logs_every_request(tmp_path):
    db = str(tmp_path / "inprocess.db")
    result = run_json(
        "inprocess.py", "--kind", "wrapped", "--db", db, "--n", "300", "--repeats", "2"
    )
    assert result["rows"] == 600
    assert result["stats"]["dropped_queue_full"] == 0
    assert result["median_cpu_us"] > 0


@pytest.mark.parametrize("kind", ["bare", "wrapped", "discard", "busy-thread"])
def test_server_bench_measures_each_variant(tmp_path, kind):
    sys.path.insert(0, BENCHMARKS)
    try:
        import server_bench
    finally:
        sys.path.remove(BENCHMARKS)
    load = server_bench.Load(None, connections=4)  # loadgen.py: no wrk needed
    try:
        measured = server_bench.serve_and_measure(
            sys.executable, kind, str(tmp_path / "server.db"), load, duration=1.0, warmup=0.3
        )
    finally:
        load.close()
    assert measured["rps"] > 0
    if measured["main_cpu_us"] is not None:  # Linux: per-thread CPU from /proc
        assert measured["main_cpu_us"] > 0
        assert measured["other_cpu_us"] >= 0


def test_capture_bench_times_every_tap():
    result = run_json("capture_bench.py", "--repeats", "1", "--sizes", "16", "--counts", "10")
    assert {r["tap"] for r in result["results"]} == {"request", "response_hash_only",
                                                     "response_kept"}
    assert all(r["ns_per_chunk"] > 0 for r in result["results"])


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk")
def test_capture_server_bench_measures_each_variant():
    result = run_json("capture_server_bench.py", "--quick", "--duration", "1")
    assert set(result["median"]) == {"wrapped", "capture", "capture-responses"}
    for figures in result["median"].values():
        assert figures["rps"] > 0 and figures["p99_ms"] > 0 and figures["inprocess_loop_cpu_us"] > 0


def test_dashboard_benchmark_times_every_chart(tmp_path):
    views = ("24h", "7d", "period=7d&host=example.com")
    out = subprocess.run(
        [sys.executable, "dashboard_benchmark.py", "--rows", "3000", "--repeat", "1",
         "--keep", str(tmp_path / "log.db"), *(f"--view={view}" for view in views)],
        capture_output=True, text=True, timeout=300, check=True, cwd=BENCHMARKS,
    ).stdout
    for view in ("period=24h", "period=7d", "period=7d&host=example.com"):
        assert f"\n{view}: each chart query" in out
    for chart in ("requests", "latency", "top_paths"):
        assert out.count(f"  {chart} ") == 3, out
    assert "failed" not in out  # no query failed
    assert "hourly rollups" in out  # a week of the log reads the rollups
    if os.path.exists("/usr/bin/chromium"):
        assert out.count("dashboard drawn in headless Chromium") == 3


def test_serverless_bench_measures_each_variant(tmp_path):
    result = run_json("serverless_bench.py", "--folder", str(tmp_path), "--n", "60", "--cold", "1")
    assert set(result["per_request_us"]) >= {"bare", "sqlite response inline",
                                              "sqlite batch process", "stdout response inline"}
    assert all(value > 0 for value in result["mangum_us"].values())
    assert len(result["cold_start_ms"]) == 4


@pytest.mark.timeout(300)
def test_report_bench_measures_each_part(tmp_path):
    out = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, "report_benchmark.py", "--rows", "3000", "--repeat", "1", "--routes",
         "2", "--writer-rows", "500", "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=True, cwd=BENCHMARKS,
    )
    result = json.loads(out.read_text())
    for key in ("report_whole", "report_24h", "report_5xx", "report_rollups_year", "cli_help",
                "cli_report_tiny", "writer_rollups"):
        assert key in result, key
    assert result["report_rollups_year"]["hourly_rows"] == 2 * 365 * 24
    assert result["writer_rollups"]["with"] > 0 and result["writer_rollups"]["without"] > 0


def test_postgresql_bench_ingests_into_both_sinks(pg_cluster):
    """The ingest half of postgresql_bench.py (the uvicorn half is server_bench's, above)."""
    sys.path.insert(0, BENCHMARKS)
    try:
        import postgresql_bench
    finally:
        sys.path.remove(BENCHMARKS)
    target = postgresql_bench.postgresql_target(pg_cluster.url("postgres"), "bench_smoke")
    assert postgresql_bench.ingest(target, 500)["rows_per_s"] > 0
    assert postgresql_bench.four_at_once(target, 200) > 0


@pytest.mark.timeout(300)
def test_postgresql_report_bench_times_both_reports(pg_cluster):
    result = run_json("postgresql_report_bench.py", "--rows", "3000", "--repeat", "1",
                      "--url", pg_cluster.base_url)
    for case in ("whole", "24h", "1h", "5xx"):
        assert result[case]["postgresql"]["wall"] > 0 and result[case]["file"]["wall"] > 0
    assert result["whole"]["pull_then_file"]["wall"] > 0
    assert result["plans_1h"] and all("requests_d" in plan for plan in result["plans_1h"])


def test_import_bench_imports_every_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "import_bench.py", "--lines", "3000", "--rounds", "1", "--folder",
         str(tmp_path), "--json", str(tmp_path / "import.json")],
        capture_output=True, text=True, timeout=300, check=True, cwd=BENCHMARKS,
    )
    assert "two processes" in out.stdout
    with open(tmp_path / "import.json") as file:
        summary = json.load(file)["summary"]
    assert set(summary) == {"one process", "two processes", "two processes, gzip"}
    for measured in summary.values():
        assert measured["rows"] == 3000
        assert measured["median_lines_per_s"] > 0
