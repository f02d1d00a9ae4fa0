"""Python steps of flows written in another language (an R flow's ``pf_python()`` step).

The task's ``code_path`` is then the other language's flow file, which Python cannot import.
:func:`foreign_flow_class` builds a stand-in ``FlowSpec`` subclass from the run's graph: one
step method per step, so that transitions name real steps; the method of the task's step
imports the step's Python file (relative to the flow's folder), calls its function with
``self`` (and ``inputs`` for a join), then takes the transition the graph declares, as the
other language's worker would. The rest of the task (artifacts, inheritance, joins,
decorators, the report) is the ordinary Python worker's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from polyflow._authoring.flowspec import FlowSpec
from polyflow._authoring.graph import StepDef
from polyflow._authoring.step import step
from polyflow._authoring.transitions import TransitionKind
from polyflow._worker.loader import load_flow_module
from polyflow._worker.spec import TaskSpecData
from polyflow.exceptions import PolyflowError

__all__ = ["foreign_flow_class", "is_foreign_python_step"]


def is_foreign_python_step(spec: TaskSpecData) -> bool:
    """Whether the task's step is a Python function of a flow written in another language."""
    try:
        step_def = spec.graph.step(spec.step_name)
    except KeyError:
        return False
    return bool(step_def.foreign_function) and step_def.language in ("", "python")


def _load_function(spec: TaskSpecData, step_def: StepDef) -> Callable[..., Any]:
    path = step_def.foreign_file
    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(spec.code_path)), path)
    module = load_flow_module(path)
    function = getattr(module, step_def.foreign_function, None)
    if not callable(function):
        raise PolyflowError(
            f"step {step_def.name!r}: {path} defines no function {step_def.foreign_function!r}"
        )
    return function  # type: ignore[no-any-return]


def _take_transition(flow: FlowSpec, step_def: StepDef) -> None:
    transition = step_def.transition
    kind = transition.kind
    if kind is TransitionKind.SWITCH:
        cases = {case: getattr(flow, target) for case, target in transition.switch_cases.items()}
        flow.next(cases, condition=transition.condition)
    elif kind is TransitionKind.FOREACH:
        flow.next(getattr(flow, transition.targets[0]), foreach=transition.foreach_var)
    elif kind in (TransitionKind.LINEAR, TransitionKind.BRANCH):
        flow.next(*(getattr(flow, target) for target in transition.targets))


def _step_method(spec: TaskSpecData, step_def: StepDef) -> Callable[..., None]:
    def run(self: FlowSpec, inputs: Any = None) -> None:
        function = _load_function(spec, step_def)
        if step_def.is_join:
            function(self, inputs)
        else:
            function(self)
        _take_transition(self, step_def)

    run.__name__ = step_def.name
    run.__qualname__ = f"{spec.graph.entrypoint or spec.flow_name}.{step_def.name}"
    return run


def _placeholder(name: str) -> Callable[..., None]:
    def placeholder(self: FlowSpec, inputs: Any = None) -> None:
        raise PolyflowError(f"step {name!r} is not implemented in Python")

    placeholder.__name__ = name
    return placeholder


def foreign_flow_class(spec: TaskSpecData) -> type[FlowSpec]:
    """A stand-in flow class for the task's step (see the module docstring)."""
    members: dict[str, Any] = {"__doc__": spec.graph.doc}
    for step_def in spec.graph.steps:
        if step_def.name == spec.step_name:
            method = _step_method(spec, step_def)
        else:
            method = _placeholder(step_def.name)
        members[step_def.name] = step(method)
    name = spec.graph.entrypoint or spec.flow_name
    return type(name, (FlowSpec,), members)
