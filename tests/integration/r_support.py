"""Shared set-up of the R tests (``test_r_*.py``): R, the R package, and project folders.

The R package is installed once per session into a library under pytest's base temporary
folder (``R CMD INSTALL --library``), so the tests never touch the machine's R library;
every R process the tests start (flows, task workers, test runners) finds it through
``R_LIBS``. Tests are skipped when R or the R packages the package needs are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
R_PACKAGE = REPO / "r-package"
R_DEPENDENCIES = ("RProtoBuf", "curl", "jsonlite", "digest", "testthat", "withr")


def rscript() -> str | None:
    """The Rscript on PATH, or None."""
    return shutil.which("Rscript")


def missing_r_packages(executable: str) -> list[str]:
    """The R packages of :data:`R_DEPENDENCIES` that are not installed."""
    names = ", ".join(f'"{name}"' for name in R_DEPENDENCIES)
    expression = (
        f"x <- c({names}); cat(x[!vapply(x, requireNamespace, TRUE, quietly = TRUE)], sep = '\\n')"
    )
    proc = subprocess.run(
        [executable, "-e", expression], capture_output=True, text=True, timeout=120, check=False
    )
    return [line for line in proc.stdout.splitlines() if line.strip()]


def install_r_package(library: Path) -> None:
    """``R CMD INSTALL`` the package into ``library``.

    Raises:
        AssertionError: The installation failed (its output is in the message).
    """
    library.mkdir(parents=True, exist_ok=True)
    r = shutil.which("R")
    assert r is not None, "R is not on PATH"
    proc = subprocess.run(
        [r, "CMD", "INSTALL", "--no-docs", "--no-multiarch", f"--library={library}",
         str(R_PACKAGE)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"R CMD INSTALL failed:\n{proc.stdout}\n{proc.stderr}"


@dataclass
class RSetup:
    """Where the installed R package is, and the environment R processes need."""

    library: Path
    """The R library holding the package."""
    rscript: str
    """The Rscript executable."""

    def env(self, project: Path | None = None) -> dict[str, str]:
        """The environment of an R process: the package's library, this Python for the core,
        and (for a project) its own root and no other core."""
        env = dict(os.environ)
        for name in list(env):
            if name.startswith(("POLYFLOW_RUN_", "POLYFLOW_CORE_", "POLYFLOW_NAMESPACE")):
                del env[name]
        previous = env.get("R_LIBS", "")
        env["R_LIBS"] = f"{self.library}{os.pathsep}{previous}" if previous else str(self.library)
        env["POLYFLOW_PYTHON"] = sys.executable
        env["POLYFLOW_DAEMON_IDLE_TIMEOUT"] = "120"
        env["POLYFLOW_USER"] = "tester"
        env["NOT_CRAN"] = "true"
        env["PYTHONUNBUFFERED"] = "1"
        # The daemon's converter processes and Python workers need this repository's SDK.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if project is not None:
            env["POLYFLOW_ROOT"] = str(project / ".polyflow")
        return env


def r_setup(tmp_path_factory: pytest.TempPathFactory) -> RSetup:
    """Install the R package for the session, or skip when R cannot run it."""
    executable = rscript()
    if executable is None:
        pytest.skip("Rscript is not installed")
    missing = missing_r_packages(executable)
    if missing:
        pytest.skip(f"R packages missing: {', '.join(missing)}")
    library = tmp_path_factory.mktemp("r-library")
    install_r_package(library)
    return RSetup(library=library, rscript=executable)


def stop_daemon(root: Path) -> None:
    """SIGTERM the daemon of ``root`` (read from its pid file) and wait for it to exit."""
    try:
        pid = int((root / "daemon.pid").read_text().strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"polyflow" not in cmdline:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
