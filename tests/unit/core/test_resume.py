"""Resume in the core: task identity, the re-run set, indexing an origin run, the clone
decision, and the scheduler driven in process by an executor that completes tasks at once
(linear, foreach with failed splits, a switch loop, 1,000-wide foreach, clone-only, errors).
"""

from __future__ import annotations

import datetime as dt
import pickle
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from polyflow_core.datastore.local import LocalBlobStore
from polyflow_core.domain._run_state import InputRef, PendingTask
from polyflow_core.domain.events import EventHub, RunFinished, TaskFinished, TaskStarted
from polyflow_core.domain.execution import (
    RunOptions,
    RunRequest,
    TaskOutcome,
    TaskSpecData,
    WorkerEnvironment,
)
from polyflow_core.domain.graph import validate
from polyflow_core.domain.model import FlowGraph, Language, StepSpec, Transition, TransitionKind
from polyflow_core.domain.resume import (
    ResumeOrigin,
    ResumeState,
    index_origin_tasks,
    steps_to_rerun,
    task_identity,
)
from polyflow_core.domain.scheduler import Scheduler, no_retries
from polyflow_core.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from polyflow_core.executors.base import (
    Executor,
    ExecutorListener,
    ExitStatus,
    LaunchRequest,
    TaskHandle,
    TaskKey,
)
from polyflow_core.metadata.base import (
    ArtifactRecord,
    AttemptRecord,
    ForeachFrameRecord,
    RunState,
    TaskRecord,
    TaskState,
)
from polyflow_core.metadata.sqlite import SqliteMetadataStore
from polyflow_core.paths import RootLayout


# --- graphs ------------------------------------------------------------------------------------
def _step(
    name: str,
    *targets: str,
    join: bool = False,
    foreach: str = "",
    cases: dict[str, str] | None = None,
) -> StepSpec:
    if cases:
        transition = Transition(TransitionKind.SWITCH, switch_cases=cases, condition="state")
    elif not targets:
        transition = Transition()
    elif foreach:
        transition = Transition(TransitionKind.FOREACH, targets, foreach_var=foreach)
    else:
        kind = TransitionKind.LINEAR if len(targets) == 1 else TransitionKind.BRANCH
        transition = Transition(kind, targets)
    return StepSpec(name=name, transition=transition, is_join=join, num_args=2 if join else 1)


def _graph(name: str, *steps: StepSpec) -> FlowGraph:
    result = validate(FlowGraph(flow_name=name, steps=steps, language=Language.PYTHON))
    assert result.ok, result.problems
    return result.graph


LINEAR = _graph(
    "Linear",
    _step("start", "two"),
    _step("two", "three"),
    _step("three", "four"),
    _step("four", "end"),
    _step("end"),
)
FOREACH = _graph(
    "Fan",
    _step("start", "work", foreach="items"),
    _step("work", "join"),
    _step("join", "end", join=True),
    _step("end"),
)
LOOP = _graph(
    "Loop",
    _step("start", "loop"),
    _step("loop", cases={"again": "loop", "done": "end"}),
    _step("end"),
)
BRANCH = _graph(
    "Branchy",
    _step("start", "left", "right"),
    _step("left", "join"),
    _step("right", "join"),
    _step("join", "end", join=True),
    _step("end"),
)


# --- pure logic -------------------------------------------------------------------------------
def _frame(step: str, index: int, splits: int, value: str = "") -> ForeachFrameRecord:
    return ForeachFrameRecord(
        step=step, var="items", index=index, num_splits=splits, value_repr=value
    )


def test_identity_is_step_foreach_indices_and_iteration() -> None:
    stack = (_frame("start", 2, 6, "'c'"), _frame("outer", 1, 3))
    assert task_identity("inner", stack) == ("inner", (("start", 2), ("outer", 1)), 0)
    # Split counts and item representations do not matter, iterations do.
    other = (_frame("start", 2, 7), _frame("outer", 1, 4, "'x'"))
    assert task_identity("inner", other) == task_identity("inner", stack)
    assert task_identity("loop", (), 2) != task_identity("loop", (), 1)


