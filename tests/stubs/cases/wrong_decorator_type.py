"""Decorator arguments of the wrong type (syntax: wrong_decorator_argument.py)."""

from __future__ import annotations

from polyflow import FlowSpec, catch, environment, resources, retry, step, timeout


class WrongTypeFlow(FlowSpec):
    # E[mypy]: No overload variant of "retry" matches argument type "str"
    # E[pyright]: "Literal['3']" cannot be assigned to parameter "times" of type "int"
    @retry(times="3")
    @step
    def start(self) -> None:
        self.next(self.end)

    # E[mypy]: No overload variant of "timeout" matches argument type "str"
    # E[pyright]: "Literal['10']" cannot be assigned to parameter "seconds" of type "float"
    @timeout(seconds="10")
    # E[mypy]: No overload variant of "environment" matches argument type "list[str]"
    # E[pyright]: "list[str]" cannot be assigned to parameter "vars"
    @environment(vars=["MODE=fast"])
    # E[mypy]: No overload variant of "catch" matches argument type "int"
    # E[pyright]: cannot be assigned to parameter "var" of type "str | None"
    @catch(var=1)
    # E[mypy]: No overload variant of "resources" matches argument type "str"
    # E[pyright]: cannot be assigned to parameter "gpu" of type "int | None"
    @resources(gpu="2")
    @step
    def end(self) -> None:
        pass
