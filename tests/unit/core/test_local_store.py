"""Tests of the local content-addressed store and of resumable uploads."""

from __future__ import annotations

import hashlib
import mmap
import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from polyflow_core.datastore import (
    BlobStore,
    LocalBlobStore,
    UploadSessions,
    digest_of,
    parse_digest,
)
from polyflow_core.datastore import local as local_mod
from polyflow_core.datastore.local import CODEC_RAW, CODEC_ZSTD, HEADER_SIZE, MAGIC
from polyflow_core.errors import (
    BlobCorruptedError,
    BlobNotFoundError,
    ErrorCode,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)

MIB = 1 << 20
_REAL_COMPRESSOR = zstandard.ZstdCompressor


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "store")


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _codec(store: LocalBlobStore, digest: str) -> int:
    header = store.blob_path(digest).read_bytes()[:HEADER_SIZE]
    assert header[:4] == MAGIC
    return header[4]


class _CountingCompressor:
    """Wraps zstandard.ZstdCompressor to count what gets compressed."""

    calls: list[str] = []  # noqa: RUF012 - reset per test

    def __init__(self, **kwargs: Any) -> None:
        self._inner = _REAL_COMPRESSOR(**kwargs)

    def compress(self, data: bytes) -> bytes:
        self.calls.append(f"compress:{len(data)}")
        return self._inner.compress(data)

    def compressobj(self, size: int = -1) -> Any:
        self.calls.append(f"compressobj:{size}")
        return self._inner.compressobj(size=size)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    _CountingCompressor.calls = []
    monkeypatch.setattr(zstandard, "ZstdCompressor", _CountingCompressor)
    return _CountingCompressor.calls


# --- addresses ------------------------------------------------------------------------------
def test_digest_of_and_parse_digest() -> None:
    assert digest_of(b"abc") == _sha(b"abc")
    assert digest_of([b"a", memoryview(b"b"), bytearray(b"c")]) == _sha(b"abc")
    assert parse_digest(_sha(b"abc")) == hashlib.sha256(b"abc").hexdigest()
    for bad in ("", "sha256:", "sha256:" + "A" * 64, "md5:" + "0" * 32, _sha(b"x") + "0"):
        with pytest.raises(InvalidArgumentError) as info:
            parse_digest(bad)
        assert info.value.reason == "INVALID_DIGEST"


def test_local_store_is_a_blob_store(store: LocalBlobStore) -> None:
    assert isinstance(store, BlobStore)
    assert store.location() == {"kind": "local", "root": str(store.root), "options": {}}
    assert not store.root.exists(), "opening a store creates nothing"


# --- format and codec choice ----------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 1000, MIB, 3 * MIB])
def test_round_trip_random(store: LocalBlobStore, size: int) -> None:
    data = os.urandom(size)
    info = store.put_bytes(data)
    assert info.digest == _sha(data)
    assert info.size == size
    assert store.has(info.digest)
    assert store.get_bytes(info.digest) == data
    assert bytes(store.get_view(info.digest)) == data
    assert store.size(info.digest) == size
    assert b"".join(store.read_chunks(info.digest, 4096)) == data
    hex_digest = info.digest.removeprefix("sha256:")
    assert store.blob_path(info.digest) == store.root / "blobs" / hex_digest[:2] / hex_digest
    assert _codec(store, info.digest) == CODEC_RAW, "random bytes are stored raw"
    assert store.blob_path(info.digest).stat().st_size == HEADER_SIZE + size


def test_compressible_small_blob_is_zstd(store: LocalBlobStore) -> None:
    data = b"polyflow " * 10000
    info = store.put_bytes(data)
    assert _codec(store, info.digest) == CODEC_ZSTD
    raw = store.blob_path(info.digest).read_bytes()
    assert len(raw) < len(data) // 10
    assert zstandard.ZstdDecompressor().decompress(raw[HEADER_SIZE:]) == data
    assert store.get_bytes(info.digest) == data
    assert bytes(store.get_view(info.digest)) == data
    assert store.size(info.digest) == len(data)
    assert b"".join(store.read_chunks(info.digest, 1000)) == data


def test_zstd_only_when_it_saves_ten_percent(store: LocalBlobStore) -> None:
    # 92% random + 8% zeros: zstd saves under 10%, so the blob stays raw.
    data = os.urandom(9200) + bytes(800)
    assert len(zstandard.ZstdCompressor(level=3).compress(data)) > 0.9 * len(data)
    assert _codec(store, store.put_bytes(data).digest) == CODEC_RAW
    # 50% zeros: saves enough.
    data = os.urandom(5000) + bytes(5000)
    assert _codec(store, store.put_bytes(data).digest) == CODEC_ZSTD