def test_steps_to_rerun_are_the_step_and_everything_after_it() -> None:
    assert steps_to_rerun(LINEAR, "three") == {"three", "four", "end"}
    assert steps_to_rerun(LINEAR, "start") == {"start", "two", "three", "four", "end"}
    assert steps_to_rerun(BRANCH, "left") == {"left", "join", "end"}
    assert steps_to_rerun(LOOP, "loop") == {"loop", "end"}
    with pytest.raises(InvalidArgumentError) as caught:
        steps_to_rerun(LINEAR, "nope")
    assert caught.value.reason == "UNKNOWN_RESUME_STEP"
    assert "start, two, three, four, end" in str(caught.value)


_NOW = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _task(
    task_id: str,
    step: str,
    inputs: tuple[str, ...] = (),
    stack: tuple[ForeachFrameRecord, ...] = (),
    states: tuple[TaskState, ...] = (TaskState.SUCCEEDED,),
    next_steps: tuple[str, ...] = (),
) -> TaskRecord:
    attempts = tuple(
        AttemptRecord(
            attempt=number,
            state=state,
            start_time=_NOW,
            finish_time=_NOW,
            next_steps=next_steps if state is TaskState.SUCCEEDED else (),
        )
        for number, state in enumerate(states)
    )
    return TaskRecord(
        flow_id="F",
        run_id="1",
        step_name=step,
        task_id=task_id,
        create_time=_NOW,
        foreach_stack=stack,
        input_tasks=tuple(f"F/1/{pathspec}" for pathspec in inputs),
        attempts=attempts,
    )


def test_index_counts_loop_iterations_and_reads_foreach_splits_from_children() -> None:
    failed = (TaskState.FAILED,)
    tasks = [
        _task("0", "_parameters"),
        _task("1", "start", ("_parameters/0",), next_steps=("work",)),
        _task("2", "work", ("start/1",), (_frame("start", 0, 3, "'a'"),), next_steps=("loop",)),
        _task("3", "work", ("start/1",), (_frame("start", 2, 3, "'c'"),), states=failed),
        _task("4", "loop", ("work/2",), (_frame("start", 0, 3),), next_steps=("loop",)),
        # The second iteration failed once, then succeeded: the latest attempt counts.
        _task(
            "5",
            "loop",
            ("loop/4",),
            (_frame("start", 0, 3),),
            states=(TaskState.FAILED, TaskState.SUCCEEDED),
            next_steps=("loop",),
        ),
        _task("6", "loop", ("loop/5",), (_frame("start", 0, 3),), states=failed),
    ]
    parameters, succeeded = index_origin_tasks(reversed(tasks))  # any order
    assert parameters is not None and parameters.task_id == "0"
    start = succeeded[("start", (), 0)]
    # Split 1 was never created and split 2 failed: the count comes from the frames.
    assert start.foreach_num_splits == 3
    assert start.foreach_value_reprs == ("'a'", "", "'c'")
    assert succeeded[("work", (("start", 0),), 0)].task_id == "2"
    assert ("work", (("start", 2),), 0) not in succeeded
    assert succeeded[("loop", (("start", 0),), 0)].task_id == "4"
    second = succeeded[("loop", (("start", 0),), 1)]
    assert second.task_id == "5" and second.attempt == 1
    assert ("loop", (("start", 0),), 2) not in succeeded
    assert len(succeeded) == 4


def _origin(
    graph: FlowGraph, tasks: list[TaskRecord], rerun: frozenset[str] = frozenset()
) -> ResumeOrigin:
    parameters, succeeded = index_origin_tasks(tasks)
    assert parameters is not None
    return ResumeOrigin(graph.flow_name, "1", parameters, succeeded, rerun)


_PARAMS = InputRef("0", "_parameters", 0, ())


