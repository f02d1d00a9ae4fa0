"""Metadata records (``polyflow_core.metadata.base``) to ``polyflow.api`` messages.

Pure functions, no logic beyond the mapping: the servicers choose what to convert. Enum
numbers are shared by construction (``RunState``/``TaskState`` values are the proto numbers).
"""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2
from polyflow.api.common.v1 import enums_pb2, graph_pb2
from polyflow.api.metadata.v1 import message_pb2
from polyflow.api.runtime.v1 import message_pb2 as runtime_pb2

from polyflow_core.datastore.base import StoreLocationInfo
from polyflow_core.errors import CoreError, ErrorCode, InvalidArgumentError
from polyflow_core.metadata.base import (
    ArtifactRecord,
    AttemptRecord,
    ExceptionRecord,
    FlowRecord,
    ForeachFrameRecord,
    RunRecord,
    StepRecord,
    TaskRecord,
    TaskState,
)
from polyflow_core.services.names import (
    ArtifactName,
    FlowName,
    RunName,
    StepName,
    TaskName,
    parse_pathspec,
)

__all__ = [
    "artifact_ref_to_proto",
    "artifact_to_proto",
    "exception_to_proto",
    "flow_to_proto",
    "foreach_frame_to_proto",
    "run_to_proto",
    "step_to_proto",
    "store_location_to_proto",
    "task_name_of",
    "task_to_proto",
    "timestamp",
]


def timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    """A ``Timestamp`` of an aware datetime (naive ones are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def flow_to_proto(record: FlowRecord) -> message_pb2.Flow:
    """A ``Flow``."""
    return message_pb2.Flow(
        name=str(FlowName(record.flow_id)),
        flow_id=record.flow_id,
        create_time=timestamp(record.create_time),
    )


def run_to_proto(record: RunRecord, *, with_graph: bool) -> message_pb2.Run:
    """A ``Run``; its ``graph`` is parsed from the stored bytes only when ``with_graph``.

    Raises:
        CoreError: The stored graph cannot be parsed (DATA_LOSS, reason ``CORRUPT_GRAPH``).
    """
    message = message_pb2.Run(
        name=str(RunName(record.flow_id, record.run_id)),
        flow_id=record.flow_id,
        run_id=record.run_id,
        state=enums_pb2.RunState.ValueType(record.state.value),
        tags=record.tags,
        system_tags=record.system_tags,
        create_time=timestamp(record.create_time),
        user=record.user,
        failure_message=record.failure_message,
    )
    if record.finish_time is not None:
        message.finish_time.CopyFrom(timestamp(record.finish_time))
    if record.origin_run_id:
        message.origin_run = str(RunName(record.flow_id, record.origin_run_id))
    if record.end_task_id and record.end_step_name:
        message.end_task = str(
            TaskName(record.flow_id, record.run_id, record.end_step_name, record.end_task_id)
        )
    if with_graph and record.graph:
        try:
            message.graph.CopyFrom(graph_pb2.FlowGraph.FromString(record.graph))
        except Exception as exc:  # protobuf's DecodeError, kept generic for its backends
            raise CoreError(
                f"the stored graph of run {record.flow_id}/{record.run_id} cannot be read",
                code=ErrorCode.DATA_LOSS,
                reason="CORRUPT_GRAPH",
                metadata={"flow_id": record.flow_id, "run_id": record.run_id},
            ) from exc
    return message


def step_to_proto(record: StepRecord) -> message_pb2.Step:
    """A ``Step``."""
    message = message_pb2.Step(
        name=str(StepName(record.flow_id, record.run_id, record.step_name)),
        step_name=record.step_name,
        create_time=timestamp(record.create_time),
    )
    if record.finish_time is not None:
        message.finish_time.CopyFrom(timestamp(record.finish_time))
    return message


def foreach_frame_to_proto(frame: ForeachFrameRecord) -> graph_pb2.ForeachFrame:
    """A ``ForeachFrame``."""
    return graph_pb2.ForeachFrame(
        step=frame.step,
        var=frame.var,
        index=frame.index,
        num_splits=frame.num_splits,
        value_repr=frame.value_repr,
    )


def exception_to_proto(record: ExceptionRecord) -> graph_pb2.ExceptionInfo:
    """An ``ExceptionInfo``."""
    return graph_pb2.ExceptionInfo(
        type=record.type, message=record.message, traceback=record.traceback
    )


def task_name_of(record: TaskRecord) -> TaskName:
    """The resource name of a task."""
    return TaskName(record.flow_id, record.run_id, record.step_name, record.task_id)


def _input_name(pathspec: str) -> str:
    """Resource name of an input task's pathspec (kept as is if it is not one)."""
    try:
        return str(parse_pathspec(pathspec))
    except InvalidArgumentError:
        return pathspec


def task_to_proto(record: TaskRecord, attempt: AttemptRecord | None) -> message_pb2.Task:
    """A ``Task`` describing ``attempt`` (normally ``record.latest``; None for a task with
    no attempt yet, which reads as PENDING attempt 0). Metadata is the task-level metadata
    with the attempt's own on top."""
    metadata = dict(record.metadata)
    message = message_pb2.Task(
        name=str(task_name_of(record)),
        task_id=record.task_id,
        step_name=record.step_name,
        state=enums_pb2.TaskState.ValueType(
            attempt.state.value if attempt is not None else TaskState.PENDING.value
        ),
        attempt=attempt.attempt if attempt is not None else 0,
        attempt_count=len(record.attempts),
        create_time=timestamp(record.create_time),
        foreach_stack=[foreach_frame_to_proto(frame) for frame in record.foreach_stack],
        input_tasks=[_input_name(pathspec) for pathspec in record.input_tasks],
    )
    if record.origin_task:
        message.origin_task = _input_name(record.origin_task)
    if attempt is not None:
        metadata.update(attempt.metadata)
        if attempt.start_time is not None:
            message.start_time.CopyFrom(timestamp(attempt.start_time))
        if attempt.finish_time is not None:
            message.finish_time.CopyFrom(timestamp(attempt.finish_time))
        if attempt.exception is not None:
            message.exception.CopyFrom(exception_to_proto(attempt.exception))
        message.failure_message = attempt.failure_message
        message.next_steps.extend(attempt.next_steps)
    message.metadata.update(metadata)
    return message


def artifact_ref_to_proto(record: ArtifactRecord) -> graph_pb2.ArtifactRef:
    """An ``ArtifactRef``."""
    return graph_pb2.ArtifactRef(
        name=record.name,
        digest=record.digest,
        encoding=record.encoding,
        size_bytes=record.size_bytes,
        type_name=record.type_name,
    )


def artifact_to_proto(
    task: TaskName, record: ArtifactRecord, attempt: AttemptRecord
) -> message_pb2.Artifact:
    """An ``Artifact`` stored by ``attempt`` of ``task``."""
    message = message_pb2.Artifact(
        name=str(ArtifactName(task.flow, task.run, task.step, task.task, record.name)),
        ref=artifact_ref_to_proto(record),
        attempt=attempt.attempt,
    )
    if attempt.finish_time is not None:
        message.create_time.CopyFrom(timestamp(attempt.finish_time))
    return message


def store_location_to_proto(location: StoreLocationInfo) -> runtime_pb2.StoreLocation:
    """A ``StoreLocation``."""
    return runtime_pb2.StoreLocation(
        kind=location["kind"], root=location["root"], options=dict(location["options"])
    )
