"""Exercising the worker's own code in a template process before it forks (see
:mod:`polyflow._worker.zygote`).

Whatever a forked child does for the first time in its process it does in every child, for
every task: modules imported on first use, caches filled lazily, and CPython's in-place
specialization of the bytecode it runs. All of that writes to memory shared with the parent,
which the kernel then copies page by page (copy-on-write). Running a small built-in flow
through exactly the code a child runs (:func:`polyflow._worker.child.run_task_spec`) a few
dozen times in the template leaves that work done once, before any fork: it takes a forked
foreach task from about 4.7 ms of CPU to about 3 ms (measured on CPython 3.11).

Nothing of a user's flow runs here, and the template keeps nothing of the warm-up: its flow
file, store and module live in a temporary folder, removed afterwards, along with the module
and the ``sys.path`` entry the loader added, the task context and the environment variables
the task set.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable

__all__ = ["ROUNDS", "WarmUp", "warm_up"]

ROUNDS = 24
"""How many times each task of the built-in flow runs (CPython quickens a function after a
few calls and specializes an instruction after a few misses)."""

_FLOW_SOURCE = '''
from polyflow import FlowSpec, step


class PolyflowWarmupFlow(FlowSpec):
    """Touches what most tasks touch: json and pickled artifacts, compressed and raw
    blobs, a foreach, a join with inputs and merge_artifacts."""

    @step
    def start(self):
        self.items = list(range(300))
        self.config = {"name": "warmup", "ratio": 0.5, "tags": ["a", "b"], "none": None}
        self.pair = (1, "two")
        self.text = "polyflow " * 40
        self.next(self.each, foreach="items")

    @step
    def each(self):
        self.value = self.input * 2
        self.label = f"{self.config['name']}-{self.index}-{self.text[:3]}"
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(task.value for task in inputs)
        self.merge_artifacts(inputs, exclude=["value", "label"])
        self.next(self.end)

    @step
    def end(self):
        self.done = self.total > 0 and len(self.items) == 300 and self.pair[0] == 1
'''


class WarmUp:
    """The warm-up, one round at a time, so that a template can serve a request between
    rounds (a zygote it forks meanwhile is simply less warm). Between rounds the process is
    as before: its standard streams, environment and ``sys.path`` are its own again.

    Args:
        rounds: How many rounds to run.
    """

    def __init__(self, rounds: int = ROUNDS) -> None:
        self._left = rounds
        self._folder = ""
        self._module = f"polyflow_warmup_{secrets.token_hex(6)}"
        self._run: Callable[[], None] | None = None

    def step(self) -> bool:
        """Run one round; False once there is nothing left to do (then all is cleaned)."""
        if self._left <= 0:
            return False
        self._left -= 1
        environment = dict(os.environ)
        path = list(sys.path)
        try:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                if self._run is None:
                    self._folder = tempfile.mkdtemp(prefix="polyflow-warmup-")
                    self._run = _plan(self._folder, self._module)
                self._run()
        except Exception:
            self._left = 0
        finally:
            from polyflow._authoring.current import clear_task_context

            clear_task_context()
            sys.path[:] = path
            os.environ.clear()
            os.environ.update(environment)
        if self._left <= 0:
            self.close()
        return self._left > 0

    def close(self) -> None:
        """Stop: forget the built-in flow's module and files."""
        self._left = 0
        self._run = None
        sys.modules.pop(self._module, None)
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = ""


def warm_up(rounds: int = ROUNDS) -> None:
    """Run the built-in flow's tasks ``rounds`` times through the code a forked child runs.
    Best effort: an error ends the warm-up and is ignored."""
    warm = WarmUp(rounds)
    while warm.step():
        pass


def _plan(folder: str, module: str) -> Callable[[], None]:
    """Write the flow and build the specs of one run; return a function running its tasks.

    Raises:
        Exception: The flow's graph cannot be built (the warm-up is then skipped).
    """
    from polyflow._authoring.graph import extract_graph
    from polyflow._wire_graph import definition_to_proto
    from polyflow._worker.child import run_task_spec
    from polyflow._worker.loader import find_flow_class, load_flow_module
    from polyflow.api.common.v1 import graph_pb2
    from polyflow.api.runtime.v1 import message_pb2

    code_path = os.path.join(folder, f"{module}.py")
    with open(code_path, "w", encoding="utf-8") as handle:
        handle.write(_FLOW_SOURCE)
    flow_cls = find_flow_class(load_flow_module(code_path), "PolyflowWarmupFlow")
    graph = definition_to_proto(extract_graph(flow_cls))
    store_root = os.path.join(folder, "store")
    name = flow_cls.__name__
    Inputs = list[tuple[str, int, message_pb2.TaskOutcome, list[graph_pb2.ForeachFrame]]]

    def spec(
        step: str, task_id: int, inputs: Inputs, frames: list[graph_pb2.ForeachFrame]
    ) -> bytes:
        return message_pb2.TaskSpec(
            task=f"flows/{name}/runs/1/steps/{step}/tasks/{task_id}",
            flow_name=name,
            run_id="1",
            step_name=step,
            task_id=str(task_id),
            inputs=[
                message_pb2.TaskInput(
                    pathspec=f"{name}/1/{from_step}/{from_task}",
                    step=from_step,
                    artifacts=list(outcome.artifacts),
                    foreach_stack=stack,
                )
                for from_step, from_task, outcome, stack in inputs
            ],
            foreach_stack=frames,
            graph=graph,
            max_num_splits=1000,
            code_path=code_path,
            store=message_pb2.StoreLocation(kind="local", root=store_root),
            user="warmup",
            namespace="user:warmup",
        ).SerializeToString()

    def task(raw: bytes) -> message_pb2.TaskOutcome:
        code, payload = run_task_spec(raw)
        if code != 0 or payload is None:
            raise RuntimeError("a warm-up task failed")
        return message_pb2.TaskOutcome.FromString(payload)

    def run() -> None:
        start = task(spec("start", 1, [], []))
        children: Inputs = []
        for index in range(3):
            frame = graph_pb2.ForeachFrame(
                step="start", var="items", index=index, num_splits=300, value_repr=str(index)
            )
            outcome = task(spec("each", 2 + index, [("start", 1, start, [])], [frame]))
            children.append(("each", 2 + index, outcome, [frame]))
        joined = task(spec("join", 10, children, []))
        task(spec("end", 11, [("join", 10, joined, [])], []))

    return run
