"""Pre-forked Python workers: tasks fork from a zygote, and each stays isolated.

A task's crash, globals and memory are its own; its output is captured per task; its exit
status (code, or the killing signal) is reported exactly as for a spawned worker. The first
tests run flows through a real daemon; the last ones drive the local executor directly, to
launch a crashing task and its siblings into the same zygote.
"""

from __future__ import annotations

import ctypes.util
import os
import queue
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.conftest import FLOWS

if TYPE_CHECKING:
    from polyflow_core.domain.execution import TaskOutcome
    from polyflow_core.executors.base import ExitStatus, LaunchRequest, TaskKey
    from polyflow_core.executors.local import LocalExecutor

    from tests.integration.conftest import FlowProject

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pools need Linux"),
]


def _tasks(project: FlowProject, pathspec: str) -> list[dict[str, Any]]:
    """The artifacts of a step's tasks, by task, in foreach order."""
    from polyflow import Step

    with project.client_env():
        tasks = sorted(Step(pathspec), key=lambda task: task.index or 0)
        return [{a.id: a.data for a in task} for task in tasks]


def test_tasks_fork_from_one_zygote_and_keep_their_globals_and_memory(
    fresh_project: FlowProject,
) -> None:
    run_id = fresh_project.run_flow_ok("forked_isolation.py", "--max-workers", "1")
    work = _tasks(fresh_project, f"ForkedIsolationFlow/{run_id}/work")
    assert [task["seen"][-1] for task in work] == ["mutate", "leak", "check", "check"]
    for task in work:
        assert "polyflow._worker.zygote" in task["parent"], task
        # Forked, not spawned (numpy's OpenBLAS thread does not stop the zygote forking).
        assert task["argv0"].endswith(os.path.join("_worker", "zygote.py")), task
        # Module state as the module left it: no sibling's append is visible.
        assert task["seen"] == [task["seen"][-1]], task
    assert len({task["pid"] for task in work}) == 4
    # numpy's global random state is seeded anew in each child, as in a fresh interpreter.
    assert len({task["random"] for task in work}) == 4
    leak, checks = work[1], work[2:]
    assert leak["rss_mib"] > 256
    for task in checks:  # the 256 MiB died with the task that allocated them
        assert task["rss_mib"] < 200, task
        assert task["parent_rss_mib"] < 200, task


def test_output_is_captured_per_task(fresh_project: FlowProject) -> None:
    run_id = fresh_project.run_flow_ok("forked_isolation.py")
    from polyflow import Step

    with fresh_project.client_env():
        for task in Step(f"ForkedIsolationFlow/{run_id}/work"):
            assert task.stdout.strip() == f"task {task['seen'].data[-1]} in {task['pid'].data}"


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("kill9", "killed by signal 9 (SIGKILL) before reporting its outcome"),
        ("segv", "killed by signal 11 (SIGSEGV) before reporting its outcome"),
        ("exit3", "worker exited with code 3 without reporting its outcome"),
    ],
)
def test_exit_status_is_reported_as_for_a_spawned_worker(
    shared_project: FlowProject, mode: str, message: str
) -> None:
    result = shared_project.run_flow("forked_crash.py", "run", "--mode", mode)
    assert result.returncode != 0, result.describe()
    assert message in result.output, result.describe()
    assert f"mode {mode}" in result.output, result.describe()


def test_pools_can_be_turned_off_per_run(fresh_project: FlowProject) -> None:
    run_id = fresh_project.run_flow_ok(
        "forked_isolation.py", env={"POLYFLOW_FORK_WORKERS": "0"}
    )
    for task in _tasks(fresh_project, f"ForkedIsolationFlow/{run_id}/work"):
        assert "polyflow._worker.zygote" not in task["parent"], task
        assert "polyflow_core" in task["parent"], task
        assert task["argv0"].endswith(os.path.join("_worker", "__main__.py")), task


_PYTHON_THREAD = """
import threading
threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
"""

# A GNU OpenMP thread team started at import, as a module computing with an OpenMP-built
# library would; the step then runs a parallel region again, which hangs in a forked child.
_OPENMP_TEAM = """
import ctypes
_GOMP = ctypes.CDLL("libgomp.so.1")
_REGION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda data: None)
_GOMP.GOMP_parallel(_REGION, None, 2, 0)
"""


@pytest.mark.parametrize(
    "module_code", [_PYTHON_THREAD, _OPENMP_TEAM], ids=["python-thread", "openmp-team"]
)
def test_a_flow_module_that_starts_unsafe_threads_is_not_forked(
    fresh_project: FlowProject, tmp_path: Path, module_code: str
) -> None:
    source = (FLOWS / "forked_crash.py").read_text().replace(
        "STATE: list[str] = []", "STATE: list[str] = []\n" + module_code
    )
    if module_code is _OPENMP_TEAM:
        if ctypes.util.find_library("gomp") is None:
            pytest.skip("libgomp is not installed")
        source = source.replace(
            "    def start(self):\n",
            "    def start(self):\n        _GOMP.GOMP_parallel(_REGION, None, 2, 0)\n",
        )
        assert "_GOMP.GOMP_parallel(_REGION, None, 2, 0)\n        " in source
    flow = tmp_path / "threaded_flow.py"
    flow.write_text(source)
    id_file = fresh_project.run_id_file()
    result = fresh_project.run_flow(str(flow), "run", "--run-id-file", str(id_file))
    assert result.returncode == 0, result.describe()
    assert "mode ok" in result.output
    (start,) = _tasks(fresh_project, f"ForkedCrashFlow/{id_file.read_text().strip()}/start")
    assert start["argv0"].endswith(os.path.join("polyflow", "_worker", "__main__.py")), start


