"""Unit tests of the scheduler's parts: event logs, joins, transition checks, the plugin
registry, the local executor's log pump, and the scheduler itself driven in-process by an
executor that completes tasks at once (for wide foreaches and the retry seam)."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from polyflow_core.datastore.local import LocalBlobStore
from polyflow_core.domain.events import (
    EventHub,
    LogLine,
    RunEventLog,
    RunFinished,
    RunMessage,
    TaskStarted,
)
from polyflow_core.domain.execution import (
    RunOptions,
    RunRequest,
    TaskOutcome,
    WorkerEnvironment,
)
from polyflow_core.domain.graph import validate
from polyflow_core.domain.joins import JoinCollector, JoinError, JoinPlanner
from polyflow_core.domain.model import FlowGraph, Language, StepSpec, Transition, TransitionKind
from polyflow_core.domain.scheduler import RetryPolicy, Scheduler, no_retries
from polyflow_core.domain.transitions import check_transition
from polyflow_core.executors.base import (
    Executor,
    ExecutorListener,
    ExitStatus,
    LaunchRequest,
    TaskHandle,
    TaskKey,
)
from polyflow_core.executors.local import LocalExecutor
from polyflow_core.metadata.base import ArtifactRecord, ForeachFrameRecord, RunState, TaskState
from polyflow_core.metadata.sqlite import SqliteMetadataStore
from polyflow_core.paths import LogStreamName, RootLayout
from polyflow_core.plugins import PluginError, Registry, executors


# --- event log ----------------------------------------------------------------------------------
def test_event_log_numbers_events_and_bounds_log_lines() -> None:
    log = RunEventLog(max_log_lines=3)
    log.append(TaskStarted("F/1/start/1", 0))
    for index in range(10):
        log.append(LogLine("F/1/start/1", 0, "stdout", f"line {index}"))
    log.append(RunMessage("note"))
    events = log.read(0, timeout=0)
    assert events[0].sequence == 1 and isinstance(events[0].payload, TaskStarted)
    lines = [e.payload.text for e in events if isinstance(e.payload, LogLine)]
    assert lines == ["line 7", "line 8", "line 9"]  # the oldest were dropped
    assert isinstance(events[-1].payload, RunMessage) and events[-1].sequence == 12
    assert log.dropped_log_lines == 7
    assert [e.sequence for e in log.read(0, exclude_logs=True, timeout=0)] == [1, 12]
    assert [e.sequence for e in log.read(9, timeout=0)] == [10, 11, 12]
    assert [e.sequence for e in log.read(0, limit=2, timeout=0)] == [1, 9]


def test_event_log_readers_wait_and_the_stream_ends() -> None:
    log = RunEventLog()
    got: list[int] = []

    def reader() -> None:
        got.extend(e.sequence for e in log.read(0, timeout=10))

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.05)
    log.append(TaskStarted("F/1/start/1", 0))
    thread.join(5)
    assert got == [1]
    assert log.read(1, timeout=0.01) == []
    log.append(RunFinished(RunState.SUCCEEDED))
    assert log.append(LogLine("F/1/start/1", 0, "stdout", "late")) is None
    assert log.finished and log.is_done(2)
    started = time.monotonic()
    assert log.read(2, timeout=5) == []  # a finished run does not make readers wait
    assert time.monotonic() - started < 1


def test_event_log_compaction_keeps_order() -> None:
    log = RunEventLog(max_log_lines=10)
    for index in range(5000):
        log.append(LogLine("F/1/a/1", 0, "stdout", str(index)))
    events = log.read(0, limit=100, timeout=0)
    texts = [e.payload.text for e in events if isinstance(e.payload, LogLine)]
    assert texts == [str(i) for i in range(4990, 5000)]


# --- joins and transitions ----------------------------------------------------------------------
def _graph(*steps: StepSpec) -> FlowGraph:
    result = validate(FlowGraph(flow_name="F", steps=steps, language=Language.PYTHON))
    assert result.ok, result.problems
    return result.graph


def _step(name: str, *targets: str, join: bool = False, foreach: str = "") -> StepSpec:
    if not targets:
        transition = Transition()
    elif foreach:
        transition = Transition(TransitionKind.FOREACH, targets, foreach_var=foreach)
    else:
        kind = TransitionKind.LINEAR if len(targets) == 1 else TransitionKind.BRANCH
        transition = Transition(kind, targets)
    return StepSpec(name=name, transition=transition, is_join=join, num_args=2 if join else 1)


def test_branch_join_positions_follow_target_order() -> None:
    graph = _graph(
        _step("start", "a", "b", "c"),
        _step("a", "a2"),
        _step("a2", "join"),
        _step("b", "join"),
        _step("c", "c2"),
        _step("c2", "join"),
        _step("join", "end", join=True),
        _step("end"),
    )
    planner = JoinPlanner(graph)
    join = graph.step("join")
    frame = ForeachFrameRecord("x", "v", 1, 2)
    placements = {s: planner.place(join, s, (frame,)) for s in ("c2", "a2", "b")}
    assert {s: p.position for s, p in placements.items()} == {"a2": 0, "b": 1, "c2": 2}
    assert all(p.expected == 3 and p.key == ("join", (frame,)) for p in placements.values())
    with pytest.raises(JoinError):
        planner.place(join, "start", ())


def test_foreach_join_key_drops_the_innermost_frame() -> None:
    graph = _graph(
        _step("start", "work", foreach="items"),
        _step("work", "join"),
        _step("join", "end", join=True),
        _step("end"),
    )
    planner = JoinPlanner(graph)
    outer = ForeachFrameRecord("o", "v", 0, 2)
    inner = ForeachFrameRecord("start", "items", 3, 4)
    placement = planner.place(graph.step("join"), "work", (outer, inner))
    assert placement.key == ("join", (outer,))
    assert (placement.position, placement.expected, placement.join_stack) == (3, 4, (outer,))
    collector: JoinCollector[str] = JoinCollector(2)
    assert not collector.add(1, "b")
    with pytest.raises(JoinError):
        collector.add(1, "again")
    assert collector.add(0, "a") and collector.ordered() == ["a", "b"]


def test_check_transition_messages() -> None:
    foreach = _step("start", "work", foreach="items")
    assert check_transition(foreach, ["work"], 3, 5) == ""
    too_many = check_transition(foreach, ["work"], 7, 5)
    assert "7" in too_many and "max_num_splits 5" in too_many
    assert "at least 1" in check_transition(foreach, ["work"], 0, 5)
    branch = _step("start", "a", "b")
    assert check_transition(branch, ["b", "a"], 0, 5) == ""
    assert "all of 'a', 'b'" in check_transition(branch, ["a"], 0, 5)
    switch = StepSpec(
        name="s",
        transition=Transition(TransitionKind.SWITCH, switch_cases={"x": "a", "y": "b"}),
    )
    assert check_transition(switch, ["b"], 0, 5) == ""
    assert "exactly one of" in check_transition(switch, ["a", "b"], 0, 5)
    assert "ends the flow" in check_transition(_step("end"), ["a"], 0, 5)


# --- plugins ------------------------------------------------------------------------------------
def test_registry_loads_builtins_lazily_and_refuses_duplicates(tmp_path: Path) -> None:
    registry = executors()
    assert "local" in registry.names()
    assert registry.load("local") is LocalExecutor
    executor = registry.create("local", RootLayout(tmp_path))
    assert isinstance(executor, LocalExecutor)
    with pytest.raises(PluginError) as caught:
        registry.register("local", LocalExecutor)
    assert caught.value.reason == "DUPLICATE_PLUGIN"
    registry.register("local", LocalExecutor, replace=True)
    with pytest.raises(PluginError) as caught:
        registry.load("nope")
    assert caught.value.reason == "PLUGIN_NOT_FOUND"


def test_registry_accepts_injected_instances() -> None:
    registry: Registry[Executor] = Registry("polyflow.test-group", Executor)  # type: ignore[type-abstract]
    instance = InstantExecutor(lambda key: TaskOutcome(succeeded=True))
    registry.register("fake", instance)
    assert registry.create("fake") is instance
    with pytest.raises(PluginError):
        registry.register("fake", instance)
    registry.register("bad", cast(Any, lambda: object()))
    with pytest.raises(PluginError) as caught:
        registry.create("bad")
    assert caught.value.reason == "PLUGIN_WRONG_TYPE"


# --- the local executor -------------------------------------------------------------------------
class Recorder:
    """An executor listener that keeps what it hears."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.exits: queue.Queue[tuple[TaskKey, ExitStatus, int]] = queue.Queue()

    def on_output(self, key: TaskKey, stream: LogStreamName, line: str) -> None:
        self.lines.append((stream, line))

    def on_exit(self, key: TaskKey, status: ExitStatus) -> None:
        self.exits.put((key, status, len(self.lines)))


