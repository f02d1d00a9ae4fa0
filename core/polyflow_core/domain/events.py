"""Run events: what happened in a run, in order, kept in memory for ``WatchRun`` subscribers.

Each run has one :class:`RunEventLog`. The scheduler thread appends task and run events; the
executor's log-pump thread appends log lines directly (they change no metadata, so they do not
go through the scheduler). Readers (one gRPC thread per ``WatchRun`` call) block on a condition
variable until an event past their position arrives.

Sequence numbers start at 1 and grow by one per event of the run. Memory is bounded: a run keeps
at most ``max_log_lines`` log-line events (the oldest are dropped first, leaving gaps in the
sequence a late reader can see), and always keeps every other event, so a late subscriber still
learns how every task and the run ended.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import heapq
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

from polyflow_core.metadata.base import ExceptionRecord, RunState, TaskState
from polyflow_core.paths import LogStreamName

__all__ = [
    "DEFAULT_MAX_LOG_LINES",
    "EventHub",
    "EventPayload",
    "LogLine",
    "RunEvent",
    "RunEventLog",
    "RunFinished",
    "RunMessage",
    "TaskFinished",
    "TaskStarted",
    "held_events",
]

DEFAULT_MAX_LOG_LINES = 100_000
"""Log-line events kept per run before the oldest are dropped."""


@dataclass(frozen=True)
class TaskStarted:
    """A task attempt was handed to an executor."""

    pathspec: str
    """``flow/run/step/task``."""
    attempt: int
    """The attempt (0-based)."""
    cloned: bool = False
    """True when a resume cloned the task from its origin run instead of running it."""


@dataclass(frozen=True)
class TaskFinished:
    """A task attempt finished (its report and its process exit have both been seen)."""

    pathspec: str
    """``flow/run/step/task``."""
    attempt: int
    """The attempt (0-based)."""
    state: TaskState
    """SUCCEEDED or FAILED."""
    failure_message: str = ""
    """Why it failed, in one line; empty on success."""
    exception: ExceptionRecord | None = None
    """The user exception, when user code raised one."""
    will_retry: bool = False
    """True when another attempt of the task follows."""
    cloned: bool = False
    """True when a resume cloned the task from its origin run instead of running it."""


@dataclass(frozen=True)
class LogLine:
    """One line a task attempt printed, without its trailing newline."""

    pathspec: str
    """``flow/run/step/task``."""
    attempt: int
    """The attempt (0-based)."""
    stream: LogStreamName
    """``stdout`` or ``stderr``."""
    text: str
    """The line (decoded as UTF-8, undecodable bytes replaced)."""


@dataclass(frozen=True)
class RunFinished:
    """The run finished; nothing follows it in the run's stream."""

    state: RunState
    """SUCCEEDED or FAILED."""
    failure_message: str = ""
    """Why it failed; empty on success."""


@dataclass(frozen=True)
class RunMessage:
    """A line of information from the core about the run."""

    text: str
    """The text."""


EventPayload: TypeAlias = TaskStarted | TaskFinished | LogLine | RunFinished | RunMessage
"""Anything that can happen in a run."""


@dataclass(frozen=True)
class RunEvent:
    """One event of a run, with its place in the run's stream."""

    sequence: int
    """Position in the run's stream, from 1."""
    time: dt.datetime
    """When it was appended (UTC)."""
    payload: EventPayload
    """What happened."""


_holding = threading.local()


@contextlib.contextmanager
def held_events() -> Iterator[None]:
    """Hold the events this thread appends inside the block; append them, in order, when it
    ends. The scheduler holds a batch's events until the batch's metadata writes are durable,
    so that no reader learns of a change it cannot read yet. Other threads' appends (log
    lines) are not held. Nested blocks join the outer one. When the block raises, its events
    are dropped."""
    if getattr(_holding, "pending", None) is not None:
        yield
        return
    pending: list[tuple[RunEventLog, EventPayload]] = []
    _holding.pending = pending
    try:
        yield
    finally:
        _holding.pending = None
    # Reached only when the block succeeded: the events of changes that were not made
    # durable (the block raised) are dropped, so nobody hears of them.
    for log, payload in pending:
        log.append(payload)


def _sequence(event: RunEvent) -> int:
    """Sort key of events."""
    return event.sequence


