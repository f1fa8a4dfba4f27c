"""The middleware in real Pyodide (the `pyodide` npm package under Node.js): no thread can start
there, so the inline writer runs on Pyodide's event loop; Pyodide's own sqlite3 stores the rows.

Skipped only where Node.js is absent. The npm package is installed into tests/pyodide by
``.ci/run`` (``npm ci``), or by this test when it is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from support import ROOT

HERE = ROOT / "tests" / "pyodide"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


@pytest.fixture(scope="module")
def pyodide_package():
    if not (HERE / "node_modules" / "pyodide" / "pyodide.asm.wasm").exists():
        npm = shutil.which("npm")
        assert npm, "Node.js is installed without npm: cannot install the pyodide package"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True,
                       timeout=600, capture_output=True)
    return HERE


@pytest.mark.timeout(300)
def test_the_middleware_runs_in_pyodide(pyodide_package):
    done = subprocess.run(
        ["node", "run.mjs", str(ROOT / "src"), "middleware_in_pyodide.py"],
        cwd=pyodide_package, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    result = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])
    assert result["platform"] == "emscripten"
    assert result["thread_started"] is False  # Pyodide cannot start threads
    # Batched by default: nothing is written until the event loop runs the writer's slices.
    assert result["batched_writer"] == "inline"
    assert result["batched_before_the_loop_ran"] == 0
    assert result["batched_after"] == 20
    assert result["query"] == "?api_key=REDACTED&x=1"
    assert result["each"] == [1, 2, 3, 4, 5]  # flush="response"
    assert result["lifespan"] == [0, 3]  # the shutdown commits what waits
    assert result["stdout_writer"] == "inline"
    assert result["threads"] == 1
    printed = [line for line in lines if line.startswith('{"asgi_log_to_sqlite"')]
    assert len(printed) == 1 and '"path":"/stdout"' in printed[0]
