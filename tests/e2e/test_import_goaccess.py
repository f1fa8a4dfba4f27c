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
