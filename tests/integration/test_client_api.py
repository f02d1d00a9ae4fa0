"""The client API against a live daemon: Metaflow's objects, properties and errors."""

from __future__ import annotations

import datetime as dt
import pickle
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import FlowProject

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Runs:
    """Runs made once for this module."""

    hello: str
    hello_tagged: str
    other_user: str
    foreach: str
    failing: str


@pytest.fixture(scope="module")
def runs(shared_project: FlowProject) -> Runs:
    hello = shared_project.run_flow_ok("hello.py")
    tagged = shared_project.run_flow_ok("hello.py", "--tag", "client-test")
    other = shared_project.run_flow_ok("hello.py", env={"POLYFLOW_USER": "other"})
    foreach = shared_project.run_flow_ok("foreach.py")
    id_file = shared_project.run_id_file()
    shared_project.run_flow("failing.py", "run", "--run-id-file", str(id_file))
    return Runs(hello, tagged, other, foreach, id_file.read_text().strip())


@pytest.fixture
def client(shared_project: FlowProject, runs: Runs) -> Iterator[Runs]:
    with shared_project.client_env():
        yield runs


def test_top_level_names_are_the_client_api() -> None:
    import polyflow
    import polyflow.client

    assert polyflow.Metaflow is polyflow.Polyflow is polyflow.client.Polyflow
    for name in ("Flow", "Run", "Step", "Task", "DataArtifact", "namespace", "get_metadata"):
        assert getattr(polyflow, name) is getattr(polyflow.client, name)


def test_flow(client: Runs) -> None:
    from polyflow import Flow, Run

    flow = Flow("HelloFlow")
    assert repr(flow) == "Flow('HelloFlow')"
    assert flow.pathspec == flow.id == "HelloFlow"
    assert flow.parent is None
    assert isinstance(flow.created_at, dt.datetime)
    runs = list(flow.runs())
    ids = [r.id for r in runs]
    assert client.hello in ids and client.hello_tagged in ids
    assert client.other_user not in ids  # another user's namespace
    created = [r.created_at for r in runs]
    assert created == sorted(created, reverse=True)  # newest first
    assert [r.id for r in flow] == ids
    latest = flow.latest_run
    assert isinstance(latest, Run) and latest.id == ids[0]
    successful = flow.latest_successful_run
    assert successful is not None and successful.successful
    assert [r.id for r in flow.runs("client-test")] == [client.hello_tagged]
    assert flow[client.hello].pathspec == f"HelloFlow/{client.hello}"
    assert client.hello in flow


def test_run(client: Runs) -> None:
    from polyflow import Flow, Run, Step, Task

    run = Run(f"HelloFlow/{client.hello_tagged}")
    assert repr(run) == f"Run('HelloFlow/{client.hello_tagged}')"
    assert run.pathspec == f"HelloFlow/{client.hello_tagged}"
    assert run.id == client.hello_tagged
    assert run.path_components == ["HelloFlow", client.hello_tagged]
    assert isinstance(run.parent, Flow) and run.parent.id == "HelloFlow"
    assert run.successful and run.finished
    assert isinstance(run.created_at, dt.datetime)
    assert isinstance(run.finished_at, dt.datetime) and run.finished_at >= run.created_at
    assert run.user_tags == frozenset({"client-test"})
    assert "user:tester" in run.system_tags
    assert run.tags == run.user_tags | run.system_tags
    assert run.data is not None and run.data.total == 6
    end = run.end_task
    assert isinstance(end, Task) and end.parent.id == "end"
    step = run["hello"]
    assert isinstance(step, Step) and step.id == "hello"
    assert {s.id for s in run} == {"start", "hello", "end"}
    assert next(s.id for s in run) == "end"  # newest first, as Metaflow
    assert "hello" in run and "nope" not in run
    with pytest.raises(KeyError):
        run["nope"]
    assert pickle.loads(pickle.dumps(run)) == run


def test_step_and_task(client: Runs) -> None:
    from polyflow import Run, Step, Task

    step = Step(f"HelloFlow/{client.hello}/hello")
    assert step.pathspec == f"HelloFlow/{client.hello}/hello"
    assert isinstance(step.parent, Run)
    assert isinstance(step.created_at, dt.datetime)
    assert isinstance(step.finished_at, dt.datetime)
    tasks = list(step.tasks())
    assert len(tasks) == 1 and next(iter(step)) == tasks[0]
    task = step.task
    assert isinstance(task, Task) and task == tasks[0]
    assert re.fullmatch(rf"HelloFlow/{client.hello}/hello/\d+", task.pathspec)
    assert task.parent == step
    assert step[task.id] == task and task.id in step

    assert task.successful and task.finished
    assert task.exception is None
    assert task.index is None
    assert task.current_attempt == 0
    assert isinstance(task.finished_at, dt.datetime)
    assert isinstance(task.metadata_dict, dict)
    assert all(m.name in task.metadata_dict for m in task.metadata)
    assert "Polyflow says hi" in task.stdout
    assert "a warning on stderr" in task.stderr
    assert task.stdout_size == len(task.stdout.encode())

    assert task.data.message == "hi there"
    assert task.data.greeting == "hi"  # inherited from start
    assert "message" in task.data
    with pytest.raises(AttributeError):
        _ = task.data.nope
    artifacts = task.artifacts
    assert artifacts.message.data == "hi there"
    assert {a.id for a in task} >= {"message", "greeting", "numbers"}
    assert task["message"].data == "hi there"
    assert "message" in task and "nope" not in task


