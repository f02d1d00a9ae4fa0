"""Conversion between ``FlowGraph`` messages and the domain model, and of graph problems.

The servicers call these at the edge, so the validator and the scheduler see only
:mod:`polyflow_core.domain.model` objects. Enum numbers are shared by construction (the
model's enum values are the proto numbers); a number this core does not know (a newer client)
is read as UNSPECIFIED, or as an INVALID transition so the validator reports it.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from polyflow.api.common.v1 import enums_pb2, graph_pb2
from polyflow.api.runtime.v1 import message_pb2

from polyflow_core.domain import model
from polyflow_core.domain.graph import Problem

_E = TypeVar("_E", bound=Enum)


def _enum(cls: type[_E], number: int, fallback: _E) -> _E:
    try:
        return cls(number)
    except ValueError:
        return fallback


def _decorator_from_proto(msg: graph_pb2.DecoratorSpec) -> model.DecoratorSpec:
    return model.DecoratorSpec(name=msg.name, attributes=dict(msg.attributes), line=msg.line)


def _decorator_to_proto(deco: model.DecoratorSpec) -> graph_pb2.DecoratorSpec:
    return graph_pb2.DecoratorSpec(name=deco.name, attributes=dict(deco.attributes), line=deco.line)


def _transition_from_proto(msg: graph_pb2.Transition) -> model.Transition:
    kind = _enum(model.TransitionKind, msg.kind, model.TransitionKind.INVALID)
    error = msg.error
    if kind is model.TransitionKind.INVALID and not error and msg.kind != kind.value:
        error = f"transition kind {msg.kind} is not known to this version of the core"
    return model.Transition(
        kind=kind,
        targets=tuple(msg.targets),
        foreach_var=msg.foreach_var,
        switch_cases=dict(msg.switch_cases),
        condition=msg.condition,
        error=error,
        line=msg.line,
    )


def _transition_to_proto(transition: model.Transition) -> graph_pb2.Transition:
    return graph_pb2.Transition(
        kind=enums_pb2.TransitionKind.ValueType(transition.kind.value),
        targets=transition.targets,
        foreach_var=transition.foreach_var,
        switch_cases=dict(transition.switch_cases),
        condition=transition.condition,
        error=transition.error,
        line=transition.line,
    )


def _step_from_proto(msg: graph_pb2.StepSpec) -> model.StepSpec:
    return model.StepSpec(
        name=msg.name,
        line=msg.line,
        is_join=msg.is_join,
        num_args=msg.num_args,
        transition=_transition_from_proto(msg.transition),
        decorators=tuple(_decorator_from_proto(d) for d in msg.decorators),
        language=_enum(model.Language, msg.language, model.Language.UNSPECIFIED),
        doc=msg.doc,
        is_start=msg.is_start,
        is_end=msg.is_end,
        kind=_enum(model.StepKind, msg.kind, model.StepKind.UNSPECIFIED),
        in_steps=tuple(msg.in_steps),
        foreign_file=msg.foreign_file,
        foreign_function=msg.foreign_function,
        source_file=msg.source_file,
        matching_split=msg.matching_split,
    )


def _step_to_proto(step: model.StepSpec) -> graph_pb2.StepSpec:
    return graph_pb2.StepSpec(
        name=step.name,
        line=step.line,
        is_join=step.is_join,
        num_args=step.num_args,
        transition=_transition_to_proto(step.transition),
        decorators=[_decorator_to_proto(d) for d in step.decorators],
        language=enums_pb2.Language.ValueType(step.language.value),
        doc=step.doc,
        is_start=step.is_start,
        is_end=step.is_end,
        kind=enums_pb2.StepKind.ValueType(step.kind.value),
        in_steps=step.in_steps,
        foreign_file=step.foreign_file,
        foreign_function=step.foreign_function,
        source_file=step.source_file,
        matching_split=step.matching_split,
    )


def _parameter_from_proto(msg: graph_pb2.ParameterSpec) -> model.ParameterSpec:
    return model.ParameterSpec(
        name=msg.name,
        type=_enum(model.ParameterType, msg.type, model.ParameterType.UNSPECIFIED),
        default_json=msg.default_json,
        required=msg.required,
        help=msg.help,
        separator=msg.separator,
        is_text=msg.is_text,
        encoding=msg.encoding,
    )


def _parameter_to_proto(param: model.ParameterSpec) -> graph_pb2.ParameterSpec:
    return graph_pb2.ParameterSpec(
        name=param.name,
        type=enums_pb2.ParameterType.ValueType(param.type.value),
        default_json=param.default_json,
        required=param.required,
        help=param.help,
        separator=param.separator,
        is_text=param.is_text,
        encoding=param.encoding,
    )


def graph_from_proto(msg: graph_pb2.FlowGraph) -> model.FlowGraph:
    """Reads a ``FlowGraph`` message into the domain model.

    Args:
        msg: The message, as a client sent it.

    Returns:
        An equivalent :class:`~polyflow_core.domain.model.FlowGraph`. Output-only fields
        (kinds, in-steps, matching splits) are carried over as they are.
    """
    return model.FlowGraph(
        flow_name=msg.flow_name,
        source_file=msg.source_file,
        doc=msg.doc,
        steps=tuple(_step_from_proto(s) for s in msg.steps),
        parameters=tuple(_parameter_from_proto(p) for p in msg.parameters),
        decorators=tuple(_decorator_from_proto(d) for d in msg.decorators),
        language=_enum(model.Language, msg.language, model.Language.UNSPECIFIED),
        entrypoint=msg.entrypoint,
        constants=tuple(msg.constants),
    )


def graph_to_proto(graph: model.FlowGraph) -> graph_pb2.FlowGraph:
    """Writes a domain graph as a ``FlowGraph`` message.

    Args:
        graph: The graph, typically the one :func:`~polyflow_core.domain.graph.validate`
            returned, with kinds derived.

    Returns:
        A new message.
    """
    return graph_pb2.FlowGraph(
        flow_name=graph.flow_name,
        source_file=graph.source_file,
        doc=graph.doc,
        steps=[_step_to_proto(s) for s in graph.steps],
        parameters=[_parameter_to_proto(p) for p in graph.parameters],
        decorators=[_decorator_to_proto(d) for d in graph.decorators],
        language=enums_pb2.Language.ValueType(graph.language.value),
        entrypoint=graph.entrypoint,
        constants=graph.constants,
    )


def problem_to_proto(problem: Problem) -> message_pb2.GraphProblem:
    """Writes a validation problem as a ``GraphProblem`` message.

    Args:
        problem: One problem from :func:`~polyflow_core.domain.graph.validate`.

    Returns:
        A new message.
    """
    return message_pb2.GraphProblem(
        rule=problem.rule,
        message=problem.message,
        step=problem.step,
        file=problem.file,
        line=problem.line,
    )
