"""The two systems under test: how to install them, prepare a project and time one run.

Every timed run happens in a fresh temporary project folder. Wall time is measured around
the ``python flow.py run`` process; CPU time is that process's and its children's
(``RUSAGE_CHILDREN``), plus, for Polyflow, the CPU the daemon and the processes it started
spent meanwhile (read from ``/proc``: the daemon is not our child, it detaches).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = Path(__file__).resolve().parent / "workloads"
METAFLOW_VERSION = "2.19.39"
METAFLOW_VENV = REPO / ".cache" / f"metaflow-{METAFLOW_VERSION}"
POLYFLOW_PYTHON = Path(sys.executable)

TMP = os.environ.get("POLYFLOW_BENCH_TMP") or None
"""Where project folders are made (default: the system's temporary folder)."""

_IMPORT = re.compile(r"^(\s*)from metaflow import ", re.MULTILINE)
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class RunFailed(RuntimeError):
    """A flow run (or another benchmark process) exited with an error."""


@dataclass
class Measurement:
    """One timed run."""

    wall: float
    """Seconds of wall time."""
    cpu: float
    """Seconds of CPU time (user + system) of every process involved."""
    extra: dict[str, float] = field(default_factory=dict)
    """Other numbers (e.g. the daemon's peak RSS)."""


def rewrite_for_polyflow(source: str) -> str:
    """The Polyflow copy of a workload: only the import line changes."""
    rewritten, count = _IMPORT.subn(r"\1from polyflow import ", source)
    if count == 0:
        raise ValueError("the workload has no 'from metaflow import' line")
    return rewritten


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + "\n" + proc.stderr).strip().splitlines()[-30:])
        raise RunFailed(f"{what} exited with code {proc.returncode}:\n{tail}")


