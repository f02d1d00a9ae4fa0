"""Names the flow authoring APIs reserve, shared by the core's graph rules and the SDKs (kept
free of imports: the Python SDK reads it when a flow module is imported)."""

from __future__ import annotations

__all__ = ["RESERVED_PARAMETER_NAMES"]

RESERVED_PARAMETER_NAMES = frozenset(
    {
        "params",
        "with",
        "tag",
        "namespace",
        "obj",
        "tags",
        "decospecs",
        "run-id-file",
        "max-num-splits",
        "max-workers",
        "max-log-size",
        "user-namespace",
        "run-id",
        "task-id",
        "runner-attribute-file",
    }
)
"""Names a parameter may not take, compared lowercased with ``_`` read as ``-``: they are
options of ``run`` (Metaflow's list)."""
