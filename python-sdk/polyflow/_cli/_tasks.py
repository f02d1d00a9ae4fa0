"""Pathspecs of ``logs`` and ``dump``: ``run_id/step_name`` or ``run_id/step_name/task_id``.

As in Metaflow, the flow is the script's own, so a pathspec starts at the run; a leading flow
name (``HelloFlow/12/start``) is accepted too. An explicit run id is read whatever namespace
it is in (Metaflow's ``logs`` and ``dump`` do not check namespaces either).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from polyflow.client import Task

__all__ = ["TaskPath", "attempt_count", "find_tasks", "parse_task_path"]

_FORM = "run_id/step_name or run_id/step_name/task_id (e.g. 12/start or 12/start/3)"


@dataclass(frozen=True)
class TaskPath:
    """A step of a run, or one task of it."""

    flow: str
    """The flow's name."""
    run: str
    """The run id."""
    step: str
    """The step's name."""
    task: str | None
    """The task id; None means every task of the step."""

    @property
    def pathspec(self) -> str:
        """``flow/run/step[/task]``."""
        return "/".join(p for p in (self.flow, self.run, self.step, self.task) if p is not None)


def parse_task_path(flow: str, text: str, param_hint: str = "PATHSPEC") -> TaskPath:
    """Read a command line pathspec of the flow ``flow``.

    Raises:
        click.BadParameter: Not ``run_id/step_name[/task_id]`` (optionally after the flow's
            name).
    """
    parts = text.strip().strip("/").split("/")
    if len(parts) in (3, 4) and parts[0] == flow:
        parts = parts[1:]
    if len(parts) not in (2, 3) or not all(parts):
        raise click.BadParameter(f"{text!r} is not {_FORM}", param_hint=param_hint)
    return TaskPath(flow, parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def find_tasks(path: TaskPath) -> list[Task]:
    """The task named, or every task of the step by ascending id, at their latest attempts.

    Raises:
        NotFoundError: The run, the step or the task does not exist (the message names the
            first missing one).
    """
    from polyflow._daemon import get_client
    from polyflow._transport import name_from_pathspec
    from polyflow.client import Run, Step, Task

    run = Run(f"{path.flow}/{path.run}", _namespace_check=False)
    run_proto = run._proto
    step = Step(f"{run.pathspec}/{path.step}", _namespace_check=False, _run=run_proto)
    if path.task is not None:
        return [Task(f"{step.pathspec}/{path.task}", _namespace_check=False, _run=run_proto)]
    protos = get_client().list_tasks(name_from_pathspec(step.pathspec))
    return [
        Task(
            f"{step.pathspec}/{proto.task_id}", _namespace_check=False, _proto=proto, _run=run_proto
        )
        for proto in protos
    ]


def attempt_count(task: Task) -> int:
    """How many attempts the task has made so far."""
    return int(task._live().attempt_count)
