"""The scheduler end to end: a real daemon process, real gRPC, real worker processes.

Workers are the fake worker of ``fake_worker/polyflow_fake_worker.py``, selected through the
documented test seam ``POLYFLOW_WORKER_MODULE`` of the worker environment, so these tests need
nothing of the SDK. Graphs are written as ``FlowGraph`` messages, as any SDK would send them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from polyflow.api.common.v1 import enums_pb2, graph_pb2
from polyflow.api.errordetails.v1 import message_pb2 as errordetails_pb2
from polyflow.api.metadata.v1 import request_response_pb2 as md_pb2
from polyflow.api.metadata.v1 import service_pb2_grpc as md_grpc
from polyflow.api.runtime.v1 import message_pb2 as rt_msg
from polyflow.api.runtime.v1 import request_response_pb2 as rt_pb2
from polyflow.api.runtime.v1 import service_pb2_grpc as rt_grpc
from polyflow_core.datastore.local import LocalBlobStore

FAKE_WORKER_DIR = Path(__file__).resolve().parent / "fake_worker"

Plan = dict[str, dict[str, Any]]
"""Per step, what the fake worker does (see fake_worker/polyflow_fake_worker.py)."""

LINEAR = enums_pb2.TRANSITION_KIND_LINEAR
BRANCH = enums_pb2.TRANSITION_KIND_BRANCH
FOREACH = enums_pb2.TRANSITION_KIND_FOREACH
SWITCH = enums_pb2.TRANSITION_KIND_SWITCH
SUCCEEDED = enums_pb2.RUN_STATE_SUCCEEDED
FAILED = enums_pb2.RUN_STATE_FAILED


# --- graphs ---------------------------------------------------------------------------------
def step(
    name: str,
    targets: Sequence[str] = (),
    *,
    kind: enums_pb2.TransitionKind.ValueType | None = None,
    join: bool = False,
    foreach: str = "",
    cases: dict[str, str] | None = None,
) -> graph_pb2.StepSpec:
    """A step as an SDK reports it."""
    transition = graph_pb2.Transition()
    if kind is None:
        kind = LINEAR if len(targets) == 1 else BRANCH
    if cases is not None:
        transition.kind = SWITCH
        transition.switch_cases.update(cases)
        transition.condition = "state"
    elif foreach:
        transition.kind = FOREACH
        transition.targets.extend(targets)
        transition.foreach_var = foreach
    elif targets:
        transition.kind = kind
        transition.targets.extend(targets)
    return graph_pb2.StepSpec(
        name=name, transition=transition, is_join=join, num_args=2 if join else 1
    )


def graph(flow: str, *steps: graph_pb2.StepSpec) -> graph_pb2.FlowGraph:
    """A Python flow's graph."""
    return graph_pb2.FlowGraph(
        flow_name=flow,
        source_file=f"/nowhere/{flow}.py",
        steps=steps,
        language=enums_pb2.LANGUAGE_PYTHON,
        parameters=[graph_pb2.ParameterSpec(name="alpha")],
    )


LINEAR_GRAPH = graph("LinearFlow", step("start", ["a"]), step("a", ["end"]), step("end"))


# --- the daemon -----------------------------------------------------------------------------
@dataclass
class RunResult:
    """A finished run as the tests see it."""

    name: str
    events: list[rt_msg.RunEvent]
    run: Any = None
    fakes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> rt_msg.RunFinishedEvent:
        last = self.events[-1]
        assert last.WhichOneof("event") == "run_finished", last
        return last.run_finished

    def fakes_of(self, step_name: str) -> list[dict[str, Any]]:
        return [f for f in self.fakes if f["step"] == step_name]


