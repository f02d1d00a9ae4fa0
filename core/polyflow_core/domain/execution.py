"""Plain objects the scheduler works with: what a run asks for, what a worker reports, and
what a worker is told (the content of a ``TaskSpec``, before encoding).

The servicers build these from protobuf messages (``services/runtime.py``) and turn
:class:`TaskSpecData` into bytes (``services/taskspec.py``); the scheduler never sees a
message.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from polyflow_core.datastore.base import StoreLocationInfo
from polyflow_core.domain.model import FlowGraph, Language, StepSpec
from polyflow_core.metadata.base import ArtifactRecord, ExceptionRecord, ForeachFrameRecord

__all__ = [
    "DEFAULT_MAX_LOG_SIZE_BYTES",
    "DEFAULT_MAX_NUM_SPLITS",
    "DEFAULT_MAX_WORKERS",
    "PARAMETERS_STEP",
    "PARAMETERS_TASK_ID",
    "RunOptions",
    "RunRequest",
    "TaskInputData",
    "TaskOutcome",
    "TaskSpecData",
    "TaskSpecEncoder",
    "WorkerEnvironment",
    "default_user",
    "step_language",
    "system_tags",
]

DEFAULT_MAX_WORKERS = 16
"""Tasks of one run that may run at once, when the request does not say."""
DEFAULT_MAX_NUM_SPLITS = 100
"""Most splits of one foreach, when the request does not say."""
DEFAULT_MAX_LOG_SIZE_BYTES = 10 * 1024 * 1024
"""Most bytes stored per stream of a task attempt, when the request does not say."""

PARAMETERS_STEP = "_parameters"
"""The pseudo-step holding a run's parameter and constant artifacts."""
PARAMETERS_TASK_ID = "0"
"""The task id of the ``_parameters`` pseudo-task."""


@dataclass(frozen=True)
class RunOptions:
    """Execution bounds of a run (``runtime.v1.RunOptions`` with defaults applied)."""

    max_workers: int = DEFAULT_MAX_WORKERS
    """Tasks of the run that may run at once (at least 1)."""
    max_num_splits: int = DEFAULT_MAX_NUM_SPLITS
    """Most splits one foreach may create (at least 1)."""
    max_log_size_bytes: int = DEFAULT_MAX_LOG_SIZE_BYTES
    """Most bytes stored per stream of a task attempt."""


@dataclass(frozen=True)
class WorkerEnvironment:
    """The submitting client's environment, in which workers run."""

    interpreters: Mapping[Language, str]
    """Executable per language (``sys.executable``, ``Rscript``)."""
    working_directory: str
    """Absolute working directory for workers."""
    variables: Mapping[str, str]
    """Environment variables for workers."""
    code_path: str
    """Absolute path of the flow's source file."""


@dataclass(frozen=True)
class RunRequest:
    """A validated request to start a run."""

    graph: FlowGraph
    """The validated graph, with step kinds, incoming edges and matching splits."""
    graph_bytes: bytes
    """The same graph, serialized (``common.v1.FlowGraph``), recorded with the run and put
    in every ``TaskSpec``."""
    start_step: str
    """The step the run starts with (as validation found it)."""
    parameter_artifacts: tuple[ArtifactRecord, ...]
    """Artifacts of the ``_parameters`` pseudo-task (already in the store)."""
    options: RunOptions
    """Execution bounds."""
    options_bytes: bytes
    """The serialized ``RunOptions`` as recorded with the run."""
    environment: WorkerEnvironment
    """Where workers run."""
    environment_bytes: bytes
    """The serialized ``WorkerEnvironment`` as recorded with the run."""
    user: str
    """Who starts the run."""
    tags: tuple[str, ...] = ()
    """User tags."""
    system_tags: tuple[str, ...] = ()
    """System tags (complete: see :func:`system_tags`)."""
    namespace: str = ""
    """The client namespace, passed to tasks."""
    request_id: str = ""
    """Idempotency key: a retried request with the same id returns the same run."""
    origin_run_id: str = ""
    """Resume: the id of the run (of the same flow) to resume; empty for a new run. The
    parameter artifacts are then the origin run's (``parameter_artifacts`` is empty)."""
    resume_step: str = ""
    """Resume only: the step re-run with every step after it, even where they succeeded."""
    clone_only: bool = False
    """Resume only: clone what can be cloned and run nothing."""


