"""The run state machine: one thread that starts runs, dispatches tasks and follows the graph.

Every change of run or task state happens on the scheduler thread, which consumes a queue of
commands (start a run, a worker's report, a process exit, cancel a run, change a run's user
tags, stop). That makes it the only caller of the metadata store's write methods (the store
needs no writer locking) and keeps the state below free of locks. Callers on other threads
(gRPC servicers, the executor's threads) enqueue a command and, when they need an answer, wait
on its future; the scheduler resolves it only after the change is durable.

A task attempt is finished when both its worker's report (``CompleteTask``) and its process
exit have been seen, in either order: the report is recorded as soon as it arrives (so it is
durable before the worker is told so), the successors are created once the process is gone.
An exit without a report fails the attempt. A failed attempt is run again while the retry
policy allows (by default :func:`~polyflow_core.domain.step_decorators.retry_policy`: the
step's ``@retry`` plus ``@catch``'s fallback attempt), after the retry delay. Any task that
failed its last attempt fails the run: its running tasks are killed, nothing new starts, and
the run is marked FAILED once the last of them is gone.

Timers (a retry waiting out its delay, the ``@timeout`` backstop that kills a worker still
running past its limit) sit in a heap the scheduler thread serves between commands: the
thread waits on the command queue only until the next timer is due, so nothing blocks it and
no other thread touches run state.

Dispatch is FIFO per run with at most ``max_workers`` attempts running; ready tasks wait in a
deque and are created in the metadata store when they start, so a foreach of thousands of
splits costs O(1) per task.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from polyflow_core.datastore.base import BlobStore
from polyflow_core.domain._launch import build_launch_request
from polyflow_core.domain._run_state import (
    ActiveRun,
    CancelRunCommand,
    Command,
    CompleteTaskCommand,
    ExecutorEvents,
    InputRef,
    PendingTask,
    ProcessExitedCommand,
    RunningAttempt,
    StartRunCommand,
    StopCommand,
    UpdateRunTagsCommand,
)
from polyflow_core.domain.events import (
    EventHub,
    RunFinished,
    RunMessage,
    TaskFinished,
    TaskStarted,
    held_events,
)
from polyflow_core.domain.execution import (
    PARAMETERS_STEP,
    PARAMETERS_TASK_ID,
    RunRequest,
    TaskOutcome,
    TaskSpecEncoder,
)
from polyflow_core.domain.joins import JoinError, JoinPlanner
from polyflow_core.domain.model import Language, StepSpec
from polyflow_core.domain.resume import (
    ResumeOrigin,
    ResumeState,
    clone_parameters,
    load_origin,
)
from polyflow_core.domain.step_decorators import (
    backstop_seconds,
    describe_seconds,
    retry_delay_seconds,
    task_metadata,
    timeout_seconds,
)
from polyflow_core.domain.step_decorators import retry_policy as decorator_retry_policy
from polyflow_core.domain.tags import RunTagEditor, TagChange
from polyflow_core.domain.transitions import check_transition, is_terminal
from polyflow_core.errors import CoreError, ErrorCode, FailedPreconditionError, NotFoundError
from polyflow_core.executors.base import (
    Executor,
    ExitStatus,
    TaskKey,
    WorkerLanguage,
)
from polyflow_core.metadata.base import (
    ExceptionRecord,
    MetadataStore,
    RunRecord,
    RunState,
    TaskState,
)
from polyflow_core.paths import RootLayout

__all__ = ["RetryDelay", "RetryPolicy", "Scheduler", "no_retries"]

_log = logging.getLogger(__name__)

RetryPolicy = Callable[[StepSpec], int]
"""How many times a failed task of a step is retried (0: never)."""

RetryDelay = Callable[[StepSpec, int], float]
"""Seconds to wait before running a task of a step again after ``attempt`` failed."""

RESTART_MESSAGE = "the daemon stopped before the run finished"
"""Failure message of runs found unfinished when a daemon starts."""

_LANGUAGES: dict[Language, WorkerLanguage] = {Language.PYTHON: "python", Language.R: "r"}

_MAX_BATCH = 256
"""Most commands handled in one group commit (bounds how long an answer can wait)."""


def no_retries(step: StepSpec) -> int:
    """A retry policy that never retries (for tests and embedding).

    The default policy is :func:`~polyflow_core.domain.step_decorators.retry_policy`, which
    reads the step's ``retry`` and ``catch``; the scheduler re-queues a failed task as its
    next attempt while ``attempt < policy(step)``.
    """
    del step
    return 0


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
        retry_policy: Extra attempts per step (default: from ``@retry`` and ``@catch``).
        retry_delay: Wait before an attempt that follows a failure (default: ``@retry``'s
            ``minutes_between_retries``, none before ``@catch``'s fallback attempt).
        timeout_backstop: Seconds after launch at which a worker of a step with a
            ``@timeout`` of the given seconds is killed if still running.
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
        retry_policy: RetryPolicy = decorator_retry_policy,
        retry_delay: RetryDelay = retry_delay_seconds,
        timeout_backstop: Callable[[float], float] = backstop_seconds,
    ) -> None:
        self._metadata = metadata
        self._blobs = blobs
        self._executor = executor
        self._events = events
        self._layout = layout
        self._core_address = core_address
        self._encode = encode_task_spec
        self._retry_policy = retry_policy
        self._retry_delay = retry_delay
        self._timeout_backstop = timeout_backstop
        # Timers of the scheduler thread: (due on the monotonic clock, order, action).
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_order = itertools.count()
        self._store_location = blobs.location()
        self._tags = RunTagEditor(metadata)  # user tag changes, applied on this thread
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._runs: dict[tuple[str, str], ActiveRun] = {}
        self._runs_lock = threading.Lock()  # guards the size of _runs for other threads
        self._thread: threading.Thread | None = None
        self._accept_lock = threading.Lock()
        self._accepting = False
        self._halted = ""  # why the thread stopped on its own (see `halted`)

    # --- life cycle ---------------------------------------------------------------------
    def start(self) -> list[tuple[str, str]]:
        """Fail the runs a previous daemon left unfinished, then start the threads.

        Returns:
            The ``(flow, run)`` pairs marked FAILED.
        """
        failed = self._metadata.fail_unfinished_runs(RESTART_MESSAGE)
        for flow, run in failed:
            _log.info("run %s/%s was left unfinished by an earlier daemon: failed", flow, run)
        self._executor.start(ExecutorEvents(self._events, self._commands))
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
        command = StopCommand(reason)
        self._commands.put(command)
        try:
            command.future.result(timeout)
        except Exception:
            _log.exception("scheduler: stopping failed")
        self._thread.join(timeout)
        self._executor.shutdown()
        self._events.close()

    @property
    def halted(self) -> str:
        """Why the scheduler thread stopped on its own, or empty while it serves.

        It stops when a group commit fails (a full disk, say): its runs' state in memory is
        then ahead of what is durable, so it must not go on, nor tell anyone of the changes
        it lost. The daemon then stops too, and the next one fails the unfinished runs
        (``DESIGN.md`` §2: durable before acknowledged).
        """
        return self._halted

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

        A resume (``request.origin_run_id``) reads its origin run here, on the caller's
        thread (see :mod:`polyflow_core.domain.resume`).

        Raises:
            FailedPreconditionError: A parameter artifact's blob is not in the store, or the
                origin run of a resume is unfinished or never started.
            NotFoundError: The origin run of a resume does not exist.
            InvalidArgumentError: The resume step is not in the graph.
        """
        self._check_blobs(request)
        origin: ResumeOrigin | None = None
        if request.origin_run_id:
            origin = load_origin(
                self._metadata,
                request.graph,
                request.origin_run_id,
                resume_step=request.resume_step,
                clone_only=request.clone_only,
            )
        record: RunRecord = self._call(StartRunCommand(request, origin))
        return record

    def complete_task(
        self, flow: str, run: str, step: str, task: str, attempt: int, outcome: TaskOutcome
    ) -> None:
        """Record a worker's report; returns once it is durable.

        Raises:
            NotFoundError: No such task.
            FailedPreconditionError: The attempt is not running (finished, or another one).
            OSError: The worker's unflushed blobs could not be made durable.
        """
        if outcome.blobs_unsynced:  # on the caller's thread: the scheduler's must not wait on I/O
            self._blobs.make_durable([artifact.digest for artifact in outcome.artifacts])
        self._call(CompleteTaskCommand(flow, run, step, task, attempt, outcome))

    def cancel_run(self, flow: str, run: str, reason: str) -> RunRecord:
        """Stop a run: kill its tasks, start nothing new, mark it FAILED with ``reason`` once
        its tasks are gone. A finished run is returned unchanged.

        Raises:
            NotFoundError: No such run.
        """
        record: RunRecord = self._call(CancelRunCommand(flow, run, reason or "cancelled"))
        return record

    def update_run_tags(
        self, flow_id: str, run_id: str, change: TagChange, request_id: str = ""
    ) -> RunRecord:
        """Change a run's user tags on the scheduler thread, so that the metadata store keeps
        one writer (see :class:`~polyflow_core.domain.tags.RunTagEditor`); returns the run,
        its graph left empty, once the change is durable.

        Raises:
            NotFoundError: No such run.
            InvalidArgumentError: A system tag would change, or too many tags would remain.
        """
        record: RunRecord = self._call(UpdateRunTagsCommand(flow_id, run_id, change, request_id))
        return record

    def _call(self, command: Command) -> Any:
        """Queue a command and wait for its answer."""
        with self._accept_lock:  # never queue behind the last command the thread will read
            if not self._accepting:
                raise _stopping_error()
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
        """Consume commands until stopped, running timers as they fall due."""
        while True:
            try:
                command = self._commands.get(timeout=self._until_next_timer())
            except queue.Empty:
                if self._run_due_timers_batched():
                    break
                continue
            if self._handle_batch(command) or self._run_due_timers_batched():
                break
        with self._accept_lock:
            self._accepting = False
        # Answer whatever arrived while stopping, so no caller waits forever.
        while True:
            try:
                late = self._commands.get_nowait()
            except queue.Empty:
                return
            late.future.set_exception(_stopping_error())

    def _handle_batch(self, command: Command) -> bool:
        """Handle ``command`` and the commands queued behind it (at most ``_MAX_BATCH``) as one
        group commit: their metadata writes become durable together, and only then are they
        answered and their events published. True once a :class:`StopCommand` was handled,
        or when the commit failed (the scheduler halts: see :attr:`halted`)."""
        answers: list[tuple[Command, Any, BaseException | None]] = []
        stop = False
        try:
            with held_events(), self._metadata.batch():
                while True:
                    try:
                        answers.append((command, self._handle(command), None))
                    except BaseException as error:  # the thread must outlive any one command
                        if not isinstance(error, CoreError):
                            _log.exception("scheduler: %s failed", type(command).__name__)
                        answers.append((command, None, error))
                    if isinstance(command, StopCommand):
                        stop = True
                        break
                    if len(answers) >= _MAX_BATCH:
                        break
                    try:
                        command = self._commands.get_nowait()
                    except queue.Empty:
                        break
        except BaseException as error:  # the commit failed: nothing of the batch is durable
            _log.exception("scheduler: could not commit %d command(s)", len(answers))
            answers = [(done, None, error) for done, _, _ in answers]
            stop = self._halt(error)
        for done, result, failure in answers:
            if failure is None:
                done.future.set_result(result)
            else:
                done.future.set_exception(failure)
        return stop

    def _run_due_timers_batched(self) -> bool:
        """:meth:`_run_due_timers` as one group commit; True when the commit failed (the
        scheduler halts)."""
        if not self._timers or self._timers[0][0] > time.monotonic():
            return False
        try:
            with held_events(), self._metadata.batch():
                self._run_due_timers()
        except Exception as error:
            _log.exception("scheduler: could not commit the effects of timers")
            return self._halt(error)
        return False

    def _halt(self, error: BaseException) -> bool:
        """Stop serving after a failed commit (see :attr:`halted`); returns True."""
        self._halted = f"a change of run state could not be made durable: {error}"
        _log.critical("scheduler: halting: %s", self._halted)
        return True

    def _after(self, delay: float, action: Callable[[], None]) -> None:
        """Run ``action`` on the scheduler thread ``delay`` seconds from now."""
        due = time.monotonic() + max(0.0, delay)
        heapq.heappush(self._timers, (due, next(self._timer_order), action))

    def _until_next_timer(self) -> float | None:
        """Seconds until the next timer is due (None: no timer)."""
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - time.monotonic())

    def _run_due_timers(self) -> None:
        """Run every timer that is due, oldest first."""
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, action = heapq.heappop(self._timers)
            try:
                action()
            except Exception:  # already logged (and its run failed) by _guarded
                _log.debug("scheduler: a timer failed", exc_info=True)

    def _handle(self, command: Command) -> Any:
        """Run one command."""
        if isinstance(command, ProcessExitedCommand):
            key = command.key
            self._guarded(key.flow, key.run, lambda: self._on_exit(key, command.status))
            return None
        if isinstance(command, CompleteTaskCommand):
            self._guarded(command.flow, command.run, lambda: self._on_report(command))
            return None
        if isinstance(command, StartRunCommand):
            return self._on_start_run(command.request, command.origin)
        if isinstance(command, CancelRunCommand):
            return self._on_cancel(command.flow, command.run, command.reason)
        if isinstance(command, StopCommand):
            self._on_stop(command.reason)
            return None
        if isinstance(command, UpdateRunTagsCommand):
            return self._tags.apply(command.flow, command.run, command.change, command.request_id)
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
    def _on_start_run(self, request: RunRequest, origin: ResumeOrigin | None) -> RunRecord:
        """Record the run and its first tasks (a resume clones its origin's parameters),
        then dispatch."""
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
            origin_run_id=origin.run_id if origin else "",
            request_id=request.request_id,
        )
        key = (record.flow_id, record.run_id)
        if key in self._runs or record.state is not RunState.PENDING:
            return record  # the same request_id again: the run it created
        flow, run_id = key
        try:
            if origin is not None:
                clone_parameters(self._metadata, flow, run_id, origin)
            else:
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
        log = self._events.open(flow, run_id)
        state = ActiveRun(flow, run_id, request, JoinPlanner(graph), log)
        if origin is not None:
            state.resume = ResumeState(origin, graph, request.options.max_num_splits)
        with self._runs_lock:
            self._runs[key] = state
        params = InputRef(PARAMETERS_TASK_ID, PARAMETERS_STEP, 0, ())
        state.ready.append(PendingTask(start.name, (), (params,)))
        self._metadata.set_run_state(flow, run_id, RunState.RUNNING)
        self._dispatch(state)
        return self._metadata.get_run(flow, run_id)

    # --- dispatch ---------------------------------------------------------------------------
    def _dispatch(self, run: ActiveRun) -> None:
        """Start ready tasks, oldest first, while the run has free worker slots (a resumed
        run first clones the ready tasks its origin run has results for)."""
        if run.resume is not None and not self._clone_ready(run, run.resume):
            return
        limit = max(1, run.request.options.max_workers)
        while run.ready and not run.stopping and len(run.running) < limit:
            self._launch(run, run.ready.popleft())

    def _clone_ready(self, run: ActiveRun, resume: ResumeState) -> bool:
        """Clone what can be cloned (:meth:`ResumeState.clone_ready`); False when the run
        ended or is stopping, so nothing is to be launched."""
        try:
            result = resume.clone_ready(run, self._metadata, self._layout)
        except Exception as error:
            if not isinstance(error, CoreError):
                _log.exception("scheduler: cloning tasks of run %s/%s", run.flow, run.run_id)
            self._fail_run(run, f"could not clone the tasks of run {resume.origin.name}: {error}")
            return False
        if result.join_error is not None:
            self._fail_run(run, f"a cloned task could not be joined: {result.join_error}")
            return False
        if result.end_task_id:
            self._finish_run(run, RunState.SUCCEEDED, end_task_id=result.end_task_id)
            return False
        if resume.clone_only and not run.stopping and not run.running:
            which = resume.first_unclonable(run.ready) or "the end step"
            self._fail_run(
                run,
                f"clone-only resume of run {resume.origin.name}: {which} has no successful "
                "task to clone, and a clone-only resume runs nothing",
            )
            return False
        return not run.stopping

    def _launch(self, run: ActiveRun, task: PendingTask) -> None:
        """Create (if new) and start one task attempt."""
        flow, run_id = run.flow, run.run_id
        step = run.graph.step(task.step)
        if task.task_id is None:
            record = self._metadata.create_task(
                flow_id=flow,
                run_id=run_id,
                step_name=task.step,
                foreach_stack=task.foreach_stack,
                input_tasks=[run.pathspec(i.step, i.task_id) for i in task.inputs],
                metadata=(
                    run.resume.task_metadata(task_metadata(step))
                    if run.resume is not None
                    else task_metadata(step) or None
                ),
            )
            task.task_id = record.task_id
        key = TaskKey(flow, run_id, task.step, task.task_id, task.attempt)
        self._metadata.start_attempt(flow, run_id, task.task_id, task.attempt)
        attempt = RunningAttempt(task, key)
        run.running[task.task_id] = attempt
        run.events.append(TaskStarted(key.pathspec, key.attempt))
        try:
            request = build_launch_request(
                run,
                task,
                key,
                metadata=self._metadata,
                encode=self._encode,
                core_address=self._core_address,
                store=self._store_location,
                layout=self._layout,
            )
            attempt.handle = self._executor.launch(request)
            limit = timeout_seconds(step)
            if limit > 0:
                self._after(
                    self._timeout_backstop(limit),
                    lambda: self._guarded(flow, run_id, lambda: self._on_deadline(key, limit)),
                )
        except Exception as error:
            if not isinstance(error, CoreError):
                _log.exception("scheduler: could not launch %s", key.pathspec)
            attempt.exit = ExitStatus(detail="not started")
            self._record_verdict(
                run, attempt, TaskState.FAILED, f"could not start the task: {error}"
            )
            self._finish_attempt(run, attempt)

    def _on_deadline(self, key: TaskKey, limit: float) -> None:
        """The ``@timeout`` backstop: kill the attempt if its worker is still running."""
        found = self._find_attempt(key.flow, key.run, key.task)
        if found is None or found[1].key != key or found[1].exit is not None:
            return  # finished in time
        run, attempt = found
        limit_text = describe_seconds(limit)
        attempt.timeout_message = (
            f"the step ran over its @timeout of {limit_text} and the core stopped its worker"
        )
        run.events.append(
            RunMessage(
                f"task {key.pathspec} is still running past its @timeout of {limit_text}: "
                "stopping it"
            )
        )
        if attempt.handle is not None:
            self._executor.kill(attempt.handle)

    # --- reports and exits ----------------------------------------------------------------
    def _find_attempt(
        self, flow: str, run_id: str, task_id: str
    ) -> tuple[ActiveRun, RunningAttempt] | None:
        """The running attempt of a task, if any."""
        run = self._runs.get((flow, run_id))
        if run is None:
            return None
        attempt = run.running.get(task_id)
        return (run, attempt) if attempt is not None else None

    def _on_report(self, report: CompleteTaskCommand) -> None:
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

    def _raise_not_running(self, report: CompleteTaskCommand) -> NoReturn:
        """Explain why a report has no running attempt to go to."""
        name = f"flows/{report.flow}/runs/{report.run}/steps/{report.step}/tasks/{report.task}"
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
            elif attempt.timeout_message:
                message = f"worker {status.describe()}: {attempt.timeout_message}"
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
        run: ActiveRun,
        attempt: RunningAttempt,
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

    def _finish_attempt(self, run: ActiveRun, attempt: RunningAttempt) -> None:
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
            self._retry_later(run, attempt, step)
            return
        self._fail_run(run, f"task {key.pathspec} failed: {attempt.failure_message}")

    def _retry_later(self, run: ActiveRun, attempt: RunningAttempt, step: StepSpec) -> None:
        """Queue the next attempt of a failed task, at once or after the retry delay."""
        task = attempt.task
        task.attempt = attempt.key.attempt + 1
        task.previous_failure = attempt.failure_message
        delay = self._retry_delay(step, attempt.key.attempt)
        which = f"task {attempt.key.pathspec} (retry {task.attempt} of {self._retry_policy(step)})"
        if delay <= 0:
            run.events.append(RunMessage(f"retrying {which}"))
            run.ready.append(task)
            return
        run.events.append(RunMessage(f"retrying {which} in {describe_seconds(delay)}"))

        def ready() -> None:
            if self._runs.get((run.flow, run.run_id)) is run and not run.stopping:
                run.ready.append(task)
                self._dispatch(run)

        self._after(delay, lambda: self._guarded(run.flow, run.run_id, ready))

    # --- following the graph ----------------------------------------------------------------
    def _advance(
        self, run: ActiveRun, attempt: RunningAttempt, step: StepSpec, outcome: TaskOutcome
    ) -> None:
        """Create the successors of a succeeded task, or finish the run after the end step."""
        key = attempt.key
        if is_terminal(step):
            self._finish_run(run, RunState.SUCCEEDED, end_task_id=key.task)
            return
        source = InputRef(key.task, key.step, key.attempt, attempt.task.foreach_stack)
        run.queue_successors(step, source, outcome)

    # --- ending runs --------------------------------------------------------------------------
    def _fail_run(self, run: ActiveRun, message: str) -> None:
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
        self, run: ActiveRun, state: RunState, message: str = "", end_task_id: str = ""
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


def _stopping_error() -> CoreError:
    """The answer to requests that arrive while the daemon stops."""
    return CoreError("the daemon is stopping", code=ErrorCode.UNAVAILABLE, reason="DAEMON_STOPPING")
