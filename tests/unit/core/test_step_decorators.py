"""The built-in decorators in the core: how their attributes are read, and what the scheduler
does with them (retry delays on its timer queue, ``@catch``'s fallback attempt, the
``@timeout`` backstop, ``@environment`` at launch, ``@resources`` in the task's metadata).

The scheduler is driven in process by an executor that plays a script per attempt."""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from polyflow_core.datastore.local import LocalBlobStore
from polyflow_core.domain import step_decorators as sd
from polyflow_core.domain.events import EventHub, RunFinished, RunMessage
from polyflow_core.domain.execution import (
    RunOptions,
    RunRequest,
    TaskOutcome,
    TaskSpecData,
    WorkerEnvironment,
)
from polyflow_core.domain.graph import validate
from polyflow_core.domain.model import (
    DecoratorSpec,
    FlowGraph,
    Language,
    StepSpec,
    Transition,
    TransitionKind,
)
from polyflow_core.domain.scheduler import Scheduler
from polyflow_core.executors.base import (
    Executor,
    ExecutorListener,
    ExitStatus,
    LaunchRequest,
    TaskHandle,
    TaskKey,
)
from polyflow_core.metadata.base import RunState, TaskState
from polyflow_core.metadata.sqlite import SqliteMetadataStore
from polyflow_core.paths import RootLayout


def deco(name: str, **attributes: object) -> DecoratorSpec:
    return DecoratorSpec(name, {k: json.dumps(v) for k, v in attributes.items()})


def linear(*decorators: DecoratorSpec) -> FlowGraph:
    """start (decorated) -> end, validated."""
    graph = FlowGraph(
        flow_name="F",
        steps=(
            StepSpec(
                "start",
                transition=Transition(TransitionKind.LINEAR, ("end",)),
                decorators=decorators,
                num_args=1,
            ),
            StepSpec("end", num_args=1),
        ),
        language=Language.PYTHON,
    )
    result = validate(graph)
    assert result.ok, result.problems
    return result.graph


# --- reading the attributes ---------------------------------------------------------------------


def test_retry_settings_policy_and_delays() -> None:
    plain = linear().step("start")
    assert sd.retry_settings(plain) == sd.RetrySettings()
    assert sd.retry_policy(plain) == 0

    retried = linear(deco("retry", times=2, minutes_between_retries=0.5)).step("start")
    assert sd.retry_settings(retried) == sd.RetrySettings(times=2, delay_seconds=30.0)
    assert sd.retry_policy(retried) == 2
    assert [sd.retry_delay_seconds(retried, n) for n in (0, 1)] == [30.0, 30.0]

    both = linear(deco("retry", times=1, minutes_between_retries=1), deco("catch")).step("start")
    settings = sd.retry_settings(both)
    assert (settings.max_attempts, settings.is_fallback(1), settings.is_fallback(2)) == (
        3,
        False,
        True,
    )
    assert sd.retry_policy(both) == 2
    assert sd.retry_delay_seconds(both, 0) == 60.0
    assert sd.retry_delay_seconds(both, 1) == 0.0  # no wait before the fallback attempt

    only_catch = linear(deco("catch")).step("start")
    assert sd.retry_policy(only_catch) == 1
    assert sd.retry_delay_seconds(only_catch, 0) == 0.0

    defaults = linear(DecoratorSpec("retry")).step("start")
    assert sd.retry_settings(defaults) == sd.RetrySettings(times=3, delay_seconds=120.0)


def test_timeouts_and_their_backstop() -> None:
    assert sd.timeout_seconds(linear().step("start")) == 0
    step = linear(deco("timeout", seconds=5, minutes=1, hours=1)).step("start")
    assert sd.timeout_seconds(step) == 3665
    assert sd.backstop_seconds(2) == 12
    assert sd.backstop_seconds(3600) == 3960


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1 second"),
        (2, "2 seconds"),
        (1.5, "1.5 seconds"),
        (60, "1 minute"),
        (90, "1 minute 30 seconds"),
        (7200, "2 hours"),
        (3661, "1 hour 1 minute 1 second"),
    ],
)
def test_describe_seconds(seconds: float, text: str) -> None:
    assert sd.describe_seconds(seconds) == text


def test_environment_variables_and_resources_metadata() -> None:
    step = linear(
        deco("environment", vars={"A": "x", "N": 3, "F": 1.5, "B": True}),
        deco("resources", memory=8192, gpu=1),
    ).step("start")
    assert sd.environment_variables(step) == {"A": "x", "N": "3", "F": "1.5", "B": "true"}
    assert json.loads(sd.task_metadata(step)["resources"]) == {
        "cpu": 1,
        "gpu": 1,
        "disk": None,
        "memory": 8192,
        "shared_memory": None,
    }
    plain = linear().step("start")
    assert sd.environment_variables(plain) == {} and sd.task_metadata(plain) == {}


# --- the scheduler --------------------------------------------------------------------------------

Play = TaskOutcome | Literal["die", "hang"]


