"""Flow code that misuses ``self.next``, ``current`` and parameters (syntax:
wrong_decorator_argument.py)."""

from __future__ import annotations

from polyflow import FlowSpec, Parameter, current, step


class WrongFlow(FlowSpec):
    # E[mypy]: Argument "help" to "Parameter" has incompatible type "int"; expected "str | None"
    # E[pyright]: "Literal[3]" cannot be assigned to parameter "help" of type "str | None"
    alpha = Parameter("alpha", help=3)

    @step
    def start(self) -> None:
        self.items = [1, 2]
        # E[mypy]: No overload variant of "next" of "FlowSpec" matches argument types
        # E[pyright]: "Literal[3]" cannot be assigned to parameter "foreach" of type "str"
        self.next(self.middle, foreach=3)

    @step
    def middle(self) -> None:
        # E[mypy]: No overload variant of "next" of "FlowSpec" matches argument types
        # E[pyright]: cannot be assigned to parameter "cases"
        self.next(self.end, condition="mode")

    @step
    def other(self) -> None:
        # E[mypy]: No overload variant of "next" of "FlowSpec" matches argument types
        # E[pyright]: "dict[str, () -> None]" cannot be assigned to parameter "step"
        self.next({"a": self.end}, foreach="items")

    @step
    def end(self) -> None:
        # E[mypy]: "Current" has no attribute "run_idd"; maybe "run_id"?
        # E[pyright]: Cannot access attribute "run_idd" for class "Current"
        print(current.run_idd)
        # E[mypy]: No overload variant of "next" of "FlowSpec" matches argument type "str"
        # E[pyright]: "Literal['start']" cannot be assigned to parameter "step"
        self.next("start")
