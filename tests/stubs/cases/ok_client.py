"""Correct client code: flows, runs, steps, tasks, artifacts, namespaces and errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

from polyflow import (
    DataArtifact,
    Flow,
    Metaflow,
    NamespaceMismatchError,
    NotFoundError,
    Polyflow,
    Run,
    Step,
    Task,
    default_namespace,
    get_metadata,
    get_namespace,
    namespace,
)
from polyflow.client import TaskData, TaskException


def describe(pathspec: str) -> list[str]:
    """Walk one run and say what it holds."""
    previous: str | None = namespace(None)
    current_ns: str | None = get_namespace()
    restored: str | None = default_namespace()
    where: str = get_metadata()
    lines = [f"{previous} {current_ns} {restored} {where}"]
    run = Run(pathspec)
    successful: bool = run.successful
    finished: bool = run.finished
    created: dt.datetime | None = run.created_at
    ended: dt.datetime | None = run.finished_at
    message: str = run.failure_message
    tags: frozenset[str] = run.tags | run.user_tags | run.system_tags
    flow: Flow = run.parent
    lines.append(f"{run.pathspec} {run.id} {successful} {finished} {created} {ended} {message}")
    lines.append(f"{flow.id} {sorted(tags)} {run.user} {run.path_components}")
    data: TaskData | None = run.data
    if data is not None:
        value: Any = data.x
        lines.append(repr(value))
    end_task: Task | None = run.end_task
    for step_ in run:
        assert isinstance(step_, Step)
        one: Task | None = step_.task
        for task in step_.tasks():
            out: str = task.stdout
            err: str = task.stderr
            attempt: int = task.current_attempt
            index: int | None = task.index
            failure: TaskException | None = task.exception
            metadata: dict[str, str] = task.metadata_dict
            parents: list[str] = task.parent_task_pathspecs
            lines.append(f"{out}{err}{attempt}{index}{failure}{metadata}{parents}{one}")
            for artifact in task:
                digest: str = artifact.sha
                size: int = artifact.size
                payload: Any = artifact.data
                lines.append(f"{artifact.id} {digest} {size} {payload} {artifact.encoding}")
    if end_task is not None and "x" in end_task:
        x: DataArtifact = end_task["x"]
        lines.append(str(x.data))
    return lines


def latest(flow_name: str) -> Run | None:
    """The newest successful run of a flow, or None."""
    try:
        flow = Flow(flow_name)
    except (NotFoundError, NamespaceMismatchError):
        return None
    runs: list[Run] = list(flow.runs("nightly"))
    print(len(runs), [f.id for f in Polyflow().flows], Metaflow().flows)
    return flow.latest_successful_run