class RunEventLog:
    """The in-memory, thread-safe event stream of one run.

    Args:
        max_log_lines: Log-line events kept; older ones are dropped first.
        clock: Source of event times (tests inject a fixed clock).
    """

    def __init__(
        self,
        max_log_lines: int = DEFAULT_MAX_LOG_LINES,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self._max_log_lines = max(1, max_log_lines)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._cond = threading.Condition()
        # Two sorted lists instead of one: dropping old log lines then never moves the
        # non-log events, and a reader that excludes logs never walks past log lines.
        self._others: list[RunEvent] = []
        self._logs: list[RunEvent] = []
        self._log_start = 0  # index of the oldest kept log line in ``_logs``
        self._dropped = 0
        self._last_sequence = 0
        self._finished = False
        self._closed = False

    @property
    def last_sequence(self) -> int:
        """The sequence number of the newest event (0 when empty)."""
        with self._cond:
            return self._last_sequence

    @property
    def finished(self) -> bool:
        """True once a :class:`RunFinished` event was appended."""
        with self._cond:
            return self._finished

    @property
    def dropped_log_lines(self) -> int:
        """Number of log-line events dropped so far to bound memory."""
        with self._cond:
            return self._dropped

    def append(self, payload: EventPayload) -> RunEvent | None:
        """Append an event and wake the readers.

        Returns:
            The event, or None when the run already finished (late log lines of a killed
            task, for example, are dropped: the stream ends with :class:`RunFinished`), or
            when this thread holds its events (:func:`held_events`: appended later).
        """
        pending: list[tuple[RunEventLog, EventPayload]] | None = getattr(
            _holding, "pending", None
        )
        if pending is not None:
            pending.append((self, payload))
            return None
        with self._cond:
            if self._finished:
                return None
            self._last_sequence += 1
            event = RunEvent(self._last_sequence, self._clock(), payload)
            if isinstance(payload, LogLine):
                self._logs.append(event)
                if len(self._logs) - self._log_start > self._max_log_lines:
                    self._drop_oldest_log_line()
            else:
                self._others.append(event)
                if isinstance(payload, RunFinished):
                    self._finished = True
            self._cond.notify_all()
            return event

    def _drop_oldest_log_line(self) -> None:
        """Forget the oldest kept log line; compact the list once half of it is dead, so
        dropping stays O(1) amortised (called with the lock held)."""
        self._log_start += 1
        self._dropped += 1
        if self._log_start > 1024 and self._log_start * 2 > len(self._logs):
            del self._logs[: self._log_start]
            self._log_start = 0

    def read(
        self,
        after: int,
        *,
        exclude_logs: bool = False,
        limit: int = 1000,
        timeout: float | None = None,
    ) -> list[RunEvent]:
        """Events whose sequence is greater than ``after``, oldest first.

        Blocks until there is at least one such event, the run finished, the log was
        closed, or ``timeout`` seconds passed.

        Args:
            after: The last sequence the reader has seen.
            exclude_logs: Leave out log lines.
            limit: Most events returned by one call.
            timeout: Most seconds to wait; None waits without limit.

        Returns:
            Up to ``limit`` events; empty on timeout or when nothing more will come.
        """
        with self._cond:
            events = self._collect(after, exclude_logs, limit)
            if events or self._finished or self._closed:
                return events
            self._cond.wait_for(
                lambda: (
                    self._closed or self._finished or bool(self._collect(after, exclude_logs, 1))
                ),
                timeout=timeout,
            )
            return self._collect(after, exclude_logs, limit)

    def is_done(self, after: int, *, exclude_logs: bool = False) -> bool:
        """True when a reader positioned at ``after`` has nothing more to read, ever."""
        with self._cond:
            done = self._finished or self._closed
            return done and not self._collect(after, exclude_logs, 1)

    def close(self) -> None:
        """Wake every reader for good (the daemon is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _collect(self, after: int, exclude_logs: bool, limit: int) -> list[RunEvent]:
        """The events after ``after`` (called with the lock held)."""
        start = bisect.bisect_right(self._others, after, key=_sequence)
        others = self._others[start : start + limit]
        if exclude_logs:
            return others
        log_index = bisect.bisect_right(self._logs, after, lo=self._log_start, key=_sequence)
        logs = self._logs[log_index : log_index + limit]
        if not logs:
            return others
        if not others:
            return logs
        merged = heapq.merge(others, logs, key=_sequence)
        return [event for _, event in zip(range(limit), merged, strict=False)]


class EventHub:
    """The event logs of the runs this daemon executes, and of the last ones it finished.

    Memory stays bounded: when a log is opened, the logs of finished runs beyond the
    ``keep_finished`` most recent are dropped (a ``WatchRun`` of such a run replays only its
    end, from the metadata store, as for a run of an earlier daemon).

    Args:
        max_log_lines: Log-line events kept per run.
        keep_finished: Logs of finished runs kept.
    """

    def __init__(
        self, max_log_lines: int = DEFAULT_MAX_LOG_LINES, keep_finished: int = 16
    ) -> None:
        self._max_log_lines = max_log_lines
        self._keep_finished = keep_finished
        self._lock = threading.Lock()
        self._logs: dict[tuple[str, str], RunEventLog] = {}
        self._closed = False

    def open(self, flow: str, run: str) -> RunEventLog:
        """The log of a run, created when absent."""
        with self._lock:
            log = self._logs.get((flow, run))
            if log is None:
                self._forget_finished()
                log = RunEventLog(self._max_log_lines)
                if self._closed:
                    log.close()
                self._logs[(flow, run)] = log
            return log

    def _forget_finished(self) -> None:
        """Drop the oldest finished runs' logs beyond ``keep_finished`` (lock held)."""
        finished = [key for key, log in self._logs.items() if log.finished]
        for key in finished[: max(0, len(finished) - self._keep_finished)]:
            del self._logs[key]

    def get(self, flow: str, run: str) -> RunEventLog | None:
        """The log of a run, or None when this daemon has no events for it."""
        with self._lock:
            return self._logs.get((flow, run))

    def publish(self, flow: str, run: str, payload: EventPayload) -> RunEvent | None:
        """Append an event to a run's log (created when absent)."""
        return self.open(flow, run).append(payload)

    def close(self) -> None:
        """Wake every reader of every run for good (the daemon is stopping)."""
        with self._lock:
            self._closed = True
            logs = list(self._logs.values())
        for log in logs:
            log.close()