@dataclass(frozen=True)
class TaskOutcome:
    """What a worker reported at the end of a task attempt."""

    succeeded: bool
    """True when user code finished and the worker found the transition valid."""
    artifacts: tuple[ArtifactRecord, ...] = ()
    """Every artifact of the task after the attempt (inherited ones included)."""
    next_steps: tuple[str, ...] = ()
    """The steps the task moves to."""
    foreach_num_splits: int = 0
    """FOREACH only: the number of items."""
    foreach_value_reprs: tuple[str, ...] = ()
    """FOREACH only: short representations of the items (may be empty)."""
    exception: ExceptionRecord | None = None
    """The exception that failed the attempt."""
    failure_message: str = ""
    """Why the attempt failed, in one line."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    """Metadata to record for the attempt."""
    blobs_unsynced: bool = False
    """The worker wrote blobs without flushing them (R): the core flushes them first."""


@dataclass(frozen=True)
class TaskInputData:
    """One task whose outputs a task reads."""

    pathspec: str
    """``flow/run/step/task`` of the input task."""
    step: str
    """Its step."""
    artifacts: tuple[ArtifactRecord, ...]
    """The artifacts it stored."""
    foreach_stack: tuple[ForeachFrameRecord, ...]
    """Its foreach frames, outermost first."""


@dataclass(frozen=True)
class TaskSpecData:
    """Everything a worker needs for one attempt (the fields of ``runtime.v1.TaskSpec``)."""

    flow: str
    """The flow's name."""
    run: str
    """The run id."""
    step: str
    """The step."""
    task: str
    """The task id."""
    attempt: int
    """The attempt (0-based)."""
    inputs: tuple[TaskInputData, ...]
    """The tasks it reads: one, or several for a join."""
    foreach_stack: tuple[ForeachFrameRecord, ...]
    """Its own foreach frames, outermost first."""
    graph_bytes: bytes
    """The serialized ``FlowGraph``."""
    max_num_splits: int
    """Most splits a foreach may create."""
    code_path: str
    """The flow's source file."""
    core_address: str
    """Where the worker calls the core."""
    store: StoreLocationInfo
    """Where artifact bytes go."""
    user: str
    """Who started the run."""
    tags: tuple[str, ...]
    """User and system tags of the run."""
    parameter_names: tuple[str, ...]
    """Names of the flow's parameters."""
    namespace: str
    """The client namespace."""
    origin_run_id: str = ""
    """The run this one resumed, if any."""
    token: str = ""
    """Bearer token for the worker's calls, when the core wants one."""
    max_user_code_retries: int = 0
    """Retries of the step's code (``@retry``'s ``times``); a later attempt is ``@catch``'s
    fallback attempt."""
    previous_failure_message: str = ""
    """Why the previous attempt failed (empty on the first attempt)."""


TaskSpecEncoder = Callable[[TaskSpecData], bytes]
"""Serializes a :class:`TaskSpecData` as a ``TaskSpec`` message (injected into the scheduler
so that the domain code needs no protobuf)."""


def step_language(graph: FlowGraph, step: StepSpec) -> Language:
    """The language a step runs in: its own, else the flow's, else Python."""
    for language in (step.language, graph.language):
        if language is not Language.UNSPECIFIED:
            return language
    return Language.PYTHON


def default_user() -> str:
    """The daemon's user, for runs that do not name one."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers) and no USER variable
        return "unknown"


def system_tags(user: str, version: str, extra: Iterable[str]) -> tuple[str, ...]:
    """A run's system tags: ``user:``, ``runtime:`` and ``polyflow_version:``, plus the
    client's (e.g. ``python_version:``), sorted without repeats."""
    tags = {f"user:{user}", "runtime:dev", f"polyflow_version:{version}"}
    tags.update(tag for tag in extra if tag)
    return tuple(sorted(tags))
