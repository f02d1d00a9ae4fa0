"""Correct code over the SDK's public thin gRPC client (``polyflow.grpc``): typed arguments,
typed wire messages back."""

from __future__ import annotations

from polyflow.api.common.v1 import enums_pb2
from polyflow.api.metadata.v1 import message_pb2 as metadata_pb2
from polyflow.api.runtime.v1 import request_response_pb2 as runtime_rr
from polyflow.grpc import CoreClient, Stream, connect, name_from_pathspec, pathspec_from_name


def failed_runs(client: CoreClient, flow: str) -> list[str]:
    """Pathspecs of a flow's failed nightly runs."""
    runs = client.list_runs(
        name_from_pathspec(flow), tags=["nightly"], states=[enums_pb2.RUN_STATE_FAILED]
    )
    return [pathspec_from_name(run.name) for run in runs]


def follow(run_pathspec: str) -> int:
    """Count the events of a run until it finishes."""
    client = connect()
    events: Stream[runtime_rr.WatchRunResponse] = client.watch_run(
        name_from_pathspec(run_pathspec), exclude_logs=True
    )
    count = 0
    with events:
        for _ in events:
            count += 1
    run: metadata_pb2.Run = client.get_run(name_from_pathspec(run_pathspec))
    print(run.state == enums_pb2.RUN_STATE_SUCCEEDED, client.address)
    return count


def remote(address: str, token: str) -> str:
    """The version of a shared core."""
    client = CoreClient(address, token=token)
    return client.get_server_info(timeout=5.0).version
