"""``DatastoreService``: artifact bytes for clients that cannot reach the store themselves.

A thin servicer over a :class:`~polyflow_core.datastore.base.BlobStore`, its
:class:`~polyflow_core.datastore.local.UploadSessions` and an
:class:`~polyflow_core.convert.service.ArtifactConverter` (``ConvertBlob``, which decodes
values only in converter processes). Reads stream in chunks of at most
1 MiB and are verified before the first chunk leaves (DATA_LOSS, reason
``BLOB_DIGEST_MISMATCH``, with a ``BlobDigestMismatch`` detail, on corruption).
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from polyflow.api.common.v1 import graph_pb2
from polyflow.api.datastore.v1 import request_response_pb2 as rr
from polyflow.api.datastore.v1 import service_pb2_grpc

from polyflow_core.convert.service import ArtifactConverter
from polyflow_core.datastore.base import BlobStore, parse_digest
from polyflow_core.datastore.local import MAX_UPLOAD_CHUNK, UploadSessions
from polyflow_core.errors import InvalidArgumentError
from polyflow_core.services import convert
from polyflow_core.services.status import stream_errors, unary_errors

__all__ = ["MAX_HAS_BLOBS", "READ_CHUNK_SIZE", "DatastoreServicer"]

READ_CHUNK_SIZE = 1 << 20
"""Size of each ReadBlob chunk (the last may be shorter)."""
MAX_HAS_BLOBS = 10000
"""Most digests one HasBlobs may ask about."""


class DatastoreServicer(service_pb2_grpc.DatastoreServiceServicer):
    """Serves ``polyflow.api.datastore.v1.DatastoreService``.

    Args:
        store: The blob store.
        uploads: The upload sessions that commit into ``store``.
        converter: Converts values between encodings (one over ``store`` when omitted;
            converter processes start only when a conversion is asked for).
    """

    def __init__(
        self,
        store: BlobStore,
        uploads: UploadSessions,
        converter: ArtifactConverter | None = None,
    ) -> None:
        self._store = store
        self._uploads = uploads
        self._converter = converter if converter is not None else ArtifactConverter(store)

    @unary_errors
    def GetStoreInfo(
        self, request: rr.GetStoreInfoRequest, context: grpc.ServicerContext
    ) -> rr.GetStoreInfoResponse:
        """Where the store is."""
        return rr.GetStoreInfoResponse(
            store=convert.store_location_to_proto(self._store.location())
        )

    @stream_errors
    def ReadBlob(
        self, request: rr.ReadBlobRequest, context: grpc.ServicerContext
    ) -> Iterator[rr.ReadBlobResponse]:
        """The blob's bytes in verified chunks of at most 1 MiB; an empty blob gives one
        empty chunk so that the client learns its size."""
        parse_digest(request.digest)
        size = self._store.size(request.digest)
        chunks = self._store.read_chunks(request.digest, READ_CHUNK_SIZE)
        sent = False
        for chunk in chunks:
            sent = True
            yield rr.ReadBlobResponse(data=chunk, size_bytes=size)
        if not sent:
            yield rr.ReadBlobResponse(data=b"", size_bytes=size)

    @unary_errors
    def HasBlobs(
        self, request: rr.HasBlobsRequest, context: grpc.ServicerContext
    ) -> rr.HasBlobsResponse:
        """Which of the digests are stored."""
        if len(request.digests) > MAX_HAS_BLOBS:
            raise InvalidArgumentError(
                f"at most {MAX_HAS_BLOBS} digests per call, got {len(request.digests)}",
                reason="TOO_MANY_DIGESTS",
                metadata={"count": str(len(request.digests)), "limit": str(MAX_HAS_BLOBS)},
            )
        digests = list(request.digests)
        for digest in digests:
            parse_digest(digest)
        return rr.HasBlobsResponse(present=self._store.has_many(digests))

    @unary_errors
    def WriteBlobChunk(
        self, request: rr.WriteBlobChunkRequest, context: grpc.ServicerContext
    ) -> rr.WriteBlobChunkResponse:
        """Append a chunk (at most 1 MiB) to an upload."""
        if len(request.data) > MAX_UPLOAD_CHUNK:
            raise InvalidArgumentError(
                f"chunk of {len(request.data)} bytes is over the {MAX_UPLOAD_CHUNK} byte limit",
                reason="CHUNK_TOO_LARGE",
                metadata={"size_bytes": str(len(request.data)), "limit": str(MAX_UPLOAD_CHUNK)},
            )
        received = self._uploads.write_chunk(request.upload_id, request.offset, request.data)
        return rr.WriteBlobChunkResponse(received_bytes=received)

    @unary_errors
    def CommitBlob(
        self, request: rr.CommitBlobRequest, context: grpc.ServicerContext
    ) -> rr.CommitBlobResponse:
        """Store an upload by its digest."""
        info = self._uploads.commit(request.upload_id, request.expected_digest)
        return rr.CommitBlobResponse(digest=info.digest, size_bytes=info.size)

    @unary_errors
    def ConvertBlob(
        self, request: rr.ConvertBlobRequest, context: grpc.ServicerContext
    ) -> rr.ConvertBlobResponse:
        """The value in an accepted encoding, converted in a converter process."""
        result = self._converter.convert(
            request.digest, request.encoding, list(request.accept_encodings)
        )
        return rr.ConvertBlobResponse(
            ref=graph_pb2.ArtifactRef(
                digest=result.digest,
                encoding=result.encoding,
                size_bytes=result.size,
                type_name=result.type_name,
            )
        )

    def close(self) -> None:
        """Stop the converter processes."""
        self._converter.close()
