"""MetadataService and DatastoreService over a real gRPC server on a unix socket.

The stores are seeded directly (as the scheduler would), then driven only through the
generated stubs; errors are read back from the ``google.rpc.Status`` trailer.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import (  # type: ignore[import-untyped, unused-ignore]
    error_details_pb2,
    status_pb2,
)
from grpc_status import rpc_status
from polyflow.api.common.v1 import enums_pb2, graph_pb2
from polyflow.api.datastore.v1 import request_response_pb2 as ds
from polyflow.api.datastore.v1 import service_pb2_grpc as ds_grpc
from polyflow.api.errordetails.v1 import message_pb2 as errordetails_pb2
from polyflow.api.metadata.v1 import request_response_pb2 as md
from polyflow.api.metadata.v1 import service_pb2_grpc as md_grpc
from polyflow_core.datastore import LocalBlobStore, UploadSessions
from polyflow_core.metadata.base import (
    ArtifactRecord,
    ExceptionRecord,
    ForeachFrameRecord,
    RunState,
    TaskState,
)
from polyflow_core.metadata.sqlite import SqliteMetadataStore
from polyflow_core.paths import RootLayout, core_address
from polyflow_core.services.datastore import DatastoreServicer
from polyflow_core.services.metadata import MetadataServicer

MIB = 1 << 20
FLOW = "HelloFlow"


@dataclass
class Seeded:
    """What the fixture recorded, for the tests to look up."""

    run_ids: list[str]
    """Runs in creation order; the last one has tasks."""
    graph: graph_pb2.FlowGraph
    start_task: str
    retried_task: str
    end_task: str
    blob: bytes
    blob_digest: str


@dataclass
class Env:
    """A served root."""

    layout: RootLayout
    metadata: SqliteMetadataStore
    blobs: LocalBlobStore
    md: md_grpc.MetadataServiceStub
    ds: ds_grpc.DatastoreServiceStub
    seeded: Seeded


def _seed(layout: RootLayout, store: SqliteMetadataStore, blobs: LocalBlobStore) -> Seeded:
    graph = graph_pb2.FlowGraph(
        flow_name=FLOW,
        steps=[
            graph_pb2.StepSpec(name="start", kind=enums_pb2.STEP_KIND_START),
            graph_pb2.StepSpec(name="end", kind=enums_pb2.STEP_KIND_END),
        ],
    )
    run_ids = []
    for i in range(5):
        run = store.create_run(
            flow_id=FLOW,
            user="alice",
            tags=["nightly"] if i % 2 else [],
            system_tags=["user:alice"],
            graph=graph.SerializeToString(),
            options=b"",
            environment=b"",
            namespace="user:alice",
        )
        run_ids.append(run.run_id)
    run_id = run_ids[-1]
    blob = os.urandom(3 * MIB + 17)
    info = blobs.put_bytes(blob)

    store.create_task(
        flow_id=FLOW,
        run_id=run_id,
        step_name="_parameters",
        foreach_stack=[],
        input_tasks=[],
        task_id="0",
    )
    start = store.create_task(
        flow_id=FLOW,
        run_id=run_id,
        step_name="start",
        foreach_stack=[],
        input_tasks=[f"{FLOW}/{run_id}/_parameters/0"],
        metadata={"resources": "cpu=1"},
    ).task_id
    store.start_attempt(FLOW, run_id, start, 0)
    store.finish_attempt(
        FLOW,
        run_id,
        start,
        0,
        state=TaskState.SUCCEEDED,
        artifacts=[
            ArtifactRecord("big", info.digest, "raw", info.size, "builtins.bytes"),
            ArtifactRecord("_private", info.digest, "raw", info.size),
            *(ArtifactRecord(f"a{i}", info.digest, "json", info.size) for i in range(5)),
        ],
        next_steps=["work"],
    )
    retried = store.create_task(
        flow_id=FLOW,
        run_id=run_id,
        step_name="work",
        foreach_stack=[ForeachFrameRecord("start", "items", 0, 1, "'x'")],
        input_tasks=[f"{FLOW}/{run_id}/start/{start}"],
    ).task_id
    store.start_attempt(FLOW, run_id, retried, 0)
    store.finish_attempt(
        FLOW,
        run_id,
        retried,
        0,
        state=TaskState.FAILED,
        failure_message="ValueError: flaky",
        exception=ExceptionRecord("builtins.ValueError", "flaky", "Traceback ..."),
        artifacts=[ArtifactRecord("partial", info.digest, "raw", info.size)],
    )
    store.start_attempt(FLOW, run_id, retried, 1)
    store.finish_attempt(
        FLOW,
        run_id,
        retried,
        1,
        state=TaskState.SUCCEEDED,
        artifacts=[ArtifactRecord("result", info.digest, "raw", info.size)],
        next_steps=["end"],
        metadata={"attempt": "1"},
    )
    end = store.create_task(
        flow_id=FLOW,
        run_id=run_id,
        step_name="end",
        foreach_stack=[],
        input_tasks=[f"{FLOW}/{run_id}/work/{retried}"],
    ).task_id
    store.start_attempt(FLOW, run_id, end, 0)
    store.set_run_state(FLOW, run_id, RunState.RUNNING)
    return Seeded(run_ids, graph, start, retried, end, blob, info.digest)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    layout = RootLayout(tmp_path / ".polyflow")
    metadata = SqliteMetadataStore(layout.db_path)
    blobs = LocalBlobStore(layout.store_root)
    seeded = _seed(layout, metadata, blobs)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    md_grpc.add_MetadataServiceServicer_to_server(MetadataServicer(metadata, layout), server)
    ds_grpc.add_DatastoreServiceServicer_to_server(
        DatastoreServicer(blobs, UploadSessions(blobs)), server
    )
    layout.ensure_socket_dir()
    address = core_address(layout)
    assert server.add_insecure_port(address) == 1
    server.start()
    channel = grpc.insecure_channel(address)
    try:
        yield Env(
            layout,
            metadata,
            blobs,
            md_grpc.MetadataServiceStub(channel),
            ds_grpc.DatastoreServiceStub(channel),
            seeded,
        )
    finally:
        channel.close()
        server.stop(grace=None).wait()
        metadata.close()


def _error(exc: grpc.RpcError) -> tuple[grpc.StatusCode, error_details_pb2.ErrorInfo, list[object]]:
    """The code, the one ErrorInfo and the other details of a failed call."""
    assert isinstance(exc, grpc.Call)
    status = rpc_status.from_call(exc)
    assert isinstance(status, status_pb2.Status), "every error carries a google.rpc.Status"
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1, "exactly one ErrorInfo"
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert info.domain == "polyflow.dev"
    others: list[object] = []
    for detail in status.details:
        if detail.Is(errordetails_pb2.BlobDigestMismatch.DESCRIPTOR):
            mismatch = errordetails_pb2.BlobDigestMismatch()
            detail.Unpack(mismatch)
            others.append(mismatch)
    return exc.code(), info, others


def _run_name(env: Env, index: int = -1) -> str:
    return f"flows/{FLOW}/runs/{env.seeded.run_ids[index]}"


# --- metadata -------------------------------------------------------------------------------
def test_flows(env: Env) -> None:
    flows = env.md.ListFlows(md.ListFlowsRequest()).flows
    assert [f.name for f in flows] == [f"flows/{FLOW}"]
    flow = env.md.GetFlow(md.GetFlowRequest(name=f"flows/{FLOW}")).flow
    assert flow.flow_id == FLOW
    assert flow.create_time.seconds > 0


def test_list_runs_pages_without_graphs(env: Env) -> None:
    names: list[str] = []
    token = ""
    pages = 0
    while True:
        response = env.md.ListRuns(
            md.ListRunsRequest(parent=f"flows/{FLOW}", page_size=2, page_token=token)
        )
        pages += 1
        names.extend(run.name for run in response.runs)
        assert all(not run.HasField("graph") for run in response.runs)
        token = response.next_page_token
        if not token:
            break
    assert pages == 3
    assert names == [f"flows/{FLOW}/runs/{r}" for r in reversed(env.seeded.run_ids)]
    tagged = env.md.ListRuns(md.ListRunsRequest(parent=f"flows/{FLOW}", tags=["nightly"])).runs
    assert [r.run_id for r in tagged] == [env.seeded.run_ids[3], env.seeded.run_ids[1]]
    running = env.md.ListRuns(
        md.ListRunsRequest(parent=f"flows/{FLOW}", states=[enums_pb2.RUN_STATE_RUNNING])
    ).runs
    assert [r.run_id for r in running] == [env.seeded.run_ids[-1]]


def test_get_run_has_its_graph(env: Env) -> None:
    run = env.md.GetRun(md.GetRunRequest(name=_run_name(env))).run
    assert run.graph == env.seeded.graph
    assert run.state == enums_pb2.RUN_STATE_RUNNING
    assert list(run.system_tags) == ["user:alice"]
    assert run.user == "alice"
    assert not run.HasField("finish_time")
    env.metadata.set_run_state(
        FLOW, env.seeded.run_ids[-1], RunState.SUCCEEDED, end_task_id=env.seeded.end_task
    )
    run = env.md.GetRun(md.GetRunRequest(name=_run_name(env))).run
    assert run.state == enums_pb2.RUN_STATE_SUCCEEDED
    assert run.HasField("finish_time")
    assert run.end_task == f"{_run_name(env)}/steps/end/tasks/{env.seeded.end_task}"


def test_not_found_carries_reason_and_name(env: Env) -> None:
    calls: list[tuple[Callable[[str], object], str]] = [
        (lambda n: env.md.GetRun(md.GetRunRequest(name=n)), f"flows/{FLOW}/runs/999"),
        (lambda n: env.md.GetFlow(md.GetFlowRequest(name=n)), "flows/NoSuchFlow"),
        (lambda n: env.md.ListRuns(md.ListRunsRequest(parent=n)), "flows/NoSuchFlow"),
        (lambda n: env.md.GetStep(md.GetStepRequest(name=n)), f"{_run_name(env)}/steps/nope"),
        (
            lambda n: env.md.GetTask(md.GetTaskRequest(name=n)),
            f"{_run_name(env)}/steps/end/tasks/{env.seeded.start_task}",  # wrong step
        ),
        (
            lambda n: env.md.GetArtifact(md.GetArtifactRequest(name=n)),
            f"{_run_name(env)}/steps/start/tasks/{env.seeded.start_task}/artifacts/nope",
        ),
    ]
    for call, name in calls:
        with pytest.raises(grpc.RpcError) as info:
            call(name)
        code, error_info, _ = _error(info.value)
        assert code == grpc.StatusCode.NOT_FOUND, name
        assert error_info.reason == "NOT_FOUND"
        assert error_info.metadata["name"] == name


def test_malformed_requests_are_invalid_argument(env: Env) -> None:
    with pytest.raises(grpc.RpcError) as info:
        env.md.GetRun(md.GetRunRequest(name="runs/1"))
    code, error_info, _ = _error(info.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info.reason == "INVALID_NAME"
    assert error_info.metadata["name"] == "runs/1"
    with pytest.raises(grpc.RpcError) as info:
        env.md.ListRuns(md.ListRunsRequest(parent=f"flows/{FLOW}", page_size=-1))
    code, error_info, _ = _error(info.value)
    assert (code, error_info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_SIZE")
    with pytest.raises(grpc.RpcError) as info:
        env.md.ListRuns(md.ListRunsRequest(parent=f"flows/{FLOW}", page_token="bogus"))
    code, error_info, _ = _error(info.value)
    assert (code, error_info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")


def test_steps_and_tasks(env: Env) -> None:
    steps = env.md.ListSteps(md.ListStepsRequest(parent=_run_name(env))).steps
    assert [s.step_name for s in steps] == ["_parameters", "start", "work", "end"]
    assert steps[1].HasField("finish_time") and not steps[3].HasField("finish_time")
    step = env.md.GetStep(md.GetStepRequest(name=f"{_run_name(env)}/steps/work")).step
    assert step.name == f"{_run_name(env)}/steps/work"

    tasks = env.md.ListTasks(md.ListTasksRequest(parent=f"{_run_name(env)}/steps/work")).tasks
    assert [t.task_id for t in tasks] == [env.seeded.retried_task]
    latest = tasks[0]
    assert (latest.attempt, latest.attempt_count, latest.state) == (
        1,
        2,
        enums_pb2.TASK_STATE_SUCCEEDED,
    )
    assert list(latest.next_steps) == ["end"]
    assert latest.metadata["attempt"] == "1"
    assert [f.var for f in latest.foreach_stack] == ["items"]
    assert list(latest.input_tasks) == [
        f"{_run_name(env)}/steps/start/tasks/{env.seeded.start_task}"
    ]

    name = f"{_run_name(env)}/steps/work/tasks/{env.seeded.retried_task}"
    first = env.md.GetTask(md.GetTaskRequest(name=name, attempt=0)).task
    assert (first.attempt, first.state) == (0, enums_pb2.TASK_STATE_FAILED)
    assert first.failure_message == "ValueError: flaky"
    assert first.exception.type == "builtins.ValueError"
    assert env.md.GetTask(md.GetTaskRequest(name=name)).task == latest
    with pytest.raises(grpc.RpcError) as info:
        env.md.GetTask(md.GetTaskRequest(name=name, attempt=5))
    assert _error(info.value)[0] == grpc.StatusCode.NOT_FOUND


def test_artifacts(env: Env) -> None:
    start = f"{_run_name(env)}/steps/start/tasks/{env.seeded.start_task}"
    public = env.md.ListArtifacts(md.ListArtifactsRequest(parent=start)).artifacts
    assert [a.ref.name for a in public] == ["a0", "a1", "a2", "a3", "a4", "big"]
    everything: list[str] = []
    token = ""
    while True:
        response = env.md.ListArtifacts(
            md.ListArtifactsRequest(
                parent=start, include_private=True, page_size=3, page_token=token
            )
        )
        everything.extend(a.ref.name for a in response.artifacts)
        token = response.next_page_token
        if not token:
            break
    assert everything == ["_private", "a0", "a1", "a2", "a3", "a4", "big"]
    big = env.md.GetArtifact(md.GetArtifactRequest(name=f"{start}/artifacts/big")).artifact
    assert big.name == f"{start}/artifacts/big"
    assert (big.ref.digest, big.ref.size_bytes, big.ref.type_name) == (
        env.seeded.blob_digest,
        len(env.seeded.blob),
        "builtins.bytes",
    )
    assert big.attempt == 0 and big.HasField("create_time")

    retried = f"{_run_name(env)}/steps/work/tasks/{env.seeded.retried_task}"
    latest = env.md.ListArtifacts(md.ListArtifactsRequest(parent=retried)).artifacts
    assert [(a.ref.name, a.attempt) for a in latest] == [("result", 1)]
    first = env.md.ListArtifacts(md.ListArtifactsRequest(parent=retried, attempt=0)).artifacts
    assert [(a.ref.name, a.attempt) for a in first] == [("partial", 0)]
    end = f"{_run_name(env)}/steps/end/tasks/{env.seeded.end_task}"
    assert list(env.md.ListArtifacts(md.ListArtifactsRequest(parent=end)).artifacts) == []


def test_read_task_log(env: Env) -> None:
    run_id = env.seeded.run_ids[-1]
    task = env.seeded.end_task
    path = env.layout.task_log_path(FLOW, run_id, "end", task, 0, "stdout")
    path.parent.mkdir(parents=True)
    text = b"".join(b"line %d\n" % i for i in range(300_000))  # over 1 MiB
    path.write_bytes(text)
    name = f"{_run_name(env)}/steps/end/tasks/{task}"

    small = env.md.ReadTaskLog(
        md.ReadTaskLogRequest(task=name, stream=enums_pb2.LOG_STREAM_STDOUT, max_bytes=7)
    )
    assert (small.data, small.next_offset, small.eof) == (b"line 0\n", 7, False)
    assert small.size_bytes == len(text)

    received = b""
    offset = 0
    calls = 0
    while True:
        response = env.md.ReadTaskLog(
            md.ReadTaskLogRequest(task=name, stream=enums_pb2.LOG_STREAM_STDOUT, offset=offset)
        )
        calls += 1
        assert len(response.data) <= MIB
        received += response.data
        offset = response.next_offset
        if offset >= response.size_bytes:
            assert not response.eof, "the attempt is still running"
            break
    assert received == text and calls >= 2

    env.metadata.finish_attempt(FLOW, run_id, task, 0, state=TaskState.SUCCEEDED)
    tail = env.md.ReadTaskLog(
        md.ReadTaskLogRequest(task=name, stream=enums_pb2.LOG_STREAM_STDOUT, offset=offset)
    )
    assert (tail.data, tail.eof) == (b"", True)
    empty = env.md.ReadTaskLog(md.ReadTaskLogRequest(task=name, stream=enums_pb2.LOG_STREAM_STDERR))
    assert (empty.data, empty.size_bytes, empty.eof) == (b"", 0, True)
    with pytest.raises(grpc.RpcError) as info:
        env.md.ReadTaskLog(md.ReadTaskLogRequest(task=name))
    code, error_info, _ = _error(info.value)
    assert (code, error_info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_LOG_STREAM")


def test_unexpected_errors_become_internal_and_serving_goes_on(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(env.metadata, "list_flows", broken)
    with pytest.raises(grpc.RpcError) as info:
        env.md.ListFlows(md.ListFlowsRequest())
    code, error_info, _ = _error(info.value)
    assert (code, error_info.reason) == (grpc.StatusCode.INTERNAL, "INTERNAL")
    assert "disk on fire" in caplog.text
    monkeypatch.undo()
    assert len(env.md.ListFlows(md.ListFlowsRequest()).flows) == 1


# --- datastore ------------------------------------------------------------------------------
def test_store_info(env: Env) -> None:
    store = env.ds.GetStoreInfo(ds.GetStoreInfoRequest()).store
    assert (store.kind, store.root) == ("local", str(env.layout.store_root))


def test_read_blob_streams_chunks(env: Env) -> None:
    chunks = list(env.ds.ReadBlob(ds.ReadBlobRequest(digest=env.seeded.blob_digest)))
    assert len(chunks) >= 3
    assert all(len(c.data) <= MIB for c in chunks)
    assert all(c.size_bytes == len(env.seeded.blob) for c in chunks)
    assert b"".join(c.data for c in chunks) == env.seeded.blob
    empty = env.blobs.put_bytes(b"").digest
    assert [c.data for c in env.ds.ReadBlob(ds.ReadBlobRequest(digest=empty))] == [b""]


def test_read_blob_errors(env: Env) -> None:
    missing = "sha256:" + hashlib.sha256(b"missing").hexdigest()
    with pytest.raises(grpc.RpcError) as info:
        list(env.ds.ReadBlob(ds.ReadBlobRequest(digest=missing)))
    code, error_info, _ = _error(info.value)
    assert (code, error_info.reason) == (grpc.StatusCode.NOT_FOUND, "BLOB_NOT_FOUND")
    with pytest.raises(grpc.RpcError) as info:
        list(env.ds.ReadBlob(ds.ReadBlobRequest(digest="sha256:xyz")))
    code, error_info, _ = _error(info.value)
    assert (code, error_info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_DIGEST")


def test_corrupted_blob_is_data_loss(env: Env) -> None:
    digest = env.seeded.blob_digest
    path = env.blobs.blob_path(digest)
    raw = bytearray(path.read_bytes())
    raw[2 * MIB] ^= 0x01  # a bit flips in the third chunk
    path.write_bytes(bytes(raw))
    found = "sha256:" + hashlib.sha256(bytes(raw[5:])).hexdigest()
    received: list[bytes] = []
    with pytest.raises(grpc.RpcError) as info:
        for chunk in env.ds.ReadBlob(ds.ReadBlobRequest(digest=digest)):
            received.append(chunk.data)
    assert received == [], "no unverified byte leaves the daemon"
    code, error_info, details = _error(info.value)
    assert code == grpc.StatusCode.DATA_LOSS
    assert error_info.reason == "BLOB_DIGEST_MISMATCH"
    assert dict(error_info.metadata) == {"expected_digest": digest, "found_digest": found}
    assert details == [
        errordetails_pb2.BlobDigestMismatch(expected_digest=digest, found_digest=found)
    ]


def test_has_blobs(env: Env) -> None:
    missing = "sha256:" + hashlib.sha256(b"missing").hexdigest()
    response = env.ds.HasBlobs(ds.HasBlobsRequest(digests=[env.seeded.blob_digest, missing]))
    assert list(response.present) == [True, False]
    with pytest.raises(grpc.RpcError) as info:
        env.ds.HasBlobs(ds.HasBlobsRequest(digests=[missing] * 10_001))
    code, error_info, _ = _error(info.value)
    assert (code, error_info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "TOO_MANY_DIGESTS")


def test_chunked_upload(env: Env) -> None:
    data = os.urandom(2 * MIB + MIB // 2)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload_id = "it-upload-0000000001"
    offset = 0
    while offset < len(data):
        chunk = data[offset : offset + MIB]
        response = env.ds.WriteBlobChunk(
            ds.WriteBlobChunkRequest(upload_id=upload_id, offset=offset, data=chunk)
        )
        offset += len(chunk)
        assert response.received_bytes == offset
    # A repeated chunk is refused, and says where to resume.
    with pytest.raises(grpc.RpcError) as info:
        env.ds.WriteBlobChunk(ds.WriteBlobChunkRequest(upload_id=upload_id, offset=0, data=b"x"))
    code, error_info, _ = _error(info.value)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info.reason == "UPLOAD_OFFSET_MISMATCH"
    assert error_info.metadata["received_bytes"] == str(len(data))

    committed = env.ds.CommitBlob(ds.CommitBlobRequest(upload_id=upload_id, expected_digest=digest))
    assert (committed.digest, committed.size_bytes) == (digest, len(data))
    chunks = list(env.ds.ReadBlob(ds.ReadBlobRequest(digest=digest)))
    assert b"".join(c.data for c in chunks) == data


def test_commit_with_a_wrong_digest(env: Env) -> None:
    upload_id = "it-upload-mismatch01"
    env.ds.WriteBlobChunk(ds.WriteBlobChunkRequest(upload_id=upload_id, offset=0, data=b"abc"))
    wrong = "sha256:" + hashlib.sha256(b"abd").hexdigest()
    with pytest.raises(grpc.RpcError) as info:
        env.ds.CommitBlob(ds.CommitBlobRequest(upload_id=upload_id, expected_digest=wrong))
    code, error_info, _ = _error(info.value)
    assert (code, error_info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "BLOB_DIGEST_MISMATCH")
    assert error_info.metadata["expected_digest"] == wrong
    actual = "sha256:" + hashlib.sha256(b"abc").hexdigest()
    assert list(env.ds.HasBlobs(ds.HasBlobsRequest(digests=[actual])).present) == [False]
    with pytest.raises(grpc.RpcError) as info:
        env.ds.CommitBlob(ds.CommitBlobRequest(upload_id="it-never-started-01"))
    code, error_info, _ = _error(info.value)
    assert (code, error_info.reason) == (grpc.StatusCode.NOT_FOUND, "UPLOAD_NOT_FOUND")
