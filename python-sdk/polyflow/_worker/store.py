"""The artifact store a worker reads and writes (``polyflow_core.datastore``)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from polyflow_core.datastore.base import BlobStore
from polyflow_core.errors import BlobCorruptedError, CoreError

from polyflow._authoring.artifacts import ArtifactLoader, StoredArtifact
from polyflow._codecs import PICKLE_ENCODING, Encoded, decode
from polyflow._conversion import Converter, readable
from polyflow.exceptions import ArtifactCorruptedError, DataLossError, PolyflowError

__all__ = ["PRIVATE_VIEW_BYTES", "make_loader", "open_store", "read_view", "unchanged"]


def open_store(kind: str, root: str, options: Mapping[str, str] | None = None) -> BlobStore:
    """The blob store a TaskSpec names.

    ``local`` is built in; other kinds come from the entry-point group
    ``polyflow.datastores`` and are built as ``cls(root, **options)``.

    Raises:
        PolyflowError: An unknown kind.
    """
    if kind in ("", "local"):
        return _local_store(root)
    from importlib.metadata import entry_points

    found = list(entry_points(group="polyflow.datastores", name=kind))
    if not found:
        raise PolyflowError(f"no artifact store of kind {kind!r} is installed in this environment")
    cls: Any = found[0].load()
    store = cls(root, **dict(options or {}))
    if not isinstance(store, BlobStore):
        raise PolyflowError(f"the artifact store {kind!r} is not a BlobStore")
    return store


@functools.lru_cache(maxsize=8)
def _local_store(root: str) -> BlobStore:
    """The local store at ``root`` (one object per root: a pre-forked worker inherits it)."""
    from polyflow_core.datastore.local import LocalBlobStore

    return LocalBlobStore(root)


PRIVATE_VIEW_BYTES = 1 << 20
"""Pickled values at least this large are decoded from a private (copy-on-write) mapping of
their blob rather than from a copy, and compared with it, not hashed, when the task ends."""

_large_loaded: set[str] = set()  # digests of large pickled values this process decoded


def read_view(store: BlobStore, digest: str, encoding: str, size: int) -> memoryview:
    """The verified bytes of a blob to decode: a large pickle's from a private mapping (its
    arrays are then writable without a copy), anything else from :meth:`BlobStore.get_view`.

    Raises:
        BlobCorruptedError, BlobNotFoundError: As the store's reads.
    """
    if encoding == PICKLE_ENCODING and size >= PRIVATE_VIEW_BYTES:
        view = store.get_private_view(digest)
        _large_loaded.add(digest)
        return view
    return store.get_view(digest)


def unchanged(store: BlobStore, digest: str, encoded: Encoded) -> bool:
    """Whether ``encoded`` is byte for byte the large blob ``digest`` that this process
    loaded (and verified) before: compared, not hashed, which is several times faster."""
    if digest not in _large_loaded:
        return False
    try:
        stored = store.peek_view(digest)
    except (CoreError, OSError):
        return False
    if stored.nbytes != encoded.size:
        return False
    offset = 0
    for piece in encoded.buffers:
        view = memoryview(piece).cast("B")
        if not _same(stored[offset : offset + view.nbytes], view):
            return False
        offset += view.nbytes
    return True


def _same(left: memoryview, right: memoryview) -> bool:
    """Byte equality of two buffers of one length, at memory speed: compared a slice at a
    time, each slice copied into a small ``bytes`` (memoryview equality goes item by item;
    slices under malloc's mmap threshold avoid a fresh mapping per copy)."""
    for start in range(0, left.nbytes, _COMPARE_SLICE):
        end = start + _COMPARE_SLICE
        if left[start:end].tobytes() != right[start:end].tobytes():
            return False
    return True


_COMPARE_SLICE = 16 << 10


def make_loader(
    store: BlobStore, convert: Converter | None = None, pathspec: str = ""
) -> ArtifactLoader:
    """A loader that reads an artifact's bytes from ``store`` and decodes them.

    Args:
        store: The blob store.
        convert: Turns a value Python cannot decode (R's ``rds``) into one it can, through
            the core (see :mod:`polyflow._conversion`).
        pathspec: The task whose artifacts it reads (named when a value is corrupt).

    The loader raises :class:`~polyflow.exceptions.ArtifactCorruptedError` when the stored
    bytes do not hash to the artifact's address: never a wrong value.
    """

    def load(ref: StoredArtifact) -> Any:
        try:
            digest, encoding = readable(ref.digest, ref.encoding, convert)
            view = read_view(store, digest, encoding, ref.size)
        except BlobCorruptedError as error:
            raise ArtifactCorruptedError(
                artifact=ref.name,
                pathspec=pathspec,
                expected_digest=error.expected_digest,
                found_digest=error.found_digest,
                reason=error.reason,
                metadata=error.metadata,
            ) from None
        except DataLossError as error:  # from the core, converting another language's value
            raise ArtifactCorruptedError.from_data_loss(
                error, artifact=ref.name, pathspec=pathspec
            ) from None
        return decode(view, encoding)

    return load