def test_data_artifact(client: Runs) -> None:
    from polyflow import DataArtifact, Step

    task = Step(f"HelloFlow/{client.hello}/start").task
    assert task is not None
    artifact = task["numbers"]
    assert isinstance(artifact, DataArtifact)
    assert artifact.pathspec == f"{task.pathspec}/numbers"
    assert repr(artifact) == f"DataArtifact('{task.pathspec}/numbers')"
    assert artifact.data == [1, 2, 3]
    assert re.fullmatch(r"[0-9a-f]{64}", artifact.sha)
    assert artifact.size > 0
    assert isinstance(artifact.created_at, dt.datetime)
    assert artifact.parent == task
    same = DataArtifact(f"{task.pathspec}/numbers")
    assert same.data == [1, 2, 3] and same.sha == artifact.sha


def test_foreach_task_index(client: Runs) -> None:
    from polyflow import Step

    indexes = sorted(t.index for t in Step(f"ForeachFlow/{client.foreach}/process"))
    assert indexes == [0, 1, 2]


def test_failed_run_and_task(client: Runs) -> None:
    from polyflow import Run

    run = Run(f"FailingFlow/{client.failing}")
    assert run.finished and not run.successful
    assert run.end_task is None and run.data is None
    task = run["explode"].task
    assert task is not None and not task.successful and task.finished
    assert task.exception is not None and "boom" in str(task.exception)


def test_not_found_names_the_pathspec(client: Runs) -> None:
    from polyflow import DataArtifact, Flow, Run, Step, Task
    from polyflow.exceptions import InvalidPathspecError, NotFoundError

    cases = [
        (Flow, "NoSuchFlow"),
        (Run, "HelloFlow/99999999"),
        (Step, f"HelloFlow/{client.hello}/nope"),
        (Task, f"HelloFlow/{client.hello}/start/99999999"),
        (DataArtifact, f"HelloFlow/{client.hello}/end/{_end_task_id(client)}/nope"),
    ]
    for cls, pathspec in cases:
        with pytest.raises(NotFoundError) as caught:
            cls(pathspec)
        assert caught.value.pathspec == pathspec
        assert pathspec in str(caught.value)
    with pytest.raises(InvalidPathspecError):
        Run("HelloFlow")


def _end_task_id(runs: Runs) -> str:
    from polyflow import Run

    end = Run(f"HelloFlow/{runs.hello}").end_task
    assert end is not None
    return end.id


def test_namespaces(client: Runs) -> None:
    from polyflow import (
        Flow,
        Run,
        Task,
        default_namespace,
        get_namespace,
        namespace,
    )
    from polyflow.exceptions import NamespaceMismatchError

    assert get_namespace() == "user:tester"
    other = f"HelloFlow/{client.other_user}"
    with pytest.raises(NamespaceMismatchError):
        Run(other)
    end_id = Run(other, _namespace_check=False).end_task
    assert end_id is not None
    with pytest.raises(NamespaceMismatchError):
        Task(end_id.pathspec)

    assert namespace("user:other") == "user:other"
    assert Run(other).successful
    ids = [r.id for r in Flow("HelloFlow").runs()]
    assert ids == [client.other_user]
    with pytest.raises(NamespaceMismatchError):
        Run(f"HelloFlow/{client.hello}")

    assert namespace(None) is None
    ids = [r.id for r in Flow("HelloFlow").runs()]
    assert {client.hello, client.other_user} <= set(ids)
    Run(other)
    Run(f"HelloFlow/{client.hello}")

    assert default_namespace() == "user:tester"
    assert get_namespace() == "user:tester"


def test_polyflow_object_and_metadata(shared_project: FlowProject, client: Runs) -> None:
    from polyflow import Metaflow, get_metadata, namespace
    from polyflow._daemon import probe, resolve_endpoint

    names = [f.id for f in Metaflow().flows]
    assert "HelloFlow" in names and names == sorted(names)
    assert Metaflow()["HelloFlow"].id == "HelloFlow"
    endpoint = resolve_endpoint()
    assert endpoint is not None and endpoint.root is not None
    info = probe(endpoint.address)
    assert info is not None
    assert get_metadata() == f"local@{info.root} ({endpoint.address})"
    namespace("user:nobody-at-all")
    assert "HelloFlow" not in [f.id for f in Metaflow()]


