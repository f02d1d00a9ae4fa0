"""The artifact store a worker reads and writes (``polyflow_core.datastore``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polyflow_core.datastore.base import BlobStore

from polyflow._authoring.artifacts import ArtifactLoader, StoredArtifact
from polyflow._codecs import decode
from polyflow.exceptions import PolyflowError

__all__ = ["make_loader", "open_store"]


def open_store(kind: str, root: str, options: Mapping[str, str] | None = None) -> BlobStore:
    """The blob store a TaskSpec names.

    ``local`` is built in; other kinds come from the entry-point group
    ``polyflow.datastores`` and are built as ``cls(root, **options)``.

    Raises:
        PolyflowError: An unknown kind.
    """
    if kind in ("", "local"):
        from polyflow_core.datastore.local import LocalBlobStore

        return LocalBlobStore(root)
    from importlib.metadata import entry_points

    found = list(entry_points(group="polyflow.datastores", name=kind))
    if not found:
        raise PolyflowError(f"no artifact store of kind {kind!r} is installed in this environment")
    cls: Any = found[0].load()
    store = cls(root, **dict(options or {}))
    if not isinstance(store, BlobStore):
        raise PolyflowError(f"the artifact store {kind!r} is not a BlobStore")
    return store


def make_loader(store: BlobStore) -> ArtifactLoader:
    """A loader that reads an artifact's bytes from ``store`` and decodes them."""

    def load(ref: StoredArtifact) -> Any:
        return decode(store.get_view(ref.digest), ref.encoding)

    return load
