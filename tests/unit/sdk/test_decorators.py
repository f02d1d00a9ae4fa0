"""``@step``, the step-decorator base class, the registry and ``--with`` specs."""

from __future__ import annotations

import importlib.metadata
from typing import Any, ClassVar

import pytest
from polyflow._authoring.decorators import (
    DecoratorRegistry,
    StepDecorator,
    parse_decospec,
    step_decorator,
)
from polyflow._authoring.step import is_step, step, step_marks
from polyflow.exceptions import PolyflowError


class Retry(StepDecorator):
    """A decorator for tests."""

    name = "tretry"
    defaults: ClassVar[dict[str, Any]] = {"times": 3, "minutes_between_retries": 2}


class Card(StepDecorator):
    name = "tcard"
    defaults: ClassVar[dict[str, Any]] = {"type": "default"}
    allow_multiple = True


tretry = step_decorator(Retry)
tcard = step_decorator(Card)


def test_step_bare_and_with_arguments() -> None:
    @step
    def start(self: Any) -> None:
        pass

    @step(end=True)
    def finish(self: Any) -> None:
        pass

    marks = step_marks(start)
    assert marks is not None and (marks.name, marks.is_start, marks.is_end) == (
        "start",
        False,
        False,
    )
    end_marks = step_marks(finish)
    assert end_marks is not None and end_marks.is_end and not end_marks.is_start
    assert step(start=True)(lambda self: None) is not None
    assert not is_step(len)


def test_step_must_be_innermost_and_applied_once() -> None:
    with pytest.raises(TypeError, match="closest to the function"):
        step(staticmethod(lambda: None))  # type: ignore[arg-type]

    def f(self: Any) -> None:
        pass

    step(f)
    with pytest.raises(TypeError, match="applied twice"):
        step(f)


def test_decorators_record_themselves_above_step() -> None:
    @tcard
    @tcard(type="blank")
    @tretry(times=5)
    @step
    def train(self: Any) -> None:
        pass

    marks = step_marks(train)
    assert marks is not None
    assert [d.name for d in marks.decorators] == ["tretry", "tcard", "tcard"]
    assert marks.decorators[0].attributes == {"times": 5, "minutes_between_retries": 2}
    assert marks.decorators[1].attributes == {"type": "blank"}
    assert marks.decorators[0].attributes_json() == {
        "times": "5",
        "minutes_between_retries": "2",
    }


def test_decorator_errors() -> None:
    def plain(self: Any) -> None:
        pass

    with pytest.raises(TypeError, match="@tretry must be placed above @step"):
        tretry(plain)

    @step
    def once(self: Any) -> None:
        pass

    tretry(once)
    with pytest.raises(PolyflowError, match="attached more than once"):
        tretry(once)
    with pytest.raises(PolyflowError, match=r"no attribute 'tims'.*minutes_between_retries"):
        tretry(tims=3)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("retry", ("retry", {})),
        ("retry:", ("retry", {})),
        ("retry:times=3", ("retry", {"times": 3})),
        (
            "retry:times=3,minutes_between_retries=0",
            ("retry", {"times": 3, "minutes_between_retries": 0}),
        ),
        ("batch:queue=fast,image=py:3.11", ("batch", {"queue": "fast", "image": "py:3.11"})),
        (
            'environment:vars={"A":"1","B":"2"}',
            ("environment", {"vars": {"A": "1", "B": "2"}}),
        ),
        ("resources:cpu=2, memory=[1,2]", ("resources", {"cpu": 2, "memory": [1, 2]})),
        ("my.module.Deco:flag=true", ("my.module.Deco", {"flag": True})),
    ],
)
def test_parse_decospec(spec: str, expected: tuple[str, dict[str, Any]]) -> None:
    assert parse_decospec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "not a decorator name"),
        ("1abc", "not a decorator name"),
        ("retry:times", "expected attr=value"),
        ("retry:times=1,times=2", "'times' is given twice"),
    ],
)
def test_parse_decospec_errors(spec: str, message: str) -> None:
    with pytest.raises(PolyflowError, match=message):
        parse_decospec(spec)


def test_registry_injection_and_duplicates() -> None:
    registry = DecoratorRegistry(builtins={}, entry_point_group=None)
    registry.register(Retry)
    registry.register(Retry)  # the same class again is fine
    assert registry.get("tretry") is Retry
    assert registry.names() == ["tretry"]

    class Other(StepDecorator):
        name = "tretry"

    with pytest.raises(PolyflowError, match="two step decorators are named 'tretry'"):
        registry.register(Other)
    with pytest.raises(PolyflowError, match=r"unknown step decorator 'nope'.*known: tretry"):
        registry.get("nope")
    made = registry.make("tretry", {"times": 1})
    assert made.attributes["times"] == 1 and not made.statically_defined


def test_registry_loads_builtins_and_entry_points_lazily(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group = "polyflow.decorators"
    target = f"{__name__}:Card"
    eps = [importlib.metadata.EntryPoint("tcard", target, group)]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps)
    registry = DecoratorRegistry(builtins={"tretry": f"{__name__}:tretry"})
    assert registry.names() == ["tcard", "tretry"]
    assert registry.get("tretry") is Retry  # the user-facing function resolves to its class
    assert registry.get("tcard") is Card

    clash = [importlib.metadata.EntryPoint("tretry", "elsewhere:Deco", group)]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: clash)
    registry = DecoratorRegistry(builtins={"tretry": f"{__name__}:Retry"})
    with pytest.raises(PolyflowError, match="two step decorators are named 'tretry'"):
        registry.get("tretry")

    bad = DecoratorRegistry(builtins={"bad": f"{__name__}:test_parse_decospec"})
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [])
    with pytest.raises(PolyflowError, match="is not a StepDecorator"):
        bad.get("bad")
