"""Resume: a new run that continues an earlier run of the same flow (its *origin run*),
reusing by reference what the origin run finished, after Metaflow's rules (``metaflow.md``
§2, "What resume does"; ``docs/architecture.md``, "Resume").

- The new run starts with a clone of the origin run's ``_parameters`` task: parameters and
  constants are the origin run's.
- It then runs as any run does, except that when a task is about to be created, it is
  *cloned* instead of run when (:meth:`ResumeState.decide`):

  1. every one of its inputs is a clone (so a task after a re-run task always runs);
  2. its step is not re-run: ``resume STEP`` re-runs STEP and every step reachable from it
     (:func:`steps_to_rerun`);
  3. the origin run has a task of the same *identity* whose latest attempt SUCCEEDED:
     identity is the step, the foreach indices of the task (outermost first) and, for a
     switch that loops to its own step, the iteration (:func:`task_identity`);
  4. that task's transition is one this run's graph allows (the code may have changed
     since; a foreach task also needs its split count, read from its children's frames).

- A clone is a new task record, ``origin_task`` naming the task it copies, with one
  SUCCEEDED attempt holding the same artifact references (no artifact bytes are copied),
  task metadata ``origin-task-id`` and ``origin-run-id``, and events marked ``cloned``; its
  log files are hard links to the origin attempt's. Its successors are then queued as if it
  had just run, so clones cascade until a task that must run.

Cloning happens on the scheduler thread, between dispatches (:meth:`ResumeState.clone_ready`),
in group commits of at most :data:`CLONE_BATCH` clones: a resume of a 1,000-wide foreach
clones its splits in a handful of transactions. It is deterministic: the same origin run
and graph give the same clones.

The origin run is read before the command reaches the scheduler thread
(:func:`load_origin`): a finished run no longer changes, so the read needs no lock and
keeps the scheduler thread free.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from polyflow_core.domain._run_state import ActiveRun, InputRef, PendingTask
from polyflow_core.domain.events import EventPayload, TaskFinished, TaskStarted
from polyflow_core.domain.execution import PARAMETERS_STEP, PARAMETERS_TASK_ID, TaskOutcome
from polyflow_core.domain.joins import JoinError
from polyflow_core.domain.model import FlowGraph, TransitionKind
from polyflow_core.domain.step_decorators import task_metadata
from polyflow_core.domain.transitions import check_transition, is_terminal
from polyflow_core.errors import CoreError, FailedPreconditionError, InvalidArgumentError
from polyflow_core.metadata.base import (
    ForeachFrameRecord,
    MetadataStore,
    RunState,
    TaskRecord,
    TaskState,
)
from polyflow_core.paths import LogStreamName, RootLayout

__all__ = [
    "CLONE_BATCH",
    "ORIGIN_RUN_ID_FIELD",
    "ORIGIN_TASK_ID_FIELD",
    "CloneResult",
    "OriginTask",
    "ResumeOrigin",
    "ResumeState",
    "TaskIdentity",
    "clone_parameters",
    "index_origin_tasks",
    "load_origin",
    "resumed_task_metadata",
    "steps_to_rerun",
    "task_identity",
]

_log = logging.getLogger(__name__)

CLONE_BATCH = 500
"""Most clones written in one group commit."""

ORIGIN_RUN_ID_FIELD = "origin-run-id"
"""Task metadata of every task of a resumed run: the origin run's id (Metaflow's field)."""
ORIGIN_TASK_ID_FIELD = "origin-task-id"
"""Task metadata of a clone: the id of the task it copies (Metaflow's field)."""

_PAGE = 1000

TaskIdentity = tuple[str, tuple[tuple[str, int], ...], int]
"""``(step, ((foreach step, index), ... outermost first), iteration)``: what makes a task
the same task in two runs of a flow."""


def task_identity(
    step: str, foreach_stack: Sequence[ForeachFrameRecord], iteration: int = 0
) -> TaskIdentity:
    """A task's identity across runs.

    Args:
        step: The task's step.
        foreach_stack: Its foreach frames, outermost first.
        iteration: How many tasks of the same step precede it on its input chain (a switch
            looping to its own step); 0 otherwise.
    """
    return (step, tuple((frame.step, frame.index) for frame in foreach_stack), iteration)


def steps_to_rerun(graph: FlowGraph, step: str) -> frozenset[str]:
    """``step`` and every step reachable from it.

    Raises:
        InvalidArgumentError: The graph has no such step (reason ``UNKNOWN_RESUME_STEP``).
    """
    if not graph.has_step(step):
        known = ", ".join(s.name for s in graph.steps)
        raise InvalidArgumentError(
            f"cannot resume from step {step!r}: flow {graph.flow_name} has no such step "
            f"(its steps: {known})",
            reason="UNKNOWN_RESUME_STEP",
            metadata={"step": step, "flow": graph.flow_name},
        )
    found = {step}
    queue = deque([step])
    while queue:
        name = queue.popleft()
        if not graph.has_step(name):
            continue
        for following in graph.step(name).transition.out_steps:
            if following not in found:
                found.add(following)
                queue.append(following)
    return frozenset(found)


@dataclass(frozen=True)
class OriginTask:
    """A task of the origin run that succeeded, as much of it as cloning needs."""

    task_id: str
    """Its id in the origin run."""
    step: str
    """Its step."""
    attempt: int
    """Its latest attempt, the one that succeeded."""
    next_steps: tuple[str, ...] = ()
    """The steps it moved to."""
    foreach_num_splits: int = 0
    """For a foreach task: the splits it made, read from its children's frames (0 when no
    child was created, which makes it unclonable)."""
    foreach_value_reprs: tuple[str, ...] = ()
    """For a foreach task: the items' short representations, where a child recorded one."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    """Its task-level metadata."""


@dataclass(frozen=True)
class ResumeOrigin:
    """The origin run of a resume, read once: what can be cloned from it."""

    flow: str
    """The flow's name."""
    run_id: str
    """The origin run's id."""
    parameters: OriginTask
    """Its ``_parameters`` task."""
    succeeded: Mapping[TaskIdentity, OriginTask]
    """Its tasks whose latest attempt succeeded, by identity."""
    rerun: frozenset[str] = frozenset()
    """Steps that run again even where they succeeded."""
    clone_only: bool = False
    """Clone what can be cloned and run nothing."""

    @property
    def name(self) -> str:
        """``flow/run``."""
        return f"{self.flow}/{self.run_id}"

    def pathspec(self, task: OriginTask) -> str:
        """``flow/run/step/task`` of an origin task."""
        return f"{self.flow}/{self.run_id}/{task.step}/{task.task_id}"


def _pathspec_parts(pathspec: str) -> tuple[str, str] | None:
    """``(step, task id)`` of ``flow/run/step/task``; None for anything else."""
    parts = pathspec.split("/")
    return (parts[2], parts[3]) if len(parts) == 4 else None


def _numeric(task_id: str) -> tuple[int, str]:
    return (int(task_id), task_id) if task_id.isdigit() else (1 << 62, task_id)


def index_origin_tasks(
    tasks: Iterable[TaskRecord],
) -> tuple[OriginTask | None, dict[TaskIdentity, OriginTask]]:
    """Index a run's tasks for cloning.

    Iterations are counted along input chains (a task of step S whose input is a task of S
    is one iteration further), so tasks are visited in creation order (ascending ids:
    inputs are created before the tasks that read them). A foreach task's split count and
    item representations are read from the last frame of its children.

    Args:
        tasks: Every task of the run (any order).

    Returns:
        The ``_parameters`` task if it succeeded, and the other tasks whose latest attempt
        succeeded, by identity (the first one wins should two share an identity).
    """
    ordered = sorted(tasks, key=lambda task: _numeric(task.task_id))
    iterations: dict[str, int] = {}
    splits: dict[str, int] = {}
    reprs: dict[str, dict[int, str]] = {}
    stacks = {task.task_id: len(task.foreach_stack) for task in ordered}
    for task in ordered:
        iteration = 0
        for pathspec in task.input_tasks:
            parts = _pathspec_parts(pathspec)
            if parts is None:
                continue
            input_step, input_id = parts
            if input_step == task.step_name:
                iteration = iterations.get(input_id, 0) + 1
            depth = stacks.get(input_id)
            if depth is not None and len(task.foreach_stack) == depth + 1:
                frame = task.foreach_stack[-1]
                if frame.step == input_step:  # the input fanned out into this task
                    splits[input_id] = frame.num_splits
                    if frame.value_repr:
                        reprs.setdefault(input_id, {})[frame.index] = frame.value_repr
        iterations[task.task_id] = iteration
    parameters: OriginTask | None = None
    succeeded: dict[TaskIdentity, OriginTask] = {}
    for task in ordered:
        latest = task.latest
        if latest is None or latest.state is not TaskState.SUCCEEDED:
            continue
        count = splits.get(task.task_id, 0)
        known = reprs.get(task.task_id, {})
        origin = OriginTask(
            task_id=task.task_id,
            step=task.step_name,
            attempt=latest.attempt,
            next_steps=tuple(latest.next_steps),
            foreach_num_splits=count,
            foreach_value_reprs=tuple(known.get(index, "") for index in range(count)),
            metadata=MappingProxyType(dict(task.metadata)),
        )
        if task.step_name == PARAMETERS_STEP:
            if task.task_id == PARAMETERS_TASK_ID:
                parameters = origin
            continue
        identity = task_identity(task.step_name, task.foreach_stack, iterations[task.task_id])
        succeeded.setdefault(identity, origin)
    return parameters, succeeded


def _all_tasks(metadata: MetadataStore, flow: str, run_id: str) -> list[TaskRecord]:
    """Every task of a run, step by step, page by page."""
    steps: list[str] = []
    token = ""
    while True:
        page = metadata.list_steps(flow, run_id, _PAGE, token)
        steps.extend(step.step_name for step in page.items)
        token = page.next_page_token
        if not token:
            break
    tasks: list[TaskRecord] = []
    for step in steps:
        token = ""
        while True:
            tasks_page = metadata.list_tasks(flow, run_id, step, _PAGE, token)
            tasks.extend(tasks_page.items)
            token = tasks_page.next_page_token
            if not token:
                break
    return tasks


def load_origin(
    metadata: MetadataStore,
    graph: FlowGraph,
    origin_run_id: str,
    *,
    resume_step: str = "",
    clone_only: bool = False,
) -> ResumeOrigin:
    """Read the origin run of a resume.

    Args:
        metadata: The metadata store.
        graph: The new run's (validated) graph.
        origin_run_id: The run to resume, of the graph's flow.
        resume_step: A step to re-run with every step after it, or empty.
        clone_only: Clone what can be cloned and run nothing.

    Raises:
        NotFoundError: No such run of the flow.
        FailedPreconditionError: The run is unfinished (reason ``ORIGIN_RUN_UNFINISHED``)
            or has no succeeded ``_parameters`` task (reason ``ORIGIN_RUN_INCOMPLETE``).
        InvalidArgumentError: ``resume_step`` is not a step of the graph.
    """
    flow = graph.flow_name
    rerun = steps_to_rerun(graph, resume_step) if resume_step else frozenset()
    record = metadata.get_run(flow, origin_run_id)  # NOT_FOUND
    name = f"{flow}/{origin_run_id}"
    if record.state in (RunState.PENDING, RunState.RUNNING):
        raise FailedPreconditionError(
            f"run {name} is still running; wait for it to finish (or cancel it) before resuming it",
            reason="ORIGIN_RUN_UNFINISHED",
            metadata={"run": name},
        )
    parameters, succeeded = index_origin_tasks(_all_tasks(metadata, flow, origin_run_id))
    if parameters is None:
        raise FailedPreconditionError(
            f"run {name} has no parameters task (it never started), so it cannot be resumed; "
            "start a new run instead",
            reason="ORIGIN_RUN_INCOMPLETE",
            metadata={"run": name},
        )
    return ResumeOrigin(
        flow=flow,
        run_id=origin_run_id,
        parameters=parameters,
        succeeded=MappingProxyType(succeeded),
        rerun=rerun,
        clone_only=clone_only,
    )


def resumed_task_metadata(
    origin: ResumeOrigin, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Task-level metadata of a task of a resumed run that runs: ``extra`` plus
    ``origin-run-id``."""
    values = dict(extra or {})
    values[ORIGIN_RUN_ID_FIELD] = origin.run_id
    return values


def _clone_metadata(origin: ResumeOrigin, task: OriginTask) -> dict[str, str]:
    values = dict(task.metadata)
    values[ORIGIN_RUN_ID_FIELD] = origin.run_id
    values[ORIGIN_TASK_ID_FIELD] = task.task_id
    return values


def clone_parameters(metadata: MetadataStore, flow: str, run_id: str, origin: ResumeOrigin) -> None:
    """Record the new run's ``_parameters`` task as a clone of the origin run's."""
    metadata.clone_task(
        flow_id=flow,
        run_id=run_id,
        step_name=PARAMETERS_STEP,
        foreach_stack=(),
        input_tasks=(),
        origin_run_id=origin.run_id,
        origin_task_id=origin.parameters.task_id,
        origin_attempt=origin.parameters.attempt,
        metadata=_clone_metadata(origin, origin.parameters),
        task_id=PARAMETERS_TASK_ID,
    )


@dataclass(frozen=True)
class CloneResult:
    """What a pass of :meth:`ResumeState.clone_ready` did."""

    cloned: int = 0
    """Tasks cloned."""
    end_task_id: str = ""
    """The new run's end task, when the end step was cloned (the run is then done)."""
    join_error: JoinError | None = None
    """A clone could not be placed in its join (the run must fail)."""


class ResumeState:
    """The clone decisions of one resumed run (scheduler thread only).

    Args:
        origin: The origin run.
        graph: The new run's graph.
        max_num_splits: The new run's bound on foreach splits.
    """

    def __init__(self, origin: ResumeOrigin, graph: FlowGraph, max_num_splits: int) -> None:
        self.origin = origin
        self._graph = graph
        self._max_num_splits = max_num_splits
        # Clones of the new run: task id -> iteration. The parameters task is one.
        self._cloned: dict[str, int] = {PARAMETERS_TASK_ID: 0}
        # Ready tasks already found to need a run (PendingTask compares by identity).
        self._must_run: set[PendingTask] = set()

    @property
    def clone_only(self) -> bool:
        """Clone what can be cloned and run nothing."""
        return self.origin.clone_only

    def task_metadata(self, extra: Mapping[str, str]) -> dict[str, str]:
        """Task-level metadata of a task of the new run that runs."""
        return resumed_task_metadata(self.origin, extra)

    def decide(self, task: PendingTask) -> tuple[OriginTask, int] | None:
        """The origin task to clone ``task`` from, with ``task``'s iteration, or None when
        the task must run."""
        if task.task_id is not None or task.step in self.origin.rerun:
            return None  # an existing task (a retry), or a step to re-run
        if not self._graph.has_step(task.step):
            return None
        iteration = 0
        for ref in task.inputs:
            previous = self._cloned.get(ref.task_id)
            if previous is None:
                return None  # an input ran in this run: its successors run too
            if ref.step == task.step:
                iteration = previous + 1
        found = self.origin.succeeded.get(task_identity(task.step, task.foreach_stack, iteration))
        if found is None:
            return None
        step = self._graph.step(task.step)
        splits = found.foreach_num_splits if step.transition.kind is TransitionKind.FOREACH else 0
        if check_transition(step, found.next_steps, splits, self._max_num_splits):
            return None  # the graph changed, or the splits are unknown: run it again
        return found, iteration

    def _take(
        self, ready: deque[PendingTask], limit: int
    ) -> list[tuple[PendingTask, OriginTask, int]]:
        """Remove up to ``limit`` clonable tasks from ``ready``, keeping the others' order."""
        if all(task in self._must_run for task in ready):
            return []
        picked: list[tuple[PendingTask, OriginTask, int]] = []
        kept: list[PendingTask] = []
        while ready:
            task = ready.popleft()
            if len(picked) < limit and task not in self._must_run:
                decision = self.decide(task)
                if decision is not None:
                    picked.append((task, *decision))
                    continue
                self._must_run.add(task)
            kept.append(task)
        ready.extend(kept)
        return picked

    def clone_ready(
        self,
        run: ActiveRun,
        metadata: MetadataStore,
        layout: RootLayout | None = None,
        batch: int = CLONE_BATCH,
    ) -> CloneResult:
        """Clone every ready task that can be, and then their successors that can be, in
        group commits of at most ``batch`` clones; their events are appended once their
        commit is done. Tasks that must run stay in ``run.ready`` in their order. With a
        ``layout``, a clone's log files are hard links to its origin attempt's (no bytes
        are copied), so its output reads as the origin task's.

        Stops early when the end step is cloned (the caller finishes the run) or a clone
        cannot join (the caller fails the run); what was cloned until then is kept.
        """
        count = 0
        while not run.stopping:
            picked = self._take(run.ready, batch)
            if not picked:
                return CloneResult(count)
            events: list[EventPayload] = []
            end_task_id = ""
            join_error: JoinError | None = None
            with metadata.batch():
                for task, found, iteration in picked:
                    if end_task_id or join_error is not None:
                        run.ready.append(task)  # the caller ends the run: left uncloned
                        continue
                    task_id = self._clone(run, metadata, task, found, iteration, events)
                    if layout is not None:
                        self._link_logs(layout, run, task.step, task_id, found)
                    count += 1
                    step = run.graph.step(task.step)
                    if is_terminal(step):
                        end_task_id = task_id
                        continue
                    source = InputRef(task_id, task.step, 0, task.foreach_stack)
                    outcome = TaskOutcome(
                        succeeded=True,
                        next_steps=found.next_steps,
                        foreach_num_splits=found.foreach_num_splits,
                        foreach_value_reprs=found.foreach_value_reprs,
                    )
                    try:
                        run.queue_successors(step, source, outcome)
                    except JoinError as error:
                        join_error = error
            for event in events:
                run.events.append(event)
            if end_task_id or join_error is not None:
                return CloneResult(count, end_task_id, join_error)
        return CloneResult(count)

    def _clone(
        self,
        run: ActiveRun,
        metadata: MetadataStore,
        task: PendingTask,
        found: OriginTask,
        iteration: int,
        events: list[EventPayload],
    ) -> str:
        """Record one clone; returns its task id."""
        step = run.graph.step(task.step)
        values = task_metadata(step)
        values.update(_clone_metadata(self.origin, found))
        record = metadata.clone_task(
            flow_id=run.flow,
            run_id=run.run_id,
            step_name=task.step,
            foreach_stack=task.foreach_stack,
            input_tasks=[run.pathspec(ref.step, ref.task_id) for ref in task.inputs],
            origin_run_id=self.origin.run_id,
            origin_task_id=found.task_id,
            origin_attempt=found.attempt,
            metadata=values,
        )
        task.task_id = record.task_id
        self._cloned[record.task_id] = iteration
        pathspec = run.pathspec(task.step, record.task_id)
        events.append(TaskStarted(pathspec, 0, cloned=True))
        events.append(TaskFinished(pathspec, 0, TaskState.SUCCEEDED, cloned=True))
        return record.task_id

    def _link_logs(
        self, layout: RootLayout, run: ActiveRun, step: str, task_id: str, found: OriginTask
    ) -> None:
        """Hard-link the origin attempt's log files as the clone's attempt 0 (best effort:
        a missing file or a store on another file system leaves the clone's log empty)."""
        streams: tuple[LogStreamName, ...] = ("stdout", "stderr")
        for stream in streams:
            try:
                source = layout.task_log_path(
                    self.origin.flow, self.origin.run_id, step, found.task_id, found.attempt, stream
                )
                target = layout.task_log_path(run.flow, run.run_id, step, task_id, 0, stream)
                if source.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.link(source, target)
            except (OSError, CoreError):
                _log.debug("resume: no log link for %s/%s", run.run_id, task_id, exc_info=True)

    def first_unclonable(self, ready: Iterable[PendingTask]) -> str:
        """A description of the first ready task (for a clone-only resume's failure)."""
        for task in ready:
            where = "".join(f"[{frame.index}]" for frame in task.foreach_stack)
            return f"step {task.step!r}{' ' + where if where else ''}"
        return ""
