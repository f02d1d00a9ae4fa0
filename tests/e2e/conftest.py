"""Fixtures for end-to-end tests: a project folder with its own root, and flow runs in it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Project:
    """A folder with its own `.polyflow` root; flows run there as a user would run them."""

    path: Path

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["POLYFLOW_ROOT"] = str(self.path / ".polyflow")
        env.pop("POLYFLOW_CORE_ADDRESS", None)
        env["POLYFLOW_DAEMON_IDLE_TIMEOUT"] = "120"
        return env

    def run(
        self, *args: str, timeout: float = 240, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Runs `python <args>` in the project folder and returns its output."""
        proc = subprocess.run(
            [sys.executable, *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    def python(self, code: str) -> str:
        """Runs a Python snippet in the project (e.g. client API reads); returns its stdout."""
        return self.run("-c", code).stdout

    def stop_daemon(self) -> None:
        """Stops the project's daemon, if one runs, and waits for it to go."""
        pid_file = self.path / ".polyflow" / "daemon.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A fresh project folder whose daemon is stopped at the end of the test."""
    proj = Project(tmp_path / "project")
    proj.path.mkdir()
    yield proj
    proj.stop_daemon()
