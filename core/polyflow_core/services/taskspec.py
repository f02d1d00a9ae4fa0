"""Runtime messages <-> the scheduler's plain objects.

- :func:`encode_task_spec` serializes a :class:`~polyflow_core.domain.execution.TaskSpecData`
  as a ``runtime.v1.TaskSpec`` (the scheduler gets it injected, so the domain code needs no
  protobuf);
- :func:`outcome_from_proto`, :func:`options_from_proto`, :func:`environment_from_proto` read
  what clients and workers send;
- :func:`event_to_proto` writes a run event for ``WatchRun``.
"""

from __future__ import annotations

from polyflow.api.common.v1 import enums_pb2, graph_pb2
from polyflow.api.runtime.v1 import message_pb2

from polyflow_core.domain.events import (
    LogLine,
    RunEvent,
    RunFinished,
    RunMessage,
    TaskFinished,
    TaskStarted,
)
from polyflow_core.domain.execution import (
    DEFAULT_MAX_LOG_SIZE_BYTES,
    DEFAULT_MAX_NUM_SPLITS,
    DEFAULT_MAX_WORKERS,
    RunOptions,
    TaskOutcome,
    TaskSpecData,
    WorkerEnvironment,
)
from polyflow_core.domain.model import Language
from polyflow_core.errors import InvalidArgumentError
from polyflow_core.metadata.base import ArtifactRecord, ExceptionRecord
from polyflow_core.services.convert import (
    artifact_ref_to_proto,
    exception_to_proto,
    foreach_frame_to_proto,
    store_location_to_proto,
    timestamp,
)
from polyflow_core.services.names import parse_pathspec

__all__ = [
    "artifact_from_proto",
    "encode_task_spec",
    "environment_from_proto",
    "event_to_proto",
    "exception_from_proto",
    "options_from_proto",
    "outcome_from_proto",
]

_STREAMS = {"stdout": enums_pb2.LOG_STREAM_STDOUT, "stderr": enums_pb2.LOG_STREAM_STDERR}


def encode_task_spec(spec: TaskSpecData) -> bytes:
    """The serialized ``TaskSpec`` of one attempt."""
    message = message_pb2.TaskSpec(
        task=str(parse_pathspec(f"{spec.flow}/{spec.run}/{spec.step}/{spec.task}")),
        flow_name=spec.flow,
        run_id=spec.run,
        step_name=spec.step,
        task_id=spec.task,
        attempt=spec.attempt,
        inputs=[
            message_pb2.TaskInput(
                pathspec=item.pathspec,
                step=item.step,
                artifacts=[artifact_ref_to_proto(a) for a in item.artifacts],
                foreach_stack=[foreach_frame_to_proto(f) for f in item.foreach_stack],
            )
            for item in spec.inputs
        ],
        foreach_stack=[foreach_frame_to_proto(frame) for frame in spec.foreach_stack],
        max_num_splits=spec.max_num_splits,
        code_path=spec.code_path,
        core_address=spec.core_address,
        store=store_location_to_proto(spec.store),
        user=spec.user,
        tags=spec.tags,
        origin_run_id=spec.origin_run_id,
        parameter_names=spec.parameter_names,
        namespace=spec.namespace,
        token=spec.token,
        max_user_code_retries=spec.max_user_code_retries,
        previous_failure_message=spec.previous_failure_message,
    )
    # The graph is stored serialized with the run: merge its bytes rather than rebuild it.
    message.graph.MergeFromString(spec.graph_bytes)
    return message.SerializeToString()


def artifact_from_proto(ref: graph_pb2.ArtifactRef) -> ArtifactRecord:
    """An artifact reference as the metadata store records it."""
    return ArtifactRecord(
        name=ref.name,
        digest=ref.digest,
        encoding=ref.encoding,
        size_bytes=ref.size_bytes,
        type_name=ref.type_name,
    )


def exception_from_proto(info: graph_pb2.ExceptionInfo) -> ExceptionRecord:
    """An exception as the metadata store records it."""
    return ExceptionRecord(type=info.type, message=info.message, traceback=info.traceback)