def test_large_incompressible_blob_skips_compression(
    store: LocalBlobStore, counting: list[str]
) -> None:
    data = os.urandom(2 * MIB)
    info = store.put_bytes(data)
    assert _codec(store, info.digest) == CODEC_RAW
    assert counting == [f"compress:{64 << 10}"], "only the 64 KiB sample was tried"


def test_large_compressible_blob_is_streamed_to_zstd(
    store: LocalBlobStore, counting: list[str]
) -> None:
    data = b"0123456789abcdef" * (5 * MIB // 16)
    info = store.put_bytes(data)
    assert _codec(store, info.digest) == CODEC_ZSTD
    assert counting == [f"compress:{64 << 10}", f"compressobj:{len(data)}"]
    assert store.get_bytes(info.digest) == data
    assert store.size(info.digest) == len(data)


def test_promising_sample_but_incompressible_blob_ends_raw(store: LocalBlobStore) -> None:
    data = bytes(64 << 10) + os.urandom(3 * MIB)
    info = store.put_bytes(data)
    assert _codec(store, info.digest) == CODEC_RAW
    assert store.blob_path(info.digest).stat().st_size == HEADER_SIZE + len(data)
    assert store.get_bytes(info.digest) == data


def test_buffers_are_written_without_joining(store: LocalBlobStore) -> None:
    payload = bytearray(os.urandom(2 * MIB))
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(pickle.PickleBuffer(payload), protocol=5, buffer_callback=buffers.append)
    parts: list[bytes | memoryview] = [stream, *(buffer.raw() for buffer in buffers)]
    info = store.put_bytes(parts)
    assert info.digest == _sha(stream + bytes(payload))
    assert info.size == len(stream) + len(payload)
    assert store.get_bytes(info.digest) == stream + bytes(payload)


def test_non_byte_buffers_are_accepted(store: LocalBlobStore) -> None:
    ints = memoryview(bytearray(range(16))).cast("I")
    info = store.put_bytes(ints)
    assert store.get_bytes(info.digest) == bytes(range(16))


def test_existing_blob_is_never_rewritten(store: LocalBlobStore) -> None:
    data = os.urandom(1000)
    first = store.put_bytes(data)
    path = store.blob_path(first.digest)
    before = path.stat()
    again = store.put_bytes(bytearray(data))
    assert again == first
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert list((store.root / "tmp").iterdir()) == [], "no temporary file is left"


def test_concurrent_writers_of_one_blob(store: LocalBlobStore) -> None:
    data = os.urandom(300_000)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(20):
                assert store.put_bytes(data).digest == _sha(data)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.get_bytes(_sha(data)) == data
    assert list((store.root / "tmp").iterdir()) == []


def test_has_many(store: LocalBlobStore) -> None:
    present = store.put_bytes(b"here").digest
    assert store.has_many([present, _sha(b"absent"), present]) == [True, False, True]
    with pytest.raises(InvalidArgumentError):
        store.has("sha256:nope")


# --- reads: zero copy, chunks, errors -------------------------------------------------------
def test_get_view_maps_raw_blobs_without_copy(store: LocalBlobStore) -> None:
    data = os.urandom(MIB)
    view = store.get_view(store.put_bytes(data).digest)
    assert view.readonly
    assert isinstance(view.obj, mmap.mmap)
    assert view == data
    view.release()


def test_read_chunks_sizes(store: LocalBlobStore) -> None:
    data = os.urandom(2 * MIB + 5)
    chunks = list(store.read_chunks(store.put_bytes(data).digest, MIB))
    assert [len(chunk) for chunk in chunks] == [MIB, MIB, 5]
    assert list(store.read_chunks(store.put_bytes(b"").digest, MIB)) == []
    with pytest.raises(InvalidArgumentError):
        store.read_chunks(_sha(b""), 0)


def test_read_chunks_of_a_large_compressed_blob_streams_twice(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_mod, "IN_MEMORY_VERIFY_LIMIT", 1000)
    data = b"abcdefgh" * 100_000
    digest = store.put_bytes(data).digest
    assert _codec(store, digest) == CODEC_ZSTD
    chunks = list(store.read_chunks(digest, 65536))
    assert b"".join(chunks) == data
    assert all(len(chunk) == 65536 for chunk in chunks[:-1])


def test_missing_blob(store: LocalBlobStore) -> None:
    digest = _sha(b"never stored")
    assert not store.has(digest)
    for read in (store.get_bytes, store.get_view, store.size):
        with pytest.raises(BlobNotFoundError) as info:
            read(digest)
        assert info.value.code is ErrorCode.NOT_FOUND
        assert info.value.reason == "BLOB_NOT_FOUND"
        assert info.value.metadata == {"digest": digest}
    with pytest.raises(BlobNotFoundError):
        store.read_chunks(digest, 10)


def _flip_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_corrupted_raw_blob(store: LocalBlobStore) -> None:
    data = os.urandom(3 * MIB)
    digest = store.put_bytes(data).digest
    path = store.blob_path(digest)
    _flip_last_byte(path)
    corrupted = path.read_bytes()[HEADER_SIZE:]
    for read in (store.get_bytes, store.get_view):
        with pytest.raises(BlobCorruptedError) as info:
            read(digest)
        error = info.value
        assert error.code is ErrorCode.DATA_LOSS
        assert error.reason == "BLOB_DIGEST_MISMATCH"
        assert error.expected_digest == digest
        assert error.found_digest == _sha(corrupted)
        assert error.metadata == {"expected_digest": digest, "found_digest": _sha(corrupted)}
    # read_chunks fails before handing out any chunk.
    with pytest.raises(BlobCorruptedError):
        store.read_chunks(digest, MIB)


def test_truncated_raw_blob(store: LocalBlobStore) -> None:
    data = os.urandom(10_000)
    digest = store.put_bytes(data).digest
    path = store.blob_path(digest)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(BlobCorruptedError) as info:
        store.get_bytes(digest)
    assert info.value.found_digest == _sha(data[: 5000 - HEADER_SIZE])


def test_truncated_zstd_blob(store: LocalBlobStore) -> None:
    data = b"compress me " * 50_000
    digest = store.put_bytes(data).digest
    path = store.blob_path(digest)
    assert _codec(store, digest) == CODEC_ZSTD
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(BlobCorruptedError) as info:
        store.get_bytes(digest)
    assert info.value.expected_digest == digest
    assert info.value.found_digest.startswith("sha256:")
    assert info.value.found_digest != digest
    with pytest.raises(BlobCorruptedError):
        store.read_chunks(digest, MIB)


@pytest.mark.parametrize("content", [b"", b"PF", b"XXXX\x00abc", b"PFB1\x07abc"])
def test_bad_header(store: LocalBlobStore, content: bytes) -> None:
    digest = store.put_bytes(b"abc").digest
    store.blob_path(digest).write_bytes(content)
    for read in (store.get_bytes, store.get_view, store.size):
        with pytest.raises(BlobCorruptedError) as info:
            read(digest)
        assert info.value.found_digest == _sha(content)


def test_a_blob_found_corrupt_is_quarantined_and_the_next_writer_restores_it(
    store: LocalBlobStore,
) -> None:
    data = os.urandom(3 * MIB)
    digest = store.put_bytes(data).digest
    path = store.blob_path(digest)
    _flip_last_byte(path)
    corrupted = path.read_bytes()
    for attempt in range(2):  # the second read finds the quarantined copy: the same error
        with pytest.raises(BlobCorruptedError) as info:
            store.get_view(digest)
        assert info.value.found_digest == _sha(corrupted[HEADER_SIZE:]), attempt
        assert not path.exists()
        assert (store.quarantine_dir / path.name).read_bytes() == corrupted
    assert not store.has(digest)
    assert store.put_bytes(data).digest == digest
    assert store.get_bytes(digest) == data
    assert bytes(store.get_view(digest)) == data


@pytest.mark.parametrize("reader", ["get_bytes", "get_private_view", "read_chunks", "size"])
def test_every_verified_read_quarantines(store: LocalBlobStore, reader: str) -> None:
    data = b"compress me " * 10_000
    digest = store.put_bytes(data).digest
    path = store.blob_path(digest)
    path.write_bytes(path.read_bytes()[:HEADER_SIZE] + b"not a zstd frame at all")
    with pytest.raises(BlobCorruptedError):
        getattr(store, reader)(digest, *([MIB] if reader == "read_chunks" else []))
    assert not path.exists()
    assert store.put_many([data])[0].digest == digest
    assert store.get_bytes(digest) == data


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[:-1],  # truncated raw payload
        lambda raw: raw + b"x",  # a raw payload too long
        lambda raw: b"",  # empty file
        lambda raw: b"XXXX" + raw[4:],  # bad magic
        lambda raw: raw[:4] + b"\x09" + raw[5:],  # unknown codec
    ],
)
@pytest.mark.parametrize("put", ["put_bytes", "put_many"])
def test_a_writer_replaces_a_stored_file_whose_header_or_size_is_wrong(
    store: LocalBlobStore, damage: Any, put: str
) -> None:
    data = os.urandom(10_000)
    digest = store.put_bytes(data).digest
    path = store.blob_path(digest)
    damaged = damage(path.read_bytes())
    path.write_bytes(damaged)
    if put == "put_bytes":
        store.put_bytes(data)
    else:
        store.put_many([data])
    assert store.get_bytes(digest) == data
    assert (store.quarantine_dir / path.name).read_bytes() == damaged


