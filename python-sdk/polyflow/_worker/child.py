"""What a pre-forked child runs: one task from its serialized ``TaskSpec``, to the serialized
``TaskOutcome`` it hands back (see :mod:`polyflow._worker.zygote`).

The same code runs in a template's warm-up (:mod:`polyflow._worker.warmup`), so that
everything it imports or initialises on first use is done once, before any fork.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from polyflow._worker.main import EXIT_BAD_SPEC, EXIT_FAILED, EXIT_OK, execute
from polyflow._worker.report import outcome_to_proto
from polyflow._worker.spec import TaskSpecData, task_spec_from_proto
from polyflow.api.runtime.v1 import message_pb2

__all__ = ["remember_graph", "run_task_spec"]

# The graph of the zygote's run, converted once: (flow, run id) -> FlowDefinition.
_run_graph: tuple[tuple[str, str], Any] | None = None


def remember_graph(spec: bytes) -> TaskSpecData:
    """Read a spec and keep its run's graph, so that tasks of that run skip converting it
    (a run's graph never changes)."""
    global _run_graph
    message = message_pb2.TaskSpec.FromString(spec)
    data = task_spec_from_proto(message)
    _run_graph = ((message.flow_name, message.run_id), data.graph)
    return data


def read_spec(spec: bytes) -> TaskSpecData:
    """The plain form of a serialized spec (the run's graph from :func:`remember_graph`).

    Raises:
        google.protobuf.message.DecodeError: Not a TaskSpec.
    """
    message = message_pb2.TaskSpec.FromString(spec)
    cached = _run_graph
    if cached is not None and cached[0] == (message.flow_name, message.run_id):
        message.ClearField("graph")
        return dataclasses.replace(task_spec_from_proto(message), graph=cached[1])
    return task_spec_from_proto(message)


def run_task_spec(spec: bytes) -> tuple[int, bytes | None]:
    """Run the task a serialized spec describes, as ``python -m polyflow._worker`` would.

    Returns:
        The exit code the worker process would have, and the serialized ``TaskOutcome``
        (None when the spec cannot be read).
    """
    try:
        data = read_spec(spec)
    except Exception as exc:
        sys.stderr.write(f"polyflow worker: cannot read the task spec: {exc}\n")
        return EXIT_BAD_SPEC, None
    result = execute(data)
    try:
        payload = outcome_to_proto(result).SerializeToString()
    except Exception as exc:
        sys.stderr.write(f"polyflow worker: cannot report task {data.pathspec}: {exc}\n")
        return EXIT_FAILED, None
    return (EXIT_OK if result.succeeded else EXIT_FAILED), payload