def test_decide_needs_cloned_inputs_a_known_identity_and_a_step_not_rerun() -> None:
    tasks = [
        _task("0", "_parameters"),
        _task("1", "start", ("_parameters/0",), next_steps=("two",)),
        _task("2", "two", ("start/1",), next_steps=("three",)),
        _task("3", "three", ("two/2",), states=(TaskState.FAILED,)),
    ]
    state = ResumeState(_origin(LINEAR, tasks), LINEAR, 100)
    start = PendingTask("start", (), (_PARAMS,))
    decided = state.decide(start)
    assert decided is not None and decided[0].task_id == "1" and decided[1] == 0
    # An input that ran in the new run makes its successors run.
    ran = InputRef("7", "start", 0, ())
    assert state.decide(PendingTask("two", (), (ran,))) is None
    # A retry (an existing task) is never cloned.
    assert state.decide(PendingTask("start", (), (_PARAMS,), task_id="9")) is None
    # The same decisions with `resume two`: start is cloned, two is not.
    rerun = ResumeState(_origin(LINEAR, tasks, steps_to_rerun(LINEAR, "two")), LINEAR, 100)
    assert rerun.decide(PendingTask("start", (), (_PARAMS,))) is not None
    rerun._cloned["1"] = 0
    assert rerun.decide(PendingTask("two", (), (InputRef("1", "start", 0, ()),))) is None


def test_decide_refuses_a_transition_the_new_graph_does_not_have() -> None:
    tasks = [
        _task("0", "_parameters"),
        _task("1", "start", ("_parameters/0",), next_steps=("end",)),  # the old graph
    ]
    state = ResumeState(_origin(LINEAR, tasks), LINEAR, 100)
    assert state.decide(PendingTask("start", (), (_PARAMS,))) is None


def test_decide_a_foreach_needs_its_split_count() -> None:
    tasks = [
        _task("0", "_parameters"),
        _task("1", "start", ("_parameters/0",), next_steps=("work",)),  # no child recorded
    ]
    state = ResumeState(_origin(FOREACH, tasks), FOREACH, 100)
    assert state.decide(PendingTask("start", (), (_PARAMS,))) is None
    with_child = [*tasks, _task("2", "work", ("start/1",), (_frame("start", 0, 5),), ())]
    state = ResumeState(_origin(FOREACH, with_child), FOREACH, 100)
    decided = state.decide(PendingTask("start", (), (_PARAMS,)))
    assert decided is not None and decided[0].foreach_num_splits == 5
    # More splits than this run allows: run it again (and fail it there, with the message).
    assert (
        ResumeState(_origin(FOREACH, with_child), FOREACH, 4).decide(
            PendingTask("start", (), (_PARAMS,))
        )
        is None
    )


def test_decide_counts_iterations_of_a_self_loop() -> None:
    tasks = [
        _task("0", "_parameters"),
        _task("1", "start", ("_parameters/0",), next_steps=("loop",)),
        _task("2", "loop", ("start/1",), next_steps=("loop",)),
        _task("3", "loop", ("loop/2",), next_steps=("loop",)),
        _task("4", "loop", ("loop/3",), states=(TaskState.FAILED,)),
    ]
    state = ResumeState(_origin(LOOP, tasks), LOOP, 100)
    state._cloned.update({"11": 0, "12": 0, "13": 1})
    first = state.decide(PendingTask("loop", (), (InputRef("11", "start", 0, ()),)))
    assert first is not None and first[0].task_id == "2" and first[1] == 0
    second = state.decide(PendingTask("loop", (), (InputRef("12", "loop", 0, ()),)))
    assert second is not None and second[0].task_id == "3" and second[1] == 1
    assert state.decide(PendingTask("loop", (), (InputRef("13", "loop", 0, ()),))) is None