class Daemon:
    """A daemon subprocess on a temporary root, with clients."""

    def __init__(self, root: Path, workdir: Path) -> None:
        self.root = root
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: grpc.Channel | None = None
        self.log_path = root.parent / "daemon.log"

    @property
    def address(self) -> str:
        return f"unix:{self.root / 'daemon.sock'}"

    def start(self, idle_timeout: float = 0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "polyflow_core",
                    "serve",
                    "--root",
                    str(self.root),
                    "--idle-timeout",
                    str(idle_timeout),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
        if self.channel is not None:
            self.channel.close()
        # Connect once the socket exists: a channel that found nothing backs off for a second.
        deadline = time.monotonic() + 30
        socket_path = self.root / "daemon.sock"
        while not socket_path.exists() and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.channel = grpc.insecure_channel(self.address)
        while True:
            try:
                self.runtime.GetServerInfo(
                    rt_pb2.GetServerInfoRequest(), timeout=2, wait_for_ready=True
                )
                return
            except grpc.RpcError as error:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    log = self.log_path.read_text()
                    raise AssertionError(f"daemon did not start:\n{log}") from error
                time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(30)
        self.proc = None
        return code

    @property
    def runtime(self) -> rt_grpc.RuntimeServiceStub:
        assert self.channel is not None
        return rt_grpc.RuntimeServiceStub(self.channel)

    @property
    def metadata(self) -> md_grpc.MetadataServiceStub:
        assert self.channel is not None
        return md_grpc.MetadataServiceStub(self.channel)

    # --- runs ---------------------------------------------------------------------------
    def request(
        self,
        flow_graph: graph_pb2.FlowGraph,
        plan: Plan | None = None,
        *,
        max_workers: int = 0,
        max_num_splits: int = 0,
        request_id: str = "",
    ) -> rt_pb2.StartRunRequest:
        store = LocalBlobStore(self.root / "store")
        value = b'"hello"'
        info = store.put_bytes(value)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(FAKE_WORKER_DIR),
            "POLYFLOW_WORKER_MODULE": "polyflow_fake_worker",
            "POLYFLOW_FAKE_PLAN": json.dumps(plan or {}),
        }
        return rt_pb2.StartRunRequest(
            graph=flow_graph,
            parameter_artifacts=[
                graph_pb2.ArtifactRef(
                    name="alpha", digest=info.digest, encoding="json", size_bytes=len(value)
                )
            ],
            tags=["test"],
            options=rt_msg.RunOptions(max_workers=max_workers, max_num_splits=max_num_splits),
            environment=rt_msg.WorkerEnvironment(
                interpreters=[
                    rt_msg.Interpreter(
                        language=enums_pb2.LANGUAGE_PYTHON, executable=sys.executable
                    )
                ],
                working_directory=str(self.workdir),
                variables=env,
                code_path=flow_graph.source_file,
            ),
            user="tester",
            namespace="user:tester",
            request_id=request_id,
        )

    def start_run(
        self,
        flow_graph: graph_pb2.FlowGraph,
        plan: Plan | None = None,
        **kwargs: Any,
    ) -> str:
        response = self.runtime.StartRun(self.request(flow_graph, plan, **kwargs), timeout=30)
        assert response.run.state == enums_pb2.RUN_STATE_RUNNING
        return response.run.name

    def watch(
        self, run_name: str, *, after: int = 0, exclude_logs: bool = False, timeout: float = 60
    ) -> RunResult:
        events = list(
            item.event
            for item in self.runtime.WatchRun(
                rt_pb2.WatchRunRequest(
                    run=run_name, after_sequence=after, exclude_logs=exclude_logs
                ),
                timeout=timeout,
            )
        )
        fakes = [
            json.loads(e.log_line.text[len("FAKE ") :])
            for e in events
            if e.WhichOneof("event") == "log_line" and e.log_line.text.startswith("FAKE ")
        ]
        run = self.metadata.GetRun(md_pb2.GetRunRequest(name=run_name), timeout=10).run
        return RunResult(run_name, events, run, fakes)

    def run(
        self,
        flow_graph: graph_pb2.FlowGraph,
        plan: Plan | None = None,
        **kwargs: Any,
    ) -> RunResult:
        return self.watch(self.start_run(flow_graph, plan, **kwargs))

    def tasks(self, run_name: str, step_name: str) -> list[Any]:
        """The step's tasks; none while the step has no task yet (NOT_FOUND)."""
        try:
            response = self.metadata.ListTasks(
                md_pb2.ListTasksRequest(parent=f"{run_name}/steps/{step_name}", page_size=1000),
                timeout=10,
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise
        return list(response.tasks)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A fresh daemon per test (they are cheap: about half a second)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    instance = Daemon(tmp_path / ".polyflow", workdir)
    instance.start()
    yield instance
    instance.stop()


def kinds(events: Sequence[rt_msg.RunEvent]) -> list[str]:
    return [e.WhichOneof("event") or "" for e in events]


def error_info(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, list[Any]]:
    """Code, ErrorInfo reason and unpacked typed details of a failed call."""
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None
    reason = ""
    details: list[Any] = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        failure = errordetails_pb2.GraphValidationFailure()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(failure):
            details.append(failure)
    return error.code(), reason, details


# --- tests ------------------------------------------------------------------------------------
def test_linear_run_succeeds_with_events_in_order(daemon: Daemon) -> None:
    plan = {"a": {"print": ["hello from a"], "stderr": ["warning from a"]}}
    result = daemon.run(LINEAR_GRAPH, plan)

    assert result.finished.state == SUCCEEDED, result.events
    sequences = [e.sequence for e in result.events]
    assert sequences == list(range(1, len(sequences) + 1))
    lifecycle = [
        (e.WhichOneof("event"), getattr(e, e.WhichOneof("event") or "").pathspec)
        for e in result.events
        if e.WhichOneof("event") in ("task_started", "task_finished")
    ]
    steps = [(kind, pathspec.split("/")[2]) for kind, pathspec in lifecycle]
    assert steps == [
        ("task_started", "start"),
        ("task_finished", "start"),
        ("task_started", "a"),
        ("task_finished", "a"),
        ("task_started", "end"),
        ("task_finished", "end"),
    ]
    # Each task's log lines come between its start and its finish.
    a_events = [
        e
        for e in result.events
        if "/a/" in (e.task_started.pathspec or e.task_finished.pathspec or e.log_line.pathspec)
    ]
    assert kinds(a_events)[0] == "task_started" and kinds(a_events)[-1] == "task_finished"
    texts = {(e.log_line.stream, e.log_line.text) for e in a_events if e.HasField("log_line")}
    assert (enums_pb2.LOG_STREAM_STDOUT, "hello from a") in texts
    assert (enums_pb2.LOG_STREAM_STDERR, "warning from a") in texts

    run = result.run
    assert run.state == SUCCEEDED
    assert run.end_task.endswith("/steps/end/tasks/3")
    assert "user:tester" in run.system_tags
    # The start task read the _parameters pseudo-task, with the parameter artifact.
    (start,) = result.fakes_of("start")
    flow, run_id = result.name.split("/")[1], result.name.split("/")[3]
    assert start["inputs"] == [f"{flow}/{run_id}/_parameters/0"]
    assert start["params"] == ["alpha"]
    assert start["core_address"] == daemon.address
    assert "test" in start["tags"] and "user:tester" in start["tags"]
    # Artifacts are inherited down the line.
    (end,) = result.fakes_of("end")
    assert end["params"] == ["alpha", "seen_a", "seen_start"]
    # Logs are stored per attempt; spec files are gone.
    a_log = daemon.root / "logs" / flow / run_id / "a" / "2" / "0.stdout"
    assert "hello from a" in a_log.read_text()
    assert "warning from a" in (a_log.parent / "0.stderr").read_text()
    assert not list((daemon.root / "tasks").glob("*.pb"))
    # The attempt is recorded with the worker's metadata and transition.
    (task_a,) = daemon.tasks(result.name, "a")
    assert task_a.state == enums_pb2.TASK_STATE_SUCCEEDED
    assert list(task_a.next_steps) == ["end"]
    assert task_a.metadata["fake_worker"] == "1"


def test_watch_honours_after_sequence_and_exclude_logs(daemon: Daemon) -> None:
    result = daemon.run(LINEAR_GRAPH, {"a": {"print": ["x", "y"]}})
    quiet = daemon.watch(result.name, exclude_logs=True)
    assert "log_line" not in kinds(quiet.events)
    assert [e.sequence for e in quiet.events] == [
        e.sequence for e in result.events if e.WhichOneof("event") != "log_line"
    ]
    tail = daemon.watch(result.name, after=result.events[-3].sequence)
    assert [e.sequence for e in tail.events] == [e.sequence for e in result.events[-2:]]


def test_branch_join_gets_both_inputs_in_target_order(daemon: Daemon) -> None:
    flow = graph(
        "BranchFlow",
        step("start", ["a", "b"]),
        step("a", ["a2"]),
        step("a2", ["join"]),
        step("b", ["join"]),
        step("join", ["end"], join=True),
        step("end"),
    )
    # b finishes long before a2: the inputs must still follow the split's target order.
    result = daemon.run(flow, {"a": {"sleep": 0.3}})
    assert result.finished.state == SUCCEEDED, result.events
    (join,) = result.fakes_of("join")
    assert join["input_steps"] == ["a2", "b"]
    assert join["stack"] == []


def test_foreach_of_five_then_join_gets_five_ordered_inputs(daemon: Daemon) -> None:
    flow = graph(
        "ForeachFlow",
        step("start", ["work"], foreach="items"),
        step("work", ["join"]),
        step("join", ["end"], join=True),
        step("end"),
    )
    result = daemon.run(flow, {"start": {"splits": 5}}, max_workers=2)
    assert result.finished.state == SUCCEEDED, result.events
    works = result.fakes_of("work")
    assert sorted(w["stack"][0][1] for w in works) == [0, 1, 2, 3, 4]
    assert all(w["stack"][0][2] == 5 for w in works)
    assert {w["stack"][0][3] for w in works} == {f"item{i}" for i in range(5)}
    by_index = {w["stack"][0][1]: w["task"] for w in works}
    (join,) = result.fakes_of("join")
    assert [p.split("/")[-1] for p in join["inputs"]] == [by_index[i] for i in range(5)]
    assert join["stack"] == []
    # max_workers=2: never more than two work tasks running at once.
    running = peak = 0
    for e in result.events:
        if e.HasField("task_started"):
            running += 1
        elif e.HasField("task_finished"):
            running -= 1
        peak = max(peak, running)
    assert peak <= 2


def test_nested_foreach(daemon: Daemon) -> None:
    flow = graph(
        "NestedFlow",
        step("start", ["outer"], foreach="letters"),
        step("outer", ["inner"], foreach="numbers"),
        step("inner", ["join_inner"]),
        step("join_inner", ["join_outer"], join=True),
        step("join_outer", ["end"], join=True),
        step("end"),
    )
    result = daemon.run(flow, {"start": {"splits": 2}, "outer": {"splits": 3}})
    assert result.finished.state == SUCCEEDED, result.events
    inners = result.fakes_of("inner")
    assert len(inners) == 6
    assert sorted((i["stack"][0][1], i["stack"][1][1]) for i in inners) == [
        (a, b) for a in range(2) for b in range(3)
    ]
    joins = result.fakes_of("join_inner")
    assert len(joins) == 2
    task_stack = {i["task"]: i["stack"] for i in inners}
    for join in joins:
        stacks = [task_stack[p.split("/")[-1]] for p in join["inputs"]]
        # One outer index per join; inputs ordered by the inner index.
        assert len({s[0][1] for s in stacks}) == 1
        assert [s[1][1] for s in stacks] == [0, 1, 2]
        assert join["stack"] == [stacks[0][0]]
    (outer_join,) = result.fakes_of("join_outer")
    assert len(outer_join["inputs"]) == 2
    assert outer_join["stack"] == []


def test_switch_self_loop_then_exit(daemon: Daemon) -> None:
    flow = graph(
        "SwitchFlow",
        step("start", ["loop"]),
        step("loop", cases={"again": "loop", "done": "after"}),
        step("after", ["end"]),
        step("end"),
    )
    result = daemon.run(flow, {"loop": {"loop_until": 3}})
    assert result.finished.state == SUCCEEDED, result.events
    loops = result.fakes_of("loop")
    assert len(loops) == 3
    # Each loop task reads the previous one.
    assert loops[1]["input_steps"] == ["loop"] and loops[2]["input_steps"] == ["loop"]
    assert len(daemon.tasks(result.name, "loop")) == 3


def test_too_many_splits_fails_naming_both_numbers(daemon: Daemon) -> None:
    flow = graph(
        "SplitsFlow",
        step("start", ["work"], foreach="items"),
        step("work", ["join"]),
        step("join", ["end"], join=True),
        step("end"),
    )
    result = daemon.run(flow, {"start": {"splits": 7}}, max_num_splits=5)
    assert result.finished.state == FAILED
    message = result.finished.failure_message
    assert "7" in message and "5" in message and "max_num_splits" in message, message
    assert "/start/1" in message  # names the failing pathspec
    assert result.run.failure_message == message
    assert not result.fakes_of("work")
    (start,) = daemon.tasks(result.name, "start")
    assert start.state == enums_pb2.TASK_STATE_FAILED


def test_worker_killed_by_sigkill_fails_the_task(daemon: Daemon) -> None:
    result = daemon.run(LINEAR_GRAPH, {"a": {"sigkill": True}})
    assert result.finished.state == FAILED
    finished = [e.task_finished for e in result.events if e.HasField("task_finished")]
    assert finished[-1].pathspec.split("/")[2] == "a"
    assert finished[-1].state == enums_pb2.TASK_STATE_FAILED
    assert "killed by signal 9 (SIGKILL)" in finished[-1].failure_message
    assert "killed by signal 9" in result.finished.failure_message
    assert "/a/2" in result.finished.failure_message


def test_exit_without_report_and_reported_failure_and_bad_transition(daemon: Daemon) -> None:
    exited = daemon.run(LINEAR_GRAPH, {"a": {"exit": 3}})
    assert exited.finished.state == FAILED
    assert "worker exited with code 3 without reporting its outcome" in (
        exited.finished.failure_message
    )
    failed = daemon.run(LINEAR_GRAPH, {"a": {"fail": "boom in a"}})
    assert failed.finished.state == FAILED
    assert "boom in a" in failed.finished.failure_message
    wrong = daemon.run(LINEAR_GRAPH, {"start": {"next": ["end"]}})
    assert wrong.finished.state == FAILED
    assert "must go to 'a'" in wrong.finished.failure_message
    assert not wrong.fakes_of("end")


def test_two_runs_at_once(daemon: Daemon) -> None:
    other = graph("OtherFlow", step("start", ["end"]), step("end"))
    plan = {"a": {"sleep": 1.0}, "start": {"sleep": 0.5}}
    names = [
        daemon.start_run(LINEAR_GRAPH, plan),
        daemon.start_run(LINEAR_GRAPH, plan),
        daemon.start_run(other, plan),
    ]
    assert len(set(names)) == 3
    results = [daemon.watch(name) for name in names]
    for result in results:
        assert result.finished.state == SUCCEEDED, result.events
        flow = result.name.split("/")[1]
        assert all(f["inputs"][0].startswith(flow) for f in result.fakes)
        # Each run has its own stream, numbered from 1.
        assert [e.sequence for e in result.events] == list(range(1, len(result.events) + 1))

    def span(result: RunResult, step_name: str) -> tuple[float, float]:
        times = [
            e.time.ToNanoseconds() / 1e9
            for e in result.events
            if (e.task_started.pathspec or e.task_finished.pathspec).split("/")[2:3] == [step_name]
        ]
        return min(times), max(times)

    # The two runs of the same flow ran side by side: their 'a' tasks overlapped in time.
    first, second = span(results[0], "a"), span(results[1], "a")
    assert first[0] < second[1] and second[0] < first[1]


def test_cancel_run_kills_its_tasks(daemon: Daemon) -> None:
    name = daemon.start_run(LINEAR_GRAPH, {"a": {"sleep": 60}})
    deadline = time.monotonic() + 30
    while not daemon.tasks(name, "a"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    daemon.runtime.CancelRun(rt_pb2.CancelRunRequest(run=name, reason="user said stop"), timeout=10)
    result = daemon.watch(name)
    assert time.monotonic() - started < 10
    assert result.finished.state == FAILED
    assert result.finished.failure_message == "user said stop"
    (task_a,) = daemon.tasks(name, "a")
    assert task_a.state == enums_pb2.TASK_STATE_FAILED
    assert "killed by signal 9" in task_a.failure_message
    assert "run cancelled: user said stop" in [
        e.message.text for e in result.events if e.HasField("message")
    ]
    # Cancelling a finished run changes nothing.
    again = daemon.runtime.CancelRun(rt_pb2.CancelRunRequest(run=name), timeout=10)
    assert again.run.failure_message == "user said stop"


def test_start_run_errors(daemon: Daemon) -> None:
    bad = graph("BadFlow", step("start", ["nowhere"]), step("end"))
    with pytest.raises(grpc.RpcError) as caught:
        daemon.runtime.StartRun(daemon.request(bad), timeout=10)
    code, reason, details = error_info(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and reason == "GRAPH_INVALID"
    assert details and details[0].problems

    request = daemon.request(LINEAR_GRAPH)
    del request.environment.interpreters[:]
    with pytest.raises(grpc.RpcError) as caught:
        daemon.runtime.StartRun(request, timeout=10)
    assert error_info(caught.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INTERPRETER_MISSING")

    request = daemon.request(LINEAR_GRAPH)
    request.parameter_artifacts[0].digest = "sha256:" + "0" * 64
    with pytest.raises(grpc.RpcError) as caught:
        daemon.runtime.StartRun(request, timeout=10)
    assert error_info(caught.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "BLOB_NOT_FOUND")

    with pytest.raises(grpc.RpcError) as caught:
        daemon.runtime.CompleteTask(
            rt_pb2.CompleteTaskRequest(
                task="flows/LinearFlow/runs/999/steps/a/tasks/1", outcome=rt_msg.TaskOutcome()
            ),
            timeout=10,
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_validate_graph_reports_problems_without_failing(daemon: Daemon) -> None:
    bad = graph("BadFlow", step("start", ["nowhere"]), step("end"))
    response = daemon.runtime.ValidateGraph(rt_pb2.ValidateGraphRequest(graph=bad), timeout=10)
    assert response.problems
    good = daemon.runtime.ValidateGraph(rt_pb2.ValidateGraphRequest(graph=LINEAR_GRAPH), timeout=10)
    assert not good.problems
    assert [s.kind for s in good.graph.steps] == [
        enums_pb2.STEP_KIND_START,
        enums_pb2.STEP_KIND_LINEAR,
        enums_pb2.STEP_KIND_END,
    ]


def test_start_run_is_idempotent_by_request_id(daemon: Daemon) -> None:
    first = daemon.runtime.StartRun(daemon.request(LINEAR_GRAPH, request_id="req-1"), timeout=10)
    second = daemon.runtime.StartRun(daemon.request(LINEAR_GRAPH, request_id="req-1"), timeout=10)
    assert first.run.name == second.run.name
    assert daemon.watch(first.run.name).finished.state == SUCCEEDED
    third = daemon.runtime.StartRun(daemon.request(LINEAR_GRAPH, request_id="req-1"), timeout=10)
    assert third.run.name == first.run.name and third.run.state == SUCCEEDED


def test_sigterm_fails_running_runs_with_daemon_stopped(daemon: Daemon) -> None:
    name = daemon.start_run(LINEAR_GRAPH, {"a": {"sleep": 60}})
    deadline = time.monotonic() + 30
    while not daemon.tasks(name, "a"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert daemon.stop(signal.SIGTERM) == 0
    assert not (daemon.root / "daemon.sock").exists()
    assert not (daemon.root / "daemon.pid").exists()
    daemon.start()
    run = daemon.metadata.GetRun(md_pb2.GetRunRequest(name=name), timeout=10).run
    assert run.state == FAILED and run.failure_message == "daemon stopped"
    # The worker died with it (its process group was killed).
    (task_a,) = daemon.tasks(name, "a")
    assert task_a.state == enums_pb2.TASK_STATE_FAILED
    # A finished run replays its end after a restart.
    replay = daemon.watch(name)
    assert kinds(replay.events) == ["run_finished"]
    assert replay.finished.failure_message == "daemon stopped"


def test_restart_after_a_crash_marks_the_running_run_failed(daemon: Daemon) -> None:
    name = daemon.start_run(LINEAR_GRAPH, {"a": {"sleep": 30}})
    flow, run_id = name.split("/")[1], name.split("/")[3]
    deadline = time.monotonic() + 30
    log = daemon.root / "logs" / flow / run_id / "a" / "2" / "0.stdout"
    while not log.exists() or "FAKE " not in log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    worker_pid = json.loads(log.read_text().split("FAKE ", 1)[1].splitlines()[0])["pid"]
    try:
        daemon.stop(signal.SIGKILL)
        daemon.start()  # the stale socket and lock of the dead daemon are no obstacle
        run = daemon.metadata.GetRun(md_pb2.GetRunRequest(name=name), timeout=10).run
        assert run.state == FAILED
        assert "daemon stopped before the run finished" in run.failure_message
        (task_a,) = daemon.tasks(name, "a")
        assert task_a.state == enums_pb2.TASK_STATE_FAILED
    finally:
        try:
            os.killpg(worker_pid, signal.SIGKILL)  # an orphan of the crashed daemon
        except ProcessLookupError:
            pass


def test_second_daemon_on_the_same_root_exits_quietly(daemon: Daemon) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "polyflow_core", "serve", "--root", str(daemon.root)],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0
    assert f"a daemon already serves {daemon.root}" in proc.stderr
    info = daemon.runtime.GetServerInfo(rt_pb2.GetServerInfoRequest(), timeout=10)
    assert daemon.proc is not None and info.pid == daemon.proc.pid
    assert oct((daemon.root / "daemon.sock").stat().st_mode & 0o777) == oct(0o600)


def test_idle_daemon_exits_but_not_during_a_run(daemon: Daemon) -> None:
    daemon.stop()
    daemon.start(idle_timeout=2)
    # A run longer than the idle timeout keeps the daemon alive; nobody watches it.
    name = daemon.start_run(LINEAR_GRAPH, {"a": {"sleep": 4}})
    assert daemon.proc is not None
    proc = daemon.proc
    assert proc.wait(30) == 0  # it exits on its own once the run is over and it is idle
    assert not (daemon.root / "daemon.sock").exists()
    assert not (daemon.root / "daemon.pid").exists()
    daemon.proc = None
    daemon.start()
    run = daemon.metadata.GetRun(md_pb2.GetRunRequest(name=name), timeout=10).run
    assert run.state == SUCCEEDED, run.failure_message
