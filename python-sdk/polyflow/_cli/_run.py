"""``run``: validate, store the parameters, start the run and follow it to the end.

Order matters: nothing reaches the core's run table until the graph is valid, every
parameter value parses and every IncludeFile has been read, so a mistake never leaves a
half-created run behind.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from polyflow._cli._graph import extract, print_problems, validate
from polyflow._cli._output import Console
from polyflow.exceptions import GraphError, ParameterError, PolyflowError, UnavailableError

if TYPE_CHECKING:
    from polyflow_core.datastore.local import LocalBlobStore

    from polyflow._authoring.graph import FlowDefinition
    from polyflow._authoring.parameters import Parameter
    from polyflow._codecs import Encoded
    from polyflow._transport import CoreClient
    from polyflow.api.common.v1 import graph_pb2
    from polyflow.api.runtime.v1 import message_pb2 as runtime_pb2
    from polyflow.api.runtime.v1 import request_response_pb2 as runtime_rr

__all__ = [
    "BlobWriter",
    "RunOptions",
    "env_var_name",
    "execute_run",
    "options_message",
    "resolve_parameters",
    "start_and_follow",
]

MIB = 1024 * 1024
_RECENT_LINES = 200
_MAX_WATCH_RECONNECTS = 3


@dataclass(frozen=True)
class RunOptions:
    """The options of ``run`` (besides the flow's parameters)."""

    max_workers: int = 16
    """Tasks that may run at once."""
    max_num_splits: int = 100
    """Most splits one foreach may create."""
    max_log_size_mb: float = 10
    """Most MiB of stdout and of stderr stored per task attempt (at least one byte)."""
    tags: tuple[str, ...] = ()
    """User tags."""
    run_id_file: str | None = None
    """Where to write the run id as soon as the run exists."""
    namespace: str | None = None
    """The client namespace for the run's tasks; None: the default; empty: global."""
    decospecs: tuple[str, ...] = ()
    """``--with`` values."""
    quiet: bool = False
    """Print only task output and failures."""
    raw_parameters: Mapping[str, str | None] = field(default_factory=dict)
    """Parameter attribute to the raw text given on the command line (None: not given)."""


def env_var_name(parameter_name: str) -> str:
    """The environment variable a parameter is read from: ``POLYFLOW_RUN_<NAME>``."""
    return "POLYFLOW_RUN_" + parameter_name.upper().replace("-", "_")


def resolve_parameters(
    flow_cls: type, params: Sequence[Parameter], raw: Mapping[str, str | None], user: str
) -> dict[str, Any]:
    """The value of every parameter: command line, else environment, else default.

    Args:
        flow_cls: The flow class (for computed defaults).
        params: The flow's parameters.
        raw: Attribute to the text given on the command line (None when absent).
        user: The user starting the run (for computed defaults).

    Returns:
        Attribute to value (IncludeFile contents already read).

    Raises:
        ParameterError: A value does not parse, a required one is missing, or a file
            cannot be read; the message names the parameter.
    """
    from polyflow._authoring.parameters import ParameterContext

    values: dict[str, Any] = {}
    for param in params:
        text = raw.get(param.attribute)
        if text is None:
            text = os.environ.get(env_var_name(param.name))
        context = ParameterContext(
            flow_name=flow_cls.__name__, user_name=user, parameter_name=param.name
        )
        values[param.attribute] = param.resolve(text, context)
    return values


class BlobWriter:
    """Writes encoded values to the store.

    Bytes go straight into a local store folder when this machine sees it, else through
    ``DatastoreService`` uploads.
    """

    def __init__(self, client: CoreClient, *, force_upload: bool = False) -> None:
        """Decide how to write.

        Args:
            client: The core client.
            force_upload: Upload through the core even when the store is local.
        """
        self._client = client
        self._local: LocalBlobStore | None = None
        store: runtime_pb2.StoreLocation = client.get_store_info()
        if not force_upload and store.kind == "local" and os.path.isdir(store.root):
            from polyflow_core.datastore.local import LocalBlobStore

            self._local = LocalBlobStore(store.root)

    @property
    def direct(self) -> bool:
        """Whether bytes go straight to a local store folder."""
        return self._local is not None

    def put(self, encoded: Encoded) -> tuple[str, int]:
        """Store one encoded value; return its digest and size."""
        if self._local is not None:
            info = self._local.put_bytes(encoded.buffers)
            return info.digest, info.size
        return self._client.upload_blob(encoded.buffers)


def _encode_artifacts(
    values: Mapping[str, Any], writer: BlobWriter, what: str
) -> list[graph_pb2.ArtifactRef]:
    from polyflow._codecs import encode
    from polyflow.api.common.v1 import graph_pb2

    refs = []
    for name, value in values.items():
        try:
            encoded = encode(value)
        except Exception as error:  # pickle raises many types for unpicklable values
            raise ParameterError(
                f"{what} {name!r} cannot be stored: {type(error).__name__}: {error}",
                parameter=name,
            ) from None
        digest, size = writer.put(encoded)
        refs.append(
            graph_pb2.ArtifactRef(
                name=name,
                digest=digest,
                encoding=encoded.encoding,
                size_bytes=size,
                type_name=encoded.type_name,
            )
        )
    return refs


def _system_tags() -> list[str]:
    from polyflow._cli.main import _version

    python = ".".join(str(part) for part in sys.version_info[:3])
    return [f"python_version:{python}", f"polyflow_version:{_version()}", "runtime:dev"]


def _environment(
    definition: FlowDefinition, graph: graph_pb2.FlowGraph
) -> runtime_pb2.WorkerEnvironment:
    from polyflow.api.common.v1 import enums_pb2
    from polyflow.api.runtime.v1 import message_pb2 as runtime_pb2

    interpreters = [
        runtime_pb2.Interpreter(language=enums_pb2.LANGUAGE_PYTHON, executable=sys.executable)
    ]
    if any(step.language == enums_pb2.LANGUAGE_R for step in graph.steps):
        rscript = shutil.which("Rscript")
        if rscript:
            interpreters.append(
                runtime_pb2.Interpreter(language=enums_pb2.LANGUAGE_R, executable=rscript)
            )
    return runtime_pb2.WorkerEnvironment(
        interpreters=interpreters,
        working_directory=os.getcwd(),
        variables=dict(os.environ),
        code_path=os.path.abspath(definition.source_file),
    )


def _when(event: Any) -> dt.datetime | None:
    if not event.HasField("time"):
        return None
    return dt.datetime.fromtimestamp(event.time.seconds + event.time.nanos / 1e9)


def _when_created(run: Any) -> dt.datetime | None:
    # The run's own creation time keeps this line ahead of its first task's.
    if not run.HasField("create_time"):
        return None
    return dt.datetime.fromtimestamp(run.create_time.seconds + run.create_time.nanos / 1e9)


@dataclass
class _Follower:
    """Prints a run's events and remembers how it ended."""

    console: Console
    last_sequence: int = 0
    # The last stderr lines of each running task attempt: a worker prints the traceback of
    # a failure itself, and the failure event then need not print it a second time.
    recent_stderr: dict[tuple[str, int], deque[str]] = field(default_factory=dict)
    succeeded: bool = False
    failure: str = ""
    failed_tasks: list[str] = field(default_factory=list)
    finished: bool = False

    def handle(self, event: Any) -> None:
        from polyflow.api.common.v1 import enums_pb2

        self.last_sequence = max(self.last_sequence, int(event.sequence))
        kind = event.WhichOneof("event")
        when = _when(event)
        if kind == "log_line":
            line = event.log_line
            stderr = line.stream == enums_pb2.LOG_STREAM_STDERR
            self.console.log(line.pathspec, line.text, stderr=stderr, when=when)
            if stderr:
                key = (line.pathspec, line.attempt)
                self.recent_stderr.setdefault(key, deque(maxlen=_RECENT_LINES)).append(line.text)
        elif kind == "task_started":
            started = event.task_started
            if started.cloned:
                self.console.task(
                    started.pathspec, "Cloning results of a previously successful task.", when
                )
                return
            retry = f" (retry {started.attempt})" if started.attempt else ""
            self.console.task(started.pathspec, f"Task is starting{retry}.", when)
        elif kind == "task_finished":
            self._task_finished(event.task_finished, when)
        elif kind == "message":
            self.console.event(event.message.text, when)
        elif kind == "run_finished":
            done = event.run_finished
            self.finished = True
            self.succeeded = done.state == enums_pb2.RUN_STATE_SUCCEEDED
            self.failure = done.failure_message

    def _task_finished(self, finished: Any, when: dt.datetime | None) -> None:
        from polyflow.api.common.v1 import enums_pb2

        if finished.state == enums_pb2.TASK_STATE_SUCCEEDED:
            self.recent_stderr.pop((finished.pathspec, finished.attempt), None)
            if not finished.cloned:  # a clone's one line was printed when it started
                self.console.task(finished.pathspec, "Task finished successfully.", when)
            return
        error = finished.exception
        printed = self.recent_stderr.pop((finished.pathspec, finished.attempt), deque())
        lines = [f"Task failed: {finished.failure_message or 'no reason given'}"]
        traceback = error.traceback.rstrip("\n").splitlines()
        if traceback and not _already_printed(traceback, printed):
            lines += traceback
        elif not traceback and (error.type or error.message):
            lines.append(f"{error.type}: {error.message}")
        if finished.will_retry:
            lines.append("The task will be retried.")
        else:
            self.failed_tasks.append(finished.pathspec)
        self.console.task_failure(finished.pathspec, lines, when)


def _already_printed(traceback: list[str], printed: deque[str]) -> bool:
    """Whether the task's own stderr showed this traceback (its first and last lines)."""
    lines = list(printed)
    if traceback[0] not in lines:
        return False
    return traceback[-1] in lines[lines.index(traceback[0]) :]


def _follow(client: CoreClient, run_name: str, follower: _Follower) -> None:
    """Print the run's events until it finishes; reconnect when the core drops the stream."""
    reconnects = 0
    while not follower.finished:
        try:
            for response in client.watch_run(run_name, after_sequence=follower.last_sequence):
                follower.handle(response.event)
            if not follower.finished:
                raise UnavailableError("the run's event stream ended before the run finished")
        except UnavailableError:
            reconnects += 1
            if reconnects > _MAX_WATCH_RECONNECTS:
                raise
            # A read restarts a local daemon that went away; the run then replays its end.
            client.get_server_info()


def _write_run_id(path: str, run_id: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(run_id)


def execute_run(flow_cls: type, options: RunOptions) -> int:
    """Run the flow and follow it; return the process exit status.

    Returns:
        0 when the run succeeded, 1 when it failed, was cancelled, or could not start.
    """
    console = Console(options.quiet)
    try:
        return _execute(flow_cls, options, console)
    except ParameterError as error:
        console.error(f"Error: {error}")
        return 1
    except GraphError as error:
        console.error("The graph has problems:")
        print_problems(console, error.problems, "")
        return 1
    except PolyflowError as error:
        console.error(f"Error: {error}")
        return 1


def _execute(flow_cls: type, options: RunOptions, console: Console) -> int:
    from polyflow._authoring.graph import run_launch_hooks
    from polyflow._authoring.members import flow_constants, flow_parameters
    from polyflow._cli.main import _version
    from polyflow._daemon import get_client
    from polyflow.api.runtime.v1 import request_response_pb2 as runtime_rr
    from polyflow.client._namespace import current_user, get_namespace

    user = current_user()
    console.info(f"Polyflow {_version()} executing {flow_cls.__name__} for user:{user}")
    definition = extract(flow_cls, options.decospecs)
    # Parameters are checked before the core is contacted: a typo costs no daemon start.
    params = flow_parameters(flow_cls)
    values = resolve_parameters(flow_cls, params, options.raw_parameters, user)
    for tag in options.tags:
        if not tag.strip():
            raise ParameterError("--tag needs a non-empty value")

    client = get_client()
    console.info("Validating your flow...")
    graph, _, problems = validate(client, definition)
    if problems:
        console.error("The graph has problems:")
        print_problems(console, problems, definition.source_file)
        return 1
    console.info("    The graph looks good!")
    run_launch_hooks(definition)

    writer = BlobWriter(client)
    refs = _encode_artifacts(values, writer, "Parameter")
    refs += _encode_artifacts(flow_constants(flow_cls), writer, "Class constant")

    ns = options.namespace if options.namespace is not None else get_namespace()
    request = runtime_rr.StartRunRequest(
        graph=graph,
        parameter_artifacts=refs,
        tags=list(dict.fromkeys(options.tags)),
        options=options_message(options),
        environment=_environment(definition, graph),
        user=user,
        namespace=ns or "",
        system_tags=_system_tags(),
    )
    return start_and_follow(client, request, flow_cls.__name__, options, console)


def options_message(options: RunOptions) -> runtime_pb2.RunOptions:
    """The ``RunOptions`` message of ``run``'s (and ``resume``'s) options."""
    from polyflow.api.runtime.v1 import message_pb2 as runtime_pb2

    return runtime_pb2.RunOptions(
        max_workers=options.max_workers,
        max_num_splits=options.max_num_splits,
        max_log_size_bytes=max(1, round(options.max_log_size_mb * MIB)),
    )


def start_and_follow(
    client: CoreClient,
    request: runtime_rr.StartRunRequest,
    flow_name: str,
    options: RunOptions,
    console: Console,
) -> int:
    """Start a run (``run`` and ``resume``), print its events until it ends, cancel it on
    Ctrl-C; return the process exit status."""
    run = client.start_run(request)
    if options.run_id_file:
        _write_run_id(options.run_id_file, run.run_id)
    created = _when_created(run)
    console.event(f"Workflow starting (run-id {run.run_id}):", created)

    follower = _Follower(console)
    try:
        _follow(client, run.name, follower)
    except KeyboardInterrupt:
        console.error(f"Interrupted: cancelling run {flow_name}/{run.run_id}...")
        try:
            client.cancel_run(run.name, "cancelled by the user (Ctrl-C)")
            # The run ends once its killed tasks are gone: wait for that, so that nothing
            # of it still runs when the prompt comes back (Ctrl-C again stops waiting).
            _follow(client, run.name, follower)
        except (PolyflowError, KeyboardInterrupt):
            pass
        console.error(f"Run {flow_name}/{run.run_id} cancelled.")
        return 1
    if follower.succeeded:
        console.event("Done!")
        return 0
    console.error(f"{_timestamp()} Workflow failed: {follower.failure or 'no reason given'}")
    for pathspec in follower.failed_tasks:
        console.error(f"    Step failure: task {pathspec} failed.")
    return 1


def _timestamp() -> str:
    from polyflow._cli._output import timestamp

    return timestamp()
