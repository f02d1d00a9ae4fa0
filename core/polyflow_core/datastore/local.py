"""The local content-addressed blob store, and resumable uploads into any store.

File format (``docs/architecture.md``): a blob lives at ``<root>/blobs/<hex[0:2]>/<hex>`` and
holds the 4-byte magic ``PFB1``, one codec byte (``0`` raw, ``1`` zstd) and the payload.
The address is the SHA-256 of the encoded bytes *before* compression.

- Writers compress with zstd (level 3) only when it saves at least 10%. Blobs over 1 MiB are
  only tried when their first 64 KiB compress by 10%, so incompressible data (arrays of
  floats, images, already compressed files) costs no compression time.
- Writes go to ``<root>/tmp/<random>``, are fsynced, then renamed into place; the shard folder
  is fsynced too, so a stored blob survives a power loss. A blob already present is not
  rewritten once its header and size show it whole (a cheap check, not a hash).
- Reads verify the hash; a mismatch (bit rot, a truncated file, a bad header) raises
  ``BlobCorruptedError`` naming the expected and found digests.
- A blob found corrupt (by a read, or by a writer's check) is moved to
  ``<root>/quarantine/<hex>``, so the next writer of the same value stores it afresh and every
  artifact with that address reads again. Until then reads keep failing with the same error,
  read from the quarantined copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import zstandard

from polyflow_core.datastore.base import (
    DIGEST_PREFIX,
    BlobData,
    BlobInfo,
    BlobStore,
    Buffer,
    StoreLocationInfo,
    buffers_of,
    parse_digest,
)
from polyflow_core.errors import (
    BlobCorruptedError,
    BlobNotFoundError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)

__all__ = [
    "CODEC_RAW",
    "CODEC_ZSTD",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_UPLOAD_CHUNK",
    "LocalBlobStore",
    "UploadSessions",
]

MAGIC = b"PFB1"
"""First four bytes of every blob file."""
CODEC_RAW = 0
"""Codec byte: the payload is the blob."""
CODEC_ZSTD = 1
"""Codec byte: the payload is one zstd frame (with its content size) of the blob."""
HEADER_SIZE = len(MAGIC) + 1
"""Bytes before the payload."""

ZSTD_LEVEL = 3
"""zstd compression level."""
MIN_SAVING = 0.10
"""Compress only when it saves at least this fraction."""
SAMPLE_ABOVE = 1 << 20
"""Blobs larger than this are first tried on a sample."""
SAMPLE_SIZE = 64 << 10
"""Size of that sample (the blob's first bytes)."""
IN_MEMORY_VERIFY_LIMIT = 64 << 20
"""Compressed blobs up to this decoded size are verified in memory by ``read_chunks``;
larger ones are decompressed twice (once to verify, once to stream)."""
MAX_UPLOAD_CHUNK = 1 << 20
"""Largest chunk ``UploadSessions.write_chunk`` accepts."""
SYNCFS_ABOVE = 8
"""``put_many`` syncs more files than this with one ``syncfs`` (Linux) rather than one
``fsync`` each."""

_IO_SLICE = 4 << 20  # feed compressors and files in slices of this size
_ZSTD_MAX_FRAME_HEADER = 18  # bytes: magic, descriptor, window, dictionary id, content size


def _fits_saving(compressed: int, original: int) -> bool:
    """Whether ``compressed`` saves at least :data:`MIN_SAVING` of ``original``."""
    return compressed <= original * (1.0 - MIN_SAVING)


def _slices(view: memoryview, size: int) -> Iterator[memoryview]:
    """``view`` in consecutive slices of at most ``size`` bytes."""
    for start in range(0, len(view), size):
        yield view[start : start + size]


_syncfs_function: Callable[[int], int] | bool | None = False  # False: not looked up yet


def _syncfs(path: str) -> bool:
    """``syncfs(2)`` on the file system holding ``path``: everything written to it is durable
    when it returns. False where unavailable or when it fails (callers then fsync)."""
    global _syncfs_function
    if _syncfs_function is False:
        _syncfs_function = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                function = ctypes.CDLL(None, use_errno=True).syncfs
                function.argtypes = [ctypes.c_int]
                _syncfs_function = function
            except (OSError, AttributeError):
                pass
    if not callable(_syncfs_function):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return int(_syncfs_function(fd)) == 0
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


class LocalBlobStore(BlobStore):
    """A content-addressed store in a local folder, shared by the daemon and its workers.

    Safe for concurrent use by threads and processes: writers never modify a visible file.
    Folders are created on the first write, so opening a store only to read creates nothing.

    Args:
        root: The store's folder (``<.polyflow>/store`` by default layout).
        fsync: Flush each new blob and its folder entry to disk before returning from a
            write. Turn off only for throw-away stores (tests, benchmarks of other parts).
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self._root = Path(root).expanduser().resolve()
        self._fsync = fsync

    # --- layout -------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """The store's absolute folder."""
        return self._root

    @property
    def blobs_dir(self) -> Path:
        """Folder of the sharded blob files."""
        return self._root / "blobs"

    @property
    def tmp_dir(self) -> Path:
        """Folder of files being written."""
        return self._root / "tmp"

    @property
    def quarantine_dir(self) -> Path:
        """Folder of blob files found corrupt, kept for inspection."""
        return self._root / "quarantine"

    def blob_path(self, digest: str) -> Path:
        """The file of a blob (whether it exists or not).

        Raises:
            InvalidArgumentError: Malformed digest.
        """
        hex_digest = parse_digest(digest)
        return self.blobs_dir / hex_digest[:2] / hex_digest

    def location(self) -> StoreLocationInfo:
        """``{"kind": "local", "root": <absolute folder>, "options": {}}``."""
        return {"kind": "local", "root": str(self._root), "options": {}}

    # --- writes -------------------------------------------------------------------------
    def put_bytes(self, data: BlobData) -> BlobInfo:
        """Store ``data`` (a buffer, or buffers stored as their concatenation, which are not
        joined in memory when stored raw) and return its address and size.

        Returns once the blob is durable. A blob that exists already is left untouched.
        """
        views = buffers_of(data)
        hasher = hashlib.sha256()
        total = 0
        for view in views:
            hasher.update(view)
            total += view.nbytes
        info = BlobInfo(DIGEST_PREFIX + hasher.hexdigest(), total)
        final = self.blob_path(info.digest)
        if self._holds_whole(str(final), total):
            return info
        if not final.parent.is_dir():
            final.parent.mkdir(parents=True, exist_ok=True)
            if self._fsync:
                _fsync_dir(final.parent.parent)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_dir / f"{secrets.token_hex(12)}.tmp"
        try:
            with open(tmp, "xb") as out:
                self._write_encoded(out, views, total)
                out.flush()
                if self._fsync:
                    os.fsync(out.fileno())
            if final.exists():  # another writer won the race: keep its file untouched
                tmp.unlink()
            else:
                os.replace(tmp, final)
                if self._fsync:
                    _fsync_dir(final.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return info

    def put_many(self, items: Sequence[BlobData]) -> list[BlobInfo]:
        """Store several blobs; returns their addresses once every one is durable.

        Cheaper than :meth:`put_bytes` one by one, which syncs each file and its folder: the
        new blobs are written to temporary files, made durable together, renamed into place,
        and the renames made durable together (with ``syncfs`` on Linux for more than
        :data:`SYNCFS_ABOVE` blobs, else one ``fsync`` per file and folder). A blob is thus
        never visible under its address before its bytes are on disk.
        """
        infos: list[BlobInfo] = []
        staged: dict[str, str] = {}  # final path -> temporary path
        blobs = str(self.blobs_dir)
        try:
            for data in items:
                views = buffers_of(data)
                hasher = hashlib.sha256()
                total = 0
                for view in views:
                    hasher.update(view)
                    total += view.nbytes
                hex_digest = hasher.hexdigest()
                infos.append(BlobInfo(DIGEST_PREFIX + hex_digest, total))
                final = os.path.join(blobs, hex_digest[:2], hex_digest)
                if final in staged or self._holds_whole(final, total):
                    continue
                if not staged:
                    self.tmp_dir.mkdir(parents=True, exist_ok=True)
                tmp = os.path.join(self.tmp_dir, f"{secrets.token_hex(12)}.tmp")
                staged[final] = tmp
                with open(tmp, "xb") as out:
                    self._write_encoded(out, views, total)
            if staged:
                self._sync(list(staged.values()))  # the bytes, before they get their names
                folders = {os.path.dirname(final) for final in staged}
                for folder in folders:
                    os.makedirs(folder, exist_ok=True)
                for final, tmp in list(staged.items()):
                    if os.path.exists(final):  # another writer won the race
                        os.unlink(tmp)
                    else:
                        os.replace(tmp, final)
                    del staged[final]
                self._sync([*sorted(folders), blobs])  # the names
        finally:
            for tmp in staged.values():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return infos

    def _holds_whole(self, path: str, size: int) -> bool:
        """Whether ``path`` holds a blob of ``size`` bytes as far as its header tells: magic,
        codec, and the size (the file's for a raw blob, the zstd frame's for a compressed
        one). A file that fails is quarantined, so the caller writes the blob afresh."""
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            return False
        with handle:
            head = handle.read(HEADER_SIZE + _ZSTD_MAX_FRAME_HEADER)
            whole = len(head) >= HEADER_SIZE and head[:4] == MAGIC
            if whole and head[4] == CODEC_RAW:
                whole = os.fstat(handle.fileno()).st_size == HEADER_SIZE + size
            elif whole and head[4] == CODEC_ZSTD:
                try:
                    whole = zstandard.frame_content_size(head[HEADER_SIZE:]) == size
                except zstandard.ZstdError:
                    whole = False
            else:
                whole = False
            if not whole:
                self._quarantine(Path(path), handle)
        return whole

    def _quarantine(self, path: Path, handle: BinaryIO) -> None:
        """Move the corrupt blob file open as ``handle`` out of ``path``, unless another
        process replaced it already (the file at ``path`` is then not the one read).
        Best effort: a store this process cannot write to keeps the file."""
        opened = os.fstat(handle.fileno())
        try:
            current = os.stat(path)
            if (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
                return
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            os.replace(path, self.quarantine_dir / path.name)
        except OSError:
            return

    @contextlib.contextmanager
    def _reading(self, digest: str) -> Iterator[BinaryIO]:
        """Open a blob file for a verified read: a ``BlobCorruptedError`` raised in the block
        quarantines the file. A blob quarantined earlier is read from its quarantined copy
        (which fails the same way), so the error stays the same until the blob is written
        again; a blob in neither place raises ``BlobNotFoundError``."""
        path = self.blob_path(digest)
        quarantined = False
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            try:
                handle = open(self.quarantine_dir / path.name, "rb")
            except FileNotFoundError:
                raise BlobNotFoundError(digest) from None
            quarantined = True
        with handle:
            try:
                yield handle
            except BlobCorruptedError:
                if not quarantined:
                    self._quarantine(path, handle)
                raise

    def make_durable(self, digests: Sequence[str]) -> None:
        """Sync the blob files among ``digests`` that exist, then their folders (one
        ``syncfs`` instead beyond :data:`SYNCFS_ABOVE` paths; nothing when ``fsync`` is off).

        Raises:
            InvalidArgumentError: A malformed digest.
            OSError: A sync failed.
        """
        files = [str(path) for path in map(self.blob_path, dict.fromkeys(digests))]
        files = [path for path in files if os.path.isfile(path)]
        if files:
            folders = sorted({os.path.dirname(path) for path in files})
            self._sync([*files, *folders, str(self.blobs_dir)])

    def discard_abandoned_writes(self, max_age_seconds: float = 3600.0) -> int:
        """Delete files in the ``tmp`` folder not written to for ``max_age_seconds``: those
        of writers killed mid-write (a live writer keeps its file's mtime fresh)."""
        now = time.time()
        removed = 0
        try:
            entries = list(os.scandir(self.tmp_dir))
        except FileNotFoundError:
            return 0
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file() and now - entry.stat().st_mtime > max_age_seconds:
                    os.unlink(entry.path)
                    removed += 1
        return removed

    def _sync(self, paths: list[str]) -> None:
        """Make the files or folders at ``paths`` durable (nothing when ``fsync`` is off)."""
        if not self._fsync:
            return
        if len(paths) > SYNCFS_ABOVE and _syncfs(str(self._root)):
            return
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            except OSError:  # pragma: no cover - some file systems refuse fsync on folders
                if os.path.isfile(path):
                    raise
            finally:
                os.close(fd)

    def _write_encoded(self, out: BinaryIO, views: list[memoryview], total: int) -> None:
        """Write header and payload, choosing the codec (see the module docstring)."""
        if total == 0:
            out.write(MAGIC + bytes([CODEC_RAW]))
            return
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        if total <= SAMPLE_ABOVE:
            cobj = compressor.compressobj(size=total)
            parts = [cobj.compress(view) for view in views]
            parts.append(cobj.flush())
            compressed = b"".join(parts)
            if _fits_saving(len(compressed), total):
                out.write(MAGIC + bytes([CODEC_ZSTD]))
                out.write(compressed)
            else:
                self._write_raw(out, views)
            return
        sample = _head(views, SAMPLE_SIZE)
        if not _fits_saving(len(compressor.compress(sample)), len(sample)):
            self._write_raw(out, views)
            return
        # Promising sample: stream-compress the whole blob, and fall back to raw if the
        # blob as a whole does not compress enough after all.
        out.write(MAGIC + bytes([CODEC_ZSTD]))
        cobj = compressor.compressobj(size=total)
        written = 0
        for view in views:
            for piece in _slices(view, _IO_SLICE):
                chunk = cobj.compress(piece)
                written += len(chunk)
                out.write(chunk)
        chunk = cobj.flush()
        written += len(chunk)
        out.write(chunk)
        if not _fits_saving(written, total):
            out.seek(0)
            out.truncate()
            self._write_raw(out, views)

    @staticmethod
    def _write_raw(out: BinaryIO, views: list[memoryview]) -> None:
        """Header and the buffers as they are (no concatenation)."""
        out.write(MAGIC + bytes([CODEC_RAW]))
        for view in views:
            for piece in _slices(view, _IO_SLICE):
                out.write(piece)

    # --- reads --------------------------------------------------------------------------
    def has(self, digest: str) -> bool:
        """Whether the blob file exists (its content is not verified)."""
        return self.blob_path(digest).is_file()

    def get_bytes(self, digest: str) -> bytes:
        """The blob's bytes, decompressed and verified."""
        with self._reading(digest) as handle:
            codec = _read_header(handle, digest)
            payload = handle.read()
            data = payload if codec == CODEC_RAW else _decompress(payload, digest)
            _verify(data, digest)
        return data

    def get_view(self, digest: str) -> memoryview:
        """The blob's bytes as a read-only buffer, verified.

        An uncompressed blob is memory-mapped: no copy is made, the pages are shared with
        other readers, and the mapping lives as long as the returned view (and views made
        from it). A compressed blob is decompressed into memory.
        """
        with self._reading(digest) as handle:
            codec = _read_header(handle, digest)
            if codec == CODEC_RAW:
                return _map_raw(handle, digest)
            data = _decompress(handle.read(), digest)
            _verify(data, digest)
        return memoryview(data).toreadonly()

    def get_private_view(self, digest: str) -> memoryview:
        """The blob's bytes as a writable buffer of this process's own, verified.

        An uncompressed blob is mapped copy-on-write (``MAP_PRIVATE``): pages stay shared
        with the page cache until written to, and writes never reach the file. A
        compressed blob is decompressed into memory.
        """
        with self._reading(digest) as handle:
            codec = _read_header(handle, digest)
            if codec == CODEC_RAW:
                mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
                view = memoryview(mapped)[HEADER_SIZE:]
                _verify(view, digest)
                return view
            data = _decompress(handle.read(), digest)
            _verify(data, digest)
        return memoryview(bytearray(data))

    def peek_view(self, digest: str) -> memoryview:
        """The blob's bytes, read-only and not verified (see ``BlobStore.peek_view``): an
        uncompressed blob is mapped, a compressed one decompressed."""
        with self._reading(digest) as handle:
            codec = _read_header(handle, digest)
            if codec == CODEC_RAW:
                mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                return memoryview(mapped)[HEADER_SIZE:]
            return memoryview(_decompress(handle.read(), digest)).toreadonly()

    def read_chunks(self, digest: str, chunk_size: int) -> Iterator[bytes]:
        """The blob's bytes in chunks of at most ``chunk_size`` bytes.

        Verification happens in this call, before it returns the iterator: a raw blob is
        mapped and hashed; a compressed blob up to 64 MiB decoded is decompressed in memory
        and hashed; a larger one is decompressed once to hash it, then again while
        streaming (and re-hashed, in case the file changed in between). So every error is
        raised by the call itself, never half-way through the chunks.
        """
        if chunk_size < 1:
            raise InvalidArgumentError(
                f"chunk_size must be >= 1, got {chunk_size}",
                metadata={"chunk_size": str(chunk_size)},
            )
        with self._reading(digest) as handle:
            codec = _read_header(handle, digest)
            if codec == CODEC_RAW:
                view = _map_raw(handle, digest)
                return (bytes(piece) for piece in _slices(view, chunk_size))
            size = _zstd_content_size(handle, digest)
            if 0 <= size <= IN_MEMORY_VERIFY_LIMIT:
                data = _decompress(handle.read(), digest)
                _verify(data, digest)
                return (bytes(piece) for piece in _slices(memoryview(data), chunk_size))
            hasher = hashlib.sha256()
            for piece in _stream_zstd(handle, digest):
                hasher.update(piece)
            _check(hasher.hexdigest(), digest)
        return self._stream_verified_again(digest, chunk_size)

    def _stream_verified_again(self, digest: str, chunk_size: int) -> Iterator[bytes]:
        """Second decompression pass of a large compressed blob, re-chunked."""
        hasher = hashlib.sha256()
        pending = bytearray()
        with self._reading(digest) as handle:
            _read_header(handle, digest)
            for piece in _stream_zstd(handle, digest):
                hasher.update(piece)
                pending += piece
                while len(pending) >= chunk_size:
                    yield bytes(pending[:chunk_size])
                    del pending[:chunk_size]
            _check(hasher.hexdigest(), digest)
        if pending:
            yield bytes(pending)

    def size(self, digest: str) -> int:
        """Encoded size of a blob, read from its file header (not verified)."""
        with self._reading(digest) as handle:
            codec = _read_header(handle, digest)
            if codec == CODEC_RAW:
                return os.fstat(handle.fileno()).st_size - HEADER_SIZE
            size = _zstd_content_size(handle, digest)
            if size >= 0:
                return size
            return sum(len(piece) for piece in _stream_zstd(handle, digest))


# --- reading helpers ----------------------------------------------------------------------
def _file_digest(path: Path) -> str:
    """Digest of a file's raw bytes (used to name what was found when decoding failed)."""
    hasher = hashlib.sha256()
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_IO_SLICE), b""):
            hasher.update(block)
    return DIGEST_PREFIX + hasher.hexdigest()


def _read_header(handle: BinaryIO, digest: str) -> int:
    """Check magic and codec; leave ``handle`` at the payload. Returns the codec."""
    header = handle.read(HEADER_SIZE)
    if len(header) != HEADER_SIZE or header[:4] != MAGIC or header[4] not in (0, 1):
        found = _file_digest(Path(handle.name))
        detail = "truncated header" if len(header) != HEADER_SIZE else "bad header"
        raise BlobCorruptedError(digest, found, detail)
    return header[4]


def _decompress(payload: bytes, digest: str) -> bytes:
    """Decompress one zstd frame, mapping decoder errors to ``BlobCorruptedError``."""
    try:
        return zstandard.ZstdDecompressor().decompress(payload)
    except zstandard.ZstdError as exc:
        found = DIGEST_PREFIX + hashlib.sha256(payload).hexdigest()
        raise BlobCorruptedError(digest, found, f"undecodable zstd payload: {exc}") from None


def _zstd_content_size(handle: BinaryIO, digest: str) -> int:
    """The decoded size recorded in the frame header (-1 when absent); keeps the position."""
    start = handle.tell()
    head = handle.read(_ZSTD_MAX_FRAME_HEADER)
    handle.seek(start)
    try:
        return int(zstandard.frame_content_size(head))
    except zstandard.ZstdError as exc:
        found = _file_digest(Path(handle.name))
        raise BlobCorruptedError(digest, found, f"bad zstd frame: {exc}") from None


def _stream_zstd(handle: BinaryIO, digest: str) -> Iterator[bytes]:
    """Decompress the rest of ``handle`` in pieces, mapping decoder errors."""
    dobj = zstandard.ZstdDecompressor().decompressobj()
    try:
        for block in iter(lambda: handle.read(_IO_SLICE), b""):
            piece = dobj.decompress(block)
            if piece:
                yield piece
    except zstandard.ZstdError as exc:
        found = _file_digest(Path(handle.name))
        raise BlobCorruptedError(digest, found, f"undecodable zstd payload: {exc}") from None


def _check(found_hex: str, digest: str) -> None:
    """Raise ``BlobCorruptedError`` unless ``found_hex`` is the hex part of ``digest``."""
    found = DIGEST_PREFIX + found_hex
    if found != digest:
        raise BlobCorruptedError(digest, found)


def _verify(data: Buffer, digest: str) -> None:
    """Raise ``BlobCorruptedError`` unless ``data`` hashes to ``digest``."""
    _check(hashlib.sha256(data).hexdigest(), digest)


def _map_raw(handle: BinaryIO, digest: str) -> memoryview:
    """Map a raw blob file read-only and return its verified payload (no copy)."""
    mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapped)[HEADER_SIZE:]
    _verify(view, digest)
    return view


