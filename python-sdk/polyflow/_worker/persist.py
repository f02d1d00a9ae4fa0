"""Storing a task's artifacts at its end.

Every artifact is reported. A value the step set, or an inherited value it loaded (and may
have changed in place), is encoded; when the encoding's digest equals the inherited
reference's, that reference is kept and nothing is written. Inherited values the step never
loaded keep their references untouched.
"""

from __future__ import annotations

from collections.abc import Callable

from polyflow_core.datastore.base import BlobStore

from polyflow._authoring.artifacts import StoredArtifact
from polyflow._authoring.flowspec import FlowSpec
from polyflow._codecs import digest, encode
from polyflow.exceptions import TaskFailedError

__all__ = ["persist_artifacts"]


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
    for name, value in values.items():
        try:
            encoded = encode(value)
            old = table.refs.get(name)
            if old is not None and digest(encoded) == old.digest:
                result[name] = old
                continue
            info = store.put_bytes(encoded.buffers)
        except Exception as exc:
            error = TaskFailedError(
                f"artifact {name!r} ({type(value).__name__}) cannot be stored: {exc}"
            )
            if on_error is None:
                raise error from exc
            on_error(error)
            continue
        result[name] = StoredArtifact(
            name, info.digest, encoded.encoding, encoded.size, encoded.type_name
        )
    return list(result.values())
