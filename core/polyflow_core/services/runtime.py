"""``polyflow.api.runtime.v1.RuntimeService``: a thin translation layer over the scheduler.

Each method parses its request into plain objects (``services/taskspec.py``,
``services/graph_convert.py``), calls the domain code (:mod:`polyflow_core.domain.graph`,
:class:`~polyflow_core.domain.scheduler.Scheduler`, the event logs) and converts the answer
back. Errors are :class:`~polyflow_core.errors.CoreError`\\ s turned into statuses by
``services/status.py``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import grpc
from polyflow.api.common.v1 import graph_pb2
from polyflow.api.errordetails.v1 import message_pb2 as errordetails_pb2
from polyflow.api.runtime.v1 import request_response_pb2 as rr_pb2
from polyflow.api.runtime.v1 import service_pb2_grpc

from polyflow_core.datastore.base import StoreLocationInfo, parse_digest
from polyflow_core.domain.events import EventHub, RunEvent, RunEventLog, RunFinished
from polyflow_core.domain.execution import (
    RunRequest,
    default_user,
    step_language,
    system_tags,
)
from polyflow_core.domain.graph import ValidationResult, validate
from polyflow_core.domain.model import FlowGraph, Language
from polyflow_core.domain.resume import steps_to_rerun
from polyflow_core.domain.scheduler import Scheduler
from polyflow_core.errors import (
    CoreError,
    ErrorCode,
    FailedPreconditionError,
    InvalidArgumentError,
)
from polyflow_core.executors.base import Executor, WorkerLanguage
from polyflow_core.metadata.base import ArtifactRecord, MetadataStore, RunState
from polyflow_core.services.convert import run_to_proto, store_location_to_proto
from polyflow_core.services.graph_convert import graph_from_proto, graph_to_proto, problem_to_proto
from polyflow_core.services.names import parse_run_name, parse_task_name
from polyflow_core.services.status import abort, stream_errors, unary_errors
from polyflow_core.services.taskspec import (
    artifact_from_proto,
    environment_from_proto,
    event_to_proto,
    options_from_proto,
    outcome_from_proto,
)

__all__ = ["RuntimeServicer", "ServerInfo"]

_FLOW_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WATCH_BATCH = 500
_WATCH_WAIT_SECONDS = 1.0  # how often a quiet stream checks that its client is still there
_UNOPENED_RUN_WAIT_SECONDS = 5.0
_LANGUAGES: dict[Language, WorkerLanguage] = {Language.PYTHON: "python", Language.R: "r"}


@dataclass(frozen=True)
class ServerInfo:
    """What ``GetServerInfo`` reports."""

    version: str
    """The core's version."""
    address: str
    """The address it serves on."""
    root: str
    """Its root folder."""
    metadata: str
    """The metadata back-end, e.g. ``sqlite:/path/metadata.db``."""
    store: StoreLocationInfo
    """The artifact store."""
    pid: int
    """The daemon's process id."""
    user: str
    """The user the daemon runs as."""