@dataclass
class ScriptedExecutor(Executor):
    """Plays ``script(key)`` for each attempt from its own thread: an outcome is reported
    then the process "exits"; ``die`` exits with code 1 without a report; ``hang`` waits
    until killed (exit by SIGKILL)."""

    script: Callable[[TaskKey], Play]
    scheduler: Scheduler | None = None
    launches: list[tuple[float, LaunchRequest]] = field(default_factory=list)
    killed: list[TaskKey] = field(default_factory=list)
    _listener: ExecutorListener | None = None
    _queue: queue.Queue[tuple[TaskKey, Play] | None] = field(default_factory=queue.Queue)
    _hanging: dict[TaskKey, threading.Event] = field(default_factory=dict)

    name = "scripted"

    def start(self, listener: ExecutorListener) -> None:
        self._listener = listener
        threading.Thread(target=self._work, daemon=True).start()

    def launch(self, request: LaunchRequest) -> TaskHandle:
        self.launches.append((time.monotonic(), request))
        play = self.script(request.key)
        if play == "hang":
            self._hanging[request.key] = threading.Event()
        else:
            self._queue.put((request.key, play))
        return TaskHandle(request.key)

    def kill(self, handle: TaskHandle) -> None:
        self.killed.append(handle.key)
        if handle.key in self._hanging and self._listener is not None:
            del self._hanging[handle.key]
            self._listener.on_exit(handle.key, ExitStatus(signal_number=9))

    def shutdown(self, timeout: float = 5.0) -> None:
        self._queue.put(None)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            key, play = item
            assert self._listener is not None and self.scheduler is not None
            if isinstance(play, TaskOutcome):
                self.scheduler.complete_task(
                    key.flow, key.run, key.step, key.task, key.attempt, play
                )
            code = 0 if isinstance(play, TaskOutcome) and play.succeeded else 1
            self._listener.on_exit(key, ExitStatus(exit_code=code))


@dataclass
class Harness:
    scheduler: Scheduler
    metadata: SqliteMetadataStore
    events: EventHub
    executor: ScriptedExecutor
    specs: list[TaskSpecData]

    def run(self, graph: FlowGraph) -> str:
        return self.scheduler.start_run(_request(graph)).run_id

    def wait(self, run_id: str) -> tuple[RunFinished, list[str]]:
        """The run's end and the core's messages."""
        log = self.events.get("F", run_id)
        assert log is not None
        after, messages = 0, []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for event in log.read(after, exclude_logs=True, timeout=1):
                after = event.sequence
                if isinstance(event.payload, RunMessage):
                    messages.append(event.payload.text)
                if isinstance(event.payload, RunFinished):
                    return event.payload, messages
        raise AssertionError("the run did not finish")


def _request(graph: FlowGraph) -> RunRequest:
    return RunRequest(
        graph=graph,
        graph_bytes=b"",
        start_step="start",
        parameter_artifacts=(),
        options=RunOptions(),
        options_bytes=b"",
        environment=WorkerEnvironment(
            {Language.PYTHON: sys.executable}, "/", {"KEEP": "1", "A": "client"}, "/f.py"
        ),
        environment_bytes=b"",
        user="tester",
    )


@pytest.fixture
def harness_for(tmp_path: Path) -> Iterator[Callable[[Callable[[TaskKey], Play]], Harness]]:
    made: list[Harness] = []

    def make(script: Callable[[TaskKey], Play]) -> Harness:
        layout = RootLayout(tmp_path / ".polyflow")
        metadata = SqliteMetadataStore(layout.db_path)
        events = EventHub()
        specs: list[TaskSpecData] = []
        executor = ScriptedExecutor(script)

        def encode(spec: TaskSpecData) -> bytes:
            specs.append(spec)
            return b""

        scheduler = Scheduler(
            metadata=metadata,
            blobs=LocalBlobStore(layout.store_root),
            executor=executor,
            events=events,
            layout=layout,
            core_address="unix:/nowhere",
            encode_task_spec=encode,
            timeout_backstop=lambda limit: limit + 0.3,
        )
        executor.scheduler = scheduler
        scheduler.start()
        harness = Harness(scheduler, metadata, events, executor, specs)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.scheduler.stop()
        harness.metadata.close()


def _ok(key: TaskKey) -> TaskOutcome:
    return TaskOutcome(succeeded=True, next_steps=("end",) if key.step == "start" else ())


def _failed(key: TaskKey) -> TaskOutcome:
    return TaskOutcome(succeeded=False, failure_message=f"ValueError: attempt {key.attempt}")


