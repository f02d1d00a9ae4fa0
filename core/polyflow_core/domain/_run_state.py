"""The scheduler's private state: runs in progress, their tasks, and the commands the
scheduler thread consumes. Only :mod:`polyflow_core.domain.scheduler` uses this module; its
objects are touched on the scheduler thread only (except :class:`ExecutorEvents`, which the
executor calls from its own threads).
"""

from __future__ import annotations

import queue
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from polyflow_core.domain.events import EventHub, LogLine, RunEventLog
from polyflow_core.domain.execution import RunRequest, TaskOutcome
from polyflow_core.domain.joins import JoinCollector, JoinPlanner
from polyflow_core.domain.model import FlowGraph, StepKind, StepSpec, TransitionKind
from polyflow_core.domain.tags import TagChange
from polyflow_core.domain.transitions import ordered_targets
from polyflow_core.executors.base import ExitStatus, TaskHandle, TaskKey
from polyflow_core.metadata.base import ExceptionRecord, ForeachFrameRecord, TaskState
from polyflow_core.paths import LogStreamName

if TYPE_CHECKING:
    from polyflow_core.domain.resume import ResumeOrigin, ResumeState

__all__ = [
    "ActiveRun",
    "CancelRunCommand",
    "Command",
    "CompleteTaskCommand",
    "ExecutorEvents",
    "InputRef",
    "PendingTask",
    "ProcessExitedCommand",
    "RunningAttempt",
    "StartRunCommand",
    "StopCommand",
    "UpdateRunTagsCommand",
]


# --- state of the runs (scheduler thread only) ------------------------------------------------
@dataclass(frozen=True)
class InputRef:
    """A finished task that another task reads."""

    task_id: str
    step: str
    attempt: int
    foreach_stack: tuple[ForeachFrameRecord, ...]


@dataclass(eq=False)
class PendingTask:
    """A task waiting for a worker slot (``task_id`` is set once it exists in the store)."""

    step: str
    foreach_stack: tuple[ForeachFrameRecord, ...]
    inputs: tuple[InputRef, ...]
    task_id: str | None = None
    attempt: int = 0
    previous_failure: str = ""  # why the previous attempt failed (for a retry)


@dataclass(eq=False)
class RunningAttempt:
    """A task attempt handed to the executor, until both its report and its exit are in."""

    task: PendingTask
    key: TaskKey
    handle: TaskHandle | None = None
    state: TaskState | None = None  # the recorded verdict, once reported (or failed)
    failure_message: str = ""
    exception: ExceptionRecord | None = None
    outcome: TaskOutcome | None = None
    exit: ExitStatus | None = None
    kill_reason: str = ""
    timeout_message: str = ""  # set when the @timeout backstop killed the worker


@dataclass(eq=False)
class ActiveRun:
    """An unfinished run."""

    flow: str
    run_id: str
    request: RunRequest
    planner: JoinPlanner
    events: RunEventLog
    ready: deque[PendingTask] = field(default_factory=deque)
    running: dict[str, RunningAttempt] = field(default_factory=dict)
    joins: dict[Any, JoinCollector[InputRef]] = field(default_factory=dict)
    stopping: str = ""  # why the run is failing; set once, then nothing new starts
    resume: ResumeState | None = None  # a resumed run's clone decisions

    @property
    def graph(self) -> FlowGraph:
        """The run's validated graph."""
        return self.request.graph

    def pathspec(self, step: str, task_id: str) -> str:
        """``flow/run/step/task``."""
        return f"{self.flow}/{self.run_id}/{step}/{task_id}"

    def queue_successors(self, step: StepSpec, source: InputRef, outcome: TaskOutcome) -> None:
        """Queue the tasks that follow a succeeded task of ``step`` (its transition already
        checked): one per target, one per split for a foreach (with a new innermost frame),
        and for a join, the join task once all of its inputs have arrived.

        Raises:
            JoinError: The task cannot be placed in its join.
        """
        for target_name in ordered_targets(step, outcome.next_steps):
            target = self.graph.step(target_name)
            if target.kind is StepKind.JOIN or target.is_join:
                self._arrive_at_join(target, source)
            elif step.transition.kind is TransitionKind.FOREACH:
                splits = outcome.foreach_num_splits
                reprs = outcome.foreach_value_reprs
                for index in range(splits):
                    frame = ForeachFrameRecord(
                        step=step.name,
                        var=step.transition.foreach_var,
                        index=index,
                        num_splits=splits,
                        value_repr=reprs[index] if index < len(reprs) else "",
                    )
                    stack = (*source.foreach_stack, frame)
                    self.ready.append(PendingTask(target_name, stack, (source,)))
            else:
                self.ready.append(PendingTask(target_name, source.foreach_stack, (source,)))

    def _arrive_at_join(self, join: StepSpec, source: InputRef) -> None:
        """Add a task to the inputs its join collects; queue the join task once complete."""
        placement = self.planner.place(join, source.step, source.foreach_stack)
        collector = self.joins.get(placement.key)
        if collector is None:
            collector = self.joins[placement.key] = JoinCollector(placement.expected)
        if collector.add(placement.position, source):
            del self.joins[placement.key]
            inputs = tuple(collector.ordered())
            self.ready.append(PendingTask(join.name, placement.join_stack, inputs))


# --- commands -------------------------------------------------------------------------------
@dataclass(eq=False)
class Command:
    """Something for the scheduler thread to do; ``future`` gets the answer."""

    future: Future[Any] = field(default_factory=Future, init=False)


@dataclass(eq=False)
class StartRunCommand(Command):
    request: RunRequest
    origin: ResumeOrigin | None = None  # a resume's origin run, read by the caller


@dataclass(eq=False)
class CompleteTaskCommand(Command):
    flow: str
    run: str
    step: str
    task: str
    attempt: int
    outcome: TaskOutcome


@dataclass(eq=False)
class ProcessExitedCommand(Command):
    key: TaskKey
    status: ExitStatus


@dataclass(eq=False)
class CancelRunCommand(Command):
    flow: str
    run: str
    reason: str


@dataclass(eq=False)
class StopCommand(Command):
    reason: str


@dataclass(eq=False)
class UpdateRunTagsCommand(Command):
    flow: str
    run: str
    change: TagChange
    request_id: str


class ExecutorEvents:
    """Receives the executor's reports on its threads: log lines go straight to the run's
    event log (they change no metadata), exits are queued for the scheduler thread."""

    def __init__(self, events: EventHub, commands: queue.SimpleQueue[Command]) -> None:
        self._events = events
        self._commands = commands

    def on_output(self, key: TaskKey, stream: LogStreamName, line: str) -> None:
        """Publish a line as a :class:`LogLine` event."""
        self._events.publish(key.flow, key.run, LogLine(key.pathspec, key.attempt, stream, line))

    def on_exit(self, key: TaskKey, status: ExitStatus) -> None:
        """Queue the exit for the scheduler thread."""
        self._commands.put(ProcessExitedCommand(key, status))

    def on_report(self, key: TaskKey, outcome: TaskOutcome) -> None:
        """Queue a worker's outcome that came through the executor rather than
        ``CompleteTask`` (pre-forked workers); nobody waits for the answer. Executors call it
        before :meth:`on_exit` for the same attempt."""
        command = CompleteTaskCommand(key.flow, key.run, key.step, key.task, key.attempt, outcome)
        self._commands.put(command)