class RuntimeServicer(service_pb2_grpc.RuntimeServiceServicer):
    """Validates graphs, starts, follows and cancels runs, hears workers' reports.

    Args:
        scheduler: The run state machine.
        metadata: The metadata store (reads only).
        events: The runs' event logs.
        executor: The executor (asked whether the client's interpreters can run here).
        info: The daemon's description.
        max_watchers: Most ``WatchRun`` streams open at once (each holds an RPC thread);
            more fail with RESOURCE_EXHAUSTED.
    """

    def __init__(
        self,
        *,
        scheduler: Scheduler,
        metadata: MetadataStore,
        events: EventHub,
        executor: Executor,
        info: ServerInfo,
        max_watchers: int = 24,
    ) -> None:
        self._scheduler = scheduler
        self._metadata = metadata
        self._events = events
        self._executor = executor
        self._info = info
        self._max_watchers = max_watchers
        self._watchers = threading.BoundedSemaphore(max_watchers)

    @unary_errors
    def GetServerInfo(
        self, request: rr_pb2.GetServerInfoRequest, context: grpc.ServicerContext
    ) -> rr_pb2.GetServerInfoResponse:
        """Describe the daemon."""
        info = self._info
        return rr_pb2.GetServerInfoResponse(
            version=info.version,
            address=info.address,
            root=info.root,
            metadata=info.metadata,
            store=store_location_to_proto(info.store),
            pid=info.pid,
            user=info.user,
        )

    @unary_errors
    def ValidateGraph(
        self, request: rr_pb2.ValidateGraphRequest, context: grpc.ServicerContext
    ) -> rr_pb2.ValidateGraphResponse:
        """Check a graph; problems are an answer, not an error."""
        result = _validate(request.graph if request.HasField("graph") else None)
        return rr_pb2.ValidateGraphResponse(
            problems=[problem_to_proto(problem) for problem in result.problems],
            graph=graph_to_proto(result.graph),
        )

    @unary_errors
    def StartRun(
        self, request: rr_pb2.StartRunRequest, context: grpc.ServicerContext
    ) -> rr_pb2.StartRunResponse:
        """Validate the graph and the worker environment, then start the run."""
        result = _validate(request.graph if request.HasField("graph") else None)
        if result.problems or result.start is None:
            failure = errordetails_pb2.GraphValidationFailure(
                problems=[problem_to_proto(problem) for problem in result.problems]
            )
            first = result.problems[0].message if result.problems else "no start step"
            error = InvalidArgumentError(
                f"flow {result.graph.flow_name} has {len(result.problems)} graph problem(s); "
                f"first: {first}",
                reason="GRAPH_INVALID",
                metadata={
                    "flow": result.graph.flow_name,
                    "problems": str(len(result.problems)),
                },
            )
            abort(context, error, [failure])
        graph = result.graph
        options = options_from_proto(request.options)
        environment = environment_from_proto(request.environment)
        self._check_interpreters(graph, environment.interpreters, environment.working_directory)
        artifacts = tuple(artifact_from_proto(ref) for ref in request.parameter_artifacts)
        seen: set[str] = set()
        for artifact in artifacts:
            parse_digest(artifact.digest)  # INVALID_ARGUMENT when malformed
            if artifact.name in seen:
                raise InvalidArgumentError(
                    f"parameter artifact {artifact.name!r} is given twice",
                    reason="DUPLICATE_ARTIFACT",
                    metadata={"artifact": artifact.name},
                )
            seen.add(artifact.name)
        origin_run_id = _resume_fields(request, graph, artifacts)
        user = request.user or default_user()
        record = self._scheduler.start_run(
            RunRequest(
                graph=graph,
                graph_bytes=graph_to_proto(graph).SerializeToString(),
                start_step=result.start,
                parameter_artifacts=artifacts,
                options=options,
                options_bytes=request.options.SerializeToString(),
                environment=environment,
                environment_bytes=request.environment.SerializeToString(),
                user=user,
                tags=tuple(sorted(set(request.tags))),
                system_tags=system_tags(user, self._info.version, request.system_tags),
                namespace=request.namespace,
                request_id=request.request_id,
                origin_run_id=origin_run_id,
                resume_step=request.resume_step,
                clone_only=request.clone_only,
            )
        )
        return rr_pb2.StartRunResponse(run=run_to_proto(record, with_graph=True))

    def _check_interpreters(
        self, graph: FlowGraph, interpreters: Mapping[Language, str], working_directory: str
    ) -> None:
        """Every language the graph uses needs an interpreter that the executor can start."""
        needed = {step_language(graph, step) for step in graph.steps}
        missing = sorted(language.name for language in needed if language not in interpreters)
        if missing:
            raise InvalidArgumentError(
                f"flow {graph.flow_name} has steps in {', '.join(missing)} but the request "
                "names no interpreter for it (environment.interpreters)",
                reason="INTERPRETER_MISSING",
                metadata={"languages": ",".join(missing)},
            )
        problems = self._executor.check_environment(
            {_LANGUAGES[language]: interpreters[language] for language in needed},
            working_directory,
        )
        if problems:
            raise InvalidArgumentError(
                "; ".join(problems),
                reason="WORKER_ENVIRONMENT_INVALID",
                metadata={"problems": str(len(problems))},
            )

    @stream_errors
    def WatchRun(
        self, request: rr_pb2.WatchRunRequest, context: grpc.ServicerContext
    ) -> Iterator[rr_pb2.WatchRunResponse]:
        """Stream a run's events until its ``RunFinishedEvent`` or the client leaves."""
        name = parse_run_name(request.run, "run")
        if not self._watchers.acquire(blocking=False):
            raise CoreError(
                f"too many WatchRun streams are open (at most {self._max_watchers}); retry later",
                code=ErrorCode.RESOURCE_EXHAUSTED,
                reason="TOO_MANY_WATCHERS",
                metadata={"limit": str(self._max_watchers)},
            )
        try:
            yield from self._watch(name.flow, name.run, request, context)
        finally:
            self._watchers.release()

    def _watch(
        self, flow: str, run: str, request: rr_pb2.WatchRunRequest, context: grpc.ServicerContext
    ) -> Iterator[rr_pb2.WatchRunResponse]:
        """The events of one run, for :meth:`WatchRun`."""
        after = max(0, request.after_sequence)
        log = self._event_log(flow, run)
        if log is None:
            # A run this daemon did not execute (it finished before a restart): only its
            # end can be replayed. Sequences do not survive a restart, so the event is
            # numbered after whatever the client saw.
            record = self._metadata.get_run(flow, run)
            event = RunEvent(
                sequence=after + 1,
                time=record.finish_time or record.create_time,
                payload=RunFinished(record.state, record.failure_message),
            )
            yield rr_pb2.WatchRunResponse(event=event_to_proto(event))
            return
        while context.is_active():
            events = log.read(
                after,
                exclude_logs=request.exclude_logs,
                limit=_WATCH_BATCH,
                timeout=_WATCH_WAIT_SECONDS,
            )
            for event in events:
                yield rr_pb2.WatchRunResponse(event=event_to_proto(event))
                after = event.sequence
                if isinstance(event.payload, RunFinished):
                    return
            if not events and log.is_done(after, exclude_logs=request.exclude_logs):
                return

    def _event_log(self, flow: str, run: str) -> RunEventLog | None:
        """The run's event log, or None for a finished run this daemon has no events of.

        Raises:
            NotFoundError: No such run.
            FailedPreconditionError: The run is unfinished but no scheduler follows it.
        """
        log = self._events.get(flow, run)
        if log is not None:
            return log
        record = self._metadata.get_run(flow, run)  # NOT_FOUND for an unknown run
        if record.state in (RunState.SUCCEEDED, RunState.FAILED):
            return None
        # The run was just recorded and its log is being opened on the scheduler thread.
        deadline = time.monotonic() + _UNOPENED_RUN_WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.05)
            log = self._events.get(flow, run)
            if log is not None:
                return log
            if self._metadata.get_run(flow, run).state in (RunState.SUCCEEDED, RunState.FAILED):
                return None
        raise FailedPreconditionError(
            f"run {flow}/{run} is unfinished but this daemon is not executing it",
            reason="RUN_NOT_FOLLOWED",
            metadata={"name": f"flows/{flow}/runs/{run}"},
        )

    @unary_errors
    def CancelRun(
        self, request: rr_pb2.CancelRunRequest, context: grpc.ServicerContext
    ) -> rr_pb2.CancelRunResponse:
        """Stop a run; it becomes FAILED once its tasks are gone."""
        name = parse_run_name(request.run, "run")
        record = self._scheduler.cancel_run(name.flow, name.run, request.reason or "cancelled")
        return rr_pb2.CancelRunResponse(run=run_to_proto(record, with_graph=False))

    @unary_errors
    def CompleteTask(
        self, request: rr_pb2.CompleteTaskRequest, context: grpc.ServicerContext
    ) -> rr_pb2.CompleteTaskResponse:
        """Record a worker's outcome; answers once it is durable."""
        name = parse_task_name(request.task, "task")
        if not request.HasField("outcome"):
            raise InvalidArgumentError(
                "CompleteTask needs an outcome", metadata={"field": "outcome"}
            )
        self._scheduler.complete_task(
            name.flow,
            name.run,
            name.step,
            name.task,
            request.attempt,
            outcome_from_proto(request.outcome),
        )
        return rr_pb2.CompleteTaskResponse()


