"""Tag changes: the SQLite store's ``update_run_tags``, the rules of ``domain/tags.py``, the
``MutateRunTags`` servicer over in-process gRPC, and the log pump's truncation marker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status
from polyflow.api.metadata.v1 import request_response_pb2 as rr
from polyflow.api.metadata.v1 import service_pb2_grpc as md_grpc
from polyflow_core.domain.tags import (
    MAX_TAG_LENGTH,
    RunTagEditor,
    RunTagWriter,
    TagChange,
    check_tag_change,
)
from polyflow_core.errors import InvalidArgumentError, NotFoundError
from polyflow_core.executors.local import truncation_marker
from polyflow_core.metadata.base import MAX_USER_TAGS, MetadataStore, RunRecord
from polyflow_core.metadata.sqlite import SqliteMetadataStore
from polyflow_core.paths import RootLayout
from polyflow_core.services.metadata import MetadataServicer

SYSTEM = ("polyflow_version:0.1.0", "runtime:dev", "user:alice")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / ".polyflow" / "metadata.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteMetadataStore]:
    opened = SqliteMetadataStore(db_path)
    yield opened
    opened.close()


def _run(store: MetadataStore, tags: tuple[str, ...] = (), flow: str = "HelloFlow") -> RunRecord:
    return store.create_run(
        flow_id=flow,
        user="alice",
        tags=list(tags),
        system_tags=list(SYSTEM),
        graph=b"graph-bytes",
        options=b"",
        environment=b"",
        namespace="user:alice",
    )


# --- the store ------------------------------------------------------------------------------
def test_removes_then_adds_and_returns_the_run_without_its_graph(
    store: SqliteMetadataStore,
) -> None:
    run = _run(store, ("a", "b"))
    after = store.update_run_tags("HelloFlow", run.run_id, add=["c", "b"], remove=["a", "b"])
    # "b" is in both lists: removed first, then added again.
    assert after.tags == ("b", "c")
    assert after.system_tags == SYSTEM
    assert after.graph == b""
    assert after.run_id == run.run_id and after.user == "alice"
    assert store.get_run("HelloFlow", run.run_id).tags == ("b", "c")
    assert store.get_run("HelloFlow", run.run_id).graph == b"graph-bytes"


def test_absent_removals_and_present_additions_change_nothing(store: SqliteMetadataStore) -> None:
    run = _run(store, ("a",))
    after = store.update_run_tags("HelloFlow", run.run_id, add=["a"], remove=["never-there"])
    assert after.tags == ("a",)


def test_adding_a_system_tag_is_skipped(store: SqliteMetadataStore) -> None:
    run = _run(store)
    after = store.update_run_tags("HelloFlow", run.run_id, add=["user:alice", "x"], remove=[])
    assert after.tags == ("x",)
    assert after.system_tags == SYSTEM


def test_removing_a_system_tag_is_refused_and_changes_nothing(
    store: SqliteMetadataStore,
) -> None:
    run = _run(store, ("a",))
    with pytest.raises(InvalidArgumentError) as caught:
        store.update_run_tags("HelloFlow", run.run_id, add=["new"], remove=["a", "runtime:dev"])
    assert caught.value.reason == "SYSTEM_TAG_IMMUTABLE"
    assert caught.value.metadata["tag"] == "runtime:dev"
    record = store.get_run("HelloFlow", run.run_id)
    assert record.tags == ("a",)  # atomic: neither the removal nor the addition happened
    assert record.system_tags == SYSTEM


def test_a_user_tag_equal_to_another_runs_system_tag_is_a_user_tag(
    store: SqliteMetadataStore,
) -> None:
    run = _run(store)
    after = store.update_run_tags("HelloFlow", run.run_id, add=["user:bob"], remove=[])
    # The store applies no prefix rule (the domain does); it keeps user and system apart.
    assert after.tags == ("user:bob",)
    after = store.update_run_tags("HelloFlow", run.run_id, add=[], remove=["user:bob"])
    assert after.tags == ()


def test_at_most_max_user_tags_unless_the_count_does_not_grow(
    store: SqliteMetadataStore,
) -> None:
    run = _run(store)
    full = [f"t{i:02d}" for i in range(MAX_USER_TAGS)]
    assert len(store.update_run_tags("HelloFlow", run.run_id, add=full, remove=[]).tags) == 50
    with pytest.raises(InvalidArgumentError) as caught:
        store.update_run_tags("HelloFlow", run.run_id, add=["one-more"], remove=[])
    assert caught.value.reason == "TOO_MANY_TAGS"
    assert caught.value.metadata["count"] == str(MAX_USER_TAGS + 1)
    # Swapping one for another keeps the count: allowed.
    after = store.update_run_tags("HelloFlow", run.run_id, add=["swapped"], remove=["t00"])
    assert "swapped" in after.tags and "t00" not in after.tags
    # A run started with more tags than the limit may still shrink.
    big = _run(store, tuple(f"b{i}" for i in range(MAX_USER_TAGS + 5)))
    after = store.update_run_tags("HelloFlow", big.run_id, add=[], remove=["b0"])
    assert len(after.tags) == MAX_USER_TAGS + 4


def test_unknown_runs_are_not_found(store: SqliteMetadataStore) -> None:
    run = _run(store)
    for flow, run_id in (("HelloFlow", "999"), ("OtherFlow", run.run_id), ("HelloFlow", "x")):
        with pytest.raises(NotFoundError):
            store.update_run_tags(flow, run_id, add=["a"], remove=[])


def test_listings_by_tag_follow_changes_and_changes_are_durable(
    store: SqliteMetadataStore, db_path: Path
) -> None:
    first, second = _run(store, ("old",)), _run(store, ("old",))
    store.update_run_tags("HelloFlow", first.run_id, add=["new"], remove=["old"])

    def ids(*tags: str) -> list[str]:
        return [r.run_id for r in store.list_runs("HelloFlow", 0, "", tags=tags).items]

    assert ids("new") == [first.run_id]
    assert ids("old") == [second.run_id]
    assert ids("new", "user:alice") == [first.run_id]
    store.close()
    reopened = SqliteMetadataStore(db_path)
    try:
        assert reopened.get_run("HelloFlow", first.run_id).tags == ("new",)
    finally:
        reopened.close()


# --- the rules ------------------------------------------------------------------------------
def test_check_tag_change_drops_duplicates_and_refuses_bad_tags() -> None:
    change = check_tag_change(["a", "b", "a"], ["c", "c"])
    assert change == TagChange(add=("a", "b"), remove=("c",))
    with pytest.raises(InvalidArgumentError) as caught:
        check_tag_change([], [])
    assert caught.value.reason == "NO_TAG_CHANGE"
    with pytest.raises(InvalidArgumentError) as caught:
        check_tag_change(["ok", ""], [])
    assert caught.value.reason == "INVALID_TAG"
    check_tag_change(["x" * MAX_TAG_LENGTH], [])
    with pytest.raises(InvalidArgumentError) as caught:
        check_tag_change([], ["x" * (MAX_TAG_LENGTH + 1)])
    assert caught.value.reason == "INVALID_TAG"
    assert caught.value.metadata["length"] == str(MAX_TAG_LENGTH + 1)


@pytest.mark.parametrize(
    "tag", ["user:bob", "runtime:prod", "python_version:2.7", "polyflow_version:9"]
)
def test_editor_refuses_new_tags_with_a_system_prefix(store: SqliteMetadataStore, tag: str) -> None:
    run = _run(store, ("a",))
    editor = RunTagEditor(store)
    with pytest.raises(InvalidArgumentError) as caught:
        editor.apply("HelloFlow", run.run_id, check_tag_change([tag, "b"], ["a"]))
    assert caught.value.reason == "SYSTEM_TAG_IMMUTABLE"
    assert caught.value.metadata["tag"] == tag
    assert store.get_run("HelloFlow", run.run_id).tags == ("a",)


def test_editor_skips_the_runs_own_system_tags_and_refuses_removing_them(
    store: SqliteMetadataStore,
) -> None:
    run = _run(store)
    editor = RunTagEditor(store)
    after = editor.apply("HelloFlow", run.run_id, check_tag_change(["user:alice", "ok"], []))
    assert after.tags == ("ok",) and after.graph == b""
    with pytest.raises(InvalidArgumentError) as caught:
        editor.apply("HelloFlow", run.run_id, check_tag_change([], ["user:alice"]))
    assert caught.value.reason == "SYSTEM_TAG_IMMUTABLE"
    # A user tag with a system prefix (e.g. given with --tag at start) can be removed.
    legacy = _run(store, ("user:bob",))
    after = editor.apply("HelloFlow", legacy.run_id, check_tag_change([], ["user:bob"]))
    assert after.tags == ()
    with pytest.raises(NotFoundError):
        editor.apply("HelloFlow", "999", check_tag_change(["a"], []))


def test_editor_applies_a_request_id_once(store: SqliteMetadataStore) -> None:
    run = _run(store)
    editor = RunTagEditor(store, remembered=2)
    add_x = check_tag_change(["x"], [])
    assert editor.apply("HelloFlow", run.run_id, add_x, "r1").tags == ("x",)
    editor.apply("HelloFlow", run.run_id, check_tag_change([], ["x"]), "r2")
    # The retry of r1 changes nothing (x stays removed) and answers with the run as it is.
    again = editor.apply("HelloFlow", run.run_id, add_x, "r1")
    assert again.tags == () and again.graph == b""
    # Ids are per run.
    other = _run(store)
    assert editor.apply("HelloFlow", other.run_id, add_x, "r1").tags == ("x",)
    # Only the newest ids are remembered (here 2): r2 was evicted, so it applies again.
    editor.apply("HelloFlow", run.run_id, add_x, "r3")
    assert editor.apply("HelloFlow", run.run_id, check_tag_change([], ["x"]), "r2").tags == ()


# --- the log pump's marker ------------------------------------------------------------------
def test_truncation_marker_names_the_stream_and_the_limit() -> None:
    assert truncation_marker("stdout", 10 * 1024 * 1024) == (
        "[polyflow] log truncated: stdout exceeded 10 MB (--max-log-size); later output was dropped"
    )
    assert "stderr exceeded 10486 bytes" in truncation_marker("stderr", 10486)


# --- MutateRunTags over gRPC ----------------------------------------------------------------
class _EditorWriter:
    """A RunTagWriter that applies changes at once (the scheduler queues them instead)."""

    def __init__(self, store: MetadataStore) -> None:
        self._editor = RunTagEditor(store)
        self._lock = threading.Lock()

    def update_run_tags(
        self, flow_id: str, run_id: str, change: TagChange, request_id: str = ""
    ) -> RunRecord:
        with self._lock:
            return self._editor.apply(flow_id, run_id, change, request_id)


def _serve(
    tmp_path: Path, store: MetadataStore, writer: RunTagWriter | None
) -> tuple[grpc.Server, grpc.Channel]:
    layout = RootLayout(tmp_path / ".polyflow")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    md_grpc.add_MetadataServiceServicer_to_server(
        MetadataServicer(store, layout, tag_writer=writer), server
    )
    address = f"unix:{tmp_path / 'md.sock'}"
    assert server.add_insecure_port(address) == 1
    server.start()
    return server, grpc.insecure_channel(address)


def _reason(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    return error.code(), info.reason, dict(info.metadata)


def test_mutate_run_tags_on_the_wire(tmp_path: Path, store: SqliteMetadataStore) -> None:
    run = _run(store, ("a",))
    server, channel = _serve(tmp_path, store, _EditorWriter(store))
    stub = md_grpc.MetadataServiceStub(channel)
    name = f"flows/HelloFlow/runs/{run.run_id}"
    try:
        response = stub.MutateRunTags(
            rr.MutateRunTagsRequest(run=name, add_tags=["b"], remove_tags=["a"], request_id="1")
        )
        assert list(response.run.tags) == ["b"]
        assert list(response.run.system_tags) == list(SYSTEM)
        assert response.run.name == name and not response.run.HasField("graph")
        cases = [
            (rr.MutateRunTagsRequest(run=name), "INVALID_ARGUMENT", "NO_TAG_CHANGE"),
            (
                rr.MutateRunTagsRequest(run=name, remove_tags=["user:alice"]),
                "INVALID_ARGUMENT",
                "SYSTEM_TAG_IMMUTABLE",
            ),
            (
                rr.MutateRunTagsRequest(run=name, add_tags=["runtime:x"]),
                "INVALID_ARGUMENT",
                "SYSTEM_TAG_IMMUTABLE",
            ),
            (rr.MutateRunTagsRequest(run=name, add_tags=[""]), "INVALID_ARGUMENT", "INVALID_TAG"),
            (
                rr.MutateRunTagsRequest(run="flows/HelloFlow", add_tags=["x"]),
                "INVALID_ARGUMENT",
                "INVALID_NAME",
            ),
            (
                rr.MutateRunTagsRequest(run="flows/HelloFlow/runs/999", add_tags=["x"]),
                "NOT_FOUND",
                "NOT_FOUND",
            ),
        ]
        for request, code, reason in cases:
            with pytest.raises(grpc.RpcError) as caught:
                stub.MutateRunTags(request)
            got_code, got_reason, metadata = _reason(caught.value)
            assert (got_code.name, got_reason) == (code, reason), request
            if code == "NOT_FOUND":
                assert metadata["name"] == "flows/HelloFlow/runs/999"
        assert store.get_run("HelloFlow", run.run_id).tags == ("b",)
    finally:
        channel.close()
        server.stop(grace=None).wait()


def test_mutate_run_tags_needs_a_writer(tmp_path: Path, store: SqliteMetadataStore) -> None:
    run = _run(store)
    server, channel = _serve(tmp_path, store, None)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            md_grpc.MetadataServiceStub(channel).MutateRunTags(
                rr.MutateRunTagsRequest(run=f"flows/HelloFlow/runs/{run.run_id}", add_tags=["x"])
            )
        assert _reason(caught.value)[:2] == (grpc.StatusCode.UNIMPLEMENTED, "NO_WRITER")
    finally:
        channel.close()
        server.stop(grace=None).wait()
