"""``import`` against GoAccess, the reference reader of combined logs: one generated log of tens
of thousands of varied lines gives the same totals, status counts, hits and bytes per path, and
404s in the log database as in GoAccess's JSON report (and as in what was generated)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess

import pytest
from accesslogs import (
    database_summary,
    expected_summary,
    generate,
    goaccess_report,
    goaccess_summary,
    write_log,
)
from support import BIN

pytestmark = pytest.mark.skipif(shutil.which("goaccess") is None, reason="needs goaccess")

EXE = str(BIN / "asgi-log-to-sqlite")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("goaccess")
    entries = generate(40_000, seed=21, health_checks=0.01)
    log = folder / "access.log"
    write_log(log, entries)
    write_log(folder / "access.log.gz", entries, compress=True)
    return folder, entries, goaccess_summary(goaccess_report(log, folder / "report.json"))


def import_into(db, *args) -> str:
    process = subprocess.run([EXE, "import", *map(str, args), str(db)], capture_output=True,
                             text=True, timeout=300, check=False)
    assert process.returncode == 0, process.stderr
    return process.stdout


def test_the_imported_log_says_what_goaccess_says(generated):
    folder, entries, goaccess = generated
    assert goaccess == expected_summary(entries)  # GoAccess read what was generated
    assert goaccess.total == 40_000 and len(goaccess.paths) > 1000
    db = folder / "kept.db"
    import_into(db, folder / "access.log.gz", "--keep-health-checks")
    imported = database_summary(db)
    assert imported.total == goaccess.total
    assert imported.statuses == goaccess.statuses
    assert imported.not_found == goaccess.not_found
    assert imported.paths == goaccess.paths
    top = sorted(goaccess.paths.items(), key=lambda item: -item[1][0])[:20]
    assert [(path, imported.paths[path]) for path, _ in top] == top


def test_health_checks_are_left_out_and_counted(generated):
    folder, _, goaccess = generated
    db = folder / "default.db"
    output = import_into(db, folder / "access.log")
    health = goaccess.paths["/healthz"][0]
    assert health > 100
    assert f"left out: {health:,} health check(s)" in output
    imported = database_summary(db)
    assert imported.total == goaccess.total - health
    assert "/healthz" not in imported.paths
    conn = sqlite3.connect(db)
    try:
        counted = conn.execute(
            "SELECT sum(count) FROM excluded_requests WHERE reason = 'health_check'").fetchone()
    finally:
        conn.close()
    assert counted == (health,)
    assert os.path.getsize(db) > 0


def test_the_report_of_the_imported_log_says_what_goaccess_says(generated):
    """What ``report`` shows of the imported log: total, status codes, hits and bytes of the
    top paths, and 404s, equal to GoAccess's on the same lines."""
    import json

    folder, _, goaccess = generated
    db = folder / "reported.db"
    import_into(db, folder / "access.log", "--keep-health-checks")
    process = subprocess.run([EXE, "report", str(db), "--format", "json", "--limit", "100000"],
                             capture_output=True, text=True, timeout=300, check=False)
    assert process.returncode == 0, process.stderr
    report = json.loads(process.stdout)
    assert report["summary"]["requests"] == goaccess.total
    assert report["summary"]["bytes_sent"] == sum(size for _, size in goaccess.paths.values())
    assert {row["status"]: row["requests"] for row in report["statuses"]} == goaccess.statuses
    paths = {row["path"]: (row["requests"], row["bytes"]) for row in report["top_paths"]}
    assert paths == {path: figures for path, figures in goaccess.paths.items() if path is not None}
    # Most requested first (a request line with no path is GoAccess's alone).
    assert [row["requests"] for row in report["top_paths"]] == sorted(
        (hits for path, (hits, _) in goaccess.paths.items() if path is not None), reverse=True)
    assert {row["path"]: row["requests"] for row in report["not_found"]} == goaccess.not_found