def _head(views: Sequence[memoryview], size: int) -> bytes:
    """The first ``size`` bytes of the concatenation of ``views``."""
    parts: list[bytes] = []
    needed = size
    for view in views:
        if needed <= 0:
            break
        part = view[:needed].tobytes()
        parts.append(part)
        needed -= len(part)
    return b"".join(parts)


# --- uploads ------------------------------------------------------------------------------
_UPLOAD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class UploadSessions:
    """Resumable uploads made of unary calls (``WriteBlobChunk`` / ``CommitBlob``).

    Each upload is a file ``<folder>/<upload_id>`` that chunks are appended to; its size is
    the number of bytes received, so uploads survive a daemon restart. An upload with no
    activity for ``max_age_seconds`` (an hour by default) is discarded. Committing hashes the
    file, stores it in ``store`` and deletes it; a commit repeated within that hour (a client
    retrying after a lost answer) returns the same result.

    Thread-safe: calls for one upload are serialised (by one of 64 striped locks).

    Args:
        store: Where committed blobs go.
        folder: Folder of uploads in progress; default ``<store root>/uploads`` for a
            :class:`LocalBlobStore` (required for other stores).
        max_age_seconds: Idle time after which an upload is discarded.
        clock: Time source (seconds since the epoch), for tests.

    Raises:
        ValueError: No ``folder`` for a store other than :class:`LocalBlobStore`.
    """

    _SWEEP_INTERVAL = 60.0

    def __init__(
        self,
        store: BlobStore,
        folder: Path | None = None,
        *,
        max_age_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if folder is None:
            if not isinstance(store, LocalBlobStore):
                raise ValueError("UploadSessions needs a folder for a non-local store")
            folder = store.root / "uploads"
        self._store = store
        self._folder = Path(folder)
        self._max_age = max_age_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._stripes = tuple(threading.Lock() for _ in range(64))
        self._committed: dict[str, tuple[BlobInfo, float]] = {}
        self._last_sweep = float("-inf")

    @property
    def folder(self) -> Path:
        """Folder of uploads in progress."""
        return self._folder

    def _path(self, upload_id: str) -> Path:
        if not _UPLOAD_ID_RE.match(upload_id):
            raise InvalidArgumentError(
                "upload_id must be 16 to 64 characters of [A-Za-z0-9_-]",
                reason="INVALID_UPLOAD_ID",
                metadata={"upload_id": upload_id},
            )
        return self._folder / upload_id

    def _locked(self, upload_id: str) -> threading.Lock:
        """The lock serialising calls for ``upload_id`` (one of a fixed set of stripes)."""
        return self._stripes[hash(upload_id) % len(self._stripes)]

    def _sweep_if_due(self) -> None:
        now = self._clock()
        if now - self._last_sweep >= self._SWEEP_INTERVAL:
            self._last_sweep = now
            self.expire()

    def expire(self) -> int:
        """Discard uploads idle for longer than the maximum age, and forget old commits.

        Returns:
            How many uploads in progress were discarded.
        """
        now = self._clock()
        removed = 0
        with self._lock:
            for upload_id, (_, when) in list(self._committed.items()):
                if now - when > self._max_age:
                    del self._committed[upload_id]
        try:
            entries = list(os.scandir(self._folder))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            with contextlib.suppress(FileNotFoundError), self._locked(entry.name):
                if now - entry.stat().st_mtime > self._max_age:
                    os.unlink(entry.path)
                    removed += 1
        return removed

    def received(self, upload_id: str) -> int:
        """Bytes received so far for an upload in progress.

        Raises:
            InvalidArgumentError: Malformed upload id.
            NotFoundError: No such upload in progress (reason ``UPLOAD_NOT_FOUND``).
        """
        path = self._path(upload_id)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise _upload_not_found(upload_id) from None

    def write_chunk(self, upload_id: str, offset: int, data: Buffer) -> int:
        """Append ``data`` at ``offset`` to an upload (created by its first chunk, at 0).

        Returns:
            Bytes received so far.

        Raises:
            InvalidArgumentError: Malformed upload id, negative offset, or a chunk over
                1 MiB (reason ``CHUNK_TOO_LARGE``).
            FailedPreconditionError: ``offset`` is not the number of bytes received (reason
                ``UPLOAD_OFFSET_MISMATCH``; metadata ``received_bytes`` says where to resume).
        """
        path = self._path(upload_id)
        (view,) = buffers_of(data)
        if offset < 0:
            raise InvalidArgumentError(
                f"offset must be >= 0, got {offset}", metadata={"offset": str(offset)}
            )
        if view.nbytes > MAX_UPLOAD_CHUNK:
            raise InvalidArgumentError(
                f"chunk of {view.nbytes} bytes is over the {MAX_UPLOAD_CHUNK} byte limit",
                reason="CHUNK_TOO_LARGE",
                metadata={"size_bytes": str(view.nbytes), "limit": str(MAX_UPLOAD_CHUNK)},
            )
        self._sweep_if_due()
        with self._locked(upload_id):
            self._folder.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as out:
                received = out.tell()
                if offset != received:
                    if received == 0:  # do not leave an empty file for a rejected chunk
                        out.close()
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                    raise FailedPreconditionError(
                        f"upload {upload_id} has {received} bytes; a chunk at offset "
                        f"{offset} does not follow",
                        reason="UPLOAD_OFFSET_MISMATCH",
                        metadata={
                            "upload_id": upload_id,
                            "offset": str(offset),
                            "received_bytes": str(received),
                        },
                    )
                out.write(view)
                return received + view.nbytes

    def commit(self, upload_id: str, expected_digest: str = "") -> BlobInfo:
        """Store an upload's bytes and end the upload.

        Args:
            upload_id: The upload.
            expected_digest: When not empty, the digest the bytes must have.

        Returns:
            The stored blob's address and size.

        Raises:
            InvalidArgumentError: Malformed upload id or digest; or the bytes do not hash to
                ``expected_digest`` (reason ``BLOB_DIGEST_MISMATCH``, metadata
                ``expected_digest`` and ``found_digest``), in which case nothing is stored
                and the upload is discarded.
            NotFoundError: No such upload (reason ``UPLOAD_NOT_FOUND``).
        """
        path = self._path(upload_id)
        if expected_digest:
            parse_digest(expected_digest)
        self._sweep_if_due()
        with self._locked(upload_id):
            try:
                handle = open(path, "rb")
            except FileNotFoundError:
                with self._lock:
                    done = self._committed.get(upload_id)
                if done is None:
                    raise _upload_not_found(upload_id) from None
                _check_expected(done[0].digest, expected_digest)
                return done[0]
            with handle, _map_file(handle) as content:
                found = DIGEST_PREFIX + hashlib.sha256(content).hexdigest()
                try:
                    _check_expected(found, expected_digest)
                except InvalidArgumentError:
                    path.unlink()
                    raise
                info = self._store.put_bytes(content)
            path.unlink()
            with self._lock:
                self._committed[upload_id] = (info, self._clock())
            return info


@contextlib.contextmanager
def _map_file(handle: BinaryIO) -> Iterator[memoryview]:
    """A read-only view of a whole file, unmapped on exit (empty files are not mapped)."""
    if os.fstat(handle.fileno()).st_size == 0:
        yield memoryview(b"")
        return
    mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapped)
    try:
        yield view
    finally:
        view.release()
        with contextlib.suppress(BufferError):
            mapped.close()


def _check_expected(found: str, expected: str) -> None:
    """Raise the commit mismatch error unless ``expected`` is empty or equal to ``found``."""
    if expected and found != expected:
        raise InvalidArgumentError(
            f"uploaded bytes hash to {found}, not to the expected {expected}",
            reason="BLOB_DIGEST_MISMATCH",
            metadata={"expected_digest": expected, "found_digest": found},
        )


def _upload_not_found(upload_id: str) -> NotFoundError:
    """The error for an unknown upload id."""
    return NotFoundError(
        f"no upload {upload_id} in progress (never started, committed long ago, or expired)",
        reason="UPLOAD_NOT_FOUND",
        metadata={"upload_id": upload_id},
    )
