"""``MetadataService``: reads of flows, runs, steps, tasks, artifacts and task logs, and
changes of a run's user tags.

A thin servicer: it parses names, applies the page-size defaults and maxima of the proto
comments, calls the :class:`~polyflow_core.metadata.base.MetadataStore`, and converts records
with :mod:`polyflow_core.services.convert`. Errors become statuses through
:mod:`polyflow_core.services.status`; a NOT_FOUND carries the name asked for in its
``ErrorInfo`` metadata (``name``).

Reads go straight to the store. The one write, ``MutateRunTags``, does not: it is handed to a
:class:`~polyflow_core.domain.tags.RunTagWriter` (the scheduler), which applies it on the
scheduler thread, so the store keeps a single writer.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import Iterator, Sequence

import grpc
from polyflow.api.common.v1 import enums_pb2
from polyflow.api.metadata.v1 import request_response_pb2 as rr
from polyflow.api.metadata.v1 import service_pb2_grpc

from polyflow_core.domain.tags import RunTagWriter, check_tag_change
from polyflow_core.errors import CoreError, ErrorCode, InvalidArgumentError, NotFoundError
from polyflow_core.metadata.base import (
    ArtifactRecord,
    AttemptRecord,
    MetadataStore,
    RunState,
    TaskRecord,
    TaskState,
)
from polyflow_core.paths import LogStreamName, RootLayout
from polyflow_core.services import convert
from polyflow_core.services.names import (
    TaskName,
    parse_artifact_name,
    parse_flow_name,
    parse_run_name,
    parse_step_name,
    parse_task_name,
)
from polyflow_core.services.status import unary_errors

__all__ = [
    "DEFAULT_ARTIFACT_PAGE_SIZE",
    "DEFAULT_PAGE_SIZE",
    "MAX_ARTIFACT_PAGE_SIZE",
    "MAX_LOG_READ_BYTES",
    "MAX_PAGE_SIZE",
    "MetadataServicer",
]

DEFAULT_PAGE_SIZE = 100
"""Page size of ListFlows/ListRuns/ListSteps/ListTasks when the request gives 0."""
MAX_PAGE_SIZE = 1000
"""Their largest page size (larger requests are reduced to it)."""
DEFAULT_ARTIFACT_PAGE_SIZE = 1000
"""Page size of ListArtifacts when the request gives 0."""
MAX_ARTIFACT_PAGE_SIZE = 10000
"""Its largest page size."""
MAX_LOG_READ_BYTES = 1 << 20
"""Most bytes one ReadTaskLog returns (also its default)."""

_FINISHED_TASK = (TaskState.SUCCEEDED, TaskState.FAILED)
_FINISHED_RUN = (RunState.SUCCEEDED, RunState.FAILED)
_STREAMS: dict[int, LogStreamName] = {
    enums_pb2.LOG_STREAM_STDOUT: "stdout",
    enums_pb2.LOG_STREAM_STDERR: "stderr",
}


def _page_size(value: int, default: int, maximum: int) -> int:
    """Apply a listing's default and maximum; negative sizes are INVALID_ARGUMENT."""
    if value < 0:
        raise InvalidArgumentError(
            f"page_size must be >= 0, got {value}",
            reason="INVALID_PAGE_SIZE",
            metadata={"page_size": str(value)},
        )
    return default if value == 0 else min(value, maximum)


@contextlib.contextmanager
def _asked(name: str) -> Iterator[None]:
    """Add the resource name asked for to a NOT_FOUND raised inside."""
    try:
        yield
    except NotFoundError as exc:
        if "name" in exc.metadata:
            raise
        raise NotFoundError(
            f"{name} not found ({exc.message})",
            reason=exc.reason,
            metadata={**exc.metadata, "name": name},
        ) from exc


def _attempt_of(task: TaskRecord, number: int, name: str) -> AttemptRecord:
    """A given attempt of a task; NOT_FOUND when it was not made."""
    if number < 0:
        raise InvalidArgumentError(
            f"attempt must be >= 0, got {number}", metadata={"attempt": str(number)}
        )
    for attempt in task.attempts:
        if attempt.attempt == number:
            return attempt
    raise NotFoundError(
        f"{name} has no attempt {number}", metadata={"name": name, "attempt": str(number)}
    )


