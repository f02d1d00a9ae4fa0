"""The R package on its own: its copy of the contract, and its testthat suite.

The testthat suite (``r-package/tests/testthat``, which mirrors ``r-package/R``) includes live
tests that run R flows with ``Rscript`` against a real daemon started with this Python.
"""

from __future__ import annotations

import filecmp
import os
import subprocess
from pathlib import Path

import pytest
from r_support import R_PACKAGE, REPO, RSetup, r_setup


@pytest.fixture(scope="module")
def r(tmp_path_factory: pytest.TempPathFactory) -> RSetup:
    """R with the package installed in a private library."""
    return r_setup(tmp_path_factory)


def _proto_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.proto"))


def test_shipped_protos_match_the_contract() -> None:
    """r-package/inst/proto is an exact copy of proto/ (sync: r-package/tools/sync-proto.sh)."""
    contract = REPO / "proto"
    shipped = R_PACKAGE / "inst" / "proto"
    files = _proto_files(contract)
    assert _proto_files(shipped) == files, "run r-package/tools/sync-proto.sh"
    different = [f for f in files if not filecmp.cmp(contract / f, shipped / f, shallow=False)]
    assert not different, f"run r-package/tools/sync-proto.sh; these differ: {different}"


def test_sync_script_check_mode_agrees() -> None:
    """``tools/sync-proto.sh --check`` passes on a synced tree."""
    proc = subprocess.run(
        [str(R_PACKAGE / "tools" / "sync-proto.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_testthat_suite(r: RSetup, tmp_path: Path) -> None:
    """Every testthat test passes (live tests included: this Python runs their daemons)."""
    expression = (
        "library(testthat); library(polyflow); "
        f"res <- test_dir('{R_PACKAGE / 'tests' / 'testthat'}', package = 'polyflow', "
        "load_package = 'installed', reporter = 'summary', stop_on_failure = FALSE); "
        "df <- as.data.frame(res); "
        "cat(sprintf('\\nRESULT failed=%d errors=%d skipped=%d passed=%d\\n', "
        "sum(df$failed), sum(df$error), sum(df$skipped), sum(df$passed)))"
    )
    proc = subprocess.run(
        [r.rscript, "-e", expression],
        cwd=tmp_path,
        env=r.env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = proc.stdout + proc.stderr
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and result, output[-6000:]
    assert "failed=0 errors=0" in result[-1], output[-6000:]
    assert "skipped=0" in result[-1], f"live tests were skipped:\n{output[-6000:]}"


@pytest.mark.slow
def test_r_cmd_check_is_clean(tmp_path: Path) -> None:
    """``R CMD build`` then ``R CMD check --no-manual`` end with Status: OK (no error,
    warning or note). Live tests skip inside the check, as on CRAN."""
    build = subprocess.run(
        ["R", "CMD", "build", str(R_PACKAGE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    tarballs = sorted(tmp_path.glob("polyflow_*.tar.gz"))
    assert len(tarballs) == 1, build.stdout
    check = subprocess.run(
        ["R", "CMD", "check", "--no-manual", tarballs[0].name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "_R_CHECK_FORCE_SUGGESTS_": "false", "NOT_CRAN": ""},
    )
    output = check.stdout + check.stderr
    assert check.returncode == 0, output
    assert "Status: OK" in output, output