def test_a_writer_checks_the_size_a_zstd_frame_declares(store: LocalBlobStore) -> None:
    data = b"compress me " * 10_000
    digest = store.put_bytes(data).digest
    assert _codec(store, digest) == CODEC_ZSTD
    path = store.blob_path(digest)
    other = _REAL_COMPRESSOR(level=3).compress(data[:-1])  # a frame of another size
    path.write_bytes(MAGIC + bytes([CODEC_ZSTD]) + other)
    store.put_bytes(data)
    assert store.get_bytes(digest) == data


def test_quarantine_leaves_a_file_another_process_put_in_place(store: LocalBlobStore) -> None:
    digest = store.put_bytes(b"first").digest
    path = store.blob_path(digest)
    with open(path, "rb") as stale:
        replacement = path.with_suffix(".new")
        replacement.write_bytes(path.read_bytes())
        os.replace(replacement, path)  # a writer restored the blob after our read began
        store._quarantine(path, stale)
    assert path.exists()
    assert not (store.quarantine_dir / path.name).exists()


def test_make_durable_syncs_the_blob_files_and_their_folders(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = [store.put_bytes(os.urandom(100)).digest for _ in range(3)]
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(local_mod.os, "fsync", recording_fsync)
    missing = "sha256:" + "0" * 64
    store.make_durable([*digests, digests[0], missing])
    files = {str(store.blob_path(digest)) for digest in digests}
    assert files <= set(synced)
    assert {os.path.dirname(path) for path in files} <= set(synced)
    assert str(store.blobs_dir) in synced
    assert str(store.blob_path(missing)) not in synced


def test_make_durable_of_many_blobs_is_one_syncfs(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = [store.put_bytes(os.urandom(100)).digest for _ in range(20)]
    calls: list[str] = []
    monkeypatch.setattr(local_mod, "_syncfs", lambda path: calls.append(path) or True)
    monkeypatch.setattr(local_mod.os, "fsync", lambda fd: pytest.fail("fsync instead of syncfs"))
    store.make_durable(digests)
    assert calls == [str(store.root)]


def test_abandoned_temporary_files_are_discarded(store: LocalBlobStore) -> None:
    store.put_bytes(b"make the folders")
    old = store.tmp_dir / "old.tmp"
    fresh = store.tmp_dir / "fresh.tmp"
    old.write_bytes(b"partial")
    fresh.write_bytes(b"being written")
    hour_ago = os.stat(old).st_mtime - 3601
    os.utime(old, (hour_ago, hour_ago))
    assert store.discard_abandoned_writes(3600) == 1
    assert sorted(path.name for path in store.tmp_dir.iterdir()) == ["fresh.tmp"]
    assert LocalBlobStore(store.root / "elsewhere").discard_abandoned_writes() == 0


def test_errors_survive_pickling() -> None:
    error = BlobCorruptedError(_sha(b"a"), _sha(b"b"), "bad")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, BlobCorruptedError)
    assert (copy.expected_digest, copy.found_digest, copy.reason, copy.code) == (
        error.expected_digest,
        error.found_digest,
        "BLOB_DIGEST_MISMATCH",
        ErrorCode.DATA_LOSS,
    )
    assert str(copy) == str(error)


# --- uploads --------------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def uploads(store: LocalBlobStore, clock: _Clock) -> UploadSessions:
    return UploadSessions(store, clock=clock)


def _chunks(data: bytes, size: int) -> Iterator[tuple[int, bytes]]:
    for offset in range(0, len(data), size):
        yield offset, data[offset : offset + size]


def test_chunked_upload_and_commit(store: LocalBlobStore, uploads: UploadSessions) -> None:
    data = os.urandom(2 * MIB + 123)
    upload_id = "upload-0000000001"
    for offset, chunk in _chunks(data, MIB):
        assert uploads.write_chunk(upload_id, offset, chunk) == offset + len(chunk)
    assert uploads.received(upload_id) == len(data)
    info = uploads.commit(upload_id, _sha(data))
    assert info.digest == _sha(data)
    assert info.size == len(data)
    assert store.get_bytes(info.digest) == data
    assert not (uploads.folder / upload_id).exists()
    # A retried commit (lost answer) gets the same result.
    assert uploads.commit(upload_id) == info
    with pytest.raises(NotFoundError):
        uploads.received(upload_id)


def test_empty_upload(store: LocalBlobStore, uploads: UploadSessions) -> None:
    assert uploads.write_chunk("empty-upload-0001", 0, b"") == 0
    info = uploads.commit("empty-upload-0001")
    assert info.digest == _sha(b"")
    assert store.get_bytes(info.digest) == b""


def test_offset_must_follow(uploads: UploadSessions) -> None:
    upload_id = "offset-check-0001"
    uploads.write_chunk(upload_id, 0, b"abcd")
    with pytest.raises(FailedPreconditionError) as info:
        uploads.write_chunk(upload_id, 2, b"cd")
    assert info.value.reason == "UPLOAD_OFFSET_MISMATCH"
    assert info.value.metadata["received_bytes"] == "4"
    assert uploads.write_chunk(upload_id, 4, b"ef") == 6
    # An unknown upload must start at 0 and leaves nothing behind when it does not.
    with pytest.raises(FailedPreconditionError) as info:
        uploads.write_chunk("never-started-0001", 10, b"x")
    assert info.value.metadata["received_bytes"] == "0"
    assert not (uploads.folder / "never-started-0001").exists()


def test_commit_with_wrong_digest_stores_nothing(
    store: LocalBlobStore, uploads: UploadSessions
) -> None:
    upload_id = "mismatch-0000001"
    uploads.write_chunk(upload_id, 0, b"actual bytes")
    with pytest.raises(InvalidArgumentError) as info:
        uploads.commit(upload_id, _sha(b"other bytes"))
    assert info.value.reason == "BLOB_DIGEST_MISMATCH"
    assert info.value.metadata == {
        "expected_digest": _sha(b"other bytes"),
        "found_digest": _sha(b"actual bytes"),
    }
    assert not store.has(_sha(b"actual bytes"))
    with pytest.raises(NotFoundError) as not_found:
        uploads.commit(upload_id)
    assert not_found.value.reason == "UPLOAD_NOT_FOUND"


def test_upload_argument_checks(uploads: UploadSessions) -> None:
    for bad_id in ("short", "x" * 65, "has space in it!!", "slash/../../etc/pwd"):
        with pytest.raises(InvalidArgumentError) as info:
            uploads.write_chunk(bad_id, 0, b"x")
        assert info.value.reason == "INVALID_UPLOAD_ID"
    with pytest.raises(InvalidArgumentError) as info:
        uploads.write_chunk("too-large-chunk-01", 0, bytes(MIB + 1))
    assert info.value.reason == "CHUNK_TOO_LARGE"
    with pytest.raises(InvalidArgumentError):
        uploads.write_chunk("negative-offset-01", -1, b"x")
    with pytest.raises(NotFoundError):
        uploads.commit("unknown-upload-001")
    with pytest.raises(InvalidArgumentError):
        uploads.commit("unknown-upload-001", "sha256:bad")


def test_idle_uploads_expire(uploads: UploadSessions, clock: _Clock) -> None:
    uploads.write_chunk("old-upload-000001", 0, b"abc")
    path = uploads.folder / "old-upload-000001"
    os.utime(path, (clock.now, clock.now))
    uploads.write_chunk("new-upload-000001", 0, b"abc")
    os.utime(uploads.folder / "new-upload-000001", (clock.now + 3000, clock.now + 3000))
    clock.now += 3601
    assert uploads.expire() == 1
    assert not path.exists()
    with pytest.raises(NotFoundError):
        uploads.commit("old-upload-000001")
    assert uploads.commit("new-upload-000001").digest == _sha(b"abc")


def test_upload_sessions_need_a_folder_for_other_stores() -> None:
    class _Other(LocalBlobStore):
        pass

    assert UploadSessions(_Other("/nonexistent")).folder == Path("/nonexistent/uploads")