def timed(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float, what: str
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Run a process to its end; returns (wall seconds, CPU seconds, the process)."""
    cpu0 = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(
        list(argv),
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu0
    _check(proc, what)
    return wall, cpu, proc


# --- /proc helpers ----------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    return raw[raw.rfind(")") + 2 :].split()


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live descendants, with the children they reaped."""
    total = 0
    for member in _descendants(pid):
        fields = _stat_fields(member)
        if fields is None:
            continue
        # utime, stime, cutime, cstime are fields 14-17 (1-based), 11-14 after the name.
        total += sum(int(value) for value in fields[11:15])
    return total / _CLK_TCK


def peak_rss_kib(pid: int) -> float:
    """VmHWM (peak resident set) of a process, in KiB; 0 when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


# --- the systems ------------------------------------------------------------------------------
class System:
    """A workflow system under test."""

    name = ""
    label = ""

    @property
    def python(self) -> Path:
        """Its interpreter."""
        raise NotImplementedError

    def available(self) -> bool:
        """Whether its interpreter exists."""
        return self.python.exists()

    def env(self, project: Path) -> dict[str, str]:
        """Environment of every process run in ``project``."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("POLYFLOW_", "METAFLOW_", "BENCH_"))
        }
        env["USERNAME"] = "bench"
        env["USER"] = env.get("USER", "bench")
        return env

    def flow_source(self, workload_file: str) -> str:
        """The workload's source as this system runs it."""
        return (WORKLOADS / workload_file).read_text()

    def new_project(self, workload_file: str) -> tuple[Path, Path]:
        """A fresh project folder holding the workload; returns (folder, flow file)."""
        project = Path(tempfile.mkdtemp(prefix=f"pf-bench-{self.name}-", dir=TMP))
        flow = project / workload_file
        flow.write_text(self.flow_source(workload_file))
        return project, flow

    def cleanup(self, project: Path) -> None:
        """Remove a project folder."""
        shutil.rmtree(project, ignore_errors=True)

    def run_flow(
        self,
        project: Path,
        flow: Path,
        args: Sequence[str],
        env_extra: Mapping[str, str],
        *,
        timeout: float,
    ) -> Measurement:
        """Time ``python flow run ARGS`` in ``project``."""
        env = {**self.env(project), **env_extra}
        wall, cpu, _ = timed(
            [str(self.python), str(flow), "run", *args],
            cwd=project,
            env=env,
            timeout=timeout,
            what=f"{self.label} {flow.name} run",
        )
        return Measurement(wall, cpu)

    def python_call(
        self, project: Path, argv: Sequence[str], env_extra: Mapping[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python ARGV`` in ``project`` (untimed helper)."""
        env = {**self.env(project), **env_extra}
        proc = subprocess.run(
            [str(self.python), *argv],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        _check(proc, f"{self.label} python {' '.join(argv)[:60]}")
        return proc


class Metaflow(System):
    """Metaflow, local metadata and datastore, in its own virtual environment."""

    name = "metaflow"
    label = f"Metaflow {METAFLOW_VERSION}"

    @property
    def python(self) -> Path:
        return METAFLOW_VENV / "bin" / "python"

    def env(self, project: Path) -> dict[str, str]:
        env = super().env(project)
        home = project / ".metaflow-home"  # no user configuration: pure local defaults
        home.mkdir(exist_ok=True)
        env["METAFLOW_HOME"] = str(home)
        env["METAFLOW_DEFAULT_METADATA"] = "local"
        env["METAFLOW_DEFAULT_DATASTORE"] = "local"
        env["METAFLOW_DATASTORE_SYSROOT_LOCAL"] = str(project)
        return env

    def install(self, numpy_version: str) -> None:
        """Create the virtualenv with Metaflow (and numpy, for the array workload)."""
        if not self.python.exists():
            print(f"installing Metaflow {METAFLOW_VERSION} into {METAFLOW_VENV} ...", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(METAFLOW_VENV)], check=True)
            subprocess.run(
                [str(self.python), "-m", "pip", "install", "-q", f"metaflow=={METAFLOW_VERSION}"],
                check=True,
            )
        has_numpy = subprocess.run(
            [str(self.python), "-c", "import numpy"], capture_output=True
        ).returncode
        if has_numpy != 0 and numpy_version:
            print(f"installing numpy {numpy_version} into {METAFLOW_VENV} ...", flush=True)
            subprocess.run(
                [str(self.python), "-m", "pip", "install", "-q", f"numpy=={numpy_version}"],
                check=True,
            )


class Polyflow(System):
    """Polyflow with its local daemon (SQLite metadata, local store), this virtualenv."""

    name = "polyflow"
    label = "Polyflow"

    @property
    def python(self) -> Path:
        return POLYFLOW_PYTHON

    def flow_source(self, workload_file: str) -> str:
        return rewrite_for_polyflow(super().flow_source(workload_file))

    def env(self, project: Path) -> dict[str, str]:
        env = super().env(project)
        env["POLYFLOW_ROOT"] = str(project / ".polyflow")
        env["POLYFLOW_DAEMON_IDLE_TIMEOUT"] = "300"
        return env

    def _cli(self, project: Path, *args: str) -> None:
        proc = subprocess.run(
            [str(self.python), "-c", "from polyflow._cli.main import main; main()", *args],
            cwd=project,
            env=self.env(project),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        _check(proc, f"polyflow {' '.join(args)}")

    settle = 3.0
    """Most seconds given to a daemon just started to finish starting (its worker template
    imports the SDK and warms up): until its processes stop using CPU."""

    def start_daemon(self, project: Path) -> None:
        """Start the project's daemon and wait until it is idle (at most :attr:`settle`)."""
        self._cli(project, "daemon", "start")
        pid = self.daemon_pid(project)
        deadline = time.monotonic() + self.settle
        last = tree_cpu(pid) if pid else 0.0
        while pid and time.monotonic() < deadline:
            time.sleep(0.1)
            now = tree_cpu(pid)
            if now == last:
                return
            last = now

    def stop_daemon(self, project: Path) -> None:
        """Stop the project's daemon (when one runs)."""
        if (project / ".polyflow").exists():
            self._cli(project, "daemon", "stop")

    def daemon_pid(self, project: Path) -> int | None:
        """The pid of the project's daemon, when it runs."""
        try:
            pid = int((project / ".polyflow" / "daemon.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def run_flow(
        self,
        project: Path,
        flow: Path,
        args: Sequence[str],
        env_extra: Mapping[str, str],
        *,
        timeout: float,
    ) -> Measurement:
        """Time one run; add the daemon's CPU (and peak RSS) to the client's."""
        pid = self.daemon_pid(project)
        before = tree_cpu(pid) if pid else 0.0
        measured = super().run_flow(project, flow, args, env_extra, timeout=timeout)
        pid = pid or self.daemon_pid(project)  # a cold run started the daemon itself
        if pid:
            # Let the run's worker processes be reaped, so their CPU is counted.
            time.sleep(0.2)
            measured.cpu += tree_cpu(pid) - before
            measured.extra["daemon_peak_rss_mib"] = peak_rss_kib(pid) / 1024
        return measured

    def cleanup(self, project: Path) -> None:
        try:
            self.stop_daemon(project)
        finally:
            super().cleanup(project)
