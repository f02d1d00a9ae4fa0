"""Reporting a task's end to the core: ``RuntimeService.CompleteTask``.

The gRPC channel is created here, when reporting, never at import: a pre-forked worker
must not initialise gRPC before it forks.
"""

from __future__ import annotations

import time

from polyflow._worker.spec import TaskSpecData
from polyflow._worker.task import TaskResult
from polyflow.api.common.v1 import graph_pb2
from polyflow.api.runtime.v1 import message_pb2, request_response_pb2

__all__ = ["complete_task", "grpc_target", "outcome_to_proto"]

_ATTEMPTS = 5
_TIMEOUT_SECONDS = 60.0


def outcome_to_proto(result: TaskResult) -> message_pb2.TaskOutcome:
    """The wire form of a task's result."""
    outcome = message_pb2.TaskOutcome(
        succeeded=result.succeeded,
        artifacts=[
            graph_pb2.ArtifactRef(
                name=a.name,
                digest=a.digest,
                encoding=a.encoding,
                size_bytes=a.size,
                type_name=a.type_name,
            )
            for a in result.artifacts
        ],
        next_steps=list(result.next_steps),
        foreach_num_splits=result.foreach_num_splits,
        foreach_value_reprs=list(result.foreach_value_reprs),
        failure_message=result.failure_message,
    )
    if result.exception is not None:
        outcome.exception.CopyFrom(
            graph_pb2.ExceptionInfo(
                type=result.exception.type,
                message=result.exception.message,
                traceback=result.exception.traceback,
            )
        )
    return outcome


def grpc_target(address: str) -> tuple[str, bool]:
    """The gRPC target for a core address and whether it needs TLS.

    ``unix:/path`` and ``host:port`` are used as they are; ``http://`` and ``grpc://``
    prefixes are dropped; ``https://`` and ``grpcs://`` mean TLS.
    """
    for scheme, secure in (("https://", True), ("grpcs://", True), ("http://", False)):
        if address.startswith(scheme):
            return address[len(scheme) :].rstrip("/"), secure
    if address.startswith("grpc://"):
        return address[len("grpc://") :].rstrip("/"), False
    return address, False


def complete_task(spec: TaskSpecData, result: TaskResult) -> None:
    """Send the result to the core, retrying briefly while it is unavailable.

    Raises:
        grpc.RpcError: The core refused the report or stayed unreachable.
    """
    import grpc

    from polyflow.api.runtime.v1 import service_pb2_grpc

    request = request_response_pb2.CompleteTaskRequest(
        task=spec.task, attempt=spec.attempt, outcome=outcome_to_proto(result)
    )
    metadata = (("authorization", f"Bearer {spec.token}"),) if spec.token else ()
    target, secure = grpc_target(spec.core_address)
    if secure:
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials())
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        stub = service_pb2_grpc.RuntimeServiceStub(channel)
        for attempt in range(_ATTEMPTS):
            try:
                stub.CompleteTask(request, timeout=_TIMEOUT_SECONDS, metadata=metadata)
                return
            except grpc.RpcError as error:
                code = error.code() if isinstance(error, grpc.Call) else None
                if code is not grpc.StatusCode.UNAVAILABLE or attempt == _ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * 2**attempt)  # about 1.5 s in all
