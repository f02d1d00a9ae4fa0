"""The SDK's gRPC layer: channels to the core, typed call wrappers and error conversion.

Everything else in the SDK talks to the core through :class:`CoreClient`; nothing outside this
module catches ``grpc.RpcError``. Errors become :mod:`polyflow.exceptions` classes, parsed from
the ``google.rpc.Status`` the core attaches (its ``ErrorInfo`` reason, metadata and typed
details).

Channels are cached per address for the whole process and created on first use, never at
import. grpcio is not fork-safe: a child process must not touch its parent's channels, so an
``os.register_at_fork`` hook forgets them in the child (without closing them, which would
touch the parent's gRPC state) and the child opens its own on first use.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from polyflow.api.common.v1 import enums_pb2, graph_pb2
from polyflow.api.datastore.v1 import request_response_pb2 as datastore_rr
from polyflow.api.datastore.v1 import service_pb2_grpc as datastore_grpc
from polyflow.api.errordetails.v1 import message_pb2 as errordetails_pb2
from polyflow.api.metadata.v1 import message_pb2 as metadata_pb2
from polyflow.api.metadata.v1 import request_response_pb2 as metadata_rr
from polyflow.api.metadata.v1 import service_pb2_grpc as metadata_grpc
from polyflow.api.runtime.v1 import message_pb2 as runtime_pb2
from polyflow.api.runtime.v1 import request_response_pb2 as runtime_rr
from polyflow.api.runtime.v1 import service_pb2_grpc as runtime_grpc
from polyflow.exceptions import (
    AlreadyExistsError,
    DataLossError,
    DeadlineExceededError,
    FailedPreconditionError,
    GraphError,
    GraphProblem,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PolyflowError,
    ResourceExhaustedError,
    RPCError,
    UnauthenticatedError,
    UnavailableError,
)

__all__ = [
    "CHUNK_SIZE",
    "CoreClient",
    "Stream",
    "close_all_channels",
    "convert_rpc_error",
    "get_channel",
    "grpc_target",
    "name_from_pathspec",
    "pathspec_from_name",
]

CHUNK_SIZE = 1024 * 1024
"""Largest chunk of blob bytes in one message (the contract's limit: 1 MiB)."""

DEFAULT_TIMEOUT = 120.0
"""Deadline of a unary call, in seconds, so a hung core never hangs a client forever."""

_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # The default reconnect backoff grows to minutes; a client that waits for a daemon it
    # just spawned must see it answer within a fraction of a second.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]

_RESOURCE_KEYS = ("flows", "runs", "steps", "tasks", "artifacts")

_lock = threading.Lock()
_channels: dict[str, grpc.Channel] = {}
# Channels inherited over a fork. They are kept referenced forever so that their destructor
# never runs in the child (it would call into the parent's gRPC state).
_abandoned: list[grpc.Channel] = []


def _forget_channels_after_fork() -> None:
    global _lock
    _abandoned.extend(_channels.values())
    _channels.clear()
    # The parent may have held the lock while forking; the child gets a fresh one.
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_channels_after_fork)


def grpc_target(address: str) -> str:
    """Turn a core address into a gRPC target.

    Args:
        address: ``unix:/path/daemon.sock``, ``unix:///path``, ``host:port``,
            ``http://host:port`` or ``https://host:port``.

    Returns:
        The target string for ``grpc.*_channel``.
    """
    for scheme in ("http://", "https://", "grpc://", "grpcs://"):
        if address.startswith(scheme):
            return address[len(scheme) :].rstrip("/")
    return address


def _is_secure(address: str) -> bool:
    return address.startswith(("https://", "grpcs://"))


def get_channel(address: str) -> grpc.Channel:
    """Return this process's channel to ``address``, creating it on first use.

    Args:
        address: A core address (see :func:`grpc_target`).

    Returns:
        A channel shared by every caller in this process.
    """
    with _lock:
        channel = _channels.get(address)
        if channel is None:
            target = grpc_target(address)
            if _is_secure(address):
                channel = grpc.secure_channel(
                    target, grpc.ssl_channel_credentials(), options=_CHANNEL_OPTIONS
                )
            else:
                channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
            _channels[address] = channel
        return channel