def outcome_from_proto(outcome: message_pb2.TaskOutcome) -> TaskOutcome:
    """A worker's report."""
    return TaskOutcome(
        succeeded=outcome.succeeded,
        artifacts=tuple(artifact_from_proto(ref) for ref in outcome.artifacts),
        next_steps=tuple(outcome.next_steps),
        foreach_num_splits=outcome.foreach_num_splits,
        foreach_value_reprs=tuple(outcome.foreach_value_reprs),
        exception=(
            exception_from_proto(outcome.exception) if outcome.HasField("exception") else None
        ),
        failure_message=outcome.failure_message,
        metadata=dict(outcome.metadata),
        blobs_unsynced=outcome.blobs_unsynced,
    )


def options_from_proto(options: message_pb2.RunOptions) -> RunOptions:
    """Run options with defaults for unset (zero) fields.

    Raises:
        InvalidArgumentError: A negative bound (reason ``INVALID_RUN_OPTIONS``).
    """
    for field, value in (
        ("max_workers", options.max_workers),
        ("max_num_splits", options.max_num_splits),
        ("max_log_size_bytes", options.max_log_size_bytes),
    ):
        if value < 0:
            raise InvalidArgumentError(
                f"options.{field} must be at least 1 (0 means the default), got {value}",
                reason="INVALID_RUN_OPTIONS",
                metadata={"field": field, "value": str(value)},
            )
    return RunOptions(
        max_workers=options.max_workers or DEFAULT_MAX_WORKERS,
        max_num_splits=options.max_num_splits or DEFAULT_MAX_NUM_SPLITS,
        max_log_size_bytes=options.max_log_size_bytes or DEFAULT_MAX_LOG_SIZE_BYTES,
    )


def environment_from_proto(environment: message_pb2.WorkerEnvironment) -> WorkerEnvironment:
    """The client's worker environment (unknown languages are ignored)."""
    interpreters: dict[Language, str] = {}
    for interpreter in environment.interpreters:
        try:
            language = Language(interpreter.language)
        except ValueError:
            continue
        if language is not Language.UNSPECIFIED and interpreter.executable:
            interpreters.setdefault(language, interpreter.executable)
    return WorkerEnvironment(
        interpreters=interpreters,
        working_directory=environment.working_directory,
        variables=dict(environment.variables),
        code_path=environment.code_path,
    )


def _task_name(pathspec: str) -> str:
    """The resource name of a pathspec."""
    return str(parse_pathspec(pathspec))


def event_to_proto(event: RunEvent) -> message_pb2.RunEvent:
    """A ``RunEvent`` message."""
    message = message_pb2.RunEvent(sequence=event.sequence, time=timestamp(event.time))
    payload = event.payload
    if isinstance(payload, LogLine):
        message.log_line.CopyFrom(
            message_pb2.LogLineEvent(
                pathspec=payload.pathspec,
                attempt=payload.attempt,
                stream=_STREAMS[payload.stream],
                text=payload.text,
            )
        )
    elif isinstance(payload, TaskStarted):
        message.task_started.CopyFrom(
            message_pb2.TaskStartedEvent(
                task=_task_name(payload.pathspec),
                pathspec=payload.pathspec,
                attempt=payload.attempt,
                cloned=payload.cloned,
            )
        )
    elif isinstance(payload, TaskFinished):
        finished = message_pb2.TaskFinishedEvent(
            task=_task_name(payload.pathspec),
            pathspec=payload.pathspec,
            attempt=payload.attempt,
            state=enums_pb2.TaskState.ValueType(payload.state.value),
            failure_message=payload.failure_message,
            will_retry=payload.will_retry,
            cloned=payload.cloned,
        )
        if payload.exception is not None:
            finished.exception.CopyFrom(exception_to_proto(payload.exception))
        message.task_finished.CopyFrom(finished)
    elif isinstance(payload, RunFinished):
        message.run_finished.CopyFrom(
            message_pb2.RunFinishedEvent(
                state=enums_pb2.RunState.ValueType(payload.state.value),
                failure_message=payload.failure_message,
            )
        )
    elif isinstance(payload, RunMessage):
        message.message.CopyFrom(message_pb2.RunMessageEvent(text=payload.text))
    return message
