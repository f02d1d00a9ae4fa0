"""Unit tests of the pieces that make the core fast: group commits, the change stamp, held
events, batched blob writes and private (copy-on-write) blob views."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from polyflow_core.datastore.base import digest_of
from polyflow_core.datastore.local import LocalBlobStore
from polyflow_core.domain.events import RunEventLog, RunMessage, held_events
from polyflow_core.errors import AlreadyExistsError, BlobCorruptedError
from polyflow_core.metadata.base import RunState
from polyflow_core.metadata.sqlite import SqliteMetadataStore
from polyflow_core.stamp import StampReader, StampWriter, stamp_path_for


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteMetadataStore]:
    opened = SqliteMetadataStore(tmp_path / ".polyflow" / "metadata.db")
    yield opened
    opened.close()


def _new_run(store: SqliteMetadataStore) -> str:
    return store.create_run(
        flow_id="F",
        user="u",
        tags=(),
        system_tags=(),
        graph=b"",
        options=b"",
        environment=b"",
        namespace="",
    ).run_id


def _in_other_thread(call: object) -> object:
    found: list[object] = []
    thread = threading.Thread(target=lambda: found.append(call()))  # type: ignore[operator]
    thread.start()
    thread.join()
    return found[0]


# --- group commits --------------------------------------------------------------------------
def test_a_batch_commits_its_writes_together(store: SqliteMetadataStore) -> None:
    run = _new_run(store)
    with store.batch():
        task = store.create_task(
            flow_id="F", run_id=run, step_name="start", foreach_stack=(), input_tasks=()
        )
        store.set_run_state("F", run, RunState.RUNNING)
        # This thread reads its own batch; another thread sees the state before it.
        assert store.get_task("F", run, task.task_id).step_name == "start"
        assert store.get_run("F", run).state is RunState.RUNNING
        other = _in_other_thread(lambda: store.get_run("F", run).state)
        assert other is RunState.PENDING
    assert _in_other_thread(lambda: store.get_run("F", run).state) is RunState.RUNNING


def test_a_failed_write_in_a_batch_undoes_itself_only(store: SqliteMetadataStore) -> None:
    run = _new_run(store)
    with store.batch():
        store.create_task(
            flow_id="F", run_id=run, step_name="a", foreach_stack=(), input_tasks=(), task_id="5"
        )
        with pytest.raises(AlreadyExistsError):
            store.create_task(
                flow_id="F",
                run_id=run,
                step_name="b",
                foreach_stack=(),
                input_tasks=(),
                task_id="5",
            )
        store.set_run_state("F", run, RunState.RUNNING)
    assert store.get_task("F", run, "5").step_name == "a"
    assert store.get_run("F", run).state is RunState.RUNNING


def test_an_exception_leaving_a_batch_rolls_it_back(store: SqliteMetadataStore) -> None:
    run = _new_run(store)
    with pytest.raises(RuntimeError), store.batch():
        store.set_run_state("F", run, RunState.RUNNING)
        raise RuntimeError("boom")
    assert store.get_run("F", run).state is RunState.PENDING


# --- the change stamp -----------------------------------------------------------------------
def test_the_stamp_changes_after_each_commit_and_only_then(
    store: SqliteMetadataStore, tmp_path: Path
) -> None:
    reader = StampReader(stamp_path_for(store.path))
    before = reader.read()
    assert before is not None
    run = _new_run(store)
    after_one = reader.read()
    assert after_one != before
    store.get_run("F", run)  # a read changes nothing
    assert reader.read() == after_one
    with store.batch():
        store.set_run_state("F", run, RunState.RUNNING)
        assert reader.read() == after_one  # not before the commit
        store.set_run_state("F", run, RunState.SUCCEEDED)
    assert reader.read() not in (after_one, None)


def test_a_stamp_reader_notices_a_replaced_file_and_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "metadata.stamp"
    reader = StampReader(path)
    assert reader.read() is None
    first = StampWriter(path)
    seen = reader.read()
    assert seen is not None
    first.close()
    path.unlink()
    StampWriter(path)  # a new file, a new random value
    assert reader.read() not in (seen, None)


# --- held events ----------------------------------------------------------------------------
def test_held_events_are_appended_when_the_block_ends() -> None:
    log = RunEventLog()
    with held_events():
        assert log.append(RunMessage("one")) is None
        with held_events():
            log.append(RunMessage("two"))
        assert log.last_sequence == 0
        # Another thread's appends (log lines) are not held.
        _in_other_thread(lambda: log.append(RunMessage("other")))
        assert log.last_sequence == 1
    texts = [event.payload.text for event in log.read(0)]  # type: ignore[union-attr]
    assert texts == ["other", "one", "two"]


# --- blobs ----------------------------------------------------------------------------------
def test_put_many_stores_every_blob_once(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "store")
    items = [b"a" * 10, [b"b" * 5, b"c" * 5], b"a" * 10, b"x" * 100_000]
    infos = blobs.put_many(items * 3)  # more than SYNCFS_ABOVE, duplicates within
    assert [info.digest for info in infos] == [digest_of(item) for item in items * 3]
    assert blobs.get_bytes(infos[1].digest) == b"bbbbbccccc"
    again = blobs.put_many([b"a" * 10, b"new"])  # one present, one new
    assert blobs.get_bytes(again[1].digest) == b"new"
    assert not list(blobs.tmp_dir.iterdir())
    files = [p for p in blobs.blobs_dir.rglob("*") if p.is_file()]
    assert len(files) == 4


def test_a_private_view_is_writable_verified_and_changes_nothing_stored(
    tmp_path: Path,
) -> None:
    blobs = LocalBlobStore(tmp_path / "store")
    data = os.urandom(3 << 20)  # incompressible: stored raw, mapped
    info = blobs.put_bytes(data)
    view = blobs.get_private_view(info.digest)
    assert not view.readonly and view.tobytes() == data
    view[0] = (view[0] + 1) % 256
    assert blobs.get_bytes(info.digest) == data
    assert blobs.peek_view(info.digest).tobytes() == data
    compressible = blobs.put_bytes(b"z" * 100_000)
    assert blobs.get_private_view(compressible.digest).tobytes() == b"z" * 100_000
    blobs.blob_path(info.digest).write_bytes(b"PFB1\0" + b"rotten")
    with pytest.raises(BlobCorruptedError):
        blobs.get_private_view(info.digest)


# --- the pre-forked workers' frames ---------------------------------------------------------
def test_frames_carry_their_descriptors_even_when_read_together() -> None:
    import socket

    from polyflow_core.executors.zygote_protocol import FrameReader, send_frame

    ours, theirs = socket.socketpair()
    pipes = [os.pipe() for _ in range(3)]

    def send() -> None:
        send_frame(ours, {"op": "task", "id": "1"}, b"spec-one", (pipes[0][1], pipes[1][1]))
        send_frame(ours, {"op": "kill", "id": "1"})
        send_frame(ours, {"op": "task", "id": "2"}, b"x" * 300_000, (pipes[2][1],))

    sender = threading.Thread(target=send)  # a body larger than the socket's buffer
    sender.start()
    try:
        reader = FrameReader(theirs)
        frames: list[tuple[dict[str, object], bytes, list[int]]] = []
        while len(frames) < 3:
            assert reader.fill()
            frames.extend(reader.frames())
        (h1, b1, f1), (h2, b2, f2), (h3, b3, f3) = frames
        assert (h1["op"], h1["id"], b1, len(f1)) == ("task", "1", b"spec-one", 2)
        assert (h2["op"], b2, f2) == ("kill", b"", [])
        assert (h3["id"], len(b3), len(f3)) == ("2", 300_000, 1)
        # The descriptors are the pipes' write ends, in order, and close-on-exec.
        for fd, (read_end, _) in zip([*f1, *f3], pipes, strict=True):
            assert not os.get_inheritable(fd)
            os.write(fd, b"!")
            assert os.read(read_end, 1) == b"!"
            os.close(fd)
        sender.join()
        ours.close()
        assert not reader.fill()
    finally:
        sender.join()
        ours.close()
        theirs.close()
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)