def close_all_channels() -> None:
    """Close every cached channel (tests and long-lived tools use this)."""
    with _lock:
        channels = list(_channels.values())
        _channels.clear()
    for channel in channels:
        channel.close()


def pathspec_from_name(name: str) -> str:
    """Turn a resource name into a pathspec.

    Args:
        name: e.g. ``flows/HelloFlow/runs/3/steps/start``.

    Returns:
        e.g. ``HelloFlow/3/start``; the name itself when it is not a resource name.
    """
    parts = name.split("/")
    if len(parts) % 2 or tuple(parts[0::2]) != _RESOURCE_KEYS[: len(parts) // 2]:
        return name
    return "/".join(parts[1::2])


def name_from_pathspec(pathspec: str) -> str:
    """Turn a pathspec into a resource name.

    Args:
        pathspec: e.g. ``HelloFlow/3/start``.

    Returns:
        e.g. ``flows/HelloFlow/runs/3/steps/start``.
    """
    ids = pathspec.split("/")
    return "/".join(f"{key}/{value}" for key, value in zip(_RESOURCE_KEYS, ids, strict=False))


_DETAIL_TYPES: tuple[type[Message], ...] = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
    error_details_pb2.DebugInfo,
    error_details_pb2.QuotaFailure,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.ResourceInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
    errordetails_pb2.GraphValidationFailure,
    errordetails_pb2.BlobDigestMismatch,
)