def test_retry_waits_on_the_timer_queue(
    harness_for: Callable[[Callable[[TaskKey], Play]], Harness],
) -> None:
    graph = linear(deco("retry", times=2, minutes_between_retries=0.01))  # 0.6 s
    h = harness_for(
        lambda key: _failed(key) if key.step == "start" and key.attempt < 2 else _ok(key)
    )
    finished, messages = h.wait(h.run(graph))
    assert finished.state is RunState.SUCCEEDED, finished.failure_message
    starts = [(when, r.key.attempt) for when, r in h.executor.launches if r.key.step == "start"]
    assert [attempt for _, attempt in starts] == [0, 1, 2]
    assert starts[1][0] - starts[0][0] >= 0.6 and starts[2][0] - starts[1][0] >= 0.6
    assert "retrying task F/1/start/1 (retry 1 of 2) in 0.6 seconds" in messages
    task = h.metadata.get_task("F", "1", "1")
    assert [a.state for a in task.attempts] == [TaskState.FAILED] * 2 + [TaskState.SUCCEEDED]
    # Each retry's worker is told the previous failure and the number of retries allowed.
    start_specs = [s for s in h.specs if s.step == "start"]
    assert [s.previous_failure_message for s in start_specs] == [
        "",
        "ValueError: attempt 0",
        "ValueError: attempt 1",
    ]
    assert {s.max_user_code_retries for s in start_specs} == {2}


def test_a_run_cancelled_while_a_retry_waits_stops_at_once(
    harness_for: Callable[[Callable[[TaskKey], Play]], Harness],
) -> None:
    graph = linear(deco("retry", times=1, minutes_between_retries=10))
    h = harness_for(lambda key: _failed(key))
    run_id = h.run(graph)
    deadline = time.monotonic() + 10
    while not h.metadata.get_task("F", run_id, "1").attempts[0].finish_time:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.1)
    h.scheduler.cancel_run("F", run_id, "stop now")
    finished, _ = h.wait(run_id)
    assert finished.state is RunState.FAILED and finished.failure_message == "stop now"
    assert len(h.executor.launches) == 1
    assert not h.scheduler.is_active("F", run_id)


def test_catch_gets_a_fallback_attempt_without_waiting(
    harness_for: Callable[[Callable[[TaskKey], Play]], Harness],
) -> None:
    graph = linear(deco("retry", times=1, minutes_between_retries=0.005), deco("catch"))
    plays: dict[int, Play] = {0: _failed(TaskKey("F", "1", "start", "1", 0)), 1: "die"}
    h = harness_for(
        lambda key: plays.get(key.attempt, _ok(key)) if key.step == "start" else _ok(key)
    )
    finished, messages = h.wait(h.run(graph))
    assert finished.state is RunState.SUCCEEDED, finished.failure_message
    starts = [(when, r.key.attempt) for when, r in h.executor.launches if r.key.step == "start"]
    assert [attempt for _, attempt in starts] == [0, 1, 2]
    assert starts[2][0] - starts[1][0] < 0.3  # the fallback attempt does not wait
    assert "retrying task F/1/start/1 (retry 2 of 2)" in messages
    fallback = [s for s in h.specs if s.step == "start"][2]
    assert fallback.max_user_code_retries == 1 and fallback.attempt == 2
    assert fallback.previous_failure_message == (
        "worker exited with code 1 without reporting its outcome"
    )


def test_timeout_backstop_kills_a_stuck_worker_and_retry_applies(
    harness_for: Callable[[Callable[[TaskKey], Play]], Harness],
) -> None:
    graph = linear(deco("timeout", seconds=0.2), deco("retry", times=1, minutes_between_retries=0))
    h = harness_for(lambda key: "hang" if key.step == "start" and key.attempt == 0 else _ok(key))
    finished, messages = h.wait(h.run(graph))
    assert finished.state is RunState.SUCCEEDED, finished.failure_message
    assert [k.attempt for k in h.executor.killed] == [0]
    first = h.metadata.get_task("F", "1", "1").attempts[0]
    assert first.failure_message == (
        "worker killed by signal 9 (SIGKILL): the step ran over its @timeout of 0.2 seconds "
        "and the core stopped its worker"
    )
    assert first.finish_time is not None and first.start_time is not None
    assert (first.finish_time - first.start_time).total_seconds() >= 0.5
    assert any("still running past its @timeout of 0.2 seconds" in m for m in messages)


def test_a_worker_that_finishes_in_time_is_not_killed(
    harness_for: Callable[[Callable[[TaskKey], Play]], Harness],
) -> None:
    h = harness_for(_ok)
    finished, _ = h.wait(h.run(linear(deco("timeout", seconds=0.1))))
    assert finished.state is RunState.SUCCEEDED
    time.sleep(0.6)  # past the backstop of the start task
    assert h.executor.killed == []


def test_launch_adds_environment_and_records_resources(
    harness_for: Callable[[Callable[[TaskKey], Play]], Harness],
) -> None:
    graph = linear(
        deco("environment", vars={"A": "step", "N": 2}), deco("resources", cpu=4, memory=512)
    )
    h = harness_for(_ok)
    finished, _ = h.wait(h.run(graph))
    assert finished.state is RunState.SUCCEEDED
    by_step = {request.key.step: request for _, request in h.executor.launches}
    assert dict(by_step["start"].environment) == {"KEEP": "1", "A": "step", "N": "2"}
    assert dict(by_step["end"].environment) == {"KEEP": "1", "A": "client"}
    assert ("resources", {"cpu": "4", "memory": "512"}) in by_step["start"].decorators
    start = h.metadata.get_task("F", "1", "1")
    assert json.loads(start.metadata["resources"])["cpu"] == 4
    assert "resources" not in h.metadata.get_task("F", "1", "2").metadata
