"""Polyflow: workflows for data science and ML, with Metaflow's flow and client APIs.

A Metaflow flow runs after changing only its import line::

    from polyflow import FlowSpec, Parameter, step

Every public name is loaded on first use (PEP 562), so ``import polyflow.api...`` (the
generated wire layer, shared with the core) pulls in neither the authoring SDK nor gRPC.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polyflow._authoring.builtin_decorators import (
        catch,
        environment,
        resources,
        retry,
        timeout,
    )
    from polyflow._authoring.current import current
    from polyflow._authoring.flowspec import FlowSpec
    from polyflow._authoring.parameters import IncludeFile, JSONType, Parameter
    from polyflow._authoring.step import step
    from polyflow.client import (
        DataArtifact,
        Flow,
        Metaflow,
        Polyflow,
        Run,
        Step,
        Task,
        default_namespace,
        get_metadata,
        get_namespace,
        namespace,
    )
    from polyflow.exceptions import (
        CaughtException,
        DaemonError,
        GraphError,
        InvalidNextError,
        InvalidPathspecError,
        MergeArtifactsError,
        MissingInMergeArtifactsError,
        NamespaceMismatchError,
        NotFoundError,
        ParameterError,
        PolyflowError,
        RPCError,
        StepTimeoutError,
        TaskFailedError,
        UnhandledInMergeArtifactsError,
    )

__all__ = [
    "CaughtException",
    "DaemonError",
    "DataArtifact",
    "Flow",
    "FlowSpec",
    "GraphError",
    "IncludeFile",
    "InvalidNextError",
    "InvalidPathspecError",
    "JSONType",
    "MergeArtifactsError",
    "Metaflow",
    "MissingInMergeArtifactsError",
    "NamespaceMismatchError",
    "NotFoundError",
    "Parameter",
    "ParameterError",
    "Polyflow",
    "PolyflowError",
    "RPCError",
    "Run",
    "Step",
    "StepTimeoutError",
    "Task",
    "TaskFailedError",
    "UnhandledInMergeArtifactsError",
    "catch",
    "current",
    "default_namespace",
    "environment",
    "get_metadata",
    "get_namespace",
    "namespace",
    "resources",
    "retry",
    "step",
    "timeout",
]

_AUTHORING = {
    "FlowSpec": "polyflow._authoring.flowspec",
    "step": "polyflow._authoring.step",
    "Parameter": "polyflow._authoring.parameters",
    "JSONType": "polyflow._authoring.parameters",
    "IncludeFile": "polyflow._authoring.parameters",
    "current": "polyflow._authoring.current",
    # The built-in step decorators, served with their typed signatures (a plugin's
    # decorator is served by name from the registry, see _step_decorator).
    **dict.fromkeys(
        ("retry", "catch", "timeout", "environment", "resources"),
        "polyflow._authoring.builtin_decorators",
    ),
}
_CLIENT = (
    "DataArtifact",
    "Flow",
    "Metaflow",
    "Polyflow",
    "Run",
    "Step",
    "Task",
    "default_namespace",
    "get_metadata",
    "get_namespace",
    "namespace",
)
_EXCEPTIONS = (
    "CaughtException",
    "DaemonError",
    "GraphError",
    "InvalidNextError",
    "InvalidPathspecError",
    "MergeArtifactsError",
    "MissingInMergeArtifactsError",
    "NamespaceMismatchError",
    "NotFoundError",
    "ParameterError",
    "PolyflowError",
    "RPCError",
    "StepTimeoutError",
    "TaskFailedError",
    "UnhandledInMergeArtifactsError",
)
_MODULE_OF: dict[str, str] = {
    **_AUTHORING,
    **dict.fromkeys(_CLIENT, "polyflow.client"),
    **dict.fromkeys(_EXCEPTIONS, "polyflow.exceptions"),
}


def __getattr__(name: str) -> Any:
    """Load a public name on first use and cache it in the module."""
    if name == "__version__":
        from polyflow_core._version import __version__

        value: Any = __version__
    else:
        module = _MODULE_OF.get(name)
        if module is not None:
            value = getattr(import_module(module), name)
        else:
            value = _step_decorator(name)
    globals()[name] = value
    return value


def _step_decorator(name: str) -> Any:
    """A registered step decorator (``retry``, ``catch``, a plugin's) by its name.

    Metaflow flows import their decorators from the top-level package
    (``from metaflow import retry``), so registered decorators are served from here too.
    """
    if name.startswith("_") or not name.isidentifier():
        raise AttributeError(f"module 'polyflow' has no attribute {name!r}")
    from polyflow._authoring.decorators import default_registry, step_decorator
    from polyflow.exceptions import PolyflowError

    try:
        cls = default_registry().get(name)
    except PolyflowError:
        raise AttributeError(f"module 'polyflow' has no attribute {name!r}") from None
    return step_decorator(cls)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
