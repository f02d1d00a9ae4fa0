"""The run state machine: one thread that starts runs, dispatches tasks and follows the graph.

Every change of run or task state happens on the scheduler thread, which consumes a queue of
commands (start a run, a worker's report, a process exit, cancel a run, stop). That makes it
the only caller of the metadata store's write methods (the store needs no writer locking) and
keeps the state below free of locks. Callers on other threads (gRPC servicers, the executor's
threads) enqueue a command and, when they need an answer, wait on its future; the scheduler
resolves it only after the change is durable.

A task attempt is finished when both its worker's report (``CompleteTask``) and its process
exit have been seen, in either order: the report is recorded as soon as it arrives (so it is
durable before the worker is told so), the successors are created once the process is gone.
An exit without a report fails the attempt. Any failed task (after its retries, none for now:
see :func:`no_retries`) fails the run: its running tasks are killed, nothing new starts, and
the run is marked FAILED once the last of them is gone.

Dispatch is FIFO per run with at most ``max_workers`` attempts running; ready tasks wait in a
deque and are created in the metadata store when they start, so a foreach of thousands of
splits costs O(1) per task.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from polyflow_core.datastore.base import BlobStore
from polyflow_core.domain.events import (
    EventHub,
    LogLine,
    RunEventLog,
    RunFinished,
    RunMessage,
    TaskFinished,
    TaskStarted,
)
from polyflow_core.domain.execution import (
    PARAMETERS_STEP,
    PARAMETERS_TASK_ID,
    RunRequest,
    TaskInputData,
    TaskOutcome,
    TaskSpecData,
    TaskSpecEncoder,
    step_language,
)
from polyflow_core.domain.joins import JoinCollector, JoinError, JoinPlanner
from polyflow_core.domain.model import FlowGraph, Language, StepKind, StepSpec, TransitionKind
from polyflow_core.domain.transitions import check_transition, is_terminal, ordered_targets
from polyflow_core.errors import CoreError, ErrorCode, FailedPreconditionError, NotFoundError
from polyflow_core.executors.base import (
    Executor,
    ExitStatus,
    LaunchRequest,
    TaskHandle,
    TaskKey,
    WorkerLanguage,
)
from polyflow_core.metadata.base import (
    ExceptionRecord,
    ForeachFrameRecord,
    MetadataStore,
    RunRecord,
    RunState,
    TaskState,
)
from polyflow_core.paths import LogStreamName, RootLayout

__all__ = ["RetryPolicy", "Scheduler", "no_retries"]

_log = logging.getLogger(__name__)

RetryPolicy = Callable[[StepSpec], int]
"""How many times a failed task of a step is retried (0: never)."""

RESTART_MESSAGE = "the daemon stopped before the run finished"
"""Failure message of runs found unfinished when a daemon starts."""

_LANGUAGES: dict[Language, WorkerLanguage] = {Language.PYTHON: "python", Language.R: "r"}


def no_retries(step: StepSpec) -> int:
    """The retry policy for now: never retry.

    This is the seam for ``@retry``: a policy reads the step's decorators (``times`` of
    ``retry``) and returns the number of extra attempts; the scheduler already re-queues a
    failed task as its next attempt while ``attempt < policy(step)``.
    """
    del step
    return 0


# --- state of the runs (scheduler thread only) ------------------------------------------------
@dataclass(frozen=True)
class _InputRef:
    """A finished task that another task reads."""

    task_id: str
    step: str
    attempt: int
    foreach_stack: tuple[ForeachFrameRecord, ...]


@dataclass(eq=False)
class _Pending:
    """A task waiting for a worker slot (``task_id`` is set once it exists in the store)."""

    step: str
    foreach_stack: tuple[ForeachFrameRecord, ...]
    inputs: tuple[_InputRef, ...]
    task_id: str | None = None
    attempt: int = 0


@dataclass(eq=False)
class _Attempt:
    """A task attempt handed to the executor, until both its report and its exit are in."""

    task: _Pending
    key: TaskKey
    handle: TaskHandle | None = None
    state: TaskState | None = None  # the recorded verdict, once reported (or failed)
    failure_message: str = ""
    exception: ExceptionRecord | None = None
    outcome: TaskOutcome | None = None
    exit: ExitStatus | None = None
    kill_reason: str = ""


@dataclass(eq=False)
class _Run:
    """An unfinished run."""

    flow: str
    run_id: str
    request: RunRequest
    planner: JoinPlanner
    events: RunEventLog
    ready: deque[_Pending] = field(default_factory=deque)
    running: dict[str, _Attempt] = field(default_factory=dict)
    joins: dict[Any, JoinCollector[_InputRef]] = field(default_factory=dict)
    stopping: str = ""  # why the run is failing; set once, then nothing new starts

    @property
    def graph(self) -> FlowGraph:
        """The run's validated graph."""
        return self.request.graph

    def pathspec(self, step: str, task_id: str) -> str:
        """``flow/run/step/task``."""
        return f"{self.flow}/{self.run_id}/{step}/{task_id}"


