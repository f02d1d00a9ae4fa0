"""The blob store contract: a content-addressed store of encoded artifact bytes.

A blob's address is ``sha256:<64 lowercase hex>`` of its *encoded* bytes (before any
compression the store applies). Every read verifies the address: a store never hands out bytes
that do not hash to it (``BlobCorruptedError`` instead).

Both the daemon and task workers use these classes (they move artifact bytes straight to the
store), so this module imports no gRPC and no daemon code.
"""

from __future__ import annotations

import abc
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypedDict

from polyflow_core.errors import InvalidArgumentError

__all__ = [
    "DIGEST_PREFIX",
    "BlobData",
    "BlobInfo",
    "BlobStore",
    "Buffer",
    "StoreLocationInfo",
    "buffers_of",
    "digest_of",
    "parse_digest",
]

DIGEST_PREFIX = "sha256:"
"""The only hash scheme in use."""

_DIGEST_RE = re.compile(r"^sha256:([0-9a-f]{64})$")

Buffer: TypeAlias = bytes | bytearray | memoryview
"""One contiguous buffer (``pickle.PickleBuffer.raw()`` gives a memoryview)."""

BlobData: TypeAlias = Buffer | Sequence[Buffer]
"""The bytes of a blob: one buffer, or several whose concatenation is the blob (for example
a pickle protocol 5 stream followed by its out-of-band buffers)."""


@dataclass(frozen=True)
class BlobInfo:
    """Address and size of a stored blob."""

    digest: str
    """``sha256:<hex>`` of the encoded bytes."""
    size: int
    """Number of encoded bytes (before compression)."""


class StoreLocationInfo(TypedDict):
    """Where a store keeps its bytes; maps onto ``polyflow.api.runtime.v1.StoreLocation``."""

    kind: str
    """``"local"`` or ``"s3"``."""
    root: str
    """Absolute folder for ``local``; ``s3://bucket/prefix`` for ``s3``."""
    options: dict[str, str]
    """Kind-specific settings (e.g. ``endpoint_url``)."""


