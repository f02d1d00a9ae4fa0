"""FlowSpec instance semantics: next() forms and run-time errors, merge_artifacts, foreach
accessors, read-only parameters and constants, pickling, current."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from polyflow._authoring.artifacts import (
    ArtifactTable,
    ForeachFrame,
    Inputs,
    InputView,
    StoredArtifact,
    foreach_item,
)
from polyflow._authoring.current import (
    TaskContextInfo,
    current,
    set_task_context,
    update_current,
)
from polyflow._authoring.flowspec import FlowSpec, FlowState
from polyflow._authoring.parameters import Parameter
from polyflow._authoring.step import step
from polyflow._authoring.transitions import TakenTransition, TransitionKind
from polyflow._codecs import encode, value_digest
from polyflow.exceptions import (
    InvalidNextError,
    MergeArtifactsError,
    MissingInMergeArtifactsError,
    TaskFailedError,
    UnhandledInMergeArtifactsError,
)


class NextFlow(FlowSpec):
    """A flow whose steps are called directly by the tests."""

    RATE = 3
    alpha = Parameter("alpha", default=0.5)

    @step
    def start(self) -> None:
        self.next(self.a)

    @step
    def a(self) -> None:
        self.next(self.end)

    @step
    def b(self) -> None:
        self.next(self.end)

    def not_a_step(self) -> None:
        pass

    @step
    def join(self, inputs: Inputs) -> None:
        self.next(self.end)

    @step
    def end(self) -> None:
        pass


def _flow(**state: Any) -> NextFlow:
    state.setdefault("step_name", "start")
    flow = NextFlow._pf_for_task(FlowState(**state))
    assert isinstance(flow, NextFlow)
    return flow


def _taken(flow: FlowSpec) -> TakenTransition | None:
    return flow._pf_state.transition


# next(): the forms


def test_linear_and_branch() -> None:
    flow = _flow()
    flow.next(flow.a)
    assert _taken(flow) == TakenTransition(TransitionKind.LINEAR, ("a",))
    flow = _flow()
    flow.next(flow.a, flow.b)
    assert _taken(flow) == TakenTransition(TransitionKind.BRANCH, ("a", "b"))


def test_foreach_records_splits_and_reprs() -> None:
    flow = _flow()
    flow.items = ["x" * 50, 2, {"k": 1}]
    flow.next(flow.a, foreach="items")
    taken = _taken(flow)
    assert taken is not None
    assert (taken.kind, taken.targets, taken.foreach_var, taken.num_splits) == (
        TransitionKind.FOREACH,
        ("a",),
        "items",
        3,
    )
    assert taken.value_reprs[1:] == ("2", "{'k': 1}")
    assert all(len(r) <= 30 for r in taken.value_reprs)


def test_foreach_over_a_generator_counts_items() -> None:
    flow = _flow()
    flow.items = range(4)
    flow.next(flow.a, foreach="items")
    assert _taken(flow).num_splits == 4  # type: ignore[union-attr]


def test_switch_chooses_case() -> None:
    flow = _flow()
    flow.mode = "slow"
    flow.next({"fast": flow.a, "slow": flow.b}, condition="mode")
    assert _taken(flow) == TakenTransition(
        TransitionKind.SWITCH, ("b",), condition="mode", cases=("a", "b")
    )
    numeric = _flow()
    numeric.level = 2
    numeric.next({1: numeric.a, 2: numeric.b}, condition="level")
    assert _taken(numeric).targets == ("b",)  # type: ignore[union-attr]


# next(): run-time errors


def test_next_called_twice() -> None:
    flow = _flow()
    flow.next(flow.a)
    with pytest.raises(InvalidNextError, match="more than once"):
        flow.next(flow.a)


def test_unknown_keyword() -> None:
    flow = _flow()
    with pytest.raises(InvalidNextError, match="unknown keyword 'num_parallel'"):
        flow.next(flow.a, num_parallel=2)


@pytest.mark.parametrize("target", ["not_a_step", "string"])
def test_target_not_a_step(target: str) -> None:
    flow = _flow()
    arg = flow.not_a_step if target == "not_a_step" else "a"
    with pytest.raises(InvalidNextError, match="is not a step"):
        flow.next(arg)


def test_target_of_another_instance() -> None:
    flow, other = _flow(), _flow()
    with pytest.raises(InvalidNextError, match="is not a step"):
        flow.next(other.a)


def test_foreach_errors() -> None:
    flow = _flow()
    with pytest.raises(InvalidNextError, match=r"self\.missing is not set"):
        flow.next(flow.a, foreach="missing")
    flow.number = 5
    with pytest.raises(InvalidNextError, match="not iterable"):
        flow.next(flow.a, foreach="number")
    flow.empty = []
    with pytest.raises(InvalidNextError, match="is empty"):
        flow.next(flow.a, foreach="empty")
    flow.items = [1, 2]
    with pytest.raises(InvalidNextError, match="exactly one step, got 2"):
        flow.next(flow.a, flow.b, foreach="items")
    assert _taken(flow) is None


def test_too_many_splits_fails_the_task() -> None:
    flow = _flow(max_num_splits=10)
    flow.items = list(range(11))
    with pytest.raises(TaskFailedError, match="11 splits, more than the maximum of 10"):
        flow.next(flow.a, foreach="items")


def test_switch_errors() -> None:
    flow = _flow()
    flow.mode = "other"
    with pytest.raises(RuntimeError, match=r"'other' of self\.mode matches none.*'fast', 'slow'"):
        flow.next({"fast": flow.a, "slow": flow.b}, condition="mode")
    with pytest.raises(InvalidNextError, match="cannot combine condition= with foreach="):
        flow.next({"fast": flow.a}, condition="mode", foreach="x")
    with pytest.raises(InvalidNextError, match="takes one dict"):
        flow.next(flow.a, condition="mode")
    with pytest.raises(InvalidNextError, match=r"self\.nope is not set"):
        flow.next({"x": flow.a}, condition="nope")
    flow.unhashable = ["list"]
    with pytest.raises(RuntimeError, match="matches none"):
        flow.next({"x": flow.a}, condition="unhashable")


# Attributes


def test_read_only_constants_and_parameters() -> None:
    flow = _flow()
    assert flow.RATE == 3
    with pytest.raises(AttributeError, match=r"'RATE'.*read-only"):
        flow.RATE = 4
    with pytest.raises(AttributeError, match="Cannot set parameter 'alpha'"):
        flow.alpha = 1.0
    assert flow.name == "NextFlow"
    with pytest.raises(AttributeError):
        flow.name = "x"  # type: ignore[misc]


def test_artifacts_are_public_non_method_attributes() -> None:
    flow = _flow()
    flow.x = 1
    flow._private = 2
    flow.func = lambda: 3
    flow.method = flow.not_a_step
    flow.cls = int
    assert flow._pf_artifact_values() == {"x": 1, "cls": int}


def test_flows_cannot_be_pickled() -> None:
    flow = _flow()
    with pytest.raises(TypeError, match="Flows cannot be pickled"):
        pickle.dumps(flow)
    flow.me = flow
    with pytest.raises(TypeError, match="Flows cannot be pickled"):
        encode({"me": flow})


def test_lazy_artifacts_and_parameters(put_value_table: ArtifactTable) -> None:
    flow = _flow(table=put_value_table)
    assert "x" not in flow.__dict__
    assert flow.x == [1, 2]  # loaded on first access, then cached on the instance
    assert flow.__dict__["x"] == [1, 2]
    assert flow.alpha == 0.9  # the run's value, not the default
    with pytest.raises(AttributeError, match="has no attribute or artifact 'nope'"):
        _ = flow.nope
    del flow.x
    assert "x" not in put_value_table


@pytest.fixture
def put_value_table() -> ArtifactTable:
    values = {"x": [1, 2], "alpha": 0.9}
    refs = {k: StoredArtifact(k, value_digest(v), "json") for k, v in values.items()}
    return ArtifactTable(refs, lambda ref: values[ref.name])


# Foreach accessors


def test_input_index_and_foreach_stack() -> None:
    values = {"outer": ["a", "b"], "inner": {10, 20, 30}}
    refs = {k: StoredArtifact(k, value_digest(sorted(v)), "json") for k, v in values.items()}
    table = ArtifactTable(refs, lambda ref: values[ref.name])
    frames = (ForeachFrame("start", "outer", 1, 2), ForeachFrame("mid", "inner", 2, 3))
    flow = _flow(table=table, foreach_stack=frames)
    assert flow.index == 2
    assert flow.input == list(values["inner"])[2]  # sets are walked with islice
    assert flow.foreach_stack() == [(1, 2, "b"), (2, 3, list(values["inner"])[2])]
    plain = _flow()
    assert (plain.index, plain.input, plain.foreach_stack()) == (None, None, [])


def test_foreach_item_fallbacks() -> None:
    assert foreach_item([5, 6], 1) == 6
    assert foreach_item({"k1": 1, "k2": 2}, 1) == "k2"
    assert foreach_item(iter("abc"), 2) == "c"


# merge_artifacts


class _Fake:
    """Fake join inputs: each a table of values with real digests."""

    def __init__(self) -> None:
        self.loads: list[str] = []

    def view(self, step_name: str, **values: Any) -> InputView:
        refs = {k: StoredArtifact(k, value_digest(v), "json") for k, v in values.items()}

        def load(ref: StoredArtifact) -> Any:
            self.loads.append(f"{step_name}.{ref.name}")
            return values[ref.name]

        return InputView(step_name, f"F/1/{step_name}/1", ArtifactTable(refs, load))


@pytest.fixture
def fake() -> Iterator[_Fake]:
    yield _Fake()


def _join(fake: _Fake, *views: InputView) -> tuple[NextFlow, Inputs]:
    inputs = Inputs(list(views))
    return _flow(step_name="join", inputs=inputs), inputs


def test_merge_agreeing_values_by_reference(fake: _Fake) -> None:
    flow, inputs = _join(
        fake, fake.view("a", same=1, only_a="x", _hidden=0), fake.view("b", same=1, only_b="y")
    )
    flow.merge_artifacts(inputs)
    assert fake.loads == []  # compared by digest, nothing loaded
    assert sorted(flow._pf_state.table.refs) == ["only_a", "only_b", "same"]
    assert flow.same == 1 and flow.only_b == "y"


def test_merge_conflict_merges_nothing(fake: _Fake) -> None:
    flow, inputs = _join(fake, fake.view("a", x=1, y=2, ok=0), fake.view("b", x=2, y=3, ok=0))
    with pytest.raises(UnhandledInMergeArtifactsError) as info:
        flow.merge_artifacts(inputs)
    assert info.value.names == ("x", "y")
    assert "x, y" in str(info.value)
    assert flow._pf_state.table.refs == {}


def test_merge_skips_names_already_set(fake: _Fake) -> None:
    flow, inputs = _join(fake, fake.view("a", x=1, alpha=5), fake.view("b", x=2, alpha=6))
    flow.x = 0
    flow.merge_artifacts(inputs)  # x is set on self, alpha is a parameter
    assert flow.x == 0 and "alpha" not in flow._pf_state.table


def test_merge_include_exclude(fake: _Fake) -> None:
    flow, inputs = _join(fake, fake.view("a", x=1, y=1, z=1), fake.view("b", x=2, y=1, z=1))
    flow.merge_artifacts(inputs, exclude=["x"])
    assert sorted(flow._pf_state.table.refs) == ["y", "z"]

    flow, inputs = _join(fake, fake.view("a", x=1, y=1, z=1), fake.view("b", x=2, y=1, z=1))
    flow.merge_artifacts(inputs, include=["y"])
    assert sorted(flow._pf_state.table.refs) == ["y"]

    flow, inputs = _join(fake, fake.view("a", y=1), fake.view("b", y=1))
    with pytest.raises(MissingInMergeArtifactsError, match="nope") as info:
        flow.merge_artifacts(inputs, include=["y", "nope"])
    assert info.value.names == ("nope",)
    with pytest.raises(MergeArtifactsError, match="not both"):
        flow.merge_artifacts(inputs, include=["y"], exclude=["x"])


def test_merge_compares_values_changed_in_place(fake: _Fake) -> None:
    flow, inputs = _join(fake, fake.view("a", items=[1]), fake.view("b", items=[1]))
    inputs[0].items.append(2)  # loaded and mutated: its digest is recomputed
    with pytest.raises(UnhandledInMergeArtifactsError, match="items"):
        flow.merge_artifacts(inputs)


def test_merge_outside_a_join(fake: _Fake) -> None:
    flow = _flow()
    with pytest.raises(MergeArtifactsError, match="only be called in a join"):
        flow.merge_artifacts(Inputs([fake.view("a", x=1)]))


def test_inputs_access_and_read_only_views(fake: _Fake) -> None:
    a, b = fake.view("a", v=1), fake.view("b", v=2)
    inputs = Inputs([a, b])
    assert [i.v for i in inputs] == [1, 2]
    assert inputs[1] is b and len(inputs) == 2
    assert inputs.b.v == 2
    with pytest.raises(AttributeError, match="no input from a step named 'c'"):
        _ = inputs.c
    with pytest.raises(AttributeError, match="read-only"):
        a.v = 3
    with pytest.raises(AttributeError, match="has no artifact 'w'"):
        _ = a.w
    with pytest.raises(TypeError):
        pickle.dumps(inputs)


# current


def test_current_outside_a_task() -> None:
    assert current.is_running_flow is False
    for name in ("flow_name", "run_id", "step_name", "task_id", "retry_count", "pathspec"):
        assert getattr(current, name) is None
    assert current.get("flow_name", "dflt") == "dflt"
    assert "flow_name" not in current
    assert "is_running_flow" in current
    with pytest.raises(AttributeError):
        _ = current.card


def test_current_inside_a_task() -> None:
    set_task_context(
        TaskContextInfo(
            flow_name="F",
            run_id="3",
            step_name="s",
            task_id="9",
            retry_count=1,
            username="bob",
            namespace="user:bob",
            tags=("a",),
            parameter_names=("alpha",),
            graph={"name": "F"},
        )
    )
    assert current.is_running_flow
    assert current.pathspec == "F/3/s/9"
    assert (current.retry_count, current.username, current.namespace) == (1, "bob", "user:bob")
    assert current.tags == ["a"] and current.parameter_names == ["alpha"]
    assert current.graph == {"name": "F"}
    assert current.origin_run_id is None
    assert "run_id" in current and current.get("run_id") == "3"
    update_current(card="a card")
    assert current.card == "a card" and "card" in current
    with pytest.raises(ValueError, match="cannot override"):
        update_current(run_id="x")
