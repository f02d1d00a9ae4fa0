"""Unit tests of the core's graph validator and of the FlowGraph proto conversion.

Graphs are built with :func:`step` and :func:`flow`, which number lines automatically (step i
at line 10*i, its ``next`` call five lines below), so tests can check where a problem points.
Every rule has a case in ``RULE_CASES``; a test checks that the table covers all of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from polyflow.api.common.v1 import enums_pb2, graph_pb2
from polyflow_core.domain.graph import (
    RULE_DESCRIPTIONS,
    Problem,
    Rule,
    ValidationResult,
    start_and_end,
    topological_order,
    validate,
)
from polyflow_core.domain.model import (
    DecoratorSpec,
    FlowGraph,
    Language,
    ParameterSpec,
    ParameterType,
    StepKind,
    StepSpec,
    Transition,
    TransitionKind,
)
from polyflow_core.services.graph_convert import (
    graph_from_proto,
    graph_to_proto,
    problem_to_proto,
)

FLOW_FILE = "flows/my_flow.py"

# --- builders -------------------------------------------------------------------------------


def step(
    name: str,
    *targets: str,
    foreach: str | None = None,
    cases: Mapping[str, str] | None = None,
    condition: str = "choice",
    join: bool = False,
    transition: Transition | None = None,
    **fields: Any,
) -> StepSpec:
    """A step: no targets means no ``next`` call; ``cases`` makes a switch."""
    if transition is None:
        if cases is not None:
            transition = Transition(
                TransitionKind.SWITCH, switch_cases=dict(cases), condition=condition
            )
        elif foreach is not None:
            transition = Transition(TransitionKind.FOREACH, targets, foreach_var=foreach)
        elif len(targets) == 1:
            transition = Transition(TransitionKind.LINEAR, targets)
        elif targets:
            transition = Transition(TransitionKind.BRANCH, targets)
        else:
            transition = Transition()
    fields.setdefault("num_args", 2 if join else 1)
    return StepSpec(name=name, is_join=join, transition=transition, **fields)


def flow(*steps: StepSpec, name: str = "TestFlow") -> FlowGraph:
    """A flow of these steps, with line numbers filled in where the step has none."""
    numbered = []
    for i, s in enumerate(steps, start=1):
        line = s.line or 10 * i
        t = s.transition
        if t.kind is not TransitionKind.UNSPECIFIED and not t.line:
            t = dataclasses.replace(t, line=line + 5)
        numbered.append(dataclasses.replace(s, line=line, transition=t))
    return FlowGraph(flow_name=name, source_file=FLOW_FILE, steps=tuple(numbered))


def rules(result: ValidationResult) -> set[str]:
    return {p.rule for p in result.problems}


def problems_of(result: ValidationResult, rule: Rule) -> list[Problem]:
    return [p for p in result.problems if p.rule == rule]


def assert_valid(graph: FlowGraph) -> ValidationResult:
    result = validate(graph)
    assert result.problems == [], [p.message for p in result.problems]
    assert result.ok
    return result


def kinds(result: ValidationResult) -> dict[str, StepKind]:
    return {s.name: s.kind for s in result.graph.steps}


def derived(result: ValidationResult, name: str) -> StepSpec:
    return result.graph.step(name)


# --- one case per rule ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    graph: Callable[[], FlowGraph]
    step: str
    """The step the problem is reported at ('' for flow-wide ones)."""
    names: tuple[str, ...]
    """Step names the message must mention."""
    also: frozenset[Rule] = frozenset()
    """Other rules the graph legitimately triggers."""
    at_transition: bool = False
    """True when the line must be the ``next`` call's rather than the step's."""


def with_parameters(*names: str) -> FlowGraph:
    """A valid two-step flow declaring parameters of these names."""
    graph = flow(step("start", "end"), step("end"))
    return dataclasses.replace(graph, parameters=tuple(ParameterSpec(name=n) for n in names))


RULE_CASES: dict[Rule, Case] = {
    Rule.DUPLICATE_PARAMETER: Case(
        lambda: with_parameters("alpha", "learning_rate", "learning-rate"), "", ("learning-rate",)
    ),
    Rule.RESERVED_PARAMETER_NAME: Case(lambda: with_parameters("alpha", "Run_ID"), "", ("Run_ID",)),
    Rule.INVALID_PARAMETER_NAME: Case(lambda: with_parameters("a b"), "", ("a b",)),
    Rule.DUPLICATE_STEP: Case(
        lambda: flow(step("start", "a"), step("a", "end"), step("a", "end"), step("end")),
        "a",
        ("a",),
    ),
    Rule.RESERVED_STEP_NAME: Case(
        lambda: flow(step("start", "input"), step("input", "end"), step("end")),
        "input",
        ("input",),
    ),
    Rule.INVALID_STEP_NAME: Case(
        lambda: flow(step("start", "Bad_Name"), step("Bad_Name", "end"), step("end")),
        "Bad_Name",
        ("Bad_Name",),
    ),
    Rule.MISSING_START: Case(
        lambda: flow(step("begin", "end"), step("end")),
        "",
        ("start",),
    ),
    Rule.MISSING_END: Case(
        lambda: flow(step("start", "finish"), step("finish")),
        "",
        ("end",),
        also=frozenset({Rule.MISSING_TRANSITION}),
    ),
    Rule.MULTIPLE_START: Case(
        lambda: flow(
            step("one", "end", is_start=True), step("two", "end", is_start=True), step("end")
        ),
        "two",
        ("one", "two"),
    ),
    Rule.MULTIPLE_END: Case(
        lambda: flow(step("start", "a", "b"), step("a", is_end=True), step("b", is_end=True)),
        "b",
        ("a", "b"),
    ),
    Rule.AMBIGUOUS_START: Case(
        lambda: flow(step("begin", "end", is_start=True), step("start", "end"), step("end")),
        "begin",
        ("begin", "start"),
    ),
    Rule.AMBIGUOUS_END: Case(
        lambda: flow(step("start", "finish"), step("finish", is_end=True), step("end")),
        "finish",
        ("finish", "end"),
        # With the end unsettled, the step named 'end' is still one nothing leads to.
        also=frozenset({Rule.UNREACHABLE_STEP}),
    ),
    Rule.START_HAS_INCOMING: Case(
        # Even a switch may not loop back into the start step.
        lambda: flow(step("start", cases={"again": "start", "done": "end"}), step("end")),
        "start",
        ("start",),
    ),
    Rule.END_HAS_TRANSITION: Case(
        lambda: flow(step("start", "end"), step("end", "start")),
        "end",
        ("end",),
        at_transition=True,
    ),
    Rule.END_IS_JOIN: Case(
        lambda: flow(
            step("start", "a", "b"), step("a", "end"), step("b", "end"), step("end", join=True)
        ),
        "end",
        ("end",),
    ),
    Rule.TOO_MANY_ARGUMENTS: Case(
        lambda: flow(step("start", "a"), step("a", "end", num_args=3), step("end")),
        "a",
        ("a",),
    ),
    Rule.JOIN_AND_SPLIT: Case(
        lambda: flow(
            step("start", "a", "b"),
            step("a", "j"),
            step("b", "j"),
            step("j", "x", "y", join=True),
            step("x", "j2"),
            step("y", "j2"),
            step("j2", "end", join=True),
            step("end"),
        ),
        "j",
        ("j",),
    ),
    Rule.MISSING_TRANSITION: Case(
        lambda: flow(step("start", "a", "b"), step("a"), step("b", "j"), step("j"), step("end")),
        "a",
        ("a",),
        # 'j' has no next call either, and nothing leads to 'end'.
        also=frozenset({Rule.UNREACHABLE_STEP}),
    ),
    Rule.INVALID_TRANSITION: Case(
        lambda: flow(
            step(
                "start",
                transition=Transition(
                    TransitionKind.INVALID, ("end",), error="switch keys must be literals"
                ),
            ),
            step("end"),
        ),
        "start",
        ("start", "switch keys must be literals"),
        at_transition=True,
    ),
    Rule.UNKNOWN_TRANSITION: Case(
        lambda: flow(
            step("start", cases={"yes": "a", "no": "ghost"}), step("a", "end"), step("end")
        ),
        "start",
        ("start", "ghost"),
        at_transition=True,
    ),
    Rule.TRANSITION_ARITY: Case(
        lambda: flow(
            step("start", transition=Transition(TransitionKind.LINEAR, ("a", "b"))),
            step("a", "end"),
            step("b", "end"),
            step("end"),
        ),
        "start",
        ("start",),
        at_transition=True,
    ),
    Rule.FOREACH_WITHOUT_VAR: Case(
        lambda: flow(
            step("start", "body", foreach=""),
            step("body", "j"),
            step("j", "end", join=True),
            step("end"),
        ),
        "start",
        ("start",),
        at_transition=True,
    ),
    Rule.SWITCH_TOO_FEW_CASES: Case(
        lambda: flow(step("start", cases={"only": "end"}), step("end")),
        "start",
        ("start",),
        at_transition=True,
    ),
    Rule.SWITCH_WITHOUT_CONDITION: Case(
        lambda: flow(
            step("start", cases={"x": "a", "y": "end"}, condition=""),
            step("a", "end"),
            step("end"),
        ),
        "start",
        ("start",),
        at_transition=True,
    ),
    Rule.CYCLE: Case(
        lambda: flow(
            step("start", "a"),
            step("a", "b"),
            step("b", cases={"again": "a", "done": "end"}),
            step("end"),
        ),
        "a",
        ("'a' -> 'b' -> 'a'",),
        at_transition=True,
    ),
    Rule.UNREACHABLE_STEP: Case(
        lambda: flow(step("start", "end"), step("orphan", "end"), step("end")),
        "orphan",
        ("orphan", "start"),
    ),
    Rule.EMPTY_FOREACH: Case(
        lambda: flow(step("start", "j", foreach="items"), step("j", "end", join=True), step("end")),
        "start",
        ("start", "j"),
        at_transition=True,
    ),
    Rule.AMBIGUOUS_JOIN: Case(
        lambda: flow(
            step("start", "a", "b"),
            step("a", cases={"skip": "j", "work": "c"}),
            step("c", "j"),
            step("b", "j"),
            step("j", "end", join=True),
            step("end"),
        ),
        "a",
        ("a", "j"),
        at_transition=True,
    ),
    Rule.UNJOINED_SPLIT: Case(
        lambda: flow(step("start", "a", "b"), step("a", "end"), step("b", "end"), step("end")),
        "end",
        ("end", "start", "a", "b"),
    ),
    Rule.JOIN_WITHOUT_SPLIT: Case(
        # A step taking 'inputs' that no split precedes.
        lambda: flow(step("start", "a"), step("a", "end", join=True), step("end")),
        "a",
        ("a",),
    ),
    Rule.JOIN_PATH_MISMATCH: Case(
        lambda: flow(
            step("start", "a", "b", "c"),
            step("a", "j"),
            step("b", "j"),
            step("c", "end"),
            step("j", "end", join=True),
            step("end"),
        ),
        "j",
        ("j", "start", "c"),
    ),
    Rule.CROSS_JOIN: Case(
        lambda: flow(
            step("start", "a", "b"),
            step("a", "c", "d"),
            step("b", "j1"),
            step("c", "j1"),
            step("d", "j2"),
            step("j1", "j2", join=True),
            step("j2", "end", join=True),
            step("end"),
        ),
        "j1",
        ("j1", "start", "a"),
    ),
    Rule.MERGE_WITHOUT_JOIN: Case(
        lambda: flow(
            step("start", "a", "b"),
            step("a", "c"),
            step("b", "c"),
            step("c", "j"),
            step("j", "end", join=True),
            step("end"),
        ),
        "c",
        ("c", "a", "b"),
    ),
    Rule.DECORATOR_ATTRIBUTE: Case(
        lambda: flow(
            step("start", "end", decorators=(DecoratorSpec("retry", {"times": '"3"'}),)),
            step("end"),
        ),
        "start",
        ("start", "@retry", "times"),
    ),
    Rule.TOO_MANY_RETRIES: Case(
        lambda: flow(
            step("start", "end", decorators=(DecoratorSpec("retry", {"times": "5"}),)),
            step("end"),
        ),
        "start",
        ("start", "times=5", "at most 4"),
    ),
    Rule.CATCH_ON_SPLIT: Case(
        lambda: flow(
            step("start", "work", foreach="items", decorators=(DecoratorSpec("catch"),)),
            step("work", "join"),
            step("join", "end", join=True),
            step("end"),
        ),
        "start",
        ("start", "@catch", "foreach"),
    ),
}


def test_every_rule_has_a_case_and_a_description() -> None:
    assert set(RULE_CASES) == set(Rule)
    assert set(RULE_DESCRIPTIONS) == set(Rule)


@pytest.mark.parametrize("rule", list(RULE_CASES), ids=lambda r: str(r))
def test_rule(rule: Rule) -> None:
    case = RULE_CASES[rule]
    graph = case.graph()
    result = validate(graph)
    assert not result.ok
    assert rules(result) == {rule.value} | {r.value for r in case.also}, [
        (p.rule, p.message) for p in result.problems
    ]
    found = problems_of(result, rule)
    assert found, f"{rule} not reported"
    problem = found[0]
    assert problem.step == case.step
    for name in case.names:
        assert name in problem.message, problem.message
    if case.step:
        assert f"'{case.step}'" in problem.message
    assert problem.file == FLOW_FILE
    if case.step:
        spec = [s for s in graph.steps if s.name == case.step][
            -1 if rule is Rule.DUPLICATE_STEP else 0
        ]
        expected = spec.transition.line if case.at_transition else spec.line
        assert problem.line == expected
    else:
        assert problem.line == 0


# --- rule variants --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["name", "next", "input", "index", "cmd"])
def test_every_reserved_name_is_refused(name: str) -> None:
    result = validate(flow(step("start", name), step(name, "end"), step("end")))
    assert rules(result) == {"RESERVED_STEP_NAME"}
    assert f"'{name}'" in result.problems[0].message


@pytest.mark.parametrize("name", ["_hidden", "has-dash", "CamelCase", "dotted.name", "ünï", ""])
def test_malformed_step_names(name: str) -> None:
    result = validate(flow(step("start", name), step(name, "end"), step("end")))
    assert rules(result) == {"INVALID_STEP_NAME"}
    assert f"'{name}'" in result.problems[0].message


@pytest.mark.parametrize(
    "transition",
    [
        Transition(TransitionKind.LINEAR, ()),
        Transition(TransitionKind.BRANCH, ("end",)),
        Transition(TransitionKind.BRANCH, ("a", "a")),
        Transition(TransitionKind.FOREACH, ("a", "end"), foreach_var="items"),
    ],
    ids=["linear-none", "branch-one", "branch-repeated", "foreach-two"],
)
def test_arity_variants(transition: Transition) -> None:
    result = validate(flow(step("start", transition=transition), step("a", "end"), step("end")))
    arity = problems_of(result, Rule.TRANSITION_ARITY)
    assert len(arity) == 1
    assert "'start'" in arity[0].message
    # Balance findings are withheld while the structure itself is broken.
    assert not rules(result) & {"UNJOINED_SPLIT", "JOIN_PATH_MISMATCH", "MERGE_WITHOUT_JOIN"}


def test_empty_flow() -> None:
    result = validate(FlowGraph(flow_name="Empty", source_file=FLOW_FILE))
    assert rules(result) == {"MISSING_START", "MISSING_END"}
    assert (result.start, result.end) == (None, None)


def test_switch_without_cases() -> None:
    result = validate(flow(step("start", cases={}), step("end")))
    assert "SWITCH_TOO_FEW_CASES" in rules(result)


@pytest.mark.parametrize(
    ("transition", "words"),
    [
        (
            Transition(
                TransitionKind.SWITCH,
                switch_cases={"a": "x", "b": "end"},
                condition="c",
                foreach_var="items",
            ),
            "foreach",
        ),
        (Transition(TransitionKind.LINEAR, ("x",), condition="c"), "switch"),
        (Transition(TransitionKind.LINEAR, ("x",), foreach_var="items"), "foreach"),
        (
            Transition(
                TransitionKind.SWITCH, ("x",), switch_cases={"a": "x", "b": "end"}, condition="c"
            ),
            "switch",
        ),
    ],
)
def test_mixed_transition_forms_are_invalid(transition: Transition, words: str) -> None:
    result = validate(flow(step("start", transition=transition), step("x", "end"), step("end")))
    invalid = problems_of(result, Rule.INVALID_TRANSITION)
    assert len(invalid) == 1
    assert words in invalid[0].message and "'start'" in invalid[0].message


def test_invalid_transition_without_error_text_still_explains() -> None:
    graph = flow(step("start", transition=Transition(TransitionKind.INVALID)), step("end"))
    problem = problems_of(validate(graph), Rule.INVALID_TRANSITION)[0]
    assert "supported forms" in problem.message


def test_self_loop_of_a_non_switch_step_is_a_cycle() -> None:
    graph = flow(step("start", "a"), step("a", "a", "end"), step("end"))
    result = validate(graph)
    cycle = problems_of(result, Rule.CYCLE)
    assert len(cycle) == 1 and cycle[0].step == "a"
    assert "'a'" in cycle[0].message


def test_each_loop_is_reported_once() -> None:
    graph = flow(
        step("start", "a", "c"),
        step("a", "b"),
        step("b", "a"),
        step("c", "d"),
        step("d", "c"),
        step("end"),
    )
    result = validate(graph)
    assert [p.step for p in problems_of(result, Rule.CYCLE)] == ["a", "c"]


def test_unknown_target_of_linear_transition() -> None:
    result = validate(flow(step("start", "nowhere"), step("end")))
    unknown = problems_of(result, Rule.UNKNOWN_TRANSITION)
    assert len(unknown) == 1 and "'nowhere'" in unknown[0].message
    assert unknown[0].line == 15  # the next call, not the def


def test_marked_end_without_transition_is_not_missing_one() -> None:
    graph = flow(step("begin", "finish", is_start=True), step("finish", is_end=True))
    assert_valid(graph)


def test_annotations_that_agree_with_names_are_fine() -> None:
    graph = flow(step("start", "end", is_start=True), step("end", is_end=True))
    result = assert_valid(graph)
    assert (result.start, result.end) == ("start", "end")


def test_join_reached_from_split_and_from_outside() -> None:
    graph = flow(
        step("start", cases={"wide": "s", "narrow": "r"}),
        step("s", "p", "q"),
        step("p", "j"),
        step("q", "j"),
        step("r", "j"),
        step("j", "end", join=True),
        step("end"),
    )
    result = validate(graph)
    assert rules(result) == {"JOIN_WITHOUT_SPLIT"}
    assert "'r'" in result.problems[0].message


def test_foreach_body_escaping_to_end() -> None:
    graph = flow(
        step("start", "body", foreach="items"),
        step("body", cases={"ok": "more", "bail": "end"}),
        step("more", "j"),
        step("j", "end", join=True),
        step("end"),
    )
    result = validate(graph)
    assert rules(result) == {"UNJOINED_SPLIT"}
    assert "'start'" in result.problems[0].message


def test_switch_into_join_at_top_level_reports_only_the_switch() -> None:
    graph = flow(
        step("start", cases={"x": "j", "y": "c"}),
        step("c", "j"),
        step("j", "end", join=True),
        step("end"),
    )
    assert rules(validate(graph)) == {"AMBIGUOUS_JOIN"}


def test_several_problems_come_ordered_by_line() -> None:
    graph = flow(
        step("start", "a"),
        step("a", "ghost"),
        step("b", "end"),
        step("_c", "end"),
        step("end"),
    )
    result = validate(graph)
    assert [p.line for p in result.problems] == sorted(p.line for p in result.problems)
    assert [p.rule for p in result.problems] == [
        "UNKNOWN_TRANSITION",
        "UNREACHABLE_STEP",
        "INVALID_STEP_NAME",
        "UNREACHABLE_STEP",
        "UNREACHABLE_STEP",
    ]


def test_problem_at_inherited_step_points_at_its_own_file() -> None:
    graph = flow(
        step("start", "base_step"),
        step("base_step", "missing", source_file="lib/base.py", line=7),
        step("end"),
    )
    result = validate(graph)
    unknown = problems_of(result, Rule.UNKNOWN_TRANSITION)[0]
    assert (unknown.file, unknown.line) == ("lib/base.py", 12)
    # Problems in the flow's own file come first.
    assert result.problems[0].file == FLOW_FILE
    assert result.problems[-1].file == "lib/base.py"


# --- valid shapes ---------------------------------------------------------------------------


def test_linear() -> None:
    result = assert_valid(flow(step("start", "a"), step("a", "end"), step("end")))
    assert kinds(result) == {"start": StepKind.START, "a": StepKind.LINEAR, "end": StepKind.END}
    assert derived(result, "a").in_steps == ("start",)
    assert derived(result, "end").in_steps == ("a",)
    assert derived(result, "start").in_steps == ()
    assert (result.start, result.end) == ("start", "end")


def test_branch_and_join() -> None:
    result = assert_valid(
        flow(
            step("start", "b", "a"),
            step("a", "j"),
            step("b", "j"),
            step("j", "end", join=True),
            step("end"),
        )
    )
    assert kinds(result) == {
        "start": StepKind.SPLIT,
        "a": StepKind.LINEAR,
        "b": StepKind.LINEAR,
        "j": StepKind.JOIN,
        "end": StepKind.END,
    }
    assert derived(result, "j").matching_split == "start"
    assert derived(result, "j").in_steps == ("a", "b")  # source order, not target order
    assert derived(result, "a").matching_split == ""


def test_foreach_and_join() -> None:
    result = assert_valid(
        flow(
            step("start", "fan"),
            step("fan", "body", foreach="items"),
            step("body", "j"),
            step("j", "end", join=True),
            step("end"),
        )
    )
    assert kinds(result)["fan"] is StepKind.FOREACH
    assert derived(result, "j").matching_split == "fan"
    assert derived(result, "j").kind is StepKind.JOIN


@pytest.mark.parametrize("depth", [2, 3])
def test_nested_foreach(depth: int) -> None:
    steps = [step("start", "f1")]
    for level in range(1, depth + 1):
        inner = f"f{level + 1}" if level < depth else "body"
        steps.append(step(f"f{level}", inner, foreach=f"items{level}"))
    steps.append(step("body", f"j{depth}"))
    for level in range(depth, 0, -1):
        after = f"j{level - 1}" if level > 1 else "end"
        steps.append(step(f"j{level}", after, join=True))
    steps.append(step("end"))
    result = assert_valid(flow(*steps))
    for level in range(1, depth + 1):
        assert derived(result, f"f{level}").kind is StepKind.FOREACH
        assert derived(result, f"j{level}").matching_split == f"f{level}"


def test_branch_inside_foreach_inside_branch() -> None:
    result = assert_valid(
        flow(
            step("start", "a", "b"),
            step("a", "body", foreach="xs"),
            step("body", "p", "q"),
            step("p", "jb"),
            step("q", "jb"),
            step("jb", "ja", join=True),
            step("ja", "j", join=True),
            step("b", "j"),
            step("j", "end", join=True),
            step("end"),
        )
    )
    assert derived(result, "jb").matching_split == "body"
    assert derived(result, "ja").matching_split == "a"
    assert derived(result, "j").matching_split == "start"
    assert derived(result, "j").in_steps == ("ja", "b")


def test_switch_with_convergence() -> None:
    result = assert_valid(
        flow(
            step("start", "decide"),
            step("decide", cases={"left": "x", "right": "y"}),
            step("x", "z"),
            step("y", "z"),
            step("z", "end"),
            step("end"),
        )
    )
    assert kinds(result)["decide"] is StepKind.SWITCH
    assert kinds(result)["z"] is StepKind.LINEAR
    assert derived(result, "z").in_steps == ("x", "y")


def test_switch_case_straight_to_end() -> None:
    assert_valid(
        flow(
            step("start", cases={"skip": "end", "work": "work"}),
            step("work", "end"),
            step("end"),
        )
    )


def test_switch_self_loop_recursion() -> None:
    result = assert_valid(
        flow(
            step("start", "loop"),
            step("loop", cases={"again": "loop", "done": "end"}),
            step("end"),
        )
    )
    assert kinds(result)["loop"] is StepKind.SWITCH
    assert derived(result, "loop").in_steps == ("start", "loop")


def test_start_may_be_a_switch() -> None:
    result = assert_valid(
        flow(step("start", cases={"a": "a", "b": "end"}), step("a", "end"), step("end"))
    )
    assert kinds(result)["start"] is StepKind.SWITCH


def test_switch_inside_a_branch() -> None:
    result = assert_valid(
        flow(
            step("start", "a", "b"),
            step("a", cases={"x": "a1", "y": "a2"}),
            step("a1", "a3"),
            step("a2", "a3"),
            step("a3", "j"),
            step("b", "j"),
            step("j", "end", join=True),
            step("end"),
        )
    )
    assert derived(result, "j").matching_split == "start"
    assert kinds(result)["a"] is StepKind.SWITCH


def test_switch_cases_inside_a_branch_may_reach_the_join_through_own_steps() -> None:
    # As in Metaflow: only a switch leading *directly* into a join is refused. Here each case
    # has its own step before the join; both count as branch 'a' of the split.
    result = assert_valid(
        flow(
            step("start", "a", "b"),
            step("a", cases={"x": "a1", "y": "a2"}),
            step("a1", "j"),
            step("a2", "j"),
            step("b", "j"),
            step("j", "end", join=True),
            step("end"),
        )
    )
    assert derived(result, "j").matching_split == "start"
    assert derived(result, "j").in_steps == ("a1", "a2", "b")


def test_recursive_switch_inside_foreach() -> None:
    result = assert_valid(
        flow(
            step("start", "body", foreach="items"),
            step("body", cases={"again": "body", "done": "tail"}),
            step("tail", "j"),
            step("j", "end", join=True),
            step("end"),
        )
    )
    assert derived(result, "j").matching_split == "start"


def test_foreach_inside_a_switch_case() -> None:
    result = assert_valid(
        flow(
            step("start", cases={"many": "fan", "one": "single"}),
            step("fan", "body", foreach="items"),
            step("body", "j"),
            step("j", "after", join=True),
            step("single", "after"),
            step("after", "end"),
            step("end"),
        )
    )
    assert derived(result, "j").matching_split == "fan"
    assert derived(result, "after").in_steps == ("j", "single")


def test_one_step_flow() -> None:
    result = assert_valid(flow(step("only")))
    assert (result.start, result.end) == ("only", "only")
    assert kinds(result) == {"only": StepKind.END}
    assert start_and_end(flow(step("only"))) == ("only", "only")


def test_one_step_flow_named_start() -> None:
    result = assert_valid(flow(step("start")))
    assert (result.start, result.end) == ("start", "start")


def test_start_and_end_annotations() -> None:
    graph = flow(
        step("middle", "finish"),
        step("finish", is_end=True),
        step("begin", "middle", is_start=True),
    )
    result = assert_valid(graph)
    assert (result.start, result.end) == ("begin", "finish")
    assert kinds(result) == {
        "begin": StepKind.START,
        "middle": StepKind.LINEAR,
        "finish": StepKind.END,
    }
    assert start_and_end(graph) == ("begin", "finish")


def test_validation_keeps_other_fields_and_overwrites_stale_outputs() -> None:
    stale = step("a", "end", kind=StepKind.JOIN, in_steps=("x",), matching_split="x", doc="A.")
    graph = flow(step("start", "a"), stale, step("end"))
    result = assert_valid(graph)
    a = derived(result, "a")
    assert (a.kind, a.in_steps, a.matching_split, a.doc) == (StepKind.LINEAR, ("start",), "", "A.")
    assert graph.step("a").kind is StepKind.JOIN  # the input is left alone


# --- topological order ------------------------------------------------------------------------


def test_topological_order() -> None:
    graph = flow(
        step("end"),
        step("j", "end", join=True),
        step("b", "j"),
        step("a", "j"),
        step("loop", cases={"again": "loop", "on": "a"}),
        step("start", "loop", "b"),
    )
    order = topological_order(graph)
    assert order[0] == "start"
    assert sorted(order) == sorted(s.name for s in graph.steps)
    for s in graph.steps:
        for target in s.transition.out_steps:
            if target != s.name:
                assert order.index(s.name) < order.index(target)


def test_topological_order_of_a_loop_lists_every_step() -> None:
    graph = flow(step("start", "a"), step("a", "b"), step("b", "a"), step("end"))
    assert sorted(topological_order(graph)) == ["a", "b", "end", "start"]


# --- conversion --------------------------------------------------------------------------


def rich_graph() -> FlowGraph:
    graph = FlowGraph(
        flow_name="RichFlow",
        source_file="rich.py",
        doc="A flow with every field.",
        steps=(
            StepSpec(
                name="start",
                line=3,
                num_args=1,
                transition=Transition(
                    TransitionKind.SWITCH,
                    switch_cases={"a": "fan", "b": "r_step"},
                    condition="mode",
                    line=5,
                ),
                decorators=(DecoratorSpec("retry", {"times": "3"}, line=2),),
                is_start=True,
                doc="Start.",
            ),
            StepSpec(
                name="fan",
                line=7,
                num_args=1,
                transition=Transition(TransitionKind.FOREACH, ("body",), foreach_var="xs"),
            ),
            StepSpec(
                name="body",
                line=9,
                num_args=1,
                transition=Transition(TransitionKind.LINEAR, ("j",)),
            ),
            StepSpec(
                name="j",
                line=11,
                num_args=2,
                is_join=True,
                transition=Transition(TransitionKind.LINEAR, ("end",)),
            ),
            StepSpec(
                name="r_step",
                language=Language.R,
                foreign_file="steps.R",
                foreign_function="r_step",
                source_file="base.py",
                transition=Transition(TransitionKind.LINEAR, ("end",)),
            ),
            StepSpec(name="end", line=20, num_args=1, is_end=True),
        ),
        parameters=(
            ParameterSpec("alpha", ParameterType.FLOAT, "0.5", help="Alpha."),
            ParameterSpec("names", ParameterType.STRING, separator=",", required=True),
            ParameterSpec("data", ParameterType.FILE, is_text=True, encoding="latin-1"),
        ),
        decorators=(DecoratorSpec("project", {"name": '"demo"'}),),
        language=Language.PYTHON,
        entrypoint="RichFlowClass",
        constants=("VERSION", "LIMIT"),
    )
    return validate(graph).graph


def test_graph_round_trips_through_proto() -> None:
    graph = rich_graph()
    assert graph.step("j").matching_split == "fan"
    msg = graph_to_proto(graph)
    wire = graph_pb2.FlowGraph.FromString(msg.SerializeToString())
    assert wire.steps[3].kind == enums_pb2.STEP_KIND_JOIN
    assert wire.steps[0].transition.kind == enums_pb2.TRANSITION_KIND_SWITCH
    assert dict(wire.steps[0].transition.switch_cases) == {"a": "fan", "b": "r_step"}
    assert wire.parameters[0].type == enums_pb2.PARAMETER_TYPE_FLOAT
    assert wire.steps[4].language == enums_pb2.LANGUAGE_R
    assert graph_from_proto(wire) == graph


def test_unknown_enum_numbers_from_a_newer_client() -> None:
    msg = graph_to_proto(flow(step("start", "end"), step("end")))
    msg.steps[0].transition.kind = 42  # type: ignore[assignment]
    msg.steps[0].kind = 99  # type: ignore[assignment]
    graph = graph_from_proto(msg)
    assert graph.steps[0].transition.kind is TransitionKind.INVALID
    assert graph.steps[0].kind is StepKind.UNSPECIFIED
    problem = problems_of(validate(graph), Rule.INVALID_TRANSITION)[0]
    assert "42" in problem.message


def test_problem_to_proto() -> None:
    problem = Problem("CYCLE", "Steps 'a' -> 'b' -> 'a' loop.", "a", "flow.py", 12)
    msg = problem_to_proto(problem)
    assert (msg.rule, msg.message, msg.step, msg.file, msg.line) == (
        "CYCLE",
        "Steps 'a' -> 'b' -> 'a' loop.",
        "a",
        "flow.py",
        12,
    )
    validated = validate(flow(step("start", "ghost"), step("end")))
    assert problem_to_proto(validated.problems[0]).rule == "UNKNOWN_TRANSITION"


# --- built-in decorators ----------------------------------------------------------------------


def _decorated(*decorators: DecoratorSpec, **kwargs: Any) -> FlowGraph:
    """start (with the decorators) -> end."""
    return flow(step("start", "end", decorators=decorators, **kwargs), step("end"))


def test_catch_is_refused_on_a_switch_at_the_decorators_line() -> None:
    graph = flow(
        step("start", cases={"x": "a", "y": "b"}, decorators=(DecoratorSpec("catch", line=3),)),
        step("a", "end"),
        step("b", "end"),
        step("end"),
    )
    (problem,) = validate(graph).problems
    assert problem.rule == "CATCH_ON_SPLIT"
    assert "'start' is a switch" in problem.message
    assert problem.line == 3  # the decorator's own line when the SDK knows it


def test_catch_is_fine_on_linear_branch_join_and_end_steps() -> None:
    catch = (DecoratorSpec("catch", {"var": '"error"', "print_exception": "false"}),)
    assert_valid(
        flow(
            step("start", "a", "b", decorators=catch),
            step("a", "join", decorators=catch),
            step("b", "join"),
            step("join", "end", join=True, decorators=catch),
            step("end", decorators=catch),
        )
    )


def test_retry_allows_four_retries_with_catch() -> None:
    assert_valid(
        _decorated(
            DecoratorSpec("retry", {"times": "4", "minutes_between_retries": "0.5"}),
            DecoratorSpec("catch"),
        )
    )


@pytest.mark.parametrize(
    ("decorator", "fragments"),
    [
        (DecoratorSpec("retry", {"tims": "3"}), ("no attribute 'tims'", "times")),
        (DecoratorSpec("retry", {"times": "true"}), ("times", "the boolean true")),
        (DecoratorSpec("retry", {"times": "-1"}), ("times", "at least 0", "-1")),
        (DecoratorSpec("retry", {"times": "1.5"}), ("whole number", "1.5")),
        (DecoratorSpec("retry", {"minutes_between_retries": '"2"'}), ('the string "2"',)),
        (DecoratorSpec("retry", {"times": "{oops"}), ("valid JSON",)),
        (DecoratorSpec("catch", {"var": '"1x"'}), ("var", "artifact name")),
        (DecoratorSpec("catch", {"var": '"_private"'}), ("var",)),
        (DecoratorSpec("catch", {"print_exception": '"yes"'}), ("true or false",)),
        (DecoratorSpec("timeout", {"seconds": '"10"'}), ("seconds", "number")),
        (DecoratorSpec("timeout"), ("sets no limit",)),
        (DecoratorSpec("timeout", {"seconds": "0", "minutes": "0"}), ("sets no limit",)),
        (DecoratorSpec("environment", {"vars": '["A"]'}), ("vars", "a list")),
        (DecoratorSpec("environment", {"vars": '{"A": [1]}'}), ('"A" is a list',)),
        (DecoratorSpec("environment", {"vars": '{"A=B": "1"}'}), ("bad name",)),
        (DecoratorSpec("resources", {"cpu": "0"}), ("cpu", "above 0")),
        (DecoratorSpec("resources", {"gpu": "0.5"}), ("gpu", "whole number")),
        (DecoratorSpec("resources", {"memory": '"4G"'}), ("memory",)),
    ],
)
def test_bad_attributes_of_builtin_decorators(
    decorator: DecoratorSpec, fragments: tuple[str, ...]
) -> None:
    problems = validate(_decorated(decorator)).problems
    assert [p.rule for p in problems] == ["DECORATOR_ATTRIBUTE"], problems
    assert f"@{decorator.name}" in problems[0].message and "'start'" in problems[0].message
    for fragment in fragments:
        assert fragment in problems[0].message


def test_good_attributes_of_builtin_decorators() -> None:
    assert_valid(
        _decorated(
            DecoratorSpec("retry", {"times": "0", "minutes_between_retries": "0"}),
            DecoratorSpec("catch", {"var": "null", "print_exception": "true"}),
            DecoratorSpec("timeout", {"seconds": "0.5", "minutes": "1", "hours": "0"}),
            DecoratorSpec("environment", {"vars": '{"A": "x", "B": 2, "C": true}'}),
            DecoratorSpec(
                "resources",
                {
                    "cpu": "0.5",
                    "gpu": "null",
                    "disk": "10240",
                    "memory": "512",
                    "shared_memory": "64",
                },
            ),
        )
    )


def test_decorators_the_core_does_not_know_are_left_to_their_sdk() -> None:
    assert_valid(_decorated(DecoratorSpec("kubernetes", {"anything": "[1, 2]"})))


def test_catch_var_cannot_be_a_parameter_or_constant() -> None:
    graph = dataclasses.replace(
        _decorated(DecoratorSpec("catch", {"var": '"alpha"'})),
        parameters=(ParameterSpec("alpha"),),
    )
    (problem,) = validate(graph).problems
    assert problem.rule == "DECORATOR_ATTRIBUTE" and "'alpha'" in problem.message


@pytest.mark.parametrize("name", ["", "-x", "a=b", "tab\there"])
def test_invalid_parameter_names(name: str) -> None:
    result = validate(with_parameters(name))
    assert rules(result) == {Rule.INVALID_PARAMETER_NAME.value}


def test_parameter_names_that_are_fine() -> None:
    assert_valid(with_parameters("alpha", "learning-rate", "start", "Name", "x2"))