def _resume_fields(
    request: rr_pb2.StartRunRequest, graph: FlowGraph, artifacts: tuple[ArtifactRecord, ...]
) -> str:
    """Check the resume fields of a ``StartRunRequest``; returns the origin run's id (empty
    when the request does not resume).

    Raises:
        InvalidArgumentError: A resume-only field without ``origin_run``, parameter artifacts
            with it, a malformed name, or a resume step the graph lacks.
        FailedPreconditionError: The origin run is of another flow (reason
            ``ORIGIN_RUN_OTHER_FLOW``).
    """
    if not request.origin_run:
        if request.resume_step or request.clone_only:
            field = "resume_step" if request.resume_step else "clone_only"
            raise InvalidArgumentError(
                f"{field} is only for a resume: it needs origin_run",
                reason="RESUME_FIELD_WITHOUT_ORIGIN",
                metadata={"field": field},
            )
        return ""
    name = parse_run_name(request.origin_run, "origin_run")
    if name.flow != graph.flow_name:
        raise FailedPreconditionError(
            f"run {name.flow}/{name.run} is a run of flow {name.flow}, not of "
            f"{graph.flow_name}: only a run of the same flow can be resumed",
            reason="ORIGIN_RUN_OTHER_FLOW",
            metadata={"origin_run": request.origin_run, "flow": graph.flow_name},
        )
    if artifacts:
        raise InvalidArgumentError(
            "a resumed run takes its parameters from its origin run: parameter_artifacts "
            "must be empty when origin_run is set",
            reason="RESUME_PARAMETERS",
            metadata={"origin_run": request.origin_run},
        )
    if request.resume_step:
        steps_to_rerun(graph, request.resume_step)  # INVALID_ARGUMENT for an unknown step
    return name.run


def _validate(message: graph_pb2.FlowGraph | None) -> ValidationResult:
    """Validate a graph message.

    Raises:
        InvalidArgumentError: No graph, or a flow name no run could be recorded under.
    """
    if message is None:
        raise InvalidArgumentError("the request has no graph", metadata={"field": "graph"})
    graph = graph_from_proto(message)
    if not _FLOW_NAME.fullmatch(graph.flow_name):
        raise InvalidArgumentError(
            f"flow name {graph.flow_name!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)",
            reason="INVALID_FLOW_NAME",
            metadata={"flow": graph.flow_name},
        )
    return validate(graph)
