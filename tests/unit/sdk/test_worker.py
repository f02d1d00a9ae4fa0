"""The task worker: running steps with hand-made task specs against a real local store,
artifact inheritance and references, joins, failures, the transition check, decorator
hooks, and the process entry point reporting to a fake core over a unix socket."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest
from polyflow._authoring.artifacts import ForeachFrame, StoredArtifact
from polyflow._authoring.decorators import (
    DecoratorRegistry,
    StepDecorator,
    StepFunction,
    TaskContext,
)
from polyflow._authoring.graph import DecoratorDef, FlowDefinition, TransitionDef
from polyflow._authoring.transitions import TransitionKind
from polyflow._codecs import decode
from polyflow._wire_graph import definition_to_proto
from polyflow._worker.spec import TaskInputData, TaskSpecData
from polyflow._worker.task import TaskResult, check_transition, run_task
from polyflow.api.common.v1 import graph_pb2
from polyflow.api.runtime.v1 import message_pb2, request_response_pb2, service_pb2_grpc
from polyflow_core.datastore.local import LocalBlobStore

from .helpers import FLOWS, graph_of, make_spec

Put = Callable[[str, object], StoredArtifact]


class CountingStore(LocalBlobStore):
    """A local store that records what is written."""

    def __init__(self, root: Any, *, fsync: bool = True) -> None:
        super().__init__(root, fsync=fsync)
        self.written: list[str] = []

    def put_bytes(self, data: Any) -> Any:
        info = super().put_bytes(data)
        self.written.append(info.digest)
        return info

    def put_many(self, items: Any) -> Any:
        infos = super().put_many(items)
        self.written.extend(info.digest for info in infos)
        return infos


def _values(store: LocalBlobStore, result: TaskResult) -> dict[str, Any]:
    return {a.name: decode(store.get_view(a.digest), a.encoding) for a in result.artifacts}


def _refs(result: TaskResult) -> dict[str, StoredArtifact]:
    return {a.name: a for a in result.artifacts}


def _params(put: Put) -> TaskInputData:
    """The `_parameters` pseudo-task: parameter values and constants."""
    return TaskInputData(
        "WorkerFlow/1/_parameters/0", "_parameters", (put("alpha", 5), put("RATE", 2))
    )


def _run(
    store: LocalBlobStore,
    definition: FlowDefinition,
    step: str,
    inputs: tuple[TaskInputData, ...] = (),
    frames: tuple[ForeachFrame, ...] = (),
    **kwargs: Any,
) -> TaskResult:
    cls, _ = graph_of("worker_flow", "WorkerFlow")
    spec = make_spec(definition, step, store, inputs, frames, parameter_names=("alpha",))
    return run_task(spec, cls, store, **kwargs)


def test_linear_inheritance_and_refs(store: LocalBlobStore, put: Put) -> None:
    _, d = graph_of("worker_flow", "WorkerFlow")
    params = _params(put)
    start = _run(store, d, "start", (params,))
    assert start.succeeded, start
    assert start.next_steps == ("middle",)
    values = _values(store, start)
    assert values["seen"] == {
        "flow": "WorkerFlow",
        "pathspec": "WorkerFlow/1/start/7",
        "retry": 0,
        "user": "alice",
        "graph_steps": sorted(d.step_names),
        "address": "unix:/nowhere.sock",
        "namespace": "user:alice",
        "alpha": 5,
        "rate": 2,
    }
    # Parameters and constants pass through with their references.
    assert _refs(start)["alpha"] == params.artifacts[0]
    assert _refs(start)["RATE"] == params.artifacts[1]

    counting = CountingStore(store.root, fsync=False)
    parent = TaskInputData("WorkerFlow/1/start/7", "start", start.artifacts)
    middle = _run(counting, d, "middle", (parent,))
    assert middle.succeeded, middle
    before, after = _refs(start), _refs(middle)
    assert set(after) == set(before)
    assert after["data"] != before["data"]  # mutated in place: re-encoded, new ref
    assert _values(store, middle)["data"] == [1, 2, 3]
    assert after["keep"] == before["keep"]  # loaded and unchanged: same ref
    assert after["never_read"] == before["never_read"]
    assert after["point"] == before["point"]  # a class from the flow module round-trips
    assert counting.written == [after["data"].digest]  # nothing else is rewritten


def test_end_step_and_no_next(store: LocalBlobStore) -> None:
    _, d = graph_of("worker_flow", "WorkerFlow")
    result = _run(store, d, "end")
    assert result.succeeded and result.next_steps == ()


def test_user_exception_fails_with_traceback(
    store: LocalBlobStore, capsys: pytest.CaptureFixture[str]
) -> None:
    _, d = graph_of("worker_flow", "WorkerFlow")
    result = _run(store, d, "boom")
    assert not result.succeeded
    assert result.failure_message == "ValueError: bad value"
    assert result.exception is not None
    assert result.exception.type == "builtins.ValueError"
    assert result.exception.message == "bad value\nsecond line"
    tb = result.exception.traceback
    assert 'raise ValueError("bad value' in tb and "worker_flow.py" in tb
    assert "_worker/task.py" not in tb  # the worker's own frames are left out
    assert "ValueError: bad value" in capsys.readouterr().err
    assert "partial" in _refs(result)  # artifacts are stored even on failure


def test_sys_exit_in_a_step_fails_the_task(store: LocalBlobStore) -> None:
    _, d = graph_of("worker_flow", "WorkerFlow")
    result = _run(store, d, "exiting")
    assert not result.succeeded and result.failure_message == "SystemExit: 3"


def test_unstorable_artifact_fails_naming_it(store: LocalBlobStore) -> None:
    _, d = graph_of("worker_flow", "WorkerFlow")
    result = _run(store, d, "gen")
    assert not result.succeeded
    assert "artifact 'g' (generator) cannot be stored" in result.failure_message


def test_foreach_then_join(store: LocalBlobStore, put: Put) -> None:
    _, d = graph_of("worker_flow", "WorkerFlow")
    params = _params(put)
    fan = _run(store, d, "fan", (params,))
    assert (fan.next_steps, fan.foreach_num_splits, fan.foreach_value_reprs) == (
        ("each",),
        2,
        ("'p'", "'q'"),
    )
    parent = TaskInputData("WorkerFlow/1/fan/7", "fan", fan.artifacts)
    children = []
    for index in range(2):
        frame = ForeachFrame("fan", "items", index, 2, "")
        child = _run(store, d, "each", (parent,), (frame,))
        assert child.succeeded, child
        assert _values(store, child)["got"] == ["pq"[index], index] or _values(store, child)[
            "got"
        ] == ("pq"[index], index)
        children.append(
            TaskInputData(f"WorkerFlow/1/each/{index}", "each", child.artifacts, (frame,))
        )
    join = _run(store, d, "gather", tuple(children))
    assert join.succeeded, join
    values = _values(store, join)
    assert values["got"] == [("p", 0), ("q", 1)]
    assert values["inputs_seen"] == ["p", "q"]
    assert values["items"] == ["p", "q"]  # merged
    assert _refs(join)["items"] == _refs(fan)["items"]  # by reference
    assert _refs(join)["alpha"] == params.artifacts[0]  # parameters come to the join


def test_join_inherits_only_parameters_and_constants(store: LocalBlobStore, put: Put) -> None:
    _, d = graph_of("worker_flow", "WorkerFlow")
    other = (put("alpha", 5), put("RATE", 2), put("stray", 1), put("got", 0), put("items", [1]))
    inputs = tuple(TaskInputData(f"W/1/each/{i}", "each", other) for i in range(2))
    d2 = dataclasses.replace(
        d,
        steps=tuple(
            dataclasses.replace(s, transition=TransitionDef(TransitionKind.LINEAR, ("end",)))
            if s.name == "gather"
            else s
            for s in d.steps
        ),
    )
    join = _run(store, d2, "gather", inputs)
    assert join.succeeded, join
    assert "stray" in _refs(join)  # only through merge_artifacts
    assert _refs(join)["alpha"] == other[0]


def test_transition_mismatch_fails(store: LocalBlobStore) -> None:
    _, d = graph_of("worker_flow", "WorkerFlow")
    steps = tuple(
        dataclasses.replace(s, transition=TransitionDef(TransitionKind.LINEAR, ("end",), line=44))
        if s.name == "start"
        else s
        for s in d.steps
    )
    result = _run(store, dataclasses.replace(d, steps=steps), "start")
    assert not result.succeeded
    assert result.failure_message == (
        "Step 'start' took self.next(self.middle), but the flow's graph says "
        "self.next(self.end) (line 44)"
    )


def test_check_transition_forms() -> None:
    _, d = graph_of("switch_flow", "SwitchFlow")
    from polyflow._authoring.transitions import TakenTransition

    start = d.step("start")
    ok = TakenTransition(TransitionKind.SWITCH, ("careful",), condition="mode")
    assert check_transition(start, ok) == ""
    bad = TakenTransition(TransitionKind.SWITCH, ("end",), condition="mode")
    assert "to 'end'" in check_transition(start, bad)
    assert "no self.next() call" in check_transition(d.step("quick"), None)
    assert "self.next(self.quick)" in check_transition(
        d.step("end"), TakenTransition(TransitionKind.LINEAR, ("quick",))
    )


class Recorder(StepDecorator):
    name = "recorder"
    defaults: ClassVar[dict[str, Any]] = {"tag": ""}
    calls: ClassVar[list[str]] = []

    def task_pre_step(self, ctx: TaskContext) -> None:
        self.calls.append(f"pre:{self.attributes['tag']}:{ctx.step_name}")

    def task_decorate(self, func: StepFunction, ctx: TaskContext) -> StepFunction:
        def wrapped() -> None:
            self.calls.append(f"enter:{self.attributes['tag']}")
            func()

        return wrapped

    def task_post_step(self, ctx: TaskContext) -> None:
        self.calls.append(f"post:{self.attributes['tag']}")

    def task_exception(self, exception: BaseException, ctx: TaskContext) -> bool:
        self.calls.append(f"exc:{type(exception).__name__}")
        ctx.flow.next(ctx.flow.end)  # handled: pretend next was called
        return self.attributes["tag"] == "catch"

    def task_finished(self, ctx: TaskContext, ok: bool) -> None:
        self.calls.append(f"finished:{ok}")


@pytest.fixture
def registry() -> Iterator[DecoratorRegistry]:
    reg = DecoratorRegistry(builtins={}, entry_point_group=None)
    reg.register(Recorder)
    Recorder.calls.clear()
    yield reg


def _with_decorators(d: FlowDefinition, step: str, *tags: str) -> FlowDefinition:
    decos = tuple(DecoratorDef("recorder", {"tag": f'"{t}"'}, 0) for t in tags)
    steps = tuple(
        dataclasses.replace(s, decorators=decos) if s.name == step else s for s in d.steps
    )
    return dataclasses.replace(d, steps=steps)


def test_decorator_hooks_order(store: LocalBlobStore, registry: DecoratorRegistry) -> None:
    _, d = graph_of("worker_flow", "WorkerFlow")
    result = _run(store, _with_decorators(d, "end", "in", "out"), "end", registry=registry)
    assert result.succeeded
    assert Recorder.calls == [
        "pre:in:end",
        "pre:out:end",
        "enter:out",  # the outermost decorator's wrapper runs first
        "enter:in",
        "post:in",
        "post:out",
        "finished:True",
        "finished:True",
    ]


def test_decorator_can_handle_an_exception(
    store: LocalBlobStore, registry: DecoratorRegistry
) -> None:
    _, d = graph_of("worker_flow", "WorkerFlow")
    boom = dataclasses.replace(
        d.step("boom"), transition=TransitionDef(TransitionKind.LINEAR, ("end",))
    )
    d = dataclasses.replace(d, steps=tuple(boom if s.name == "boom" else s for s in d.steps))
    result = _run(store, _with_decorators(d, "boom", "catch"), "boom", registry=registry)
    assert result.succeeded, result
    assert result.next_steps == ("end",)
    assert "exc:ValueError" in Recorder.calls


def test_unknown_decorator_fails_the_task(
    store: LocalBlobStore, registry: DecoratorRegistry
) -> None:
    _, d = graph_of("worker_flow", "WorkerFlow")
    steps = tuple(
        dataclasses.replace(s, decorators=(DecoratorDef("missing", {}, 0),))
        if s.name == "end"
        else s
        for s in d.steps
    )
    result = _run(store, dataclasses.replace(d, steps=steps), "end", registry=registry)
    assert not result.succeeded
    assert "unknown step decorator 'missing'" in result.failure_message


# The process: python -m polyflow._worker


class FakeRuntime(service_pb2_grpc.RuntimeServiceServicer):
    """Records CompleteTask calls."""

    def __init__(self) -> None:
        self.requests: list[request_response_pb2.CompleteTaskRequest] = []
        self.metadata: list[dict[str, str]] = []

    def CompleteTask(
        self, request: request_response_pb2.CompleteTaskRequest, context: grpc.ServicerContext
    ) -> request_response_pb2.CompleteTaskResponse:
        self.requests.append(request)
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata()})
        return request_response_pb2.CompleteTaskResponse()


@pytest.fixture
def fake_core(tmp_path: Path) -> Iterator[tuple[str, FakeRuntime]]:
    servicer = FakeRuntime()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    service_pb2_grpc.add_RuntimeServiceServicer_to_server(servicer, server)
    address = f"unix:{tmp_path / 'core.sock'}"
    server.add_insecure_port(address)
    server.start()
    yield address, servicer
    server.stop(None)


def _spec_file(
    tmp_path: Path, spec: TaskSpecData, definition: FlowDefinition, token: str = ""
) -> Path:
    message = message_pb2.TaskSpec(
        task=spec.task,
        flow_name=spec.flow_name,
        run_id=spec.run_id,
        step_name=spec.step_name,
        task_id=spec.task_id,
        attempt=spec.attempt,
        inputs=[
            message_pb2.TaskInput(
                pathspec=i.pathspec,
                step=i.step,
                artifacts=[
                    graph_pb2.ArtifactRef(
                        name=a.name, digest=a.digest, encoding=a.encoding, size_bytes=a.size
                    )
                    for a in i.artifacts
                ],
            )
            for i in spec.inputs
        ],
        graph=definition_to_proto(definition),
        max_num_splits=spec.max_num_splits,
        code_path=spec.code_path,
        core_address=spec.core_address,
        store=message_pb2.StoreLocation(kind="local", root=spec.store_root),
        user=spec.user,
        parameter_names=list(spec.parameter_names),
        namespace=spec.namespace,
        token=token,
    )
    path = tmp_path / "task.pb"
    path.write_bytes(message.SerializeToString())
    return path


def _worker(spec_file: Path | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYFLOW_")}
    if spec_file is not None:
        env["POLYFLOW_TASK_SPEC"] = str(spec_file)
    return subprocess.run(
        [sys.executable, "-m", "polyflow._worker"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_worker_process_reports_success(
    tmp_path: Path, store: LocalBlobStore, put: Put, fake_core: tuple[str, FakeRuntime]
) -> None:
    address, servicer = fake_core
    _, d = graph_of("worker_flow", "WorkerFlow")
    spec = dataclasses.replace(
        make_spec(d, "start", store, (_params(put),), parameter_names=("alpha",)),
        core_address=address,
    )
    proc = _worker(_spec_file(tmp_path, spec, d, token="s3cret"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    (request,) = servicer.requests
    assert request.task == spec.task and request.attempt == 0
    outcome = request.outcome
    assert outcome.succeeded and list(outcome.next_steps) == ["middle"]
    names = {a.name for a in outcome.artifacts}
    assert {"alpha", "RATE", "data", "keep", "seen", "point"} <= names
    assert servicer.metadata[0]["authorization"] == "Bearer s3cret"
    seen = next(a for a in outcome.artifacts if a.name == "seen")
    assert decode(store.get_view(seen.digest), seen.encoding)["address"] == address


def test_worker_process_reports_failure(
    tmp_path: Path, store: LocalBlobStore, fake_core: tuple[str, FakeRuntime]
) -> None:
    address, servicer = fake_core
    _, d = graph_of("worker_flow", "WorkerFlow")
    spec = dataclasses.replace(make_spec(d, "boom", store), core_address=address)
    proc = _worker(_spec_file(tmp_path, spec, d), tmp_path)
    assert proc.returncode == 1
    assert "ValueError: bad value" in proc.stderr
    outcome = servicer.requests[0].outcome
    assert not outcome.succeeded
    assert outcome.failure_message == "ValueError: bad value"
    assert outcome.exception.type == "builtins.ValueError"
    assert "Traceback" in outcome.exception.traceback


def test_worker_process_import_error_is_reported(
    tmp_path: Path, store: LocalBlobStore, fake_core: tuple[str, FakeRuntime]
) -> None:
    address, servicer = fake_core
    broken = tmp_path / "broken_flow.py"
    broken.write_text("raise ImportError('no such thing')\n")
    _, d = graph_of("worker_flow", "WorkerFlow")
    spec = dataclasses.replace(
        make_spec(d, "end", store), core_address=address, code_path=str(broken)
    )
    proc = _worker(_spec_file(tmp_path, spec, d), tmp_path)
    assert proc.returncode == 1
    assert servicer.requests[0].outcome.failure_message == "ImportError: no such thing"


def test_worker_process_without_spec(tmp_path: Path) -> None:
    proc = _worker(None, tmp_path)
    assert proc.returncode == 2
    assert "POLYFLOW_TASK_SPEC is not set" in proc.stderr
    proc = _worker(tmp_path / "missing.pb", tmp_path)
    assert proc.returncode == 2


def test_worker_process_cannot_report(tmp_path: Path, store: LocalBlobStore) -> None:
    _, d = graph_of("worker_flow", "WorkerFlow")
    spec = dataclasses.replace(
        make_spec(d, "end", store), core_address=f"unix:{tmp_path / 'none.sock'}"
    )
    # A short deadline keeps this test fast: the worker retries an unavailable core.
    proc = _worker(_spec_file(tmp_path, spec, d), tmp_path)
    assert proc.returncode == 1
    assert "cannot report task" in proc.stderr


def test_flow_file_folder_is_importable(tmp_path: Path) -> None:
    assert (FLOWS / "child_flow.py").exists()  # imports base_flow from its own folder
    _, d = graph_of("child_flow", "ChildFlow")
    assert d.step("start").source_file.endswith("base_flow.py")


def test_sdk_errors_end_the_traceback_at_user_code(store: LocalBlobStore) -> None:
    cls, d = graph_of("worker_flow", "WorkerFlow")
    spec = make_spec(d, "fan", store, max_num_splits=1)
    result = run_task(spec, cls, store)
    assert not result.succeeded
    assert result.failure_message == (
        "TaskFailedError: Step 'fan': foreach over self.items makes 2 splits, more than the "
        "maximum of 1; raise it with --max-num-splits"
    )
    assert result.exception is not None
    tb = result.exception.traceback
    assert 'self.next(self.each, foreach="items")' in tb
    assert "flowspec.py" not in tb