# --- commands -------------------------------------------------------------------------------
@dataclass(eq=False)
class _Command:
    """Something for the scheduler thread to do; ``future`` gets the answer."""

    future: Future[Any] = field(default_factory=Future, init=False)


@dataclass(eq=False)
class _StartRun(_Command):
    request: RunRequest


@dataclass(eq=False)
class _CompleteTask(_Command):
    flow: str
    run: str
    step: str
    task: str
    attempt: int
    outcome: TaskOutcome


@dataclass(eq=False)
class _ProcessExited(_Command):
    key: TaskKey
    status: ExitStatus


@dataclass(eq=False)
class _CancelRun(_Command):
    flow: str
    run: str
    reason: str


@dataclass(eq=False)
class _Stop(_Command):
    reason: str


class _Listener:
    """Receives the executor's reports on its threads: log lines go straight to the run's
    event log (they change no metadata), exits are queued for the scheduler thread."""

    def __init__(self, events: EventHub, commands: queue.SimpleQueue[_Command]) -> None:
        self._events = events
        self._commands = commands

    def on_output(self, key: TaskKey, stream: LogStreamName, line: str) -> None:
        """Publish a line as a :class:`LogLine` event."""
        self._events.publish(key.flow, key.run, LogLine(key.pathspec, key.attempt, stream, line))

    def on_exit(self, key: TaskKey, status: ExitStatus) -> None:
        """Queue the exit for the scheduler thread."""
        self._commands.put(_ProcessExited(key, status))


