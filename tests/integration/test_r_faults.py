"""An R worker dies with its daemon, as Python workers do: ``kill -9`` of the daemon while an
R step runs leaves no R process behind (it is started through ``setpriv --pdeathsig``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from r_support import RSetup, r_setup, stop_daemon

if TYPE_CHECKING:
    from tests.integration.conftest import FlowProject

pytestmark = pytest.mark.slow

R_FLOW = """
library(polyflow)

flow <- pf_flow("RWaitFlow") |>
  pf_step("start", function(self) {
    writeLines(as.character(Sys.getpid()), file.path(Sys.getenv("PF_FAULT_DIR"), "r.pid.tmp"))
    file.rename(file.path(Sys.getenv("PF_FAULT_DIR"), "r.pid.tmp"),
                file.path(Sys.getenv("PF_FAULT_DIR"), "r.pid"))
    Sys.sleep(600)
  }, next_step = "end") |>
  pf_step("end", function(self) NULL)

pf_main(flow)
"""


@pytest.fixture(scope="module")
def r(tmp_path_factory: pytest.TempPathFactory) -> RSetup:
    return r_setup(tmp_path_factory)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped yet, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="util-linux setpriv is missing")
def test_kill_9_of_the_daemon_ends_a_running_r_worker(
    r: RSetup, fresh_project: FlowProject, tmp_path: Path
) -> None:
    project = fresh_project.path
    flow = project / "wait.R"
    flow.write_text(R_FLOW)
    fault = tmp_path / "fault"
    fault.mkdir()
    env = {**r.env(project), "PF_FAULT_DIR": str(fault)}
    proc = subprocess.Popen(
        [r.rscript, str(flow), "run"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker = 0
    try:
        _wait_for(lambda: (fault / "r.pid").exists() or proc.poll() is not None, 120, "r.pid")
        assert proc.poll() is None, proc.communicate()
        worker = int((fault / "r.pid").read_text().strip())
        assert _alive(worker)
        daemon = int((fresh_project.root / "daemon.pid").read_text().strip())
        os.kill(daemon, signal.SIGKILL)
        _wait_for(lambda: not _alive(worker), 20, f"the R worker {worker} to end with its daemon")
    finally:
        if worker and _alive(worker):
            os.kill(worker, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        stop_daemon(fresh_project.root)
