"""``polyflow daemon start|status|stop``, ``polyflow version`` and finding or starting the
daemon from a client."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from polyflow import _daemon

if TYPE_CHECKING:
    from tests.integration.conftest import FlowProject

pytestmark = pytest.mark.slow


def _field(output: str, name: str) -> str:
    for line in output.splitlines():
        key, _, value = line.strip().partition(":")
        if key == name:
            return value.strip()
    raise AssertionError(f"no {name!r} in:\n{output}")


def test_version(fresh_project: FlowProject) -> None:
    result = fresh_project.polyflow("version").assert_ok()
    assert result.stdout.startswith("polyflow ")


def test_start_status_stop(fresh_project: FlowProject) -> None:
    status = fresh_project.polyflow("daemon", "status")
    assert status.returncode == 1 and "not running" in status.stdout, status.describe()

    started = fresh_project.polyflow("daemon", "start").assert_ok()
    assert "running" in started.stdout
    pid = int(_field(started.stdout, "pid"))
    address = _field(started.stdout, "address")
    assert address.startswith("unix:")
    root = fresh_project.root.resolve()
    assert Path(_field(started.stdout, "root")).resolve() == root

    # The root is private and so is the socket.
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    socket_path = Path(address.removeprefix("unix:"))
    info = os.stat(socket_path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600

    status = fresh_project.polyflow("daemon", "status").assert_ok()
    assert int(_field(status.stdout, "pid")) == pid
    assert _field(status.stdout, "address") == address
    assert _field(status.stdout, "version")

    again = fresh_project.polyflow("daemon", "start").assert_ok()
    assert int(_field(again.stdout, "pid")) == pid  # started once only

    stopped = fresh_project.polyflow("daemon", "stop").assert_ok()
    assert "stopped" in stopped.stdout and str(pid) in stopped.stdout
    # The daemon has exited: gone, or a zombie its reaper (init or a subreaper) has not
    # collected yet, which `stop` rightly counts as stopped.
    assert not _daemon._pid_alive(pid)
    status = fresh_project.polyflow("daemon", "status")
    assert status.returncode == 1 and "not running" in status.stdout
    assert "not running" in fresh_project.polyflow("daemon", "stop").assert_ok().stdout


def test_a_flow_run_starts_the_daemon(fresh_project: FlowProject) -> None:
    assert not fresh_project.root.exists()
    fresh_project.run_flow("hello.py", "run").assert_ok()
    assert (fresh_project.root / "daemon.log").exists()
    assert fresh_project.polyflow("daemon", "status").returncode == 0


def test_root_is_found_from_a_subfolder(fresh_project: FlowProject) -> None:
    fresh_project.polyflow("daemon", "start").assert_ok()
    sub = fresh_project.path / "deep" / "er"
    sub.mkdir(parents=True)
    env = fresh_project.env()
    del env["POLYFLOW_ROOT"]
    script = Path(sys.executable).parent / "polyflow"
    proc = subprocess.run(
        [str(script), "daemon", "status"], cwd=sub, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert Path(_field(proc.stdout, "root")).resolve() == fresh_project.root.resolve()


def test_racing_clients_share_one_daemon(fresh_project: FlowProject) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: fresh_project.polyflow("daemon", "start"), range(4)))
    pids = {int(_field(r.assert_ok().stdout, "pid")) for r in results}
    assert len(pids) == 1


def test_daemon_that_cannot_start_reports_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polyflow import _daemon
    from polyflow.exceptions import DaemonError

    failing = "import sys\nsys.stderr.write('simulated start-up failure\\n')\nsys.exit(3)\n"
    monkeypatch.setattr(_daemon, "_LAUNCHER", failing)
    root = tmp_path / ".polyflow"
    with pytest.raises(DaemonError) as caught:
        _daemon.ensure_daemon(root, timeout=1.5)
    assert "simulated start-up failure" in str(caught.value)
    assert "daemon.log" in str(caught.value)


def test_deep_root_uses_a_short_private_socket(fresh_project: FlowProject) -> None:
    deep = fresh_project.path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    env = fresh_project.env({"POLYFLOW_ROOT": str(deep / ".polyflow")})
    script = Path(sys.executable).parent / "polyflow"

    def polyflow(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args], cwd=deep, env=env, capture_output=True, text=True, timeout=60
        )

    started = polyflow("daemon", "start")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        socket_path = Path(_field(started.stdout, "address").removeprefix("unix:"))
        assert len(os.fsencode(socket_path)) <= 100
        assert not str(socket_path).startswith(str(deep))
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(socket_path.parent).st_mode) == 0o700
        run = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "flows" / "hello.py"), "run"],
            cwd=deep,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
    finally:
        polyflow("daemon", "stop")
