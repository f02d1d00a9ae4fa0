"""Fixtures for the SDK unit tests: a blob store and a clean ``current``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from polyflow._authoring.artifacts import StoredArtifact
from polyflow._authoring.current import clear_task_context
from polyflow._codecs import encode
from polyflow_core.datastore.local import LocalBlobStore


@pytest.fixture(autouse=True)
def _reset_current() -> Iterator[None]:
    yield
    clear_task_context()


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    """A fresh local blob store."""
    return LocalBlobStore(tmp_path / "store", fsync=False)


@pytest.fixture
def put(store: LocalBlobStore) -> Callable[[str, object], StoredArtifact]:
    """Store a value as an artifact and return its reference."""

    def put_value(name: str, value: object) -> StoredArtifact:
        encoded = encode(value)
        info = store.put_bytes(encoded.buffers)
        return StoredArtifact(name, info.digest, encoded.encoding, encoded.size, encoded.type_name)

    return put_value
