"""Storing a task's artifacts at its end.

Every artifact is reported. A value the step set, or an inherited value it loaded (and may
have changed in place), is encoded; when the encoding's digest equals the inherited
reference's, that reference is kept and nothing is written. Inherited values the step never
loaded keep their references untouched.

New blobs are written together (``BlobStore.put_many``: the local store makes a thousand small
artifacts durable with two syncs rather than two thousand), in groups of at most
:data:`GROUP_BYTES`, so that encoded values do not pile up in memory.
"""

from __future__ import annotations

from collections.abc import Callable

from polyflow_core.datastore.base import BlobInfo, BlobStore

from polyflow._authoring.artifacts import StoredArtifact
from polyflow._authoring.flowspec import FlowSpec
from polyflow._codecs import Encoded, digest, encode
from polyflow._conversion import converted_digest
from polyflow._worker.store import unchanged
from polyflow.exceptions import TaskFailedError

__all__ = ["GROUP_BYTES", "persist_artifacts"]

GROUP_BYTES = 64 << 20
"""Encoded bytes written in one group (a larger value is a group of its own)."""


def persist_artifacts(
    flow: FlowSpec,
    store: BlobStore,
    on_error: Callable[[TaskFailedError], None] | None = None,
) -> list[StoredArtifact]:
    """Write the flow's new and changed artifacts and return every artifact's reference.

    Args:
        flow: The flow instance after the step ran.
        store: Where to write.
        on_error: Called for an artifact that cannot be stored (which is then left out);
            when None, the error is raised.

    Raises:
        TaskFailedError: An artifact cannot be encoded or written (``on_error`` None).
    """
    table = flow._pf_state.table
    values = flow._pf_artifact_values()
    result: dict[str, StoredArtifact] = {
        name: ref for name, ref in table.refs.items() if name not in values
    }

    def failed(name: str, value: object, exc: Exception) -> None:
        what = f"artifact {name!r} ({type(value).__name__})"
        error = TaskFailedError(f"{what} cannot be stored: {exc}")
        if on_error is None:
            raise error from exc
        on_error(error)

    group: list[tuple[str, object, Encoded]] = []
    group_bytes = 0

    def write_group() -> None:
        infos: list[BlobInfo | None] = []
        try:
            infos.extend(store.put_many([encoded.buffers for _, _, encoded in group]))
        except Exception:  # find the culprit(s), one by one
            infos.clear()
            for name, value, encoded in group:
                try:
                    infos.append(store.put_bytes(encoded.buffers))
                except Exception as exc:
                    failed(name, value, exc)
                    infos.append(None)
        for (name, _, encoded), info in zip(group, infos, strict=True):
            if info is not None:
                result[name] = StoredArtifact(
                    name, info.digest, encoded.encoding, encoded.size, encoded.type_name
                )
        group.clear()

    for name, value in values.items():
        try:
            encoded = encode(value)
            old = table.refs.get(name)
            if old is not None and (
                unchanged(store, old.digest, encoded)  # a large value, compared, not hashed
                or digest(encoded)
                in (
                    old.digest,
                    converted_digest(old.digest, old.encoding),  # loaded from R, unchanged
                )
            ):
                result[name] = old
                continue
        except Exception as exc:
            failed(name, value, exc)
            continue
        if group and group_bytes + encoded.size > GROUP_BYTES:
            write_group()
            group_bytes = 0
        group.append((name, value, encoded))
        group_bytes += encoded.size
    if group:
        write_group()
    return list(result.values())
