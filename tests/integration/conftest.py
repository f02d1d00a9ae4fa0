"""Fixtures for SDK integration tests: a real daemon on a temporary root, real workers.

- ``shared_project`` (session): one project folder and daemon shared by the tests that only
  run flows and read them back; tests find their runs through ``--run-id-file``.
- ``fresh_project`` (per test): its own folder and daemon, for tests about the daemon
  itself or about what a root holds.

Flows are run as a user runs them: ``python <flow file> ...`` in the project folder, with
``POLYFLOW_ROOT`` pointing at the project's root. In-process client reads go through
``project.client_env()``, which points this process at the same root.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

FLOWS = Path(__file__).parent / "flows"
"""The test flows."""

DEFAULT_USER = "tester"
"""The user every run is recorded under unless a test says otherwise."""

_RUN_ID_RE = re.compile(r"Workflow starting \(run-id (\w+)\)")


@dataclass
class FlowResult:
    """The outcome of one ``python flow.py ...`` process."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """Standard output and standard error together."""
        return self.stdout + self.stderr

    @property
    def run_id(self) -> str | None:
        """The run id printed at ``Workflow starting``, if any."""
        match = _RUN_ID_RE.search(self.stderr)
        return match.group(1) if match else None

    def describe(self) -> str:
        """Everything about the process, for assertion messages."""
        return (
            f"$ {' '.join(self.args)}\nexit status {self.returncode}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )

    def assert_ok(self) -> FlowResult:
        """Fail the test unless the process exited 0."""
        assert self.returncode == 0, self.describe()
        return self


class FlowProject:
    """A folder with its own ``.polyflow`` root, in which flows run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self._counter = 0

    @property
    def root(self) -> Path:
        """The project's root folder."""
        return self.path / ".polyflow"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of processes run in the project."""
        env = dict(os.environ)
        for name in list(env):
            if name.startswith(("POLYFLOW_RUN_", "POLYFLOW_CORE_", "POLYFLOW_NAMESPACE")):
                del env[name]
        env["POLYFLOW_ROOT"] = str(self.root)
        env["POLYFLOW_USER"] = DEFAULT_USER
        env["POLYFLOW_DAEMON_IDLE_TIMEOUT"] = "300"
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra or {})
        return env

    def flow_args(self, flow: str, *args: str) -> list[str]:
        """The command line that runs a test flow."""
        return [sys.executable, str(FLOWS / flow), *args]

    def run_flow(
        self,
        flow: str,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 180,
    ) -> FlowResult:
        """Run ``python <flows>/<flow> <args>`` in the project and capture its output."""
        command = self.flow_args(flow, *args)
        proc = subprocess.run(
            command,
            cwd=self.path,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return FlowResult(command, proc.returncode, proc.stdout, proc.stderr)

    def run_id_file(self) -> Path:
        """A new path for ``--run-id-file``."""
        self._counter += 1
        return self.path / f"run-id-{self._counter}-{time.monotonic_ns()}"

    def run_flow_ok(self, flow: str, *args: str, env: dict[str, str] | None = None) -> str:
        """Run a flow that must succeed; return its run id (read from ``--run-id-file``)."""
        id_file = self.run_id_file()
        result = self.run_flow(flow, "run", "--run-id-file", str(id_file), *args, env=env)
        result.assert_ok()
        return id_file.read_text().strip()

    def start_flow(
        self, flow: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start ``python <flow> <args>`` without waiting for it."""
        return subprocess.Popen(
            self.flow_args(flow, *args),
            cwd=self.path,
            env=self.env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def polyflow(self, *args: str, timeout: float = 60) -> FlowResult:
        """Run the ``polyflow`` console script in the project."""
        script = Path(sys.executable).parent / "polyflow"
        command = [str(script), *args]
        proc = subprocess.run(
            command,
            cwd=self.path,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return FlowResult(command, proc.returncode, proc.stdout, proc.stderr)

    def daemon_pid(self) -> int | None:
        """The pid in the root's ``daemon.pid``, if any."""
        try:
            return int((self.root / "daemon.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop_daemon(self) -> None:
        """Stop the project's daemon, if one runs, and wait for it to go."""
        pid = self.daemon_pid()
        if pid is None:
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
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    @contextlib.contextmanager
    def client_env(self, user: str = DEFAULT_USER) -> Iterator[None]:
        """Point this process's client API at the project's daemon, as ``user``."""
        from polyflow import _daemon, _transport
        from polyflow.client import _namespace

        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env({"POLYFLOW_USER": user}))
        _daemon.reset_client()
        _namespace.default_namespace()
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)
            _daemon.reset_client()
            _namespace.default_namespace()
            _transport.close_all_channels()


@pytest.fixture(scope="session", autouse=True)
def _sigint_reaches_flows() -> None:
    """Tests interrupt flows with SIGINT, as Ctrl-C does. A test run started in the
    background by a script (``./dev test &``) ignores SIGINT, and an ignored signal stays
    ignored in every child across ``exec``: the flows would never see it. Handled signals
    are reset to their default in children, so handling it here gives them Ctrl-C back."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="module", autouse=True)
def _no_stray_core(request: pytest.FixtureRequest) -> Iterator[None]:
    """In the SDK's test modules, make client calls outside ``client_env()`` fail loudly.

    Without it a stray call (say, a lazily loaded value read after the block) would find
    or create a ``.polyflow`` root in the current folder (the repository) and start a
    daemon there. Other modules under this folder (the core's) are left alone.
    """
    name = request.module.__name__.rpartition(".")[2]
    if not name.startswith(("test_cli_", "test_client_")):
        yield
        return
    saved = os.environ.get("POLYFLOW_CORE_ADDRESS")
    os.environ["POLYFLOW_CORE_ADDRESS"] = "unix:/nonexistent/polyflow-tests-use-client-env.sock"
    yield
    if saved is None:
        os.environ.pop("POLYFLOW_CORE_ADDRESS", None)
    else:
        os.environ["POLYFLOW_CORE_ADDRESS"] = saved


@pytest.fixture(scope="session")
def shared_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowProject]:
    """One project (and daemon) for the whole session."""
    project = FlowProject(tmp_path_factory.mktemp("shared") / "project")
    yield project
    project.stop_daemon()


@pytest.fixture
def fresh_project(tmp_path: Path) -> Iterator[FlowProject]:
    """A project of its own, whose daemon is stopped at the end of the test."""
    project = FlowProject(tmp_path / "project")
    yield project
    project.stop_daemon()
