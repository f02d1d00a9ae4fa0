"""Datastore back-ends: content-addressed stores of encoded artifact bytes.

The daemon and the SDK's workers share these classes (they import no gRPC), so both read and
write the store in exactly one format. ``BlobStore`` is the contract; ``LocalBlobStore`` the
default back-end (registered under the ``polyflow.datastores`` entry point ``local``).
"""

from __future__ import annotations

from polyflow_core.datastore.base import (
    DIGEST_PREFIX,
    BlobData,
    BlobInfo,
    BlobStore,
    Buffer,
    StoreLocationInfo,
    buffers_of,
    digest_of,
    parse_digest,
)
from polyflow_core.datastore.local import LocalBlobStore, UploadSessions

__all__ = [
    "DIGEST_PREFIX",
    "BlobData",
    "BlobInfo",
    "BlobStore",
    "Buffer",
    "LocalBlobStore",
    "StoreLocationInfo",
    "UploadSessions",
    "buffers_of",
    "digest_of",
    "parse_digest",
]