_ERRORS_BY_CODE: dict[grpc.StatusCode, type[RPCError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DATA_LOSS: DataLossError,
    grpc.StatusCode.INTERNAL: InternalError,
}


def _unpack_detail(detail: any_pb2.Any) -> Message:
    for detail_type in _DETAIL_TYPES:
        if detail.Is(detail_type.DESCRIPTOR):  # type: ignore[arg-type]
            message = detail_type()
            detail.Unpack(message)
            return message
    return detail


def graph_problem_from_proto(problem: runtime_pb2.GraphProblem) -> GraphProblem:
    """Convert a wire GraphProblem into the SDK's :class:`~polyflow.exceptions.GraphProblem`.

    Args:
        problem: The wire message.

    Returns:
        The plain value.
    """
    return GraphProblem(
        message=problem.message,
        rule=problem.rule,
        step=problem.step,
        file=problem.file,
        line=problem.line,
    )


def convert_rpc_error(error: grpc.RpcError, method: str = "") -> PolyflowError:
    """Turn a ``grpc.RpcError`` into the matching Polyflow error.

    Args:
        error: What gRPC raised.
        method: The RPC called, for the error's ``method`` attribute.

    Returns:
        A :class:`~polyflow.exceptions.GraphError` when the status carries a
        GraphValidationFailure, a :class:`~polyflow.exceptions.NotFoundError` for NOT_FOUND
        (naming the pathspec), else the :class:`~polyflow.exceptions.RPCError` subclass of the
        status code.
    """
    if isinstance(error, grpc.Call):
        code = error.code()
        message = error.details() or ""
        try:
            status = rpc_status.from_call(error)
        except ValueError:
            # The rich status disagrees with the call's own status; trust the call.
            status = None
    else:  # A bare RpcError (e.g. from a custom interceptor) has no status at all.
        code, message, status = grpc.StatusCode.UNKNOWN, str(error), None
    details: list[Message] = (
        [_unpack_detail(d) for d in status.details] if status is not None else []
    )
    reason = ""
    metadata: dict[str, str] = {}
    for detail in details:
        if isinstance(detail, error_details_pb2.ErrorInfo):
            reason = detail.reason
            metadata = dict(detail.metadata)
        if isinstance(detail, errordetails_pb2.GraphValidationFailure):
            problems = [graph_problem_from_proto(p) for p in detail.problems]
            return GraphError(problems=problems)
    code_name = code.name
    if code is grpc.StatusCode.NOT_FOUND or reason == "NOT_FOUND":
        pathspec = pathspec_from_name(metadata.get("name", ""))
        return NotFoundError(
            f"{pathspec!r} does not exist" if pathspec else message,
            pathspec=pathspec,
            code=code_name,
            reason=reason,
            metadata=metadata,
            details=details,
            method=method,
        )
    error_class = _ERRORS_BY_CODE.get(code, RPCError)
    return error_class(
        message, code=code_name, reason=reason, metadata=metadata, details=details, method=method
    )


RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

_CACHED_READS = frozenset(
    {
        "ListFlows",
        "GetFlow",
        "ListRuns",
        "GetRun",
        "ListSteps",
        "GetStep",
        "ListTasks",
        "GetTask",
        "ListArtifacts",
        "GetArtifact",
    }
)
"""Metadata reads a client may answer from its cache while the change stamp is unchanged
(never task logs: they grow without a commit)."""
_CACHE_ENTRIES = 2048
"""Most cached answers kept (least recently used go first)."""


class Stream(Generic[ResponseT]):
    """A server stream whose errors arrive as Polyflow errors; :meth:`cancel` stops it."""

    def __init__(self, call: Any, method: str) -> None:
        """Wrap a gRPC response iterator.

        Args:
            call: The iterator returned by a unary-stream multicallable (also a ``grpc.Call``).
            method: The RPC's name, for errors.
        """
        self._call = call
        self._method = method

    def __iter__(self) -> Iterator[ResponseT]:
        return self

    def __next__(self) -> ResponseT:
        try:
            item: ResponseT = next(self._call)
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call) and error.code() is grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise convert_rpc_error(error, self._method) from None
        return item

    def cancel(self) -> None:
        """Stop the stream; iteration then ends."""
        self._call.cancel()

    def __enter__(self) -> Stream[ResponseT]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class CoreClient:
    """Typed, thin wrappers over every RPC of the core that a client makes.

    Calls return the wire response (or its payload) and raise :mod:`polyflow.exceptions`
    errors. List calls are generators that walk every page.
    """

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        reconnect: Callable[[], None] | None = None,
        change_stamp: Callable[[], int | None] | None = None,
    ) -> None:
        """Create a client.

        Args:
            address: The core's address.
            token: A bearer token sent with every call, for a core that wants one.
            reconnect: Called when a read finds the core unavailable (e.g. a local daemon
                that exited when idle); it should make the core answer again. The read is
                then retried once.
            change_stamp: Reads the core's change stamp (:mod:`polyflow_core.stamp`; a
                local daemon's); metadata reads are then answered from a cache while the
                stamp stays what it was when they were made.
        """
        self.address = address
        channel = get_channel(address)
        self._runtime = runtime_grpc.RuntimeServiceStub(channel)
        self._metadata = metadata_grpc.MetadataServiceStub(channel)
        self._datastore = datastore_grpc.DatastoreServiceStub(channel)
        self._call_metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._reconnect = reconnect
        self._store_info: runtime_pb2.StoreLocation | None = None
        self._stamp = change_stamp
        self._cache: OrderedDict[tuple[str, bytes], tuple[int, Message]] = OrderedDict()
        self._cache_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------

    def _unary(
        self,
        name: str,
        method: grpc.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: bool = True,
        wait_for_ready: bool | None = None,
    ) -> ResponseT:
        if self._stamp is not None and name in _CACHED_READS:
            return self._cached_unary(name, method, request, timeout=timeout, retry=retry)
        return self._call_unary(
            name, method, request, timeout=timeout, retry=retry, wait_for_ready=wait_for_ready
        )

    def _cached_unary(
        self,
        name: str,
        method: grpc.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        *,
        timeout: float | None,
        retry: bool,
    ) -> ResponseT:
        """A metadata read, answered from the cache while the change stamp is the one it
        had when the answer was fetched (the stamp is read *before* the call: a commit
        during the call makes the answer stale at once). Callers get their own copy."""
        assert self._stamp is not None
        stamp = self._stamp()
        if stamp is None:
            return self._call_unary(name, method, request, timeout=timeout, retry=retry)
        key = (name, cast(Message, request).SerializeToString())
        with self._cache_lock:
            found = self._cache.get(key)
            if found is not None and found[0] == stamp:
                self._cache.move_to_end(key)
                copy = type(found[1])()
                copy.CopyFrom(found[1])
                return cast(ResponseT, copy)
        response = self._call_unary(name, method, request, timeout=timeout, retry=retry)
        kept = type(cast(Message, response))()
        kept.CopyFrom(cast(Message, response))
        with self._cache_lock:
            self._cache[key] = (stamp, kept)
            self._cache.move_to_end(key)
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return response

    def _call_unary(
        self,
        name: str,
        method: grpc.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: bool = True,
        wait_for_ready: bool | None = None,
    ) -> ResponseT:
        try:
            return method(
                request,
                timeout=timeout,
                metadata=self._call_metadata,
                wait_for_ready=wait_for_ready,
            )
        except grpc.RpcError as error:
            converted = convert_rpc_error(error, name)
        if not (retry and self._reconnect and isinstance(converted, UnavailableError)):
            raise converted
        self._reconnect()
        try:
            return method(request, timeout=timeout, metadata=self._call_metadata)
        except grpc.RpcError as error:
            raise convert_rpc_error(error, name) from None

    def _stream(
        self,
        name: str,
        method: grpc.UnaryStreamMultiCallable[RequestT, ResponseT],
        request: RequestT,
        *,
        timeout: float | None = None,
    ) -> Stream[ResponseT]:
        call = method(request, timeout=timeout, metadata=self._call_metadata)
        return Stream(call, name)

    @staticmethod
    def _pages(fetch: Callable[[str], tuple[Sequence[ResponseT], str]]) -> Iterator[ResponseT]:
        token = ""
        while True:
            items, token = fetch(token)
            yield from items
            if not token:
                return

    # -- RuntimeService -------------------------------------------------------------------

    def get_server_info(
        self,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: bool = True,
        wait_for_ready: bool = False,
    ) -> runtime_rr.GetServerInfoResponse:
        """Describe the core (version, address, root, stores, pid)."""
        return self._unary(
            "GetServerInfo",
            self._runtime.GetServerInfo,
            runtime_rr.GetServerInfoRequest(),
            timeout=timeout,
            retry=retry,
            wait_for_ready=wait_for_ready,
        )

    def validate_graph(self, graph: graph_pb2.FlowGraph) -> runtime_rr.ValidateGraphResponse:
        """Check a graph; the response lists every problem and the derived graph."""
        return self._unary(
            "ValidateGraph",
            self._runtime.ValidateGraph,
            runtime_rr.ValidateGraphRequest(graph=graph),
        )

    def start_run(self, request: runtime_rr.StartRunRequest) -> metadata_pb2.Run:
        """Create and start a run.

        A ``request_id`` is filled in when absent, so that the retry after an unavailable
        core returns the run the first call created instead of starting a second one.
        """
        if not request.request_id:
            request.request_id = uuid.uuid4().hex
        return self._unary("StartRun", self._runtime.StartRun, request).run

    def watch_run(
        self, run: str, *, after_sequence: int = 0, exclude_logs: bool = False
    ) -> Stream[runtime_rr.WatchRunResponse]:
        """Follow a run's events (``run`` is a resource name) until it finishes."""
        request = runtime_rr.WatchRunRequest(
            run=run, after_sequence=after_sequence, exclude_logs=exclude_logs
        )
        return self._stream("WatchRun", self._runtime.WatchRun, request)

    def cancel_run(self, run: str, reason: str = "") -> metadata_pb2.Run:
        """Stop a run (``run`` is a resource name)."""
        request = runtime_rr.CancelRunRequest(run=run, reason=reason)
        return self._unary("CancelRun", self._runtime.CancelRun, request, retry=False).run

    # -- MetadataService ------------------------------------------------------------------

    def list_flows(self, page_size: int = 100) -> Iterator[metadata_pb2.Flow]:
        """Every flow with at least one run, by name."""

        def fetch(token: str) -> tuple[Sequence[metadata_pb2.Flow], str]:
            request = metadata_rr.ListFlowsRequest(page_size=page_size, page_token=token)
            response = self._unary("ListFlows", self._metadata.ListFlows, request)
            return response.flows, response.next_page_token

        return self._pages(fetch)

    def get_flow(self, name: str) -> metadata_pb2.Flow:
        """Read one flow (``flows/{flow}``)."""
        request = metadata_rr.GetFlowRequest(name=name)
        return self._unary("GetFlow", self._metadata.GetFlow, request).flow

    def list_runs(
        self,
        parent: str,
        *,
        tags: Iterable[str] = (),
        states: Iterable[enums_pb2.RunState.ValueType] = (),
        page_size: int = 100,
    ) -> Iterator[metadata_pb2.Run]:
        """A flow's runs, newest first, keeping those with every tag and one of the states."""
        tag_list, state_list = list(tags), list(states)

        def fetch(token: str) -> tuple[Sequence[metadata_pb2.Run], str]:
            request = metadata_rr.ListRunsRequest(
                parent=parent,
                page_size=page_size,
                page_token=token,
                tags=tag_list,
                states=state_list,
            )
            response = self._unary("ListRuns", self._metadata.ListRuns, request)
            return response.runs, response.next_page_token

        return self._pages(fetch)

    def get_run(self, name: str) -> metadata_pb2.Run:
        """Read one run, graph included."""
        return self._unary(
            "GetRun", self._metadata.GetRun, metadata_rr.GetRunRequest(name=name)
        ).run

    def list_steps(self, parent: str, page_size: int = 100) -> Iterator[metadata_pb2.Step]:
        """A run's steps that have tasks, in the order they first ran."""

        def fetch(token: str) -> tuple[Sequence[metadata_pb2.Step], str]:
            request = metadata_rr.ListStepsRequest(
                parent=parent, page_size=page_size, page_token=token
            )
            response = self._unary("ListSteps", self._metadata.ListSteps, request)
            return response.steps, response.next_page_token

        return self._pages(fetch)

    def get_step(self, name: str) -> metadata_pb2.Step:
        """Read one step."""
        request = metadata_rr.GetStepRequest(name=name)
        return self._unary("GetStep", self._metadata.GetStep, request).step

    def list_tasks(self, parent: str, page_size: int = 100) -> Iterator[metadata_pb2.Task]:
        """A step's tasks by ascending id, each at its latest attempt."""

        def fetch(token: str) -> tuple[Sequence[metadata_pb2.Task], str]:
            request = metadata_rr.ListTasksRequest(
                parent=parent, page_size=page_size, page_token=token
            )
            response = self._unary("ListTasks", self._metadata.ListTasks, request)
            return response.tasks, response.next_page_token

        return self._pages(fetch)

    def get_task(self, name: str, attempt: int | None = None) -> metadata_pb2.Task:
        """Read one task at its latest attempt, or at ``attempt``."""
        request = metadata_rr.GetTaskRequest(name=name, attempt=attempt)
        return self._unary("GetTask", self._metadata.GetTask, request).task

    def list_artifacts(
        self,
        parent: str,
        *,
        attempt: int | None = None,
        include_private: bool = False,
        page_size: int = 1000,
    ) -> Iterator[metadata_pb2.Artifact]:
        """A task attempt's artifacts by name (latest successful attempt by default)."""

        def fetch(token: str) -> tuple[Sequence[metadata_pb2.Artifact], str]:
            request = metadata_rr.ListArtifactsRequest(
                parent=parent,
                attempt=attempt,
                page_size=page_size,
                page_token=token,
                include_private=include_private,
            )
            response = self._unary("ListArtifacts", self._metadata.ListArtifacts, request)
            return response.artifacts, response.next_page_token

        return self._pages(fetch)

    def get_artifact(self, name: str, attempt: int | None = None) -> metadata_pb2.Artifact:
        """Read one artifact's reference."""
        request = metadata_rr.GetArtifactRequest(name=name, attempt=attempt)
        return self._unary("GetArtifact", self._metadata.GetArtifact, request).artifact

    def read_task_log(
        self,
        task: str,
        stream: enums_pb2.LogStream.ValueType,
        *,
        attempt: int | None = None,
        offset: int = 0,
        max_bytes: int = 0,
    ) -> metadata_rr.ReadTaskLogResponse:
        """Read one slice of a task attempt's stdout or stderr."""
        request = metadata_rr.ReadTaskLogRequest(
            task=task, stream=stream, attempt=attempt, offset=offset, max_bytes=max_bytes
        )
        return self._unary("ReadTaskLog", self._metadata.ReadTaskLog, request)

    def read_whole_task_log(
        self,
        task: str,
        stream: enums_pb2.LogStream.ValueType,
        *,
        attempt: int | None = None,
    ) -> bytes:
        """Read a task attempt's whole stdout or stderr, page by page."""
        pieces: list[bytes] = []
        offset = 0
        while True:
            response = self.read_task_log(task, stream, attempt=attempt, offset=offset)
            pieces.append(response.data)
            # A running task's log has no eof yet: stop at what exists so far.
            if response.eof or not response.data or response.next_offset >= response.size_bytes:
                break
            offset = response.next_offset
        return b"".join(pieces)

    def mutate_run_tags(
        self,
        run: str,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        request_id: str = "",
    ) -> metadata_pb2.Run:
        """Remove, then add user tags of a run atomically; return the run (graph left out).

        A ``request_id`` is made up when absent, so the retry after an unavailable core does
        not apply the change a second time over someone else's.
        """
        request = metadata_rr.MutateRunTagsRequest(
            run=run,
            add_tags=list(add),
            remove_tags=list(remove),
            request_id=request_id or uuid.uuid4().hex,
        )
        return self._unary("MutateRunTags", self._metadata.MutateRunTags, request).run

    # -- DatastoreService -----------------------------------------------------------------

    def get_store_info(self) -> runtime_pb2.StoreLocation:
        """Where artifact bytes live (cached: a core's store does not move)."""
        if self._store_info is None:
            response = self._unary(
                "GetStoreInfo", self._datastore.GetStoreInfo, datastore_rr.GetStoreInfoRequest()
            )
            self._store_info = response.store
        return self._store_info

    def read_blob(self, digest: str) -> bytes:
        """Read a blob's encoded bytes through the core."""
        request = datastore_rr.ReadBlobRequest(digest=digest)
        stream: Stream[datastore_rr.ReadBlobResponse] = self._stream(
            "ReadBlob", self._datastore.ReadBlob, request, timeout=DEFAULT_TIMEOUT * 10
        )
        return b"".join(chunk.data for chunk in stream)

    def has_blobs(self, digests: Sequence[str]) -> list[bool]:
        """Which of the digests are stored."""
        request = datastore_rr.HasBlobsRequest(digests=list(digests))
        return list(self._unary("HasBlobs", self._datastore.HasBlobs, request).present)

    def upload_blob(self, buffers: Iterable[bytes | memoryview]) -> tuple[str, int]:
        """Store bytes through the core in chunks of at most 1 MiB.

        Args:
            buffers: The encoded bytes, in pieces.

        Returns:
            The blob's digest (``sha256:<hex>``) and size.
        """
        upload_id = uuid.uuid4().hex
        hasher = hashlib.sha256()
        offset = 0
        for buffer in buffers:
            view = memoryview(buffer).cast("B")
            hasher.update(view)
            for start in range(0, len(view), CHUNK_SIZE):
                chunk = bytes(view[start : start + CHUNK_SIZE])
                request = datastore_rr.WriteBlobChunkRequest(
                    upload_id=upload_id, offset=offset, data=chunk
                )
                # Not retried: a chunk sent twice would be refused at the wrong offset.
                self._unary("WriteBlobChunk", self._datastore.WriteBlobChunk, request, retry=False)
                offset += len(chunk)
        if offset == 0:
            # An empty value still needs its upload to exist before it can be committed.
            request = datastore_rr.WriteBlobChunkRequest(upload_id=upload_id, offset=0, data=b"")
            self._unary("WriteBlobChunk", self._datastore.WriteBlobChunk, request, retry=False)
        expected = f"sha256:{hasher.hexdigest()}"
        commit = datastore_rr.CommitBlobRequest(upload_id=upload_id, expected_digest=expected)
        response = self._unary("CommitBlob", self._datastore.CommitBlob, commit, retry=False)
        return response.digest, response.size_bytes

    def convert_blob(
        self, digest: str, encoding: str, accept: Sequence[str]
    ) -> graph_pb2.ArtifactRef:
        """A stored value in one of the ``accept`` encodings (converted by the core).

        Returns:
            The converted blob's reference (digest, encoding, size, type name).
        """
        request = datastore_rr.ConvertBlobRequest(
            digest=digest, encoding=encoding, accept_encodings=list(accept)
        )
        response = self._unary(
            "ConvertBlob", self._datastore.ConvertBlob, request, timeout=DEFAULT_TIMEOUT * 20
        )
        return response.ref
