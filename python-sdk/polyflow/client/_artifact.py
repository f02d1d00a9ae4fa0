"""``DataArtifact``: one named value a task stored, loaded lazily.

Bytes are read straight from the store when it is a local folder that exists on this machine
(the data plane: no bytes through the daemon); otherwise they stream through
``DatastoreService.ReadBlob``. Either way the store verifies the content address.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from polyflow.client._base import PolyflowObject, core, to_datetime
from polyflow.exceptions import ArtifactCorruptedError, DataLossError, NotFoundError

if TYPE_CHECKING:
    from polyflow._transport import CoreClient
    from polyflow.api.metadata.v1 import message_pb2 as metadata_pb2
    from polyflow.client._task import Task

__all__ = ["DataArtifact", "read_blob"]

_UNLOADED: Any = object()


def read_blob(digest: str, client: CoreClient | None = None) -> bytes:
    """Read a blob's encoded bytes, from the local store when possible.

    Args:
        digest: ``sha256:<hex>``.
        client: The core client; this process's by default.

    Returns:
        The verified bytes.

    Raises:
        DataLossError: The stored bytes do not hash to ``digest``.
        NotFoundError: No such blob.
    """
    client = client if client is not None else core()
    store = client.get_store_info()
    if store.kind == "local" and store.root and os.path.isdir(store.root):
        from polyflow_core.datastore.local import LocalBlobStore
        from polyflow_core.errors import BlobCorruptedError, BlobNotFoundError

        try:
            return LocalBlobStore(store.root, fsync=False).get_bytes(digest)
        except BlobCorruptedError as error:
            raise DataLossError(
                error.message, reason=error.reason, metadata=error.metadata
            ) from None
        except (BlobNotFoundError, PermissionError):
            # A folder of the same path that is not the core's store (another machine's
            # path, or no read access): ask the core instead.
            pass
    return client.read_blob(digest)


class DataArtifact(PolyflowObject):
    """An artifact: ``DataArtifact("HelloFlow/3/start/1/x")``.

    Raises:
        NotFoundError: No such artifact.
        NamespaceMismatchError: Its run is outside the current namespace.
    """

    _NAME = "artifact"
    _DEPTH = 5

    def __init__(
        self,
        pathspec: str,
        attempt: int | None = None,
        _namespace_check: bool = True,
        *,
        _proto: metadata_pb2.Artifact | None = None,
        _run: metadata_pb2.Run | None = None,
    ) -> None:
        super().__init__(pathspec, attempt, _namespace_check)
        self._proto = _proto if _proto is not None else self._fetch()
        self._run = _run
        self._value: Any = _UNLOADED
        self._check_namespace()

    def _fetch(self) -> metadata_pb2.Artifact:
        try:
            return core().get_artifact(self._resource_name, self._attempt)
        except NotFoundError:
            raise NotFoundError(
                f"Artifact {self.pathspec!r} does not exist", pathspec=self.pathspec
            ) from None

    def _run_proto(self) -> metadata_pb2.Run:
        if self._run is None:
            self._run = core().get_run(self._resource_name.split("/steps/", 1)[0])
        return self._run

    def _run_tags(self) -> tuple[Iterable[str], Iterable[str]]:
        run = self._run_proto()
        return run.tags, run.system_tags

    @property
    def parent(self) -> Task:
        """The task that stored the artifact."""
        from polyflow.client._task import Task

        return Task(
            "/".join(self._components[:4]),
            attempt=self._attempt,
            _namespace_check=False,
            _run=self._run_proto(),
        )

    @property
    def data(self) -> Any:
        """The value, read and decoded on first access.

        Raises:
            ArtifactCorruptedError: The stored bytes do not hash to the artifact's address
                (the message names the artifact, its task and both digests).
        """
        if self._value is _UNLOADED:
            from polyflow._codecs import decode
            from polyflow._conversion import core_converter, readable

            ref = self._proto.ref
            try:
                # A value another language wrote (R's rds) is converted by the core first.
                digest, encoding = readable(ref.digest, ref.encoding, core_converter(core))
                raw = read_blob(digest)
            except DataLossError as error:
                raise ArtifactCorruptedError.from_data_loss(
                    error, artifact=self.id, pathspec="/".join(self._components[:4])
                ) from None
            self._value = decode(raw, encoding)
        return self._value

    @property
    def sha(self) -> str:
        """The hex SHA-256 of the encoded bytes (the content address without its prefix)."""
        return self._proto.ref.digest.partition(":")[2] or self._proto.ref.digest

    @property
    def digest(self) -> str:
        """The content address, ``sha256:<hex>``."""
        return self._proto.ref.digest

    @property
    def size(self) -> int:
        """Size of the encoded bytes."""
        return int(self._proto.ref.size_bytes)

    @property
    def encoding(self) -> str:
        """How the bytes encode the value (``json``, ``pickle-v5``, ``rds``...)."""
        return self._proto.ref.encoding

    @property
    def type_name(self) -> str:
        """The value's type as the writing language names it."""
        return self._proto.ref.type_name

    @property
    def created_at(self) -> dt.datetime | None:
        """When the attempt that stored it finished."""
        return to_datetime(self._proto.create_time, self._proto.HasField("create_time"))

    @property
    def finished_at(self) -> dt.datetime | None:
        """Same as :attr:`created_at` (Metaflow's name)."""
        return self.created_at
