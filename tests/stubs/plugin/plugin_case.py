"""A flow using the plugin's decorator, checked against stubs generated with the plugin
installed (syntax: ../cases/wrong_decorator_argument.py)."""

from __future__ import annotations

from polyflow import FlowSpec, kube, step


class PluginFlow(FlowSpec):
    @kube(image="python:3.11", cpu=2, secrets=["db"], namespace="ml")
    @step
    def start(self) -> None:
        self.next(self.end)

    @kube
    @step
    def end(self) -> None:
        pass

    # E[mypy]: No overload variant of "kube" matches argument type "str"
    # E[pyright]: "Literal['2']" cannot be assigned to parameter "cpu" of type "float"
    @kube(cpu="2")
    # E[mypy]: No overload variant of "kube" matches argument type "str"
    # E[pyright]: cannot be assigned to parameter "secrets" of type "list[str]"
    @kube(secrets="db")
    # E[mypy]: Unexpected keyword argument "memory" for overloaded function "kube"
    # E[pyright]: No overloads for "kube"
    @kube(memory=4096)
    @step
    def other(self) -> None:
        pass
