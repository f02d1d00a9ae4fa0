"""The boundary between :class:`~polyflow._authoring.graph.FlowDefinition` and the wire's
``polyflow.api.common.v1.graph_pb2.FlowGraph``. Nothing else in the authoring layer touches
protobuf."""

from __future__ import annotations

from polyflow._authoring.graph import DecoratorDef, FlowDefinition, StepDef, TransitionDef
from polyflow._authoring.parameters import ParameterDef, ParameterKind
from polyflow._authoring.transitions import TransitionKind
from polyflow.api.common.v1 import enums_pb2, graph_pb2

__all__ = ["definition_from_proto", "definition_to_proto"]

_STEP_KINDS: dict[int, str] = {
    enums_pb2.STEP_KIND_START: "start",
    enums_pb2.STEP_KIND_LINEAR: "linear",
    enums_pb2.STEP_KIND_SPLIT: "split",
    enums_pb2.STEP_KIND_FOREACH: "foreach",
    enums_pb2.STEP_KIND_JOIN: "join",
    enums_pb2.STEP_KIND_SWITCH: "switch",
    enums_pb2.STEP_KIND_END: "end",
}
_STEP_KIND_VALUES = {name: value for value, name in _STEP_KINDS.items()}
_LANGUAGES: dict[int, str] = {enums_pb2.LANGUAGE_PYTHON: "python", enums_pb2.LANGUAGE_R: "r"}
_LANGUAGE_VALUES = {name: value for value, name in _LANGUAGES.items()}


def _decorator_to_proto(d: DecoratorDef) -> graph_pb2.DecoratorSpec:
    return graph_pb2.DecoratorSpec(name=d.name, attributes=dict(d.attributes), line=d.line)


def _transition_to_proto(t: TransitionDef) -> graph_pb2.Transition:
    return graph_pb2.Transition(
        kind=enums_pb2.TransitionKind.ValueType(int(t.kind)),
        targets=list(t.targets),
        foreach_var=t.foreach_var,
        switch_cases=dict(t.switch_cases),
        condition=t.condition,
        error=t.error,
        line=t.line,
    )


def _parameter_to_proto(p: ParameterDef) -> graph_pb2.ParameterSpec:
    return graph_pb2.ParameterSpec(
        name=p.name,
        type=enums_pb2.ParameterType.ValueType(int(p.type)),
        default_json=p.default_json,
        required=p.required,
        help=p.help,
        separator=p.separator,
        is_text=p.is_text if p.type is ParameterKind.FILE else False,
        encoding=p.encoding if p.type is ParameterKind.FILE else "",
    )


def _step_to_proto(s: StepDef) -> graph_pb2.StepSpec:
    return graph_pb2.StepSpec(
        name=s.name,
        line=s.line,
        is_join=s.is_join,
        num_args=s.num_args,
        transition=_transition_to_proto(s.transition),
        decorators=[_decorator_to_proto(d) for d in s.decorators],
        doc=s.doc,
        is_start=s.is_start,
        is_end=s.is_end,
        source_file=s.source_file,
        kind=enums_pb2.StepKind.ValueType(_STEP_KIND_VALUES.get(s.kind, 0)),
        in_steps=list(s.in_steps),
        matching_split=s.matching_split,
        language=enums_pb2.Language.ValueType(_LANGUAGE_VALUES.get(s.language, 0)),
        foreign_file=s.foreign_file,
        foreign_function=s.foreign_function,
    )


def definition_to_proto(definition: FlowDefinition) -> graph_pb2.FlowGraph:
    """The wire form of a flow definition (Python steps)."""
    return graph_pb2.FlowGraph(
        flow_name=definition.flow_name,
        source_file=definition.source_file,
        doc=definition.doc,
        steps=[_step_to_proto(s) for s in definition.steps],
        parameters=[_parameter_to_proto(p) for p in definition.parameters],
        decorators=[_decorator_to_proto(d) for d in definition.decorators],
        language=enums_pb2.LANGUAGE_PYTHON,
        entrypoint=definition.entrypoint,
        constants=list(definition.constants),
    )


def _decorator_from_proto(d: graph_pb2.DecoratorSpec) -> DecoratorDef:
    return DecoratorDef(name=d.name, attributes=dict(d.attributes), line=d.line)


def _kind(value: int, enum_type: type[TransitionKind] | type[ParameterKind]) -> int:
    try:
        return int(enum_type(value))
    except ValueError:
        return 0


def definition_from_proto(graph: graph_pb2.FlowGraph) -> FlowDefinition:
    """A flow definition from its wire form (step kinds and incoming edges included).

    Parameter attributes are unknown on the wire; they are set to the parameter names.
    """
    steps = []
    for s in graph.steps:
        t = s.transition
        kind = TransitionKind(_kind(t.kind, TransitionKind))
        steps.append(
            StepDef(
                name=s.name,
                line=s.line,
                is_join=s.is_join,
                num_args=s.num_args,
                transition=TransitionDef(
                    kind=kind,
                    targets=tuple(t.targets),
                    foreach_var=t.foreach_var,
                    switch_cases=dict(t.switch_cases),
                    condition=t.condition,
                    error=t.error,
                    line=t.line,
                ),
                decorators=tuple(_decorator_from_proto(d) for d in s.decorators),
                doc=s.doc,
                is_start=s.is_start,
                is_end=s.is_end,
                source_file=s.source_file,
                kind=_STEP_KINDS.get(s.kind, ""),
                in_steps=tuple(s.in_steps),
                matching_split=s.matching_split,
                language=_LANGUAGES.get(s.language, ""),
                foreign_file=s.foreign_file,
                foreign_function=s.foreign_function,
            )
        )
    params = []
    for p in graph.parameters:
        ptype = _kind(p.type, ParameterKind)
        params.append(
            ParameterDef(
                name=p.name,
                attribute=p.name,
                type=ParameterKind(ptype) if ptype else ParameterKind.STRING,
                default_json=p.default_json,
                required=p.required,
                help=p.help,
                separator=p.separator,
                is_text=p.is_text,
                encoding=p.encoding or "utf-8",
            )
        )
    return FlowDefinition(
        flow_name=graph.flow_name,
        entrypoint=graph.entrypoint or graph.flow_name,
        source_file=graph.source_file,
        doc=graph.doc,
        steps=tuple(steps),
        parameters=tuple(params),
        constants=tuple(graph.constants),
        decorators=tuple(_decorator_from_proto(d) for d in graph.decorators),
    )