def test_blob_upload_and_stream_through_the_core(client: Runs) -> None:
    from polyflow._cli._run import BlobWriter
    from polyflow._codecs import decode, encode
    from polyflow._daemon import get_client

    core = get_client()
    value = {"payload": list(range(1000)), "text": "x" * (3 * 1024 * 1024)}
    encoded = encode(value)
    uploaded = BlobWriter(core, force_upload=True)
    assert not uploaded.direct
    digest, size = uploaded.put(encoded)
    direct = BlobWriter(core)
    assert direct.direct
    assert direct.put(encoded) == (digest, size)
    assert size == encoded.size
    streamed = core.read_blob(digest)  # over DatastoreService.ReadBlob, in 1 MiB chunks
    assert decode(streamed, encoded.encoding) == value
    assert core.has_blobs([digest, "sha256:" + "0" * 64]) == [True, False]
    empty = encode(b"")
    assert BlobWriter(core, force_upload=True).put(empty)[1] == empty.size


def _python(project: FlowProject, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        cwd=project.path,
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_wire_layer_imports_neither_sdk_nor_grpc(shared_project: FlowProject) -> None:
    proc = _python(
        shared_project,
        """
        import sys
        import polyflow.api.runtime.v1.request_response_pb2
        import polyflow
        loaded = [m for m in sys.modules if m.startswith(("grpc", "polyflow._authoring",
                  "polyflow.client", "polyflow._transport"))]
        assert not loaded, loaded
        """,
    )
    assert proc.returncode == 0, proc.stderr


def test_client_works_in_a_forked_child(shared_project: FlowProject, runs: Runs) -> None:
    proc = _python(
        shared_project,
        f"""
        import os
        from polyflow import Run, _transport

        assert Run("HelloFlow/{runs.hello}").successful
        assert _transport._channels
        pid = os.fork()
        if pid == 0:
            # The parent's channel is forgotten; the child opens its own.
            ok = not _transport._channels and Run("HelloFlow/{runs.hello}").successful
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert Run("HelloFlow/{runs.hello}").data.total == 6
        """,
    )
    assert proc.returncode == 0, proc.stderr


def test_rpc_errors_carry_status_reason_and_details(client: Runs) -> None:
    from polyflow._daemon import get_client
    from polyflow.exceptions import NotFoundError, PolyflowError, RPCError

    core = get_client()
    with pytest.raises(NotFoundError) as caught:
        core.get_run("flows/HelloFlow/runs/99999999")
    error = caught.value
    assert isinstance(error, RPCError) and isinstance(error, PolyflowError)
    assert error.code == "NOT_FOUND" and error.reason == "NOT_FOUND"
    assert error.metadata.get("name") == "flows/HelloFlow/runs/99999999"
    assert error.pathspec == "HelloFlow/99999999"
    assert error.method == "GetRun"
    assert error.details  # the parsed ErrorInfo


def test_start_run_with_a_broken_graph_raises_graph_error(client: Runs) -> None:
    from polyflow._daemon import get_client
    from polyflow.api.common.v1 import enums_pb2, graph_pb2
    from polyflow.api.runtime.v1 import request_response_pb2
    from polyflow.exceptions import GraphError

    graph = graph_pb2.FlowGraph(
        flow_name="BrokenOnTheWire",
        source_file="/nowhere/broken.py",
        steps=[
            graph_pb2.StepSpec(
                name="start",
                line=3,
                num_args=1,
                transition=graph_pb2.Transition(
                    kind=enums_pb2.TRANSITION_KIND_LINEAR, targets=["missing"], line=4
                ),
            ),
            graph_pb2.StepSpec(name="end", line=6, num_args=1),
        ],
    )
    with pytest.raises(GraphError) as caught:
        get_client().start_run(request_response_pb2.StartRunRequest(graph=graph))
    problems = caught.value.problems
    assert any(p.step == "start" and "missing" in p.message for p in problems), problems
    assert "step 'start'" in str(caught.value)


def test_reads_restart_a_daemon_that_went_away(fresh_project: FlowProject) -> None:
    from polyflow import Run

    run_id = fresh_project.run_flow_ok("hello.py")
    with fresh_project.client_env():
        assert Run(f"HelloFlow/{run_id}").successful
        first = fresh_project.daemon_pid()
        fresh_project.stop_daemon()  # as if it had exited when idle
        run = Run(f"HelloFlow/{run_id}")  # UNAVAILABLE, restart, retry
        assert run.successful and run.data is not None
        assert fresh_project.daemon_pid() not in (None, first)
