"""Decorator arguments that do not exist.

Expectations: a comment ``# E: <text>`` says that both checkers report an error whose message
contains the text; ``# E[mypy]:`` and ``# E[pyright]:`` are for one checker. A trailing comment
is about its own line; comment lines of their own are about the next line of code.
"""

from __future__ import annotations

from polyflow import FlowSpec, catch, resources, retry, step


class WrongArgumentFlow(FlowSpec):
    # E[mypy]: Unexpected keyword argument "tiems" for overloaded function "retry"
    # E[pyright]: No overloads for "retry" match the provided arguments
    @retry(tiems=3)
    @step
    def start(self) -> None:
        self.next(self.end)

    # E[mypy]: Unexpected keyword argument "variable" for overloaded function "catch"
    # E[pyright]: No overloads for "catch"
    @catch(variable="error")
    # E[mypy]: Unexpected keyword argument "memroy" for overloaded function "resources"
    # E[pyright]: No overloads for "resources"
    @resources(memroy=1024)
    @step
    def end(self) -> None:
        pass

    # E[mypy]: Unexpected keyword argument "begin" for overloaded function "step"
    # E[pyright]: No overloads for "step"
    @step(begin=True)
    def other(self) -> None:
        pass
