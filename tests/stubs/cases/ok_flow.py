"""A correct flow: every graph shape, decorators bare and with arguments, parameters and
``current``. Both type checkers must accept it without a single error."""

from __future__ import annotations

import json
from typing import Any

from polyflow import (
    FlowSpec,
    IncludeFile,
    JSONType,
    Parameter,
    catch,
    current,
    environment,
    resources,
    retry,
    step,
    timeout,
)
from polyflow._authoring.artifacts import Inputs  # the type of a join's inputs (not public)


class EveryShapeFlow(FlowSpec):
    """Linear, branch, foreach (nested), switch (with a recursive case) and joins."""

    alpha = Parameter("alpha", help="Learning rate", default=0.01)
    config = Parameter("config", type=JSONType, default='{"depth": 2}')
    names = Parameter("names", default="a,b", separator=",", required=False)
    table = IncludeFile("table", is_text=True, encoding="utf-8", parser=json.loads)
    SCALE = 10

    @step
    def start(self) -> None:
        self.items = [1, 2, 3]
        self.next(self.branch_a, self.branch_b)  # branch

    @retry
    @step
    def branch_a(self) -> None:
        self.score = 1
        self.next(self.join_branches)  # linear

    @retry(times=2, minutes_between_retries=0.5)
    @catch(var="failure", print_exception=False)
    @timeout(seconds=30, minutes=1, hours=0)
    @environment(vars={"MODE": "fast", "LEVEL": 3, "DEBUG": True})
    @resources(cpu=2, gpu=1, disk=1024, memory=8192, shared_memory=None)
    @step
    def branch_b(self) -> None:
        self.score = 2
        self.next(self.join_branches)

    @step
    def join_branches(self, inputs: Inputs) -> None:
        self.total = sum(inp.score for inp in inputs)
        self.first = inputs.branch_a.score
        self.merge_artifacts(inputs, exclude=["score"])
        self.next(self.fan_out, foreach="items")  # foreach

    @catch
    @step
    def fan_out(self) -> None:
        item: Any = self.input
        position: int | None = self.index
        self.square = item * item
        self.pairs = [(item, letter) for letter in "xy"]
        self.stack = self.foreach_stack()
        print(position)
        self.next(self.inner, foreach="pairs")  # nested foreach

    @step
    def inner(self) -> None:
        self.pair = self.input
        self.next(self.join_inner)

    @step
    def join_inner(self, inputs: Inputs) -> None:
        self.inner_pairs = [inp.pair for inp in inputs]
        self.merge_artifacts(inputs, include=["square"])
        self.next(self.join_fan_out)

    @step
    def join_fan_out(self, inputs: Inputs) -> None:
        self.squares = [inp.square for inp in inputs]
        self.mode = "again" if len(self.squares) < 3 else "done"
        self.attempts = 0
        self.next({"again": self.again, "done": self.finish}, condition="mode")  # switch

    @step
    def again(self) -> None:
        self.attempts += 1
        self.mode = "done"
        self.next({"again": self.again, "done": self.finish}, condition="mode")  # recursion

    @step
    def finish(self) -> None:
        run_id: str | None = current.run_id
        flow_name: str | None = current.flow_name
        step_name: str | None = current.step_name
        task_id: str | None = current.task_id
        attempt: int | None = current.retry_count
        origin: str | None = current.origin_run_id
        pathspec: str | None = current.pathspec
        namespace: str | None = current.namespace
        username: str | None = current.username
        tags: list[str] | None = current.tags
        parameters: list[str] | None = current.parameter_names
        graph: dict[str, Any] | None = current.graph
        running: bool = current.is_running_flow
        extra: Any = current.get("card", None)
        self.summary = (run_id, flow_name, step_name, task_id, attempt, origin, pathspec)
        self.who = (namespace, username, tags, parameters, graph, running, extra)
        self.flow_label = f"{self.name}: alpha={self.alpha} scale={self.SCALE}"
        self.next(self.end)

    @step
    def end(self) -> None:
        print(self.summary, self.who, self.flow_label, self.config, self.names, self.table)


class ExplicitEndsFlow(FlowSpec):
    """``@step(start=True)`` and ``@step(end=True)`` mark the entry and terminal steps."""

    @step(start=True)
    def begin(self) -> None:
        self.next(self.done)

    @step(end=True)
    def done(self) -> None:
        pass


if __name__ == "__main__":
    EveryShapeFlow()