class Scheduler:
    """Runs flows: the single writer of run and task state.

    Args:
        metadata: Where runs and tasks are recorded.
        blobs: The artifact store (checked for parameter blobs; its location goes to workers).
        executor: Where task attempts run.
        events: Per-run event logs for ``WatchRun``.
        layout: The root's layout (log file paths).
        core_address: The address workers call back on.
        encode_task_spec: Serializes a task spec for the worker.
        retry_policy: Extra attempts per step; :func:`no_retries` for now.
    """

    def __init__(
        self,
        *,
        metadata: MetadataStore,
        blobs: BlobStore,
        executor: Executor,
        events: EventHub,
        layout: RootLayout,
        core_address: str,
        encode_task_spec: TaskSpecEncoder,
        retry_policy: RetryPolicy = no_retries,
    ) -> None:
        self._metadata = metadata
        self._blobs = blobs
        self._executor = executor
        self._events = events
        self._layout = layout
        self._core_address = core_address
        self._encode = encode_task_spec
        self._retry_policy = retry_policy
        self._store_location = blobs.location()
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._runs: dict[tuple[str, str], _Run] = {}
        self._runs_lock = threading.Lock()  # guards the size of _runs for other threads
        self._thread: threading.Thread | None = None
        self._accepting = False

    # --- life cycle ---------------------------------------------------------------------
    def start(self) -> list[tuple[str, str]]:
        """Fail the runs a previous daemon left unfinished, then start the threads.

        Returns:
            The ``(flow, run)`` pairs marked FAILED.
        """
        failed = self._metadata.fail_unfinished_runs(RESTART_MESSAGE)
        for flow, run in failed:
            _log.info("run %s/%s was left unfinished by an earlier daemon: failed", flow, run)
        self._executor.start(_Listener(self._events, self._commands))
        self._accepting = True
        self._thread = threading.Thread(target=self._loop, name="polyflow-scheduler")
        self._thread.daemon = True
        self._thread.start()
        return failed

    def stop(self, reason: str = "daemon stopped", timeout: float = 30.0) -> None:
        """Fail every unfinished run with ``reason`` (killing its tasks), stop the thread and
        the executor."""
        if self._thread is None or not self._thread.is_alive():
            self._executor.shutdown()
            return
        command = _Stop(reason)
        self._commands.put(command)
        try:
            command.future.result(timeout)
        except Exception:
            _log.exception("scheduler: stopping failed")
        self._thread.join(timeout)
        self._executor.shutdown()
        self._events.close()

    def active_run_count(self) -> int:
        """Runs not finished yet (any thread)."""
        with self._runs_lock:
            return len(self._runs)

    def is_active(self, flow: str, run: str) -> bool:
        """Whether a run is still going in this daemon (any thread)."""
        with self._runs_lock:
            return (flow, run) in self._runs

    # --- requests (any thread; they wait for the scheduler thread) -------------------------
    def start_run(self, request: RunRequest) -> RunRecord:
        """Record a run, its ``_parameters`` task and its start task, and start it.

        Raises:
            FailedPreconditionError: A parameter artifact's blob is not in the store.
        """
        self._check_blobs(request)
        return self._call(_StartRun(request))  # type: ignore[no-any-return]

    def complete_task(
        self, flow: str, run: str, step: str, task: str, attempt: int, outcome: TaskOutcome
    ) -> None:
        """Record a worker's report; returns once it is durable.

        Raises:
            NotFoundError: No such task.
            FailedPreconditionError: The attempt is not running (finished, or another one).
        """
        self._call(_CompleteTask(flow, run, step, task, attempt, outcome))

    def cancel_run(self, flow: str, run: str, reason: str) -> RunRecord:
        """Stop a run: kill its tasks, start nothing new, mark it FAILED with ``reason`` once
        its tasks are gone. A finished run is returned unchanged.

        Raises:
            NotFoundError: No such run.
        """
        return self._call(_CancelRun(flow, run, reason or "cancelled"))  # type: ignore[no-any-return]

    def _call(self, command: _Command) -> Any:
        """Queue a command and wait for its answer."""
        if not self._accepting:
            raise CoreError(
                "the daemon is stopping", code=ErrorCode.UNAVAILABLE, reason="DAEMON_STOPPING"
            )
        self._commands.put(command)
        return command.future.result()

    def _check_blobs(self, request: RunRequest) -> None:
        """Refuse parameter artifacts whose bytes the client did not store."""
        artifacts = request.parameter_artifacts
        present = self._blobs.has_many([artifact.digest for artifact in artifacts])
        for artifact, ok in zip(artifacts, present, strict=True):
            if not ok:
                raise FailedPreconditionError(
                    f"parameter artifact {artifact.name!r} refers to blob {artifact.digest}, "
                    "which is not in the store",
                    reason="BLOB_NOT_FOUND",
                    metadata={"artifact": artifact.name, "digest": artifact.digest},
                )

    # --- the scheduler thread -------------------------------------------------------------
    def _loop(self) -> None:
        """Consume commands until stopped."""
        while True:
            command = self._commands.get()
            try:
                result = self._handle(command)
            except BaseException as error:  # the thread must outlive any one command
                if not isinstance(error, CoreError):
                    _log.exception("scheduler: %s failed", type(command).__name__)
                command.future.set_exception(error)
            else:
                command.future.set_result(result)
            if isinstance(command, _Stop):
                break
        self._accepting = False
        # Answer whatever arrived while stopping, so no caller waits forever.
        while True:
            try:
                late = self._commands.get_nowait()
            except queue.Empty:
                return
            late.future.set_exception(
                CoreError("the daemon is stopping", code=ErrorCode.UNAVAILABLE,
                          reason="DAEMON_STOPPING")
            )

    def _handle(self, command: _Command) -> Any:
        """Run one command."""
        if isinstance(command, _ProcessExited):
            key = command.key
            self._guarded(key.flow, key.run, lambda: self._on_exit(key, command.status))
            return None
        if isinstance(command, _CompleteTask):
            self._guarded(command.flow, command.run, lambda: self._on_report(command))
            return None
        if isinstance(command, _StartRun):
            return self._on_start_run(command.request)
        if isinstance(command, _CancelRun):
            return self._on_cancel(command.flow, command.run, command.reason)
        if isinstance(command, _Stop):
            self._on_stop(command.reason)
            return None
        raise TypeError(f"unknown scheduler command {command!r}")

    def _guarded(self, flow: str, run_id: str, action: Callable[[], None]) -> None:
        """Run ``action``; an unexpected error fails the run it concerns rather than leaving
        it half-updated and waiting forever."""
        try:
            action()
        except CoreError:
            raise
        except Exception as error:
            _log.exception("scheduler: internal error in run %s/%s", flow, run_id)
            run = self._runs.get((flow, run_id))
            if run is not None:
                try:
                    self._fail_run(run, f"internal error in the core: {error!r}")
                except Exception:
                    _log.exception("scheduler: could not fail run %s/%s", flow, run_id)
            raise

    # --- starting a run ---------------------------------------------------------------------
    def _on_start_run(self, request: RunRequest) -> RunRecord:
        """Record the run and its first tasks, then dispatch."""
        graph = request.graph
        record = self._metadata.create_run(
            flow_id=graph.flow_name,
            user=request.user,
            tags=request.tags,
            system_tags=request.system_tags,
            graph=request.graph_bytes,
            options=request.options_bytes,
            environment=request.environment_bytes,
            namespace=request.namespace,
            request_id=request.request_id,
        )
        key = (record.flow_id, record.run_id)
        if key in self._runs or record.state is not RunState.PENDING:
            return record  # the same request_id again: the run it created
        flow, run_id = key
        try:
            self._metadata.create_task(
                flow_id=flow,
                run_id=run_id,
                step_name=PARAMETERS_STEP,
                foreach_stack=(),
                input_tasks=(),
                task_id=PARAMETERS_TASK_ID,
            )
            self._metadata.start_attempt(flow, run_id, PARAMETERS_TASK_ID, 0)
            self._metadata.finish_attempt(
                flow,
                run_id,
                PARAMETERS_TASK_ID,
                0,
                state=TaskState.SUCCEEDED,
                artifacts=request.parameter_artifacts,
            )
            start = graph.step(request.start_step)
        except Exception as error:
            message = f"could not start the run: {error}"
            self._metadata.set_run_state(flow, run_id, RunState.FAILED, failure_message=message)
            self._events.publish(flow, run_id, RunFinished(RunState.FAILED, message))
            raise
        state = _Run(flow, run_id, request, JoinPlanner(graph), self._events.open(flow, run_id))
        with self._runs_lock:
            self._runs[key] = state
        params = _InputRef(PARAMETERS_TASK_ID, PARAMETERS_STEP, 0, ())
        state.ready.append(_Pending(start.name, (), (params,)))
        self._metadata.set_run_state(flow, run_id, RunState.RUNNING)
        self._dispatch(state)
        return self._metadata.get_run(flow, run_id)

    # --- dispatch ---------------------------------------------------------------------------
    def _dispatch(self, run: _Run) -> None:
        """Start ready tasks, oldest first, while the run has free worker slots."""
        limit = max(1, run.request.options.max_workers)
        while run.ready and not run.stopping and len(run.running) < limit:
            self._launch(run, run.ready.popleft())

    def _launch(self, run: _Run, task: _Pending) -> None:
        """Create (if new) and start one task attempt."""
        flow, run_id = run.flow, run.run_id
        if task.task_id is None:
            record = self._metadata.create_task(
                flow_id=flow,
                run_id=run_id,
                step_name=task.step,
                foreach_stack=task.foreach_stack,
                input_tasks=[run.pathspec(i.step, i.task_id) for i in task.inputs],
            )
            task.task_id = record.task_id
        key = TaskKey(flow, run_id, task.step, task.task_id, task.attempt)
        self._metadata.start_attempt(flow, run_id, task.task_id, task.attempt)
        attempt = _Attempt(task, key)
        run.running[task.task_id] = attempt
        run.events.append(TaskStarted(key.pathspec, key.attempt))
        try:
            request = self._launch_request(run, task, key)
            attempt.handle = self._executor.launch(request)
        except Exception as error:
            if not isinstance(error, CoreError):
                _log.exception("scheduler: could not launch %s", key.pathspec)
            attempt.exit = ExitStatus(detail="not started")
            self._record_verdict(
                run, attempt, TaskState.FAILED, f"could not start the task: {error}"
            )
            self._finish_attempt(run, attempt)

    def _launch_request(self, run: _Run, task: _Pending, key: TaskKey) -> LaunchRequest:
        """The executor's request for an attempt, with its serialized ``TaskSpec``."""
        request = run.request
        graph = request.graph
        step = graph.step(task.step)
        language = step_language(graph, step)
        environment = request.environment
        spec = TaskSpecData(
            flow=run.flow,
            run=run.run_id,
            step=task.step,
            task=key.task,
            attempt=key.attempt,
            inputs=tuple(self._input_data(run, ref) for ref in task.inputs),
            foreach_stack=task.foreach_stack,
            graph_bytes=request.graph_bytes,
            max_num_splits=request.options.max_num_splits,
            code_path=environment.code_path,
            core_address=self._core_address,
            store=self._store_location,
            user=request.user,
            tags=tuple(request.tags) + tuple(request.system_tags),
            parameter_names=tuple(parameter.name for parameter in graph.parameters),
            namespace=request.namespace,
        )
        return LaunchRequest(
            key=key,
            task_spec=self._encode(spec),
            language=_LANGUAGES[language],
            interpreter=environment.interpreters[language],
            environment=environment.variables,
            working_directory=environment.working_directory,
            stdout_path=self._log_path(key, "stdout"),
            stderr_path=self._log_path(key, "stderr"),
            max_log_size_bytes=request.options.max_log_size_bytes,
            decorators=tuple((d.name, d.attributes) for d in step.decorators),
        )

    def _input_data(self, run: _Run, ref: _InputRef) -> TaskInputData:
        """An input task with the artifacts it stored, read from the store."""
        artifacts = self._metadata.list_artifacts(run.flow, run.run_id, ref.task_id, ref.attempt)
        return TaskInputData(
            pathspec=run.pathspec(ref.step, ref.task_id),
            step=ref.step,
            artifacts=tuple(artifacts),
            foreach_stack=ref.foreach_stack,
        )

    def _log_path(self, key: TaskKey, stream: LogStreamName) -> Path:
        """Where an attempt's stream is stored."""
        return self._layout.task_log_path(
            key.flow, key.run, key.step, key.task, key.attempt, stream
        )

    # --- reports and exits ----------------------------------------------------------------
    def _find_attempt(self, flow: str, run_id: str, task_id: str) -> tuple[_Run, _Attempt] | None:
        """The running attempt of a task, if any."""
        run = self._runs.get((flow, run_id))
        if run is None:
            return None
        attempt = run.running.get(task_id)
        return (run, attempt) if attempt is not None else None

    def _on_report(self, report: _CompleteTask) -> None:
        """Record a worker's outcome (checked against the graph); finish the attempt if its
        process is gone already."""
        found = self._find_attempt(report.flow, report.run, report.task)
        if found is None or found[1].key.step != report.step:
            self._raise_not_running(report)
        run, attempt = found
        if attempt.key.attempt != report.attempt or attempt.state is not None:
            self._raise_not_running(report)
        outcome = report.outcome
        step = run.graph.step(attempt.key.step)
        if outcome.succeeded:
            problem = check_transition(
                step,
                outcome.next_steps,
                outcome.foreach_num_splits,
                run.request.options.max_num_splits,
            )
            state = TaskState.FAILED if problem else TaskState.SUCCEEDED
        else:
            problem = outcome.failure_message or (
                f"{outcome.exception.type}: {outcome.exception.message}"
                if outcome.exception
                else "the worker reported a failure"
            )
            state = TaskState.FAILED
        attempt.outcome = outcome
        self._record_verdict(
            run, attempt, state, problem, exception=outcome.exception, outcome=outcome
        )
        if attempt.exit is not None:
            self._finish_attempt(run, attempt)
            self._dispatch(run)

    def _raise_not_running(self, report: _CompleteTask) -> NoReturn:
        """Explain why a report has no running attempt to go to."""
        name = (
            f"flows/{report.flow}/runs/{report.run}/steps/{report.step}/tasks/{report.task}"
        )
        task = self._metadata.get_task(report.flow, report.run, report.task)  # NOT_FOUND
        if task.step_name != report.step:
            raise NotFoundError(f"task {name} does not exist", metadata={"name": name})
        raise FailedPreconditionError(
            f"attempt {report.attempt} of task {name} is not running",
            reason="ATTEMPT_NOT_RUNNING",
            metadata={"name": name, "attempt": str(report.attempt)},
        )

    def _on_exit(self, key: TaskKey, status: ExitStatus) -> None:
        """A worker process is gone: fail the attempt if it never reported, then finish it."""
        found = self._find_attempt(key.flow, key.run, key.task)
        if found is None or found[1].key != key:
            _log.debug("scheduler: exit of %s attempt %d ignored", key.pathspec, key.attempt)
            return
        run, attempt = found
        attempt.exit = status
        if attempt.state is None:
            if attempt.kill_reason:
                message = f"{status.describe()} because the run stopped: {attempt.kill_reason}"
            elif status.signal_number is not None:
                message = f"worker {status.describe()} before reporting its outcome"
            elif status.exit_code is not None:
                message = (
                    f"worker exited with code {status.exit_code} without reporting its outcome"
                )
            else:
                message = f"worker {status.describe()} without reporting its outcome"
            self._record_verdict(run, attempt, TaskState.FAILED, message)
        elif attempt.state is TaskState.SUCCEEDED and not status.succeeded:
            # The report is durable and was acknowledged: it stands. Say what happened.
            run.events.append(
                RunMessage(
                    f"task {key.pathspec} reported success, then its worker {status.describe()}"
                )
            )
        self._finish_attempt(run, attempt)
        self._dispatch(run)

    def _record_verdict(
        self,
        run: _Run,
        attempt: _Attempt,
        state: TaskState,
        message: str,
        *,
        exception: ExceptionRecord | None = None,
        outcome: TaskOutcome | None = None,
    ) -> None:
        """Record the end of an attempt durably (the attempt stays in ``running``)."""
        key = attempt.key
        self._metadata.finish_attempt(
            run.flow,
            run.run_id,
            key.task,
            key.attempt,
            state=state,
            artifacts=outcome.artifacts if outcome else (),
            next_steps=outcome.next_steps if outcome and state is TaskState.SUCCEEDED else (),
            failure_message=message if state is TaskState.FAILED else "",
            exception=exception,
            metadata=dict(outcome.metadata) if outcome else None,
        )
        attempt.state = state
        attempt.failure_message = message if state is TaskState.FAILED else ""
        attempt.exception = exception

    def _finish_attempt(self, run: _Run, attempt: _Attempt) -> None:
        """Both report and exit are in: publish, then move the run along (or stop it)."""
        key = attempt.key
        del run.running[key.task]
        step = run.graph.step(key.step)
        will_retry = (
            attempt.state is TaskState.FAILED
            and not run.stopping
            and key.attempt < self._retry_policy(step)
        )
        run.events.append(
            TaskFinished(
                key.pathspec,
                key.attempt,
                attempt.state or TaskState.FAILED,
                attempt.failure_message,
                attempt.exception,
                will_retry,
            )
        )
        if run.stopping:
            if not run.running:
                self._finish_run(run, RunState.FAILED, run.stopping)
            return
        if attempt.state is TaskState.SUCCEEDED and attempt.outcome is not None:
            try:
                self._advance(run, attempt, step, attempt.outcome)
            except JoinError as error:
                self._fail_run(run, f"task {key.pathspec} could not be joined: {error}")
            return
        if will_retry:
            task = attempt.task
            task.attempt = key.attempt + 1
            run.events.append(
                RunMessage(f"retrying task {key.pathspec} (attempt {task.attempt})")
            )
            run.ready.append(task)
            return
        self._fail_run(run, f"task {key.pathspec} failed: {attempt.failure_message}")

    # --- following the graph ----------------------------------------------------------------
    def _advance(self, run: _Run, attempt: _Attempt, step: StepSpec, outcome: TaskOutcome) -> None:
        """Create the successors of a succeeded task, or finish the run after the end step."""
        key = attempt.key
        if is_terminal(step):
            self._finish_run(run, RunState.SUCCEEDED, end_task_id=key.task)
            return
        source = _InputRef(key.task, key.step, key.attempt, attempt.task.foreach_stack)
        for target_name in ordered_targets(step, outcome.next_steps):
            target = run.graph.step(target_name)
            if target.kind is StepKind.JOIN or target.is_join:
                self._arrive_at_join(run, target, source)
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
                    run.ready.append(
                        _Pending(target_name, (*source.foreach_stack, frame), (source,))
                    )
            else:
                run.ready.append(_Pending(target_name, source.foreach_stack, (source,)))

    def _arrive_at_join(self, run: _Run, join: StepSpec, source: _InputRef) -> None:
        """Add a task to the inputs its join collects; queue the join once complete."""
        placement = run.planner.place(join, source.step, source.foreach_stack)
        collector = run.joins.get(placement.key)
        if collector is None:
            collector = run.joins[placement.key] = JoinCollector(placement.expected)
        if collector.add(placement.position, source):
            del run.joins[placement.key]
            run.ready.append(
                _Pending(join.name, placement.join_stack, tuple(collector.ordered()))
            )

    # --- ending runs --------------------------------------------------------------------------
    def _fail_run(self, run: _Run, message: str) -> None:
        """Stop a run: nothing new starts, running tasks are killed; it is marked FAILED once
        the last of them is gone."""
        if run.stopping:
            return
        run.stopping = message
        run.ready.clear()
        run.joins.clear()
        if not run.running:
            self._finish_run(run, RunState.FAILED, message)
            return
        run.events.append(
            RunMessage(f"stopping the run: killing {len(run.running)} running task(s)")
        )
        for attempt in run.running.values():
            attempt.kill_reason = message
            if attempt.handle is not None:
                self._executor.kill(attempt.handle)

    def _finish_run(
        self, run: _Run, state: RunState, message: str = "", end_task_id: str = ""
    ) -> None:
        """Record the run's end and close its event stream."""
        for attempt in list(run.running.values()):  # nothing runs after the end step
            attempt.kill_reason = "the run finished"
            if attempt.handle is not None:
                self._executor.kill(attempt.handle)
            if attempt.state is None:
                self._record_verdict(run, attempt, TaskState.FAILED, "the run finished")
        run.running.clear()
        self._metadata.set_run_state(
            run.flow, run.run_id, state, failure_message=message, end_task_id=end_task_id
        )
        run.events.append(RunFinished(state, message))
        with self._runs_lock:
            self._runs.pop((run.flow, run.run_id), None)

    def _on_cancel(self, flow: str, run_id: str, reason: str) -> RunRecord:
        """Cancel a run (no-op for a finished one)."""
        run = self._runs.get((flow, run_id))
        if run is None:
            return self._metadata.get_run(flow, run_id)  # NOT_FOUND, or finished already
        if not run.stopping:
            run.events.append(RunMessage(f"run cancelled: {reason}"))
            self._fail_run(run, reason)
        return self._metadata.get_run(flow, run_id)

    def _on_stop(self, reason: str) -> None:
        """The daemon is stopping: fail every unfinished run now, without waiting for exits."""
        for run in list(self._runs.values()):
            for attempt in run.running.values():
                attempt.kill_reason = reason
                if attempt.handle is not None:
                    self._executor.kill(attempt.handle)
                if attempt.state is None:
                    try:
                        self._record_verdict(run, attempt, TaskState.FAILED, reason)
                    except Exception:
                        _log.exception("scheduler: could not record %s", attempt.key.pathspec)
            run.running.clear()
            try:
                self._finish_run(run, RunState.FAILED, run.stopping or reason)
            except Exception:
                _log.exception("scheduler: could not fail run %s/%s", run.flow, run.run_id)
        self._accepting = False

