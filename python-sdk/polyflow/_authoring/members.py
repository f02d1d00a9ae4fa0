"""What a flow class declares: its steps, parameters and class-level constants.

Members are collected over the class's MRO, base classes first, so steps and parameters
inherited from a base flow are part of the flow, and a subclass's definition replaces its
base's in place (declaration order is kept).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from polyflow._authoring.parameters import Parameter
from polyflow._authoring.step import step_marks
from polyflow.exceptions import ParameterError

__all__ = ["constant_names", "flow_constants", "flow_members", "flow_parameters", "flow_steps"]


def flow_members(flow_cls: type) -> dict[str, object]:
    """Every attribute defined by the flow's own classes (not by FlowSpec), raw, in order."""
    from polyflow._authoring.flowspec import FlowSpec

    framework = set(FlowSpec.__mro__)
    members: dict[str, object] = {}
    for klass in reversed(flow_cls.__mro__):
        if klass in framework:
            continue
        for name, raw in vars(klass).items():
            members[name] = raw
    return members


def flow_steps(flow_cls: type) -> dict[str, Callable[..., Any]]:
    """The flow's step functions by name, in declaration order (inherited ones included)."""
    return {
        name: raw  # type: ignore[misc]
        for name, raw in flow_members(flow_cls).items()
        if step_marks(raw) is not None
    }


def flow_parameters(flow_cls: type) -> list[Parameter]:
    """The flow's parameters in declaration order (inherited ones included).

    Each one's :attr:`Parameter.attribute` is the class attribute (the artifact's name) and
    :attr:`Parameter.name` the command-line name.

    Raises:
        ParameterError: Two parameters share a command-line name.
    """
    params: list[Parameter] = []
    seen: dict[str, str] = {}
    for attribute, raw in flow_members(flow_cls).items():
        if not isinstance(raw, Parameter):
            continue
        key = raw.name.lower().replace("_", "-")
        if key in seen:
            raise ParameterError(
                f"Parameters {seen[key]!r} and {attribute!r} of {flow_cls.__name__} share the "
                f"name {raw.name!r}",
                parameter=raw.name,
            )
        seen[key] = attribute
        params.append(raw)
    return params


def _is_constant(name: str, raw: object) -> bool:
    if name.startswith("_") or callable(raw) or isinstance(raw, types.ModuleType):
        return False
    # Descriptors (properties, Parameters, static/class methods) are not values.
    return not hasattr(type(raw), "__get__")


def flow_constants(flow_cls: type) -> dict[str, Any]:
    """The flow's class-level constants (public, non-method, non-parameter attributes such
    as ``ALPHA = 0.5``) with their values, in declaration order. They are stored with the
    parameters and are read-only in steps."""
    return {name: raw for name, raw in flow_members(flow_cls).items() if _is_constant(name, raw)}


_CONSTANT_NAMES: dict[type, frozenset[str]] = {}


def constant_names(flow_cls: type) -> frozenset[str]:
    """The names of :func:`flow_constants` (cached per class)."""
    names = _CONSTANT_NAMES.get(flow_cls)
    if names is None:
        names = _CONSTANT_NAMES[flow_cls] = frozenset(flow_constants(flow_cls))
    return names