def _artifact_attempt(task: TaskRecord, asked: int | None, name: str) -> AttemptRecord | None:
    """The attempt whose artifacts to read: the one asked for, else the latest successful
    one, else the latest (None when the task has no attempt)."""
    if asked is not None:
        return _attempt_of(task, asked, name)
    for attempt in reversed(task.attempts):
        if attempt.state is TaskState.SUCCEEDED:
            return attempt
    return task.latest


def _artifact_token(scope: list[object], after: str) -> str:
    raw = json.dumps({"s": scope, "a": after}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _artifact_cursor(token: str, scope: list[object]) -> str:
    """The name to list after; '' for the first page."""
    if not token:
        return ""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if isinstance(data, dict) and data.get("s") == scope and isinstance(data.get("a"), str):
            return str(data["a"])
    except (binascii.Error, ValueError, UnicodeDecodeError):
        pass
    raise InvalidArgumentError(
        "page_token is malformed or was issued for another listing",
        reason="INVALID_PAGE_TOKEN",
        metadata={"page_token": token[:100]},
    )


class MetadataServicer(service_pb2_grpc.MetadataServiceServicer):
    """Serves ``polyflow.api.metadata.v1.MetadataService`` from a metadata store.

    Args:
        store: Where runs and tasks are recorded.
        layout: The root's layout (task logs are read from ``layout.task_log_path``).
        tag_writer: Applies ``MutateRunTags`` changes (the scheduler); without one that call
            fails with UNIMPLEMENTED.
    """

    def __init__(
        self, store: MetadataStore, layout: RootLayout, *, tag_writer: RunTagWriter | None = None
    ) -> None:
        self._store = store
        self._layout = layout
        self._tag_writer = tag_writer

    # --- flows and runs -----------------------------------------------------------------
    @unary_errors
    def ListFlows(
        self, request: rr.ListFlowsRequest, context: grpc.ServicerContext
    ) -> rr.ListFlowsResponse:
        """One page of flows, by name."""
        size = _page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        page = self._store.list_flows(size, request.page_token)
        return rr.ListFlowsResponse(
            flows=[convert.flow_to_proto(flow) for flow in page.items],
            next_page_token=page.next_page_token,
        )

    @unary_errors
    def GetFlow(
        self, request: rr.GetFlowRequest, context: grpc.ServicerContext
    ) -> rr.GetFlowResponse:
        """One flow."""
        name = parse_flow_name(request.name)
        with _asked(request.name):
            flow = self._store.get_flow(name.flow)
        return rr.GetFlowResponse(flow=convert.flow_to_proto(flow))

    @unary_errors
    def ListRuns(
        self, request: rr.ListRunsRequest, context: grpc.ServicerContext
    ) -> rr.ListRunsResponse:
        """One page of a flow's runs, newest first, graphs left out."""
        parent = parse_flow_name(request.parent, "parent")
        size = _page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        states = []
        for number in request.states:
            try:
                states.append(RunState(number))
            except ValueError:
                raise InvalidArgumentError(
                    f"states holds an unknown run state {number}",
                    reason="INVALID_RUN_STATE",
                    metadata={"state": str(number)},
                ) from None
        with _asked(request.parent):
            page = self._store.list_runs(
                parent.flow, size, request.page_token, tags=list(request.tags), states=states
            )
        return rr.ListRunsResponse(
            runs=[convert.run_to_proto(run, with_graph=False) for run in page.items],
            next_page_token=page.next_page_token,
        )

    @unary_errors
    def GetRun(self, request: rr.GetRunRequest, context: grpc.ServicerContext) -> rr.GetRunResponse:
        """One run, with its graph."""
        name = parse_run_name(request.name)
        with _asked(request.name):
            run = self._store.get_run(name.flow, name.run)
        return rr.GetRunResponse(run=convert.run_to_proto(run, with_graph=True))

    # --- steps and tasks ----------------------------------------------------------------
    @unary_errors
    def ListSteps(
        self, request: rr.ListStepsRequest, context: grpc.ServicerContext
    ) -> rr.ListStepsResponse:
        """One page of a run's steps, in the order they first got a task."""
        parent = parse_run_name(request.parent, "parent")
        size = _page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        with _asked(request.parent):
            page = self._store.list_steps(parent.flow, parent.run, size, request.page_token)
        return rr.ListStepsResponse(
            steps=[convert.step_to_proto(step) for step in page.items],
            next_page_token=page.next_page_token,
        )

    @unary_errors
    def GetStep(
        self, request: rr.GetStepRequest, context: grpc.ServicerContext
    ) -> rr.GetStepResponse:
        """One step."""
        name = parse_step_name(request.name)
        with _asked(request.name):
            step = self._store.get_step(name.flow, name.run, name.step)
        return rr.GetStepResponse(step=convert.step_to_proto(step))

    @unary_errors
    def ListTasks(
        self, request: rr.ListTasksRequest, context: grpc.ServicerContext
    ) -> rr.ListTasksResponse:
        """One page of a step's tasks by task id, each at its latest attempt."""
        parent = parse_step_name(request.parent, "parent")
        size = _page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        with _asked(request.parent):
            page = self._store.list_tasks(
                parent.flow, parent.run, parent.step, size, request.page_token
            )
        return rr.ListTasksResponse(
            tasks=[convert.task_to_proto(task, task.latest) for task in page.items],
            next_page_token=page.next_page_token,
        )

    def _task(self, name: TaskName, asked: str) -> TaskRecord:
        """A task by name; NOT_FOUND unless it exists under that step."""
        with _asked(asked):
            task = self._store.get_task(name.flow, name.run, name.task)
        if task.step_name != name.step:
            raise NotFoundError(
                f"{asked} not found (task {name.task} belongs to step {task.step_name})",
                metadata={"name": asked},
            )
        return task

    @unary_errors
    def GetTask(
        self, request: rr.GetTaskRequest, context: grpc.ServicerContext
    ) -> rr.GetTaskResponse:
        """One task, at the attempt asked for or its latest."""
        name = parse_task_name(request.name)
        task = self._task(name, request.name)
        attempt = task.latest
        if request.HasField("attempt"):
            attempt = _attempt_of(task, request.attempt, request.name)
        return rr.GetTaskResponse(task=convert.task_to_proto(task, attempt))

    # --- artifacts ----------------------------------------------------------------------
    def _artifacts(
        self, name: TaskName, asked: str, attempt_asked: int | None
    ) -> tuple[AttemptRecord | None, Sequence[ArtifactRecord]]:
        task = self._task(name, asked)
        attempt = _artifact_attempt(task, attempt_asked, asked)
        if attempt is None:
            return None, ()
        with _asked(asked):
            records = self._store.list_artifacts(name.flow, name.run, name.task, attempt.attempt)
        return attempt, records

    @unary_errors
    def ListArtifacts(
        self, request: rr.ListArtifactsRequest, context: grpc.ServicerContext
    ) -> rr.ListArtifactsResponse:
        """One page of the artifacts of a task attempt, by name."""
        name = parse_task_name(request.parent, "parent")
        size = _page_size(request.page_size, DEFAULT_ARTIFACT_PAGE_SIZE, MAX_ARTIFACT_PAGE_SIZE)
        asked_attempt = request.attempt if request.HasField("attempt") else None
        scope: list[object] = [request.parent, asked_attempt, request.include_private]
        after = _artifact_cursor(request.page_token, scope)
        attempt, records = self._artifacts(name, request.parent, asked_attempt)
        if attempt is None:
            return rr.ListArtifactsResponse()
        selected = [
            record
            for record in records
            if record.name > after and (request.include_private or not record.name.startswith("_"))
        ]
        selected.sort(key=lambda record: record.name)
        page = selected[:size]
        token = _artifact_token(scope, page[-1].name) if len(selected) > size else ""
        return rr.ListArtifactsResponse(
            artifacts=[convert.artifact_to_proto(name, record, attempt) for record in page],
            next_page_token=token,
        )

    @unary_errors
    def GetArtifact(
        self, request: rr.GetArtifactRequest, context: grpc.ServicerContext
    ) -> rr.GetArtifactResponse:
        """One artifact's reference."""
        name = parse_artifact_name(request.name)
        asked_attempt = request.attempt if request.HasField("attempt") else None
        attempt, records = self._artifacts(name.parent, request.name, asked_attempt)
        for record in records:
            if record.name == name.artifact and attempt is not None:
                return rr.GetArtifactResponse(
                    artifact=convert.artifact_to_proto(name.parent, record, attempt)
                )
        raise NotFoundError(f"{request.name} not found", metadata={"name": request.name})

    # --- logs ---------------------------------------------------------------------------
    @unary_errors
    def ReadTaskLog(
        self, request: rr.ReadTaskLogRequest, context: grpc.ServicerContext
    ) -> rr.ReadTaskLogResponse:
        """A slice of a task attempt's stdout or stderr (at most 1 MiB)."""
        name = parse_task_name(request.task, "task")
        stream = _STREAMS.get(request.stream)
        if stream is None:
            raise InvalidArgumentError(
                "stream must be LOG_STREAM_STDOUT or LOG_STREAM_STDERR",
                reason="INVALID_LOG_STREAM",
                metadata={"stream": str(request.stream)},
            )
        if request.offset < 0:
            raise InvalidArgumentError(
                f"offset must be >= 0, got {request.offset}",
                metadata={"offset": str(request.offset)},
            )
        if request.max_bytes < 0:
            raise InvalidArgumentError(
                f"max_bytes must be >= 0, got {request.max_bytes}",
                metadata={"max_bytes": str(request.max_bytes)},
            )
        limit = MAX_LOG_READ_BYTES if request.max_bytes == 0 else request.max_bytes
        limit = min(limit, MAX_LOG_READ_BYTES)
        task = self._task(name, request.task)
        if request.HasField("attempt"):
            attempt: AttemptRecord | None = _attempt_of(task, request.attempt, request.task)
        else:
            attempt = task.latest
        # Decide "finished" before measuring the file: once finished, the log is complete.
        if attempt is not None:
            finished = attempt.state in _FINISHED_TASK
        else:
            with _asked(request.task):
                finished = self._store.get_run(name.flow, name.run).state in _FINISHED_RUN
        path = self._layout.task_log_path(
            name.flow,
            name.run,
            name.step,
            name.task,
            attempt.attempt if attempt is not None else 0,
            stream,
        )
        data = b""
        size = 0
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            pass
        else:
            try:
                size = os.fstat(fd).st_size
                if request.offset < size:
                    data = os.pread(fd, min(limit, size - request.offset), request.offset)
            finally:
                os.close(fd)
        next_offset = request.offset + len(data)
        return rr.ReadTaskLogResponse(
            data=data,
            next_offset=next_offset,
            eof=finished and next_offset >= size,
            size_bytes=size,
        )

    # --- tags ---------------------------------------------------------------------------
    @unary_errors
    def MutateRunTags(
        self, request: rr.MutateRunTagsRequest, context: grpc.ServicerContext
    ) -> rr.MutateRunTagsResponse:
        """Remove, then add user tags of a run, atomically (rules: ``domain/tags.py``)."""
        name = parse_run_name(request.run, "run")
        change = check_tag_change(request.add_tags, request.remove_tags)
        if self._tag_writer is None:
            raise CoreError(
                "this server cannot change tags", code=ErrorCode.UNIMPLEMENTED, reason="NO_WRITER"
            )
        with _asked(request.run):
            run = self._tag_writer.update_run_tags(name.flow, name.run, change, request.request_id)
        return rr.MutateRunTagsResponse(run=convert.run_to_proto(run, with_graph=False))