def buffers_of(data: BlobData) -> list[memoryview]:
    """Flat byte views of ``data`` (no copy).

    Raises:
        TypeError: An element is not a buffer.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        parts: Iterable[Buffer] = (data,)
    else:
        parts = data
    views = []
    for part in parts:
        view = memoryview(part)
        if view.ndim != 1 or view.format not in ("B", "b", "c") or not view.c_contiguous:
            view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
        views.append(view)
    return views


def digest_of(data: BlobData) -> str:
    """The address of ``data``: ``sha256:<hex>`` of its bytes (buffers in order)."""
    hasher = hashlib.sha256()
    for view in buffers_of(data):
        hasher.update(view)
    return DIGEST_PREFIX + hasher.hexdigest()


def parse_digest(digest: str) -> str:
    """The 64 hex characters of a well-formed address.

    Raises:
        InvalidArgumentError: ``digest`` is not ``sha256:<64 lowercase hex>`` (reason
            ``INVALID_DIGEST``).
    """
    match = _DIGEST_RE.match(digest)
    if match is None:
        raise InvalidArgumentError(
            f"malformed blob digest {digest!r}: expected 'sha256:' and 64 lowercase hex digits",
            reason="INVALID_DIGEST",
            metadata={"digest": digest},
        )
    return match.group(1)


class BlobStore(abc.ABC):
    """A content-addressed store of blobs. Implementations must be safe to use from several
    threads and several processes at once (a write of a blob already present is a no-op)."""

    @abc.abstractmethod
    def put_bytes(self, data: BlobData) -> BlobInfo:
        """Store ``data`` (one buffer, or a sequence of buffers stored as their
        concatenation) and return its address. Returns only once the blob is durable.
        Storing a blob that exists already does not rewrite it."""

    def put_many(self, items: Sequence[BlobData]) -> list[BlobInfo]:
        """Store several blobs (each like :meth:`put_bytes`); returns their addresses, in
        order, once every one is durable. Stores that can make many writes durable at once
        (the local store) override this; the default stores them one by one."""
        return [self.put_bytes(data) for data in items]

    @abc.abstractmethod
    def has(self, digest: str) -> bool:
        """Whether a blob is stored under ``digest`` (no verification).

        Raises:
            InvalidArgumentError: Malformed digest.
        """

    def has_many(self, digests: Sequence[str]) -> list[bool]:
        """:meth:`has` for each digest, in order."""
        return [self.has(digest) for digest in digests]

    @abc.abstractmethod
    def get_bytes(self, digest: str) -> bytes:
        """The blob's encoded bytes, verified.

        Raises:
            InvalidArgumentError: Malformed digest.
            BlobNotFoundError: No such blob.
            BlobCorruptedError: The stored bytes do not hash to ``digest``.
        """

    def get_view(self, digest: str) -> memoryview:
        """The blob's bytes as a read-only buffer, verified. Stores that can map a blob
        without copying (the local store, for uncompressed blobs) override this.

        Raises:
            Same as :meth:`get_bytes`.
        """
        return memoryview(self.get_bytes(digest)).toreadonly()

    def get_private_view(self, digest: str) -> memoryview:
        """The blob's bytes as a *writable* buffer of this process's own, verified: writes
        to it change nothing stored. A value decoded from it (a numpy array) is writable
        without a copy of its own. The local store maps an uncompressed blob copy-on-write
        (no copy unless written to); the default copies :meth:`get_bytes`.

        Raises:
            Same as :meth:`get_bytes`.
        """
        return memoryview(bytearray(self.get_bytes(digest)))

    def peek_view(self, digest: str) -> memoryview:
        """The blob's bytes as a read-only buffer, **not** verified: only for comparing a
        value with a blob this process has verified before (blobs never change under their
        address, so a mismatch can only mean the value differs, or the blob rotted since, and
        both are then stored anew). The default is :meth:`get_view`.

        Raises:
            Same as :meth:`get_bytes`, except ``BlobCorruptedError``, not necessarily raised.
        """
        return self.get_view(digest)

    @abc.abstractmethod
    def read_chunks(self, digest: str, chunk_size: int) -> Iterator[bytes]:
        """The blob's bytes in chunks of at most ``chunk_size`` bytes (one empty blob gives
        no chunk).

        The whole blob is verified **before the first chunk is yielded**, so a consumer
        never sees bytes that do not match the address: the errors below are raised by the
        first ``next()``. (Stores stream large blobs twice, or hold small ones in memory,
        to make that so.)

        Raises:
            InvalidArgumentError: Malformed digest or ``chunk_size < 1``.
            BlobNotFoundError: No such blob.
            BlobCorruptedError: The stored bytes do not hash to ``digest``.
        """

    @abc.abstractmethod
    def size(self, digest: str) -> int:
        """The number of encoded bytes of a blob (not verified).

        Raises:
            InvalidArgumentError: Malformed digest.
            BlobNotFoundError: No such blob.
            BlobCorruptedError: The stored header cannot be read.
        """

    @abc.abstractmethod
    def location(self) -> StoreLocationInfo:
        """Where the bytes live, for clients that access the store directly."""

    def make_durable(self, digests: Sequence[str]) -> None:
        """Flush to disk the stored blobs among ``digests`` that a writer outside this process
        stored without flushing (an R worker); a blob already durable costs little. The
        default does nothing (a store whose writes are durable when they return)."""
        return None

    def discard_abandoned_writes(self, max_age_seconds: float = 3600.0) -> int:
        """Delete what writers that died mid-write left behind, once untouched for
        ``max_age_seconds``; returns how many pieces were deleted. The daemon calls this when
        it starts. The default does nothing (a store whose writes leave nothing behind)."""
        return 0