# --- the scheduler, in process ---------------------------------------------------------------
class InstantExecutor(Executor):
    """Completes every launched attempt from its own thread with ``behaviour(key, spec)``
    (the scheduler's task spec encoder is :func:`pickle.dumps`)."""

    name = "instant"

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.scheduler: Scheduler | None = None
        self.launched: list[TaskKey] = []
        self._queue: queue.Queue[tuple[TaskKey, bytes] | None] = queue.Queue()
        self._listener: ExecutorListener | None = None
        self._thread = threading.Thread(target=self._work, daemon=True)

    def start(self, listener: ExecutorListener) -> None:
        self._listener = listener
        self._thread.start()

    def launch(self, request: LaunchRequest) -> TaskHandle:
        self.launched.append(request.key)
        self._queue.put((request.key, request.task_spec))
        return TaskHandle(request.key)

    def kill(self, handle: TaskHandle) -> None:
        pass

    def shutdown(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            key, spec = item
            outcome = self.behaviour(key, pickle.loads(spec))
            assert self.scheduler is not None and self._listener is not None
            if outcome is not None:
                self.scheduler.complete_task(
                    key.flow, key.run, key.step, key.task, key.attempt, outcome
                )
            self._listener.on_exit(key, ExitStatus(exit_code=0 if outcome else 1))


_NEXT = {
    "Linear": {"start": ("two",), "two": ("three",), "three": ("four",), "four": ("end",)},
    "Fan": {"start": ("work",), "work": ("join",), "join": ("end",)},
    "Loop": {"start": ("loop",)},
}


def _index(spec: TaskSpecData) -> int:
    """The task's innermost foreach index (-1 outside a foreach)."""
    return spec.foreach_stack[-1].index if spec.foreach_stack else -1


def _iteration(spec: TaskSpecData) -> int:
    """How many loop tasks precede this one: its input's ``loop_iteration`` plus one."""
    for artifact in spec.inputs[0].artifacts if spec.inputs else ():
        if artifact.name == "loop_iteration":
            return int(artifact.digest.removeprefix("sha256:"), 16) + 1
    return 0


class Behaviour:
    """Tasks succeed with an artifact named after their step, unless ``fail`` says so.
    The Loop flow's loop step goes around ``loops`` times (its iteration is an artifact)."""

    def __init__(self, splits: int = 6) -> None:
        self.splits = splits
        self.fail: Callable[[TaskKey, TaskSpecData], bool] = lambda key, spec: False
        self.loops = 3

    def __call__(self, key: TaskKey, spec: TaskSpecData) -> TaskOutcome | None:
        if self.fail(key, spec):
            return TaskOutcome(succeeded=False, failure_message=f"{key.step} failed")
        digest = "sha256:" + format(hash((key.run, key.task)) & (2**64 - 1), "064x")
        artifacts = [ArtifactRecord(f"made_by_{key.step}", digest, "json", 1)]
        next_steps = _NEXT.get(key.flow, {}).get(key.step, ())
        if key.step == "loop":
            iteration = _iteration(spec)
            artifacts.append(
                ArtifactRecord("loop_iteration", "sha256:" + format(iteration, "064x"), "json", 1)
            )
            next_steps = ("loop",) if iteration + 1 < self.loops else ("end",)
        return TaskOutcome(
            succeeded=True,
            artifacts=tuple(artifacts),
            next_steps=next_steps,
            foreach_num_splits=self.splits if key.step == "start" and key.flow == "Fan" else 0,
        )


@pytest.fixture
def harness(
    tmp_path: Path,
) -> Iterator[tuple[Scheduler, SqliteMetadataStore, EventHub, Behaviour, InstantExecutor]]:
    behaviour = Behaviour()
    executor = InstantExecutor(behaviour)
    layout = RootLayout(tmp_path / ".polyflow")
    metadata = SqliteMetadataStore(layout.db_path)
    events = EventHub()
    scheduler = Scheduler(
        metadata=metadata,
        blobs=LocalBlobStore(layout.store_root),
        executor=executor,
        events=events,
        layout=layout,
        core_address="unix:/nowhere",
        encode_task_spec=pickle.dumps,
        retry_policy=no_retries,
    )
    executor.scheduler = scheduler
    scheduler.start()
    yield scheduler, metadata, events, behaviour, executor
    scheduler.stop()
    metadata.close()


Harness = tuple[Scheduler, SqliteMetadataStore, EventHub, Behaviour, InstantExecutor]


def _request(
    graph: FlowGraph,
    *,
    origin: str = "",
    resume_step: str = "",
    clone_only: bool = False,
    max_workers: int = 16,
    max_num_splits: int = 100,
    parameters: tuple[ArtifactRecord, ...] = (),
) -> RunRequest:
    result = validate(graph)
    assert result.ok and result.start
    return RunRequest(
        graph=result.graph,
        graph_bytes=b"",
        start_step=result.start,
        parameter_artifacts=parameters,
        options=RunOptions(max_workers=max_workers, max_num_splits=max_num_splits),
        options_bytes=b"",
        environment=WorkerEnvironment({Language.PYTHON: sys.executable}, "/", {}, "/f.py"),
        environment_bytes=b"",
        user="tester",
        origin_run_id=origin,
        resume_step=resume_step,
        clone_only=clone_only,
    )


def _run(harness: Harness, request: RunRequest) -> tuple[str, RunFinished, list[object]]:
    """Start a run and wait for its end; returns its id, its end and its task events."""
    scheduler, _, events, _, _ = harness
    record = scheduler.start_run(request)
    log = events.get(request.graph.flow_name, record.run_id)
    assert log is not None
    seen: list[object] = []
    after = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for event in log.read(after, exclude_logs=True, timeout=1):
            after = event.sequence
            if isinstance(event.payload, RunFinished):
                return record.run_id, event.payload, seen
            seen.append(event.payload)
    raise AssertionError("the run did not finish")


def _tasks(metadata: SqliteMetadataStore, flow: str, run: str) -> dict[str, list[TaskRecord]]:
    steps = [s.step_name for s in metadata.list_steps(flow, run, 1000, "").items]
    found: dict[str, list[TaskRecord]] = {}
    for step in steps:
        token = ""
        while True:
            page = metadata.list_tasks(flow, run, step, 1000, token)
            found.setdefault(step, []).extend(page.items)
            token = page.next_page_token
            if not token:
                break
    return found


def _artifacts(metadata: SqliteMetadataStore, task: TaskRecord) -> list[ArtifactRecord]:
    latest = task.latest
    assert latest is not None
    return metadata.list_artifacts(task.flow_id, task.run_id, task.task_id, latest.attempt)


def test_linear_resume_clones_what_succeeded_and_runs_the_rest(harness: Harness) -> None:
    scheduler, metadata, _, behaviour, executor = harness
    blob = LocalBlobStore(scheduler._store_location["root"]).put_bytes([b"1"])
    params = (ArtifactRecord("alpha", blob.digest, "json", blob.size),)
    behaviour.fail = lambda key, spec: key.step == "four"
    origin, finished, _ = _run(harness, _request(LINEAR, parameters=params))
    assert finished.state is RunState.FAILED
    behaviour.fail = lambda key, spec: False
    before = len(executor.launched)
    resumed, finished, seen = _run(harness, _request(LINEAR, origin=origin))
    assert finished.state is RunState.SUCCEEDED, finished.failure_message
    assert [k.step for k in executor.launched[before:]] == ["four", "end"]
    cloned = [e for e in seen if isinstance(e, TaskStarted) and e.cloned]
    assert [e.pathspec.split("/")[2] for e in cloned] == ["start", "two", "three"]
    assert all(
        e.cloned
        for e in seen
        if isinstance(e, TaskFinished) and e.pathspec in {c.pathspec for c in cloned}
    )
    old, new = _tasks(metadata, "Linear", origin), _tasks(metadata, "Linear", resumed)
    assert metadata.get_run("Linear", resumed).origin_run_id == origin
    for step in ("_parameters", "start", "two", "three"):
        clone, source = new[step][0], old[step][0]
        assert clone.origin_task == f"Linear/{origin}/{step}/{source.task_id}"
        assert clone.metadata["origin-task-id"] == source.task_id
        assert clone.metadata["origin-run-id"] == origin
        assert _artifacts(metadata, clone) == _artifacts(metadata, source)
    assert _artifacts(metadata, new["_parameters"][0]) == list(params)
    for step in ("four", "end"):
        ran = new[step][0]
        assert ran.origin_task == "" and ran.metadata == {"origin-run-id": origin}
        assert ran.input_tasks[0].startswith(f"Linear/{resumed}/")
    # A clone's inputs are the new run's tasks.
    assert new["two"][0].input_tasks == (f"Linear/{resumed}/start/{new['start'][0].task_id}",)


def test_resume_step_reruns_it_and_what_follows(harness: Harness) -> None:
    _, metadata, _, _, executor = harness
    origin, finished, _ = _run(harness, _request(LINEAR))
    assert finished.state is RunState.SUCCEEDED
    before = len(executor.launched)
    _, finished, _ = _run(harness, _request(LINEAR, origin=origin, resume_step="three"))
    assert finished.state is RunState.SUCCEEDED
    assert [k.step for k in executor.launched[before:]] == ["three", "four", "end"]
    # Without a step, a successful run is cloned whole and nothing runs.
    before = len(executor.launched)
    again, finished, seen = _run(harness, _request(LINEAR, origin=origin))
    assert finished.state is RunState.SUCCEEDED and len(executor.launched) == before
    assert all(e.cloned for e in seen if isinstance(e, TaskStarted | TaskFinished))
    run = metadata.get_run("Linear", again)
    assert run.state is RunState.SUCCEEDED and run.end_step_name == "end"


def test_foreach_resume_reruns_only_the_failed_splits_and_the_join(harness: Harness) -> None:
    _, metadata, _, behaviour, executor = harness

    # All six splits start at once; the executor finishes them in order, so the ones after
    # the first failure still report before the run ends.
    behaviour.fail = lambda key, spec: key.step == "work" and _index(spec) in (2, 4)
    origin, finished, _ = _run(harness, _request(FOREACH))
    assert finished.state is RunState.FAILED
    behaviour.fail = lambda key, spec: False
    before = len(executor.launched)
    resumed, finished, _ = _run(harness, _request(FOREACH, origin=origin))
    assert finished.state is RunState.SUCCEEDED, finished.failure_message
    launched = executor.launched[before:]
    assert [k.step for k in launched] == ["work", "work", "join", "end"]
    tasks = _tasks(metadata, "Fan", resumed)
    ran = sorted(t.foreach_stack[-1].index for t in tasks["work"] if not t.origin_task)
    assert ran == [2, 4]
    assert len(tasks["work"]) == 6 and tasks["start"][0].origin_task
    join = tasks["join"][0]
    assert not join.origin_task and len(join.input_tasks) == 6


def test_foreach_split_never_started_in_the_origin_runs(harness: Harness) -> None:
    _, metadata, _, behaviour, _ = harness
    # Split 1 fails with one worker slot: splits 2..5 are never created in the origin run.
    behaviour.fail = lambda key, spec: key.step == "work" and _index(spec) == 1
    origin, finished, _ = _run(harness, _request(FOREACH, max_workers=1))
    assert finished.state is RunState.FAILED
    behaviour.fail = lambda key, spec: False
    resumed, finished, _ = _run(harness, _request(FOREACH, origin=origin))
    assert finished.state is RunState.SUCCEEDED
    work = _tasks(metadata, "Fan", resumed)["work"]
    assert sorted((t.foreach_stack[-1].index, bool(t.origin_task)) for t in work) == [
        (0, True),
        (1, False),
        (2, False),
        (3, False),
        (4, False),
        (5, False),
    ]


def test_switch_loop_resume_clones_the_iterations_that_succeeded(harness: Harness) -> None:
    _, metadata, _, behaviour, executor = harness
    behaviour.loops = 4
    # The third iteration fails.
    behaviour.fail = lambda key, spec: key.step == "loop" and _iteration(spec) == 2
    origin, finished, _ = _run(harness, _request(LOOP))
    assert finished.state is RunState.FAILED
    behaviour.fail = lambda key, spec: False
    before = len(executor.launched)
    resumed, finished, _ = _run(harness, _request(LOOP, origin=origin))
    assert finished.state is RunState.SUCCEEDED, finished.failure_message
    assert [k.step for k in executor.launched[before:]] == ["loop", "loop", "end"]
    loops = _tasks(metadata, "Loop", resumed)["loop"]
    assert [bool(t.origin_task) for t in loops] == [True, True, False, False]
    old = _tasks(metadata, "Loop", origin)["loop"]
    assert [t.origin_task for t in loops[:2]] == [
        f"Loop/{origin}/loop/{t.task_id}" for t in old[:2]
    ]


def test_wide_foreach_resume_clones_a_thousand_splits_quickly(harness: Harness) -> None:
    _, metadata, _, behaviour, executor = harness
    behaviour.splits = 1000
    behaviour.fail = lambda key, spec: key.step == "work" and _index(spec) == 999
    origin, finished, _ = _run(harness, _request(FOREACH, max_workers=8, max_num_splits=1000))
    assert finished.state is RunState.FAILED
    behaviour.fail = lambda key, spec: False
    before = len(executor.launched)
    started = time.monotonic()
    resumed, finished, seen = _run(
        harness, _request(FOREACH, origin=origin, max_workers=8, max_num_splits=1000)
    )
    elapsed = time.monotonic() - started
    assert finished.state is RunState.SUCCEEDED, finished.failure_message
    assert len([e for e in seen if isinstance(e, TaskStarted) and e.cloned]) == 1000
    assert [k.step for k in executor.launched[before:]] == ["work", "join", "end"]
    work = _tasks(metadata, "Fan", resumed)["work"]
    assert sorted(t.foreach_stack[-1].index for t in work) == list(range(1000))
    assert elapsed < 20, elapsed


def test_clone_only_clones_and_runs_nothing(harness: Harness) -> None:
    _, _, _, behaviour, executor = harness
    behaviour.fail = lambda key, spec: key.step == "four"
    origin, _, _ = _run(harness, _request(LINEAR))
    behaviour.fail = lambda key, spec: False
    before = len(executor.launched)
    _, finished, seen = _run(harness, _request(LINEAR, origin=origin, clone_only=True))
    assert len(executor.launched) == before
    assert finished.state is RunState.FAILED
    assert "clone-only resume" in finished.failure_message and "'four'" in finished.failure_message
    assert len([e for e in seen if isinstance(e, TaskStarted)]) == 3
    # A successful origin: the clone-only resume succeeds.
    done, _, _ = _run(harness, _request(LINEAR))
    _, finished, _ = _run(harness, _request(LINEAR, origin=done, clone_only=True))
    assert finished.state is RunState.SUCCEEDED


def test_origin_errors(harness: Harness) -> None:
    scheduler, metadata, _, _, _ = harness
    with pytest.raises(NotFoundError):
        scheduler.start_run(_request(LINEAR, origin="999"))
    unfinished = metadata.create_run(
        flow_id="Linear",
        user="u",
        tags=(),
        system_tags=(),
        graph=b"",
        options=b"",
        environment=b"",
        namespace="",
    )
    with pytest.raises(FailedPreconditionError) as caught:
        scheduler.start_run(_request(LINEAR, origin=unfinished.run_id))
    assert caught.value.reason == "ORIGIN_RUN_UNFINISHED"
    metadata.set_run_state("Linear", unfinished.run_id, RunState.FAILED)
    with pytest.raises(FailedPreconditionError) as caught:
        scheduler.start_run(_request(LINEAR, origin=unfinished.run_id))
    assert caught.value.reason == "ORIGIN_RUN_INCOMPLETE"
    done, _, _ = _run(harness, _request(LINEAR))
    with pytest.raises(InvalidArgumentError):
        scheduler.start_run(_request(LINEAR, origin=done, resume_step="nope"))


def test_resume_of_a_resume_and_of_a_changed_graph(harness: Harness) -> None:
    _, metadata, _, behaviour, executor = harness
    behaviour.fail = lambda key, spec: key.step == "three"
    origin, _, _ = _run(harness, _request(LINEAR))
    behaviour.fail = lambda key, spec: key.step == "four"
    first, finished, _ = _run(harness, _request(LINEAR, origin=origin))
    assert finished.state is RunState.FAILED
    behaviour.fail = lambda key, spec: False
    before = len(executor.launched)
    # Resuming the resume clones three too (it succeeded there), from that run.
    second, finished, _ = _run(harness, _request(LINEAR, origin=first))
    assert finished.state is RunState.SUCCEEDED
    assert [k.step for k in executor.launched[before:]] == ["four", "end"]
    three = _tasks(metadata, "Linear", second)["three"][0]
    assert three.origin_task.startswith(f"Linear/{first}/three/")
    # A new step after start: start's recorded transition no longer fits, so it runs.
    changed = _graph(
        "Linear",
        _step("start", "extra"),
        _step("extra", "two"),
        _step("two", "three"),
        _step("three", "four"),
        _step("four", "end"),
        _step("end"),
    )
    _NEXT["Linear"]["extra"] = ("two",)
    _NEXT_START = _NEXT["Linear"]["start"]
    _NEXT["Linear"]["start"] = ("extra",)
    try:
        before = len(executor.launched)
        _, finished, _ = _run(harness, _request(changed, origin=second))
        assert finished.state is RunState.SUCCEEDED, finished.failure_message
        assert [k.step for k in executor.launched[before:]] == [
            "start",
            "extra",
            "two",
            "three",
            "four",
            "end",
        ]
    finally:
        _NEXT["Linear"]["start"] = _NEXT_START
        del _NEXT["Linear"]["extra"]


def test_branch_resume_reruns_the_failed_branch_and_the_join(harness: Harness) -> None:
    _, metadata, _, behaviour, executor = harness
    _NEXT["Branchy"] = {
        "start": ("left", "right"),
        "left": ("join",),
        "right": ("join",),
        "join": ("end",),
    }
    behaviour.fail = lambda key, spec: key.step == "right"
    origin, finished, _ = _run(harness, _request(BRANCH, max_workers=1))
    assert finished.state is RunState.FAILED
    behaviour.fail = lambda key, spec: False
    before = len(executor.launched)
    resumed, finished, _ = _run(harness, _request(BRANCH, origin=origin))
    assert finished.state is RunState.SUCCEEDED, finished.failure_message
    assert [k.step for k in executor.launched[before:]] == ["right", "join", "end"]
    tasks = _tasks(metadata, "Branchy", resumed)
    join = tasks["join"][0]
    left, right = tasks["left"][0], tasks["right"][0]
    assert left.origin_task and not right.origin_task
    assert join.input_tasks == (
        f"Branchy/{resumed}/left/{left.task_id}",
        f"Branchy/{resumed}/right/{right.task_id}",
    )


def test_clone_task_copies_references_of_a_succeeded_attempt_only(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "metadata.db")
    try:
        run = store.create_run(
            flow_id="F",
            user="u",
            tags=(),
            system_tags=(),
            graph=b"",
            options=b"",
            environment=b"",
            namespace="",
        )
        task = store.create_task(
            flow_id="F", run_id=run.run_id, step_name="a", foreach_stack=(), input_tasks=()
        )
        artifact = ArtifactRecord("x", "sha256:" + "1" * 64, "json", 3, "int")
        store.start_attempt("F", run.run_id, task.task_id, 0)
        store.finish_attempt("F", run.run_id, task.task_id, 0, state=TaskState.FAILED)
        store.start_attempt("F", run.run_id, task.task_id, 1)
        store.finish_attempt(
            "F",
            run.run_id,
            task.task_id,
            1,
            state=TaskState.SUCCEEDED,
            artifacts=[artifact],
            next_steps=["b"],
            metadata={"k": "v"},
        )
        new = store.create_run(
            flow_id="F",
            user="u",
            tags=(),
            system_tags=(),
            graph=b"",
            options=b"",
            environment=b"",
            namespace="",
            origin_run_id=run.run_id,
        )
        common = {
            "flow_id": "F",
            "run_id": new.run_id,
            "step_name": "a",
            "foreach_stack": (),
            "input_tasks": (),
            "origin_run_id": run.run_id,
            "origin_task_id": task.task_id,
        }
        with pytest.raises(FailedPreconditionError) as caught:
            store.clone_task(**common, origin_attempt=0)
        assert caught.value.reason == "ORIGIN_NOT_SUCCEEDED"
        with pytest.raises(NotFoundError):
            store.clone_task(**common, origin_attempt=5)
        clone = store.clone_task(**common, origin_attempt=1, metadata={"m": "1"})
        got = store.get_task("F", new.run_id, clone.task_id)
        assert got.origin_task == f"F/{run.run_id}/a/{task.task_id}"
        assert got.metadata == {"m": "1"}
        latest = got.latest
        assert latest is not None and latest.attempt == 0
        assert latest.state is TaskState.SUCCEEDED and latest.next_steps == ("b",)
        assert latest.metadata == {"k": "v"}
        assert store.list_artifacts("F", new.run_id, clone.task_id, 0) == [artifact]
    finally:
        store.close()
