"""Typed access to the core's gRPC contract, for code that calls it directly.

:class:`CoreClient` is the SDK's thin client of the core: one typed method per RPC a client
makes, taking plain values and returning the generated messages of :mod:`polyflow.api`
(whose ``.pyi`` type every field). Errors arrive as :mod:`polyflow.exceptions` classes (an
:class:`~polyflow.exceptions.RPCError` subclass per status code), never as
``grpc.RpcError``; list calls walk every page.

Example::

    from polyflow.grpc import connect

    client = connect()  # this project's core; a local daemon is started when none runs
    for run in client.list_runs("flows/HelloFlow"):
        print(run.run_id, run.state)

For an RPC the client does not wrap, build its request message and call the generated stub
(``polyflow.api.<domain>.v1.service_pb2_grpc``) over :func:`get_channel`.
"""

from __future__ import annotations

from polyflow._daemon import get_client as connect
from polyflow._transport import (
    CoreClient,
    Stream,
    get_channel,
    name_from_pathspec,
    pathspec_from_name,
)

__all__ = [
    "CoreClient",
    "Stream",
    "connect",
    "get_channel",
    "name_from_pathspec",
    "pathspec_from_name",
]