@pytest.fixture
def local_executor(tmp_path: Path) -> Iterator[tuple[LocalExecutor, Recorder, RootLayout]]:
    layout = RootLayout(tmp_path / ".polyflow")
    executor = LocalExecutor(layout)
    recorder = Recorder()
    executor.start(recorder)
    yield executor, recorder, layout
    executor.shutdown()


def _launch(
    executor: LocalExecutor, layout: RootLayout, tmp_path: Path, code: str, limit: int = 10**6
) -> tuple[TaskHandle, LaunchRequest]:
    (tmp_path / "scripted_worker.py").write_text(code)
    key = TaskKey("F", "1", "a", "2", 0)
    request = LaunchRequest(
        key=key,
        task_spec=b"spec-bytes",
        language="python",
        interpreter=sys.executable,
        environment={"PYTHONPATH": str(tmp_path), "POLYFLOW_WORKER_MODULE": "scripted_worker"},
        working_directory=str(tmp_path),
        stdout_path=layout.task_log_path("F", "1", "a", "2", 0, "stdout"),
        stderr_path=layout.task_log_path("F", "1", "a", "2", 0, "stderr"),
        max_log_size_bytes=limit,
    )
    return executor.launch(request), request


def test_local_executor_pumps_lines_and_reports_exit_after_output(
    local_executor: tuple[LocalExecutor, Recorder, RootLayout], tmp_path: Path
) -> None:
    executor, recorder, layout = local_executor
    code = (
        "import os, sys\n"
        "spec = open(os.environ['POLYFLOW_TASK_SPEC'], 'rb').read()\n"
        "sys.stdout.write('spec=' + spec.decode() + '\\npartial')\n"
        "sys.stdout.flush()\n"
        "sys.stdout.write(' line\\n' + 'x' * 300000 + '\\n')\n"
        "print('cwd=' + os.getcwd(), 'unbuffered=' + os.environ['PYTHONUNBUFFERED'])\n"
        "print('oops', file=sys.stderr)\n"
        "sys.stdout.write('no newline at the end')\n"
        "sys.exit(3)\n"
    )
    _, request = _launch(executor, layout, tmp_path, code)
    key, status, lines_before_exit = recorder.exits.get(timeout=30)
    assert key == request.key and status.exit_code == 3
    assert status.describe() == "exited with code 3"
    stdout = [line for stream, line in recorder.lines if stream == "stdout"]
    assert stdout[0] == "spec=spec-bytes"
    assert stdout[1] == "partial line"
    pieces = stdout[2:-2]  # one very long line, reported in pieces (memory stays bounded)
    assert "".join(pieces) == "x" * 300000
    assert len(pieces) > 1 and all(len(piece) <= 2 * 65536 for piece in pieces)
    assert stdout[-2] == f"cwd={tmp_path} unbuffered=1"
    assert stdout[-1] == "no newline at the end"
    assert ("stderr", "oops") in recorder.lines
    assert lines_before_exit == len(recorder.lines)  # nothing arrived after the exit
    assert request.stdout_path.read_text().endswith("no newline at the end")
    assert request.stderr_path.read_text() == "oops\n"
    assert not list(layout.tasks_dir.glob("*.pb"))


