"""Static graph extraction: every transition form, annotations, inheritance, line numbers,
parameters, constants, decorators, and the conversion to the wire's FlowGraph."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
from polyflow._authoring.decorators import DecoratorRegistry, StepDecorator, step_decorator
from polyflow._authoring.flowspec import FlowSpec
from polyflow._authoring.graph import extract_graph, graph_info
from polyflow._authoring.parameters import ParameterKind
from polyflow._authoring.step import step
from polyflow._authoring.transitions import TransitionKind
from polyflow._wire_graph import definition_from_proto, definition_to_proto
from polyflow.api.common.v1 import enums_pb2
from polyflow.exceptions import PolyflowError

from .helpers import FLOWS, graph_of, line_of


def test_linear_flow_steps_lines_and_docs() -> None:
    _, d = graph_of("linear_flow", "LinearFlow")
    assert d.flow_name == d.entrypoint == "LinearFlow"
    assert d.source_file == str(FLOWS / "linear_flow.py")
    assert d.doc == "Three steps in a row."
    assert d.step_names == ["start", "middle", "end"]
    start = d.step("start")
    assert start.line == line_of("linear_flow", "def start(")
    assert start.doc == "The first step."
    assert (start.num_args, start.is_join, start.source_file) == (1, False, "")
    assert start.transition.kind is TransitionKind.LINEAR
    assert start.transition.targets == ("middle",)
    assert start.transition.line == line_of("linear_flow", "self.next(self.middle)")
    end = d.step("end")
    assert end.transition.kind is TransitionKind.UNSPECIFIED
    assert end.transition.line == 0


def test_parameters_and_constants() -> None:
    _, d = graph_of("linear_flow", "LinearFlow")
    params = {p.name: p for p in d.parameters}
    assert list(params) == ["alpha", "count", "config", "notes"]
    assert params["alpha"].type is ParameterKind.FLOAT
    assert params["alpha"].default_json == "0.01"
    assert params["alpha"].help == "Learning rate"
    assert params["count"].type is ParameterKind.INT
    assert params["config"].type is ParameterKind.JSON
    assert json.loads(params["config"].default_json) == {"a": 1}
    assert params["notes"].type is ParameterKind.FILE
    assert params["notes"].is_text and params["notes"].encoding == "utf-8"
    # Properties, methods, parameters and private names are not constants.
    assert d.constants == ("ALPHA", "NAMES")


def test_branch() -> None:
    _, d = graph_of("branch_flow", "BranchFlow")
    t = d.step("start").transition
    assert (t.kind, t.targets) == (TransitionKind.BRANCH, ("a", "b"))
    join = d.step("join")
    assert (join.is_join, join.num_args) == (True, 2)


def test_foreach() -> None:
    _, d = graph_of("foreach_flow", "ForeachFlow")
    t = d.step("start").transition
    assert (t.kind, t.targets, t.foreach_var) == (TransitionKind.FOREACH, ("body",), "items")


def test_nested_foreach() -> None:
    _, d = graph_of("nested_foreach_flow", "NestedForeachFlow")
    assert d.step("start").transition.foreach_var == "outer"
    assert d.step("mid").transition.kind is TransitionKind.FOREACH
    assert d.step("mid").transition.foreach_var == "inner"
    assert d.step("join_inner").transition.targets == ("join_outer",)
    assert d.step("join_outer").is_join


def test_switch_multiline_call() -> None:
    _, d = graph_of("switch_flow", "SwitchFlow")
    t = d.step("start").transition
    assert t.kind is TransitionKind.SWITCH
    assert t.condition == "mode"
    assert dict(t.switch_cases) == {"fast": "quick", "slow": "careful", "3": "careful"}
    assert t.targets == ()
    assert t.line == line_of("switch_flow", "self.next(")


def test_self_loop_switch() -> None:
    _, d = graph_of("loop_flow", "LoopFlow")
    t = d.step("loop").transition
    assert dict(t.switch_cases) == {"again": "loop", "done": "end"}


def test_start_end_annotations_and_single_step() -> None:
    _, d = graph_of("annotated_flow", "AnnotatedFlow")
    assert d.step("begin").is_start and not d.step("begin").is_end
    assert d.step("finish").is_end and not d.step("finish").is_start
    _, one = graph_of("annotated_flow", "OneStepFlow")
    assert one.step_names == ["only"]
    assert one.step("only").transition.kind is TransitionKind.UNSPECIFIED
    assert one.doc == "Only one step."


def test_inheritance() -> None:
    _, d = graph_of("child_flow", "ChildFlow")
    assert d.step_names == ["start", "work", "end"]
    base_file = str(FLOWS / "base_flow.py")
    assert d.step("start").source_file == base_file
    assert d.step("start").line == line_of("base_flow", "def start(")
    # The overriding step is the subclass's, in its own file.
    assert d.step("work").source_file == ""
    assert d.step("work").line == line_of("child_flow", "def work(")
    assert [p.name for p in d.parameters] == ["size", "label"]
    assert d.constants == ("RATE",)
    assert d.doc == "Overrides one step of its base."


@pytest.mark.parametrize(
    ("step_name", "reason"),
    [
        ("b", "targets must be steps written as self.<step>, not target"),
        ("c", "foreach= must be a string literal"),
        ("d", "unsupported keyword 'num_parallel'"),
        ("e", "a dict of cases needs condition="),
        ("f", "condition= cannot be combined with foreach="),
        ("g", "must be the last statement"),
        ("h", "foreach= takes exactly one step, not 2"),
        ("i", "switch case some_key is not a string or number literal"),
        ("j", "names no step"),
    ],
)
def test_invalid_next_reports_reason_and_line(step_name: str, reason: str) -> None:
    _, d = graph_of("invalid_flow", "InvalidFlow")
    t = d.step(step_name).transition
    assert t.kind is TransitionKind.INVALID
    assert reason in t.error
    assert t.line > d.step(step_name).line


def test_missing_next_is_unspecified() -> None:
    _, d = graph_of("invalid_flow", "InvalidFlow")
    assert d.step("a").transition.kind is TransitionKind.UNSPECIFIED
    assert d.step("g").transition.line == line_of("invalid_flow", "self.next(self.end)", 1)


class Tagged(StepDecorator):
    name = "tagged"
    defaults: ClassVar[dict[str, Any]] = {"label": "x", "times": 1}


tagged = step_decorator(Tagged)


class DecoratedFlow(FlowSpec):
    @tagged(label="first")
    @step
    def start(self) -> None:
        self.next(self.end)

    @step
    def end(self) -> None:
        pass


def test_decorators_are_listed_with_json_attributes_and_lines() -> None:
    d = extract_graph(DecoratedFlow)
    (deco,) = d.step("start").decorators
    assert deco.name == "tagged"
    assert dict(deco.attributes) == {"label": '"first"', "times": "1"}
    assert deco.values() == {"label": "first", "times": 1}
    assert deco.line == d.step("start").line - 2


def test_with_decospecs_add_to_steps_without_them() -> None:
    registry = DecoratorRegistry(builtins={}, entry_point_group=None)
    registry.register(Tagged)
    d = extract_graph(DecoratedFlow, decospecs=["tagged:times=3"], registry=registry)
    start_decos = d.step("start").decorators
    assert [x.name for x in start_decos] == ["tagged"]  # the static one wins
    (added,) = d.step("end").decorators
    assert (added.line, added.values()) == (0, {"label": "x", "times": 3})
    with pytest.raises(PolyflowError, match="unknown step decorator 'nope'"):
        extract_graph(DecoratedFlow, decospecs=["nope"], registry=registry)


def test_wire_round_trip() -> None:
    _, d = graph_of("switch_flow", "SwitchFlow")
    proto = definition_to_proto(d)
    assert proto.language == enums_pb2.LANGUAGE_PYTHON
    assert proto.steps[0].transition.kind == enums_pb2.TRANSITION_KIND_SWITCH
    assert dict(proto.steps[0].transition.switch_cases)["3"] == "careful"
    assert definition_from_proto(proto) == d

    _, linear = graph_of("linear_flow", "LinearFlow")
    proto = definition_to_proto(linear)
    by_name = {p.name: p for p in proto.parameters}
    assert by_name["notes"].type == enums_pb2.PARAMETER_TYPE_FILE
    assert by_name["alpha"].type == enums_pb2.PARAMETER_TYPE_FLOAT
    assert list(proto.constants) == ["ALPHA", "NAMES"]
    back = definition_from_proto(proto)
    assert back.steps == linear.steps
    assert [p.type for p in back.parameters] == [p.type for p in linear.parameters]


def test_graph_info_dict() -> None:
    _, d = graph_of("foreach_flow", "ForeachFlow")
    info = graph_info(d)
    assert info["name"] == "ForeachFlow"
    assert info["steps"]["start"]["next"] == ["body"]
    assert info["steps"]["start"]["transition"]["foreach"] == "items"
    json.dumps(info)  # plain data
