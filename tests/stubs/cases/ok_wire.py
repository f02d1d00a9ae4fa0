"""Correct typed gRPC code: request messages built with typed fields, typed service stubs."""

from __future__ import annotations

import grpc
from polyflow.api.common.v1 import enums_pb2
from polyflow.api.metadata.v1 import message_pb2 as metadata_pb2
from polyflow.api.metadata.v1 import request_response_pb2 as metadata_rr
from polyflow.api.metadata.v1 import service_pb2_grpc as metadata_grpc
from polyflow.api.runtime.v1 import request_response_pb2 as runtime_rr
from polyflow.api.runtime.v1 import service_pb2_grpc as runtime_grpc


def successful_runs(channel: grpc.Channel, flow: str) -> list[str]:
    """Run ids of a flow's successful runs, page by page."""
    stub = metadata_grpc.MetadataServiceStub(channel)
    ids: list[str] = []
    token = ""
    while True:
        request = metadata_rr.ListRunsRequest(
            parent=f"flows/{flow}",
            page_size=50,
            page_token=token,
            tags=["nightly"],
            states=[enums_pb2.RUN_STATE_SUCCEEDED],
        )
        response: metadata_rr.ListRunsResponse = stub.ListRuns(request, timeout=10.0)
        run: metadata_pb2.Run
        for run in response.runs:
            state: enums_pb2.RunState.ValueType = run.state
            if state == enums_pb2.RUN_STATE_SUCCEEDED:
                ids.append(run.run_id)
        token = response.next_page_token
        if not token:
            return ids


def server_version(channel: grpc.Channel) -> str:
    """The core's version."""
    stub = runtime_grpc.RuntimeServiceStub(channel)
    info = stub.GetServerInfo(runtime_rr.GetServerInfoRequest())
    version: str = info.version
    return version