def test_local_executor_truncates_logs_past_the_limit(
    local_executor: tuple[LocalExecutor, Recorder, RootLayout], tmp_path: Path
) -> None:
    executor, recorder, layout = local_executor
    code = "for i in range(100):\n    print(f'line {i:03d}')\n"
    _, request = _launch(executor, layout, tmp_path, code, limit=30)
    recorder.exits.get(timeout=30)
    stored = request.stdout_path.read_text()
    assert stored.startswith("line 000\nline 001\nline 002\nlin\n")
    marker = (
        "[polyflow] log truncated: stdout exceeded 30 bytes (--max-log-size); "
        "later output was dropped"
    )
    assert stored.endswith(marker + "\n")
    assert recorder.lines[-1] == ("stdout", marker)
    assert len(recorder.lines) == 5


def test_local_executor_kill_takes_the_process_group(
    local_executor: tuple[LocalExecutor, Recorder, RootLayout], tmp_path: Path
) -> None:
    executor, recorder, layout = local_executor
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    handle, _ = _launch(executor, layout, tmp_path, code)
    deadline = time.monotonic() + 30
    while not recorder.lines:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    grandchild = int(recorder.lines[0][1])
    executor.kill(handle)
    _, status, _ = recorder.exits.get(timeout=30)
    assert status.signal_number == signal.SIGKILL
    assert status.describe() == "killed by signal 9 (SIGKILL)"
    deadline = time.monotonic() + 10
    while True:  # the grandchild died too (it may linger as a zombie of init briefly)
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{grandchild}/stat").read_text().split()[2] == "Z":
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_local_executor_does_not_wait_forever_for_a_pipe_held_by_a_grandchild(
    tmp_path: Path,
) -> None:
    layout = RootLayout(tmp_path / ".polyflow")
    executor = LocalExecutor(layout, exit_grace_seconds=0.3)
    recorder = Recorder()
    executor.start(recorder)
    try:
        code = (
            "import subprocess, sys\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
            "print('bye', flush=True)\n"
        )
        handle, _ = _launch(executor, layout, tmp_path, code)
        started = time.monotonic()
        _, status, _ = recorder.exits.get(timeout=30)
        assert status.exit_code == 0
        assert time.monotonic() - started < 10
        assert ("stdout", "bye") in recorder.lines
    finally:
        executor.shutdown()
    # The grandchild outlived the worker, in the worker's process group: clean it up.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(handle.popen.pid, signal.SIGKILL)  # type: ignore[attr-defined]


