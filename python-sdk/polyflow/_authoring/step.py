"""The ``@step`` decorator and the marks it leaves on a step function.

``@step`` must be the decorator closest to the function. It records a :class:`StepMarks`
object on the function itself (no globals, no registry): graph extraction and the task
worker read it back with :func:`step_marks`. Step decorators (``@retry`` and the like, see
:mod:`polyflow._authoring.decorators`) go above ``@step`` and append themselves to the
same marks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from polyflow._authoring.decorators import StepDecorator

__all__ = ["StepMarks", "is_step", "step", "step_marks"]

F = TypeVar("F", bound=Callable[..., Any])

_MARKS_ATTR = "__polyflow_step__"
"""Name of the function attribute that holds a step's :class:`StepMarks`."""


@dataclass
class StepMarks:
    """What ``@step`` and the step decorators above it recorded on a step function."""

    name: str
    """The step's name: the function's name."""
    is_start: bool = False
    """Marked ``@step(start=True)``."""
    is_end: bool = False
    """Marked ``@step(end=True)``."""
    decorators: list[StepDecorator] = field(default_factory=list)
    """Step decorators in the order they were applied (innermost first)."""
    language: str = ""
    """``"r"`` for a step implemented by an R function (``polyflow.r.r_step``); empty for
    Python."""
    foreign_file: str = ""
    """For a step in another language: its source file, relative to the flow's folder."""
    foreign_function: str = ""
    """For a step in another language: the function to call."""


def step_marks(func: object) -> StepMarks | None:
    """The marks ``@step`` left on ``func``, or None when it is not a step.

    Args:
        func: A function, or a method bound to a flow (its function is inspected).

    Returns:
        The marks, or None.
    """
    target = getattr(func, "__func__", func)
    marks = getattr(target, _MARKS_ATTR, None)
    return marks if isinstance(marks, StepMarks) else None


def is_step(func: object) -> bool:
    """Whether ``func`` (a function or bound method) is marked with ``@step``."""
    return step_marks(func) is not None


def _mark(func: F, *, start: bool, end: bool) -> F:
    if not callable(func) or not hasattr(func, "__code__"):
        raise TypeError(
            f"@step must decorate a function defined with 'def', not {type(func).__name__}; "
            "it must also be the decorator closest to the function"
        )
    if step_marks(func) is not None:
        raise TypeError(f"@step is applied twice to {func.__name__}")
    setattr(func, _MARKS_ATTR, StepMarks(name=func.__name__, is_start=start, is_end=end))
    return func


@overload
def step(func: F, /) -> F: ...


@overload
def step(*, start: bool = False, end: bool = False) -> Callable[[F], F]: ...


def step(
    func: F | None = None, /, *, start: bool = False, end: bool = False
) -> F | Callable[[F], F]:
    """Mark a method of a flow as a step.

    Usable bare (``@step``) or with arguments (``@step(start=True)``, ``@step(end=True)``)
    to mark the entry or terminal step explicitly; without them the steps named ``start``
    and ``end`` play those roles. It must be the decorator closest to the function.

    Args:
        func: The step function (bare use).
        start: Mark the flow's entry step.
        end: Mark the flow's terminal step.

    Returns:
        The same function, marked; or a decorator that marks it.

    Raises:
        TypeError: Applied to something other than a plain function (for example above
            another decorator), or applied twice.
    """
    if func is not None:
        return _mark(func, start=start, end=end)

    def decorate(inner: F) -> F:
        return _mark(inner, start=start, end=end)

    return decorate
