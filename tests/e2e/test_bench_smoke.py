"""The benchmark suite's smoke mode runs to the end and prints its table (no timing asserted:
benchmarks are not tests). Metaflow joins in when its virtualenv exists (``.cache/``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_bench_smoke_mode_completes_and_prints_the_table(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYFLOW_", "METAFLOW_"))}
    env["POLYFLOW_BENCH_TMP"] = str(tmp_path)
    env["POLYFLOW_BENCH_CACHE"] = str(tmp_path / "cache")
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--smoke"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "| workload | Metaflow min / **median** / max | Polyflow" in proc.stdout, output
    for row in ("hello (start", "foreach over 1,000 items", "500 MB numpy array", "client:"):
        assert row in proc.stdout, output
    assert "CPU per task" in proc.stdout
