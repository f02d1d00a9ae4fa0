"""The worker's process: read the TaskSpec, load the flow, run the task, report, exit.

Exit codes: 0 when the task succeeded and was reported; 1 when it failed (reported) or the
report could not be delivered; 2 when there is no readable TaskSpec.

Environment: ``POLYFLOW_TASK_SPEC`` names the serialized TaskSpec (required);
``POLYFLOW_PARENT_PID``, when set, names the daemon the worker dies with
(:mod:`polyflow._worker.lifeline`). The worker sets
``POLYFLOW_CORE_ADDRESS`` and ``POLYFLOW_NAMESPACE`` for the step's code, so that the client
API inside a step reaches the same core in the run's namespace.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from polyflow._authoring.flowspec import FlowSpec
from polyflow._worker.lifeline import die_with_launcher
from polyflow._worker.loader import find_flow_class, load_flow_module
from polyflow._worker.spec import TaskSpecData, read_task_spec
from polyflow._worker.task import TaskResult, exception_data, failure_line, run_task

__all__ = [
    "ENV_TASK_SPEC",
    "EXIT_BAD_SPEC",
    "EXIT_FAILED",
    "EXIT_OK",
    "execute",
    "main",
    "prepare",
]

ENV_TASK_SPEC = "POLYFLOW_TASK_SPEC"
"""Names the serialized TaskSpec file."""
EXIT_OK = 0
"""The task succeeded and was reported."""
EXIT_FAILED = 1
"""The task failed, or its report could not be delivered."""
EXIT_BAD_SPEC = 2
"""No readable TaskSpec."""


def prepare(code_path: str, class_name: str) -> type[FlowSpec]:
    """Import the flow module and find its class (done once per process or pool).

    Raises:
        PolyflowError: The file or class is missing.
        Exception: Whatever the flow module raises on import.
    """
    return find_flow_class(load_flow_module(code_path), class_name)


def execute(spec: TaskSpecData) -> TaskResult:
    """Prepare the flow, open the store and run the task; any error becomes a failure."""
    try:
        from polyflow._worker.foreign import foreign_flow_class, is_foreign_python_step
        from polyflow._worker.store import open_store

        if is_foreign_python_step(spec):  # a Python step of a flow written in R
            flow_cls = foreign_flow_class(spec)
        else:
            flow_cls = prepare(spec.code_path, spec.graph.entrypoint or spec.flow_name)
        store = open_store(spec.store_kind, spec.store_root, spec.store_options)
        return run_task(spec, flow_cls, store)
    except BaseException as exc:
        data = exception_data(exc)
        sys.stderr.write(data.traceback)
        return TaskResult(succeeded=False, exception=data, failure_message=failure_line(exc))


def _exit(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def main() -> NoReturn:
    """Run the task named by ``POLYFLOW_TASK_SPEC`` and exit (see the module docstring)."""
    die_with_launcher()
    path = os.environ.get(ENV_TASK_SPEC, "")
    if not path:
        sys.stderr.write(f"polyflow worker: {ENV_TASK_SPEC} is not set\n")
        _exit(EXIT_BAD_SPEC)
    try:
        spec = read_task_spec(path)
    except Exception as exc:
        sys.stderr.write(f"polyflow worker: cannot read the task spec {path}: {exc}\n")
        _exit(EXIT_BAD_SPEC)
    result = execute(spec)
    try:
        from polyflow._worker.report import complete_task

        complete_task(spec, result)
    except Exception as exc:
        sys.stderr.write(
            f"polyflow worker: cannot report task {spec.pathspec} to the core at "
            f"{spec.core_address}: {exc}\n"
        )
        _exit(EXIT_FAILED)
    _exit(EXIT_OK if result.succeeded else EXIT_FAILED)
