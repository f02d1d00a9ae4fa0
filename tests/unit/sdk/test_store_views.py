"""Large pickled artifacts are decoded without a copy and compared, not hashed, at the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from polyflow._authoring.artifacts import StoredArtifact
from polyflow._codecs import digest, encode
from polyflow._worker import store as worker_store
from polyflow_core.datastore.local import LocalBlobStore


def _stored(tmp_path: Path, value: object) -> tuple[LocalBlobStore, StoredArtifact]:
    blobs = LocalBlobStore(tmp_path / "store")
    encoded = encode(value)
    info = blobs.put_bytes(encoded.buffers)
    return blobs, StoredArtifact("arr", info.digest, encoded.encoding, info.size)


def test_a_large_array_is_decoded_writable_from_a_private_mapping(tmp_path: Path) -> None:
    original = np.random.default_rng(1).random(400_000)  # 3.2 MB
    blobs, ref = _stored(tmp_path, original)
    loaded = worker_store.make_loader(blobs)(ref)
    assert loaded.flags.writeable and np.array_equal(loaded, original)
    assert worker_store.unchanged(blobs, ref.digest, encode(loaded))
    loaded[123] = -1.0
    assert not worker_store.unchanged(blobs, ref.digest, encode(loaded))
    # Writing to the loaded value never touches the stored blob.
    assert np.array_equal(worker_store.make_loader(blobs)(ref), original)
    assert digest(encode(original)) == ref.digest


@pytest.mark.parametrize("value", [list(range(10)), np.arange(10)])
def test_small_values_are_not_compared_but_hashed(tmp_path: Path, value: object) -> None:
    blobs, ref = _stored(tmp_path, value)
    worker_store.make_loader(blobs)(ref)
    assert not worker_store.unchanged(blobs, ref.digest, encode(value))