def test_local_executor_reports_a_missing_interpreter(
    local_executor: tuple[LocalExecutor, Recorder, RootLayout], tmp_path: Path
) -> None:
    executor, _, layout = local_executor
    assert executor.check_environment({"python": "/no/such/python"}, str(tmp_path))
    assert not executor.check_environment({"python": sys.executable}, str(tmp_path))
    request = LaunchRequest(
        key=TaskKey("F", "1", "a", "2", 0),
        task_spec=b"",
        language="python",
        interpreter="/no/such/python",
        environment={},
        working_directory=str(tmp_path),
        stdout_path=layout.task_log_path("F", "1", "a", "2", 0, "stdout"),
        stderr_path=layout.task_log_path("F", "1", "a", "2", 0, "stderr"),
        max_log_size_bytes=100,
    )
    with pytest.raises(Exception) as caught:
        executor.launch(request)
    assert "could not start the worker" in str(caught.value)
    assert not list(layout.tasks_dir.glob("*.pb"))


# --- the scheduler, in process ------------------------------------------------------------------
class InstantExecutor(Executor):
    """Completes every launched attempt from its own thread with ``behaviour(key)``."""

    name = "instant"

    def __init__(self, behaviour: Callable[[TaskKey], TaskOutcome | None]) -> None:
        self.behaviour = behaviour
        self.scheduler: Scheduler | None = None
        self.launched: list[TaskKey] = []
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[TaskKey | None] = queue.Queue()
        self._listener: ExecutorListener | None = None
        self._thread = threading.Thread(target=self._work, daemon=True)

    def start(self, listener: ExecutorListener) -> None:
        self._listener = listener
        self._thread.start()

    def launch(self, request: LaunchRequest) -> TaskHandle:
        with self._lock:
            self.launched.append(request.key)
            self.running += 1
            self.peak = max(self.peak, self.running)
        self._queue.put(request.key)
        return TaskHandle(request.key)

    def kill(self, handle: TaskHandle) -> None:
        pass

    def shutdown(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            key = self._queue.get()
            if key is None:
                return
            outcome = self.behaviour(key)
            assert self.scheduler is not None and self._listener is not None
            if outcome is not None:
                self.scheduler.complete_task(
                    key.flow, key.run, key.step, key.task, key.attempt, outcome
                )
            with self._lock:
                self.running -= 1
            self._listener.on_exit(key, ExitStatus(exit_code=0 if outcome else 1))


def _scheduler(
    tmp_path: Path,
    executor: InstantExecutor,
    retry_policy: RetryPolicy = no_retries,
    blobs: LocalBlobStore | None = None,
) -> tuple[Scheduler, SqliteMetadataStore, EventHub]:
    layout = RootLayout(tmp_path / ".polyflow")
    metadata = SqliteMetadataStore(layout.db_path)
    events = EventHub()
    scheduler = Scheduler(
        metadata=metadata,
        blobs=blobs if blobs is not None else LocalBlobStore(layout.store_root),
        executor=executor,
        events=events,
        layout=layout,
        core_address="unix:/nowhere",
        encode_task_spec=lambda spec: b"",
        retry_policy=retry_policy,
    )
    executor.scheduler = scheduler
    scheduler.start()
    return scheduler, metadata, events


def _request(graph: FlowGraph, max_workers: int = 16, max_num_splits: int = 100) -> RunRequest:
    result = validate(graph)
    assert result.ok and result.start
    return RunRequest(
        graph=result.graph,
        graph_bytes=b"",
        start_step=result.start,
        parameter_artifacts=(),
        options=RunOptions(max_workers=max_workers, max_num_splits=max_num_splits),
        options_bytes=b"",
        environment=WorkerEnvironment({Language.PYTHON: sys.executable}, "/", {}, "/f.py"),
        environment_bytes=b"",
        user="tester",
    )


def _wait_finished(events: EventHub, flow: str, run: str) -> RunFinished:
    log = events.get(flow, run)
    assert log is not None
    after = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for event in log.read(after, exclude_logs=True, timeout=1):
            after = event.sequence
            if isinstance(event.payload, RunFinished):
                return event.payload
    raise AssertionError("the run did not finish")


def test_wide_foreach_is_dispatched_fifo_within_max_workers(tmp_path: Path) -> None:
    splits = 2000
    graph = FlowGraph(
        flow_name="Wide",
        steps=(
            _step("start", "work", foreach="items"),
            _step("work", "join"),
            _step("join", "end", join=True),
            _step("end"),
        ),
    )
    next_of = {"start": ("work",), "work": ("join",), "join": ("end",), "end": ()}

    def behaviour(key: TaskKey) -> TaskOutcome:
        artifact = ArtifactRecord(f"seen_{key.step}", "sha256:" + "0" * 64, "json", 1)
        return TaskOutcome(
            succeeded=True,
            artifacts=(artifact,),
            next_steps=next_of[key.step],
            foreach_num_splits=splits if key.step == "start" else 0,
        )

    executor = InstantExecutor(behaviour)
    scheduler, metadata, events = _scheduler(tmp_path, executor)
    try:
        started = time.monotonic()
        record = scheduler.start_run(_request(graph, max_workers=8, max_num_splits=splits))
        finished = _wait_finished(events, "Wide", record.run_id)
        elapsed = time.monotonic() - started
        assert finished.state is RunState.SUCCEEDED, finished.failure_message
        assert executor.peak <= 8
        work = [key for key in executor.launched if key.step == "work"]
        assert len(work) == splits
        # FIFO: tasks start in split order, and task ids follow.
        assert [int(k.task) for k in work] == sorted(int(k.task) for k in work)
        join = metadata.list_tasks("Wide", record.run_id, "join", 10, "").items[0]
        assert len(join.input_tasks) == splits
        assert join.input_tasks[0].endswith(f"/work/{work[0].task}")
        assert join.input_tasks[-1].endswith(f"/work/{work[-1].task}")
        assert elapsed < 90
    finally:
        scheduler.stop()
        metadata.close()


def test_retry_seam_runs_another_attempt(tmp_path: Path) -> None:
    graph = FlowGraph(flow_name="Retry", steps=(_step("start", "end"), _step("end")))
    attempts: list[int] = []

    def behaviour(key: TaskKey) -> TaskOutcome | None:
        if key.step == "start":
            attempts.append(key.attempt)
            if key.attempt == 0:
                return None  # the worker "dies" without reporting
        return TaskOutcome(succeeded=True, next_steps=("end",) if key.step == "start" else ())

    executor = InstantExecutor(behaviour)
    scheduler, metadata, events = _scheduler(
        tmp_path, executor, retry_policy=lambda step: 1 if step.name == "start" else 0
    )
    try:
        record = scheduler.start_run(_request(graph))
        finished = _wait_finished(events, "Retry", record.run_id)
        assert finished.state is RunState.SUCCEEDED, finished.failure_message
        assert attempts == [0, 1]
        task = metadata.get_task("Retry", record.run_id, "1")
        assert [a.state for a in task.attempts] == [TaskState.FAILED, TaskState.SUCCEEDED]
        assert "worker exited with code 1 without reporting" in task.attempts[0].failure_message
    finally:
        scheduler.stop()
        metadata.close()


class _SyncRecordingStore(LocalBlobStore):
    """A local store that records what it is asked to make durable."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.made_durable: list[list[str]] = []

    def make_durable(self, digests: Sequence[str]) -> None:
        self.made_durable.append(list(digests))
        super().make_durable(digests)


def test_unsynced_blobs_are_made_durable_before_the_outcome_is_recorded(tmp_path: Path) -> None:
    graph = FlowGraph(flow_name="Sync", steps=(_step("start", "end"), _step("end")))
    store = _SyncRecordingStore(tmp_path / "store")
    digest = store.put_bytes(b"written by R").digest

    def behaviour(key: TaskKey) -> TaskOutcome:
        artifact = ArtifactRecord("x", digest, "json", 12)
        return TaskOutcome(
            succeeded=True,
            artifacts=(artifact,),
            next_steps=("end",) if key.step == "start" else (),
            blobs_unsynced=key.step == "start",  # as an R worker reports
        )

    executor = InstantExecutor(behaviour)
    scheduler, _, events = _scheduler(tmp_path, executor, blobs=store)
    try:
        record = scheduler.start_run(_request(graph))
        assert _wait_finished(events, "Sync", record.run_id).state is RunState.SUCCEEDED
    finally:
        scheduler.stop()
    assert store.made_durable == [[digest]]
