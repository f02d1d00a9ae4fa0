"""The metadata store contract: records, and the ABC every back-end implements.

Writers: only the scheduler thread calls the write methods (``create_*``, ``set_*``,
``start_*``, ``finish_*``, ``fail_*``, ``update_*``; tag changes from clients are queued to it
too), so a back-end needs no cross-writer locking. Readers (the gRPC servicers) may call the
``get_*`` / ``list_*`` methods from any thread, concurrently with the writer.
Times are UTC ``datetime`` objects. Ids are decimal strings.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

from polyflow_core.errors import FailedPreconditionError, NotFoundError

T = TypeVar("T")

MAX_USER_TAGS = 50
"""Most user tags a tag change may leave on a run (Metaflow's limit); a change that shrinks
or keeps the count of a run over it is still allowed."""


class RunState(Enum):
    """Life-cycle of a run; values match ``polyflow.api.common.v1.RunState``."""

    PENDING = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4


class TaskState(Enum):
    """Life-cycle of a task attempt; values match ``polyflow.api.common.v1.TaskState``."""

    PENDING = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4


@dataclass(frozen=True)
class ArtifactRecord:
    """A reference to one stored artifact value."""

    name: str
    """Artifact name."""
    digest: str
    """``sha256:<hex>`` of the encoded bytes."""
    encoding: str
    """How the bytes encode the value (``json``, ``pickle-v5``, ``rds``...)."""
    size_bytes: int
    """Size of the encoded bytes."""
    type_name: str = ""
    """The value's type as its language names it."""


@dataclass(frozen=True)
class ForeachFrameRecord:
    """One level of foreach nesting above a task."""

    step: str
    """The step that fanned out."""
    var: str
    """The artifact iterated over."""
    index: int
    """Index at this level."""
    num_splits: int
    """Number of splits at this level."""
    value_repr: str = ""
    """Short representation of the item."""


@dataclass(frozen=True)
class ExceptionRecord:
    """An exception raised by user code."""

    type: str
    """Fully qualified type, e.g. ``builtins.ValueError``."""
    message: str
    """``str()`` of the exception."""
    traceback: str
    """The formatted traceback."""


@dataclass(frozen=True)
class FlowRecord:
    """A flow with at least one run."""

    flow_id: str
    """The flow's name."""
    create_time: dt.datetime
    """When its first run was created."""


@dataclass(frozen=True)
class RunRecord:
    """One run of a flow."""

    flow_id: str
    run_id: str
    state: RunState
    tags: tuple[str, ...]
    """User tags, sorted."""
    system_tags: tuple[str, ...]
    """System tags, sorted."""
    create_time: dt.datetime
    finish_time: dt.datetime | None
    user: str
    graph: bytes
    """The serialized ``FlowGraph`` message (with kinds): opaque to the store. Left empty
    (``b""``) by ``list_runs`` and ``update_run_tags``; ``get_run`` and ``create_run`` fill
    it."""
    failure_message: str = ""
    origin_run_id: str = ""
    end_task_id: str = ""
    end_step_name: str = ""
    """The step of ``end_task_id`` (filled by the store on reads; needed to name the task)."""
    options: bytes = b""
    """Serialized ``RunOptions``, opaque to the store."""
    environment: bytes = b""
    """Serialized ``WorkerEnvironment``, opaque to the store."""
    namespace: str = ""


@dataclass(frozen=True)
class StepRecord:
    """A step of a run that has at least one task."""

    flow_id: str
    run_id: str
    step_name: str
    create_time: dt.datetime
    finish_time: dt.datetime | None


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a task."""

    attempt: int
    state: TaskState
    start_time: dt.datetime | None
    finish_time: dt.datetime | None
    failure_message: str = ""
    exception: ExceptionRecord | None = None
    next_steps: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskRecord:
    """A task, with its attempts (oldest first)."""

    flow_id: str
    run_id: str
    step_name: str
    task_id: str
    create_time: dt.datetime
    foreach_stack: tuple[ForeachFrameRecord, ...]
    input_tasks: tuple[str, ...]
    """Pathspecs ``flow/run/step/task`` of the tasks this one read."""
    attempts: tuple[AttemptRecord, ...]
    origin_task: str = ""
    """Pathspec of the task this one was cloned from."""
    metadata: dict[str, str] = field(default_factory=dict)
    """Task-level metadata (merged under each attempt's own)."""

    @property
    def latest(self) -> AttemptRecord | None:
        """The newest attempt, if any."""
        return self.attempts[-1] if self.attempts else None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing."""

    items: Sequence[T]
    next_page_token: str
    """Opaque token for the next page; empty on the last page."""


class MetadataStore(abc.ABC):
    """Records runs, tasks, attempts and artifact references durably.

    Every write returns only after it is durable (committed). ``NotFoundError`` (from
    ``polyflow_core.errors``) is raised by getters for absent objects.
    """

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """A block whose writes commit together when it ends (group commit).

        Writes inside it are not durable until the block ends; the caller acknowledges them
        only after that. Stores without transactions keep the default: every write is
        durable when it returns, and the block adds nothing.
        """
        return contextlib.nullcontext()

    # --- writes (scheduler thread only) ---------------------------------------------
    @abc.abstractmethod
    def create_run(
        self,
        *,
        flow_id: str,
        user: str,
        tags: Sequence[str],
        system_tags: Sequence[str],
        graph: bytes,
        options: bytes,
        environment: bytes,
        namespace: str,
        origin_run_id: str = "",
        request_id: str = "",
    ) -> RunRecord:
        """Create a PENDING run with a fresh run id (unique in the store); returns it.

        With a non-empty ``request_id`` already used for this flow, returns that run instead.
        """

    @abc.abstractmethod
    def set_run_state(
        self,
        flow_id: str,
        run_id: str,
        state: RunState,
        *,
        failure_message: str = "",
        end_task_id: str = "",
    ) -> None:
        """Move a run to ``state``; SUCCEEDED/FAILED also set its finish time. An empty
        ``end_task_id`` keeps the one recorded before."""

    @abc.abstractmethod
    def create_task(
        self,
        *,
        flow_id: str,
        run_id: str,
        step_name: str,
        foreach_stack: Sequence[ForeachFrameRecord],
        input_tasks: Sequence[str],
        origin_task: str = "",
        metadata: dict[str, str] | None = None,
        task_id: str | None = None,
    ) -> TaskRecord:
        """Create a task with no attempt. Task ids count up from 1 within a run unless
        ``task_id`` is given (the ``_parameters`` pseudo-task uses ``"0"``)."""

    @abc.abstractmethod
    def start_attempt(self, flow_id: str, run_id: str, task_id: str, attempt: int) -> None:
        """Record that ``attempt`` of a task started (state RUNNING, start time now)."""

    @abc.abstractmethod
    def finish_attempt(
        self,
        flow_id: str,
        run_id: str,
        task_id: str,
        attempt: int,
        *,
        state: TaskState,
        artifacts: Sequence[ArtifactRecord] = (),
        next_steps: Sequence[str] = (),
        failure_message: str = "",
        exception: ExceptionRecord | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Record the end of an attempt and the artifacts it stored, in one transaction."""

    @abc.abstractmethod
    def update_run_tags(
        self, flow_id: str, run_id: str, *, add: Sequence[str], remove: Sequence[str]
    ) -> RunRecord:
        """Remove the user tags ``remove``, then add ``add``, in one transaction.

        Removing an absent tag and adding a present one do nothing; adding one of the run's
        system tags is skipped (it does not become a user tag). Prefix rules and request ids
        are the caller's (:mod:`polyflow_core.domain.tags`).

        Returns:
            The run after the change, its ``graph`` left empty.

        Raises:
            NotFoundError: No such run.
            InvalidArgumentError: A tag of ``remove`` is a system tag of the run (reason
                ``SYSTEM_TAG_IMMUTABLE``, nothing changed), or the change would leave more
                than :data:`MAX_USER_TAGS` user tags and more than before (reason
                ``TOO_MANY_TAGS``).
        """

    def clone_task(
        self,
        *,
        flow_id: str,
        run_id: str,
        step_name: str,
        foreach_stack: Sequence[ForeachFrameRecord],
        input_tasks: Sequence[str],
        origin_run_id: str,
        origin_task_id: str,
        origin_attempt: int,
        metadata: dict[str, str] | None = None,
        task_id: str | None = None,
    ) -> TaskRecord:
        """Create a task of ``run_id`` that reuses, by reference, what a SUCCEEDED attempt of
        a task of another run of the same flow (its origin) produced: the new task has
        ``origin_task`` set and one SUCCEEDED attempt 0 with the origin attempt's artifact
        records (the same digests: no artifact bytes are copied), next steps and attempt
        metadata. ``metadata`` is the new task's task-level metadata. One transaction (inside
        :meth:`batch` in stores that have it).

        Back-ends may override this with a faster equivalent.

        Raises:
            NotFoundError: No such run, origin task or origin attempt.
            FailedPreconditionError: The origin attempt did not succeed (reason
                ``ORIGIN_NOT_SUCCEEDED``).
        """
        origin = self.get_task(flow_id, origin_run_id, origin_task_id)
        found = [a for a in origin.attempts if a.attempt == origin_attempt]
        origin_name = f"{flow_id}/{origin_run_id}/{origin.step_name}/{origin_task_id}"
        if not found:
            raise NotFoundError(
                f"attempt {origin_attempt} of task {origin_name} does not exist",
                metadata={"task": origin_name, "attempt": str(origin_attempt)},
            )
        if found[0].state is not TaskState.SUCCEEDED:
            raise FailedPreconditionError(
                f"attempt {origin_attempt} of task {origin_name} did not succeed; only "
                "succeeded attempts can be cloned",
                reason="ORIGIN_NOT_SUCCEEDED",
                metadata={"task": origin_name, "attempt": str(origin_attempt)},
            )
        artifacts = self.list_artifacts(flow_id, origin_run_id, origin_task_id, origin_attempt)
        with self.batch():
            record = self.create_task(
                flow_id=flow_id,
                run_id=run_id,
                step_name=step_name,
                foreach_stack=foreach_stack,
                input_tasks=input_tasks,
                origin_task=origin_name,
                metadata=metadata,
                task_id=task_id,
            )
            self.start_attempt(flow_id, run_id, record.task_id, 0)
            self.finish_attempt(
                flow_id,
                run_id,
                record.task_id,
                0,
                state=TaskState.SUCCEEDED,
                artifacts=artifacts,
                next_steps=found[0].next_steps,
                metadata=dict(found[0].metadata) or None,
            )
        return record

    @abc.abstractmethod
    def fail_unfinished_runs(self, message: str) -> list[tuple[str, str]]:
        """Mark every PENDING/RUNNING run FAILED and every RUNNING/PENDING attempt FAILED,
        with ``message``; returns the ``(flow_id, run_id)`` pairs affected. Called once when
        a daemon starts, since runs of a dead daemon cannot still be going."""

    # --- reads (any thread) ---------------------------------------------------------
    @abc.abstractmethod
    def list_flows(self, page_size: int, page_token: str) -> Page[FlowRecord]:
        """Flows by name."""

    @abc.abstractmethod
    def get_flow(self, flow_id: str) -> FlowRecord:
        """One flow."""

    @abc.abstractmethod
    def list_runs(
        self,
        flow_id: str,
        page_size: int,
        page_token: str,
        *,
        tags: Sequence[str] = (),
        states: Sequence[RunState] = (),
    ) -> Page[RunRecord]:
        """A flow's runs, newest first, keeping those with every tag in ``tags`` (user or
        system) and, when ``states`` is not empty, in one of ``states``. The records' ``graph``
        is left empty (``b""``): read it with ``get_run``."""

    @abc.abstractmethod
    def get_run(self, flow_id: str, run_id: str) -> RunRecord:
        """One run."""

    @abc.abstractmethod
    def list_steps(
        self, flow_id: str, run_id: str, page_size: int, page_token: str
    ) -> Page[StepRecord]:
        """A run's steps with tasks, in the order they first got a task."""

    @abc.abstractmethod
    def get_step(self, flow_id: str, run_id: str, step_name: str) -> StepRecord:
        """One step."""

    @abc.abstractmethod
    def list_tasks(
        self, flow_id: str, run_id: str, step_name: str, page_size: int, page_token: str
    ) -> Page[TaskRecord]:
        """A step's tasks by ascending numeric task id."""

    @abc.abstractmethod
    def get_task(self, flow_id: str, run_id: str, task_id: str) -> TaskRecord:
        """One task by id (with all its attempts)."""

    @abc.abstractmethod
    def list_artifacts(
        self, flow_id: str, run_id: str, task_id: str, attempt: int
    ) -> list[ArtifactRecord]:
        """The artifacts one attempt stored, by name."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""