# --- the executor, driven directly ------------------------------------------------------------
class _Recorder:
    """Collects what the executor reports."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []
        self.events: queue.Queue[tuple[str, str, Any]] = queue.Queue()

    def on_output(self, key: TaskKey, stream: str, line: str) -> None:
        self.lines.append((key.task, stream, line))

    def on_exit(self, key: TaskKey, status: ExitStatus) -> None:
        self.events.put(("exit", key.task, status))

    def on_report(self, key: TaskKey, outcome: TaskOutcome) -> None:
        self.events.put(("report", key.task, outcome))

    def until_exit(self, task: str, timeout: float = 60) -> tuple[ExitStatus, Any]:
        """Wait for a task's exit; returns it with the task's report (None if it sent none)."""
        report = None
        deadline = time.monotonic() + timeout
        while True:
            kind, which, value = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            assert which == task, f"expected news of task {task}, got {kind} of {which}"
            if kind == "report":
                report = value
            else:
                return value, report


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[tuple[LocalExecutor, _Recorder]]:
    from polyflow_core.executors.local import LocalExecutor
    from polyflow_core.paths import RootLayout

    layout = RootLayout(tmp_path / ".polyflow")
    local = LocalExecutor(layout)
    recorder = _Recorder()
    local.start(recorder)
    yield local, recorder
    local.shutdown()


def _requests(tmp_path: Path) -> Any:
    """A function making the LaunchRequest of ``ForkedCrashFlow``'s start task in a given
    mode (all of one run, so they share one zygote)."""
    from polyflow._authoring.graph import extract_graph
    from polyflow._codecs import encode
    from polyflow._wire_graph import definition_to_proto
    from polyflow._worker.loader import find_flow_class, load_flow_module
    from polyflow.api.common.v1 import graph_pb2
    from polyflow.api.runtime.v1 import message_pb2
    from polyflow_core.datastore.local import LocalBlobStore
    from polyflow_core.executors.base import LaunchRequest, TaskKey

    code_path = tmp_path / "forked_crash_flow.py"
    code_path.write_text((FLOWS / "forked_crash.py").read_text())
    flow_cls = find_flow_class(load_flow_module(str(code_path)), "ForkedCrashFlow")
    graph = definition_to_proto(extract_graph(flow_cls))
    store = LocalBlobStore(tmp_path / ".polyflow" / "store")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("POLYFLOW_")}

    def request(task_id: int, mode: str) -> LaunchRequest:
        encoded = encode(mode)
        info = store.put_bytes(encoded.buffers)
        spec = message_pb2.TaskSpec(
            task=f"flows/ForkedCrashFlow/runs/1/steps/start/tasks/{task_id}",
            flow_name="ForkedCrashFlow",
            run_id="1",
            step_name="start",
            task_id=str(task_id),
            inputs=[
                message_pb2.TaskInput(
                    pathspec="ForkedCrashFlow/1/_parameters/0",
                    step="_parameters",
                    artifacts=[
                        graph_pb2.ArtifactRef(
                            name="mode",
                            digest=info.digest,
                            encoding=encoded.encoding,
                            size_bytes=info.size,
                        )
                    ],
                )
            ],
            graph=graph,
            max_num_splits=100,
            code_path=str(code_path),
            core_address="unix:/nonexistent.sock",
            store=message_pb2.StoreLocation(kind="local", root=str(store.root)),
            parameter_names=["mode"],
        )
        layout_logs = tmp_path / "logs" / str(task_id)
        return LaunchRequest(
            key=TaskKey("ForkedCrashFlow", "1", "start", str(task_id), 0),
            task_spec=spec.SerializeToString(),
            language="python",
            interpreter=sys.executable,
            environment=environment,
            working_directory=str(tmp_path),
            stdout_path=layout_logs / "stdout",
            stderr_path=layout_logs / "stderr",
            max_log_size_bytes=10**6,
        )

    return request


def _value(tmp_path: Path, outcome: Any, name: str) -> Any:
    from polyflow._codecs import decode
    from polyflow_core.datastore.local import LocalBlobStore

    store = LocalBlobStore(tmp_path / ".polyflow" / "store")
    ref = next(a for a in outcome.artifacts if a.name == name)
    return decode(store.get_view(ref.digest), ref.encoding)


def test_a_crashed_task_leaves_its_siblings_alone(
    executor: tuple[LocalExecutor, _Recorder], tmp_path: Path
) -> None:
    local, recorder = executor
    request = _requests(tmp_path)

    crashed = local.launch(request(1, "segv"))
    status, report = recorder.until_exit("1")
    assert status.signal_number == 11 and report is None
    assert status.describe() == "killed by signal 11 (SIGSEGV)"

    sleeper = local.launch(request(2, "sleep"))
    time.sleep(0.3)
    survivor = local.launch(request(3, "ok"))
    status, report = recorder.until_exit("3")
    assert status.exit_code == 0 and report is not None and report.succeeded
    assert report.next_steps == ("end",)
    # The segfaulted task's module-level append never reached its sibling.
    assert _value(tmp_path, report, "seen") == ["ok"]
    assert _value(tmp_path, report, "argv0").endswith(os.path.join("_worker", "zygote.py"))

    local.kill(sleeper)
    status, report = recorder.until_exit("2")
    assert status.signal_number == 9 and report is None

    for handle in (crashed, sleeper, survivor):
        assert getattr(handle, "popen", "absent") is None  # all three ran in the pool
    assert ("1", "stdout", "mode segv") in recorder.lines
    assert ("3", "stdout", "mode ok") in recorder.lines
    assert (tmp_path / "logs" / "3" / "stdout").read_text() == "mode ok\n"
