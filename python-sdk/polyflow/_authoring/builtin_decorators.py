"""Polyflow's built-in step decorators: ``retry``, ``catch``, ``timeout``, ``environment`` and
``resources``, with Metaflow's names, attributes and defaults.

Each is a :class:`~polyflow._authoring.decorators.StepDecorator` registered in the
``polyflow.decorators`` entry-point group (as a plugin's would be), plus a typed user-facing
function (``from polyflow import retry``) usable bare (``@retry``) or with keyword arguments
(``@retry(times=2)``) above ``@step``, whose signature type checkers and IDEs see.

Where each effect happens:

- ``retry``: in the core. The scheduler runs a failed task again (``times`` more times, each
  after ``minutes_between_retries``); the step's code sees the attempt as
  ``current.retry_count``. Nothing happens in the worker.
- ``catch``: in the worker. On the last attempt of the step's code, the exception is stored in
  ``self.<var>`` (a :class:`~polyflow.exceptions.CaughtException`; None after a success) and
  the task takes the step's static transition, as if ``self.next(...)`` had been called. The
  core adds one fallback attempt after it, for failures no ``except`` could see (a killed
  worker): that attempt runs none of the step's code and records the earlier failure.
- ``timeout``: in the worker, a ``SIGALRM`` timer raises
  :class:`~polyflow.exceptions.StepTimeoutError` in the step's code at the limit (a failure
  like any other: ``retry`` and ``catch`` apply). The core kills a worker that is still running
  well past the limit (code stuck where no signal reaches it).
- ``environment``: in the core, at launch: the variables are added to the worker's
  environment, under every executor.
- ``resources``: recorded by the core as the task's ``resources`` metadata; executors that size
  workers (Kubernetes) read them; the local executor ignores them.

Attribute values are checked by the core's graph validation, so ``check`` (and every ``run``
before it starts anything) reports a bad one at its line, as for any SDK. An attribute name a
decorator does not have is a ``TypeError`` at once (the functions' real signatures), or an
error naming the decorator's attributes when given with ``--with``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from types import FrameType, MappingProxyType
from typing import Any, ClassVar, TypeVar, overload

from polyflow._authoring.decorators import StepDecorator, StepFunction, TaskContext, step_decorator
from polyflow._authoring.transitions import TakenTransition, TransitionKind
from polyflow.exceptions import CaughtException, FailureHandledByCatchError, StepTimeoutError

__all__ = [
    "CatchDecorator",
    "EnvironmentDecorator",
    "ResourcesDecorator",
    "RetryDecorator",
    "TimeoutDecorator",
    "catch",
    "environment",
    "resources",
    "retry",
    "timeout",
]

F = TypeVar("F", bound=Callable[..., Any])

EnvValue = str | int | float | bool
"""A value ``@environment`` accepts (numbers and booleans are set as their JSON text)."""

_NO_VARS: Mapping[str, EnvValue] = MappingProxyType({})
_SDK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- the decorator classes ------------------------------------------------------------------


class RetryDecorator(StepDecorator):
    """``@retry``: run a failed task again, up to ``times`` more times.

    The scheduler in the core does the retrying; see the module docstring.
    """

    name = "retry"
    defaults: ClassVar[Mapping[str, Any]] = {"times": 3, "minutes_between_retries": 2}


class CatchDecorator(StepDecorator):
    """``@catch``: after the last attempt failed, store the exception and go on."""

    name = "catch"
    defaults: ClassVar[Mapping[str, Any]] = {"var": None, "print_exception": True}

    def task_decorate(self, func: StepFunction, ctx: TaskContext) -> StepFunction:
        """On the fallback attempt, replace the step's code with the earlier failure."""
        if not ctx.is_fallback:
            return func
        earlier = ctx.previous_failure or "no reason was recorded"
        message = (
            f"Step '{ctx.step_name}' failed on attempt {ctx.retry_count - 1} where no "
            f"exception could be caught: {earlier}"
        )

        def fallback() -> None:
            raise FailureHandledByCatchError(message)

        return fallback

    def task_exception(self, exception: BaseException, ctx: TaskContext) -> bool:
        """Handle the exception of the last attempt: store it, take the static transition."""
        if ctx.retry_count < ctx.max_user_code_retries:
            return False  # @retry runs the step again first
        caught = _caught(exception)
        if self.attributes["print_exception"]:
            if caught.traceback:
                sys.stderr.write(caught.traceback)
            var = self.attributes["var"]
            where = f"stored in self.{var}" if var else "not stored (@catch has no var)"
            sys.stderr.write(
                f"@catch caught {caught.type.rsplit('.', 1)[-1]} in step '{ctx.step_name}': "
                f"the exception is {where} and the flow goes on.\n"
            )
            sys.stderr.flush()
        _take_static_transition(ctx)
        self._set_var(ctx, caught)
        return True

    def task_post_step(self, ctx: TaskContext) -> None:
        """The step's code succeeded: the variable is None."""
        self._set_var(ctx, None)

    def _set_var(self, ctx: TaskContext, value: CaughtException | None) -> None:
        var = self.attributes["var"]
        if var:
            setattr(ctx.flow, var, value)


class TimeoutDecorator(StepDecorator):
    """``@timeout``: stop the step's code when it runs longer than the limit."""

    name = "timeout"
    defaults: ClassVar[Mapping[str, Any]] = {"seconds": 0, "minutes": 0, "hours": 0}

    @property
    def limit_seconds(self) -> float:
        """The limit in seconds: seconds + 60 * minutes + 3600 * hours (0: none)."""
        a = self.attributes
        return float(a["seconds"]) + 60.0 * float(a["minutes"]) + 3600.0 * float(a["hours"])

    def task_decorate(self, func: StepFunction, ctx: TaskContext) -> StepFunction:
        """Run the step's code under a ``SIGALRM`` timer set to the limit."""
        limit = self.limit_seconds
        if limit <= 0 or threading.current_thread() is not threading.main_thread():
            return func  # signals reach the main thread only; the core's backstop remains
        message = f"Step '{ctx.step_name}' timed out: it ran over its @timeout of {_seconds(limit)}"

        def on_alarm(signum: int, frame: FrameType | None) -> None:
            raise StepTimeoutError(message, seconds=limit)

        def timed() -> None:
            previous = signal.signal(signal.SIGALRM, on_alarm)
            old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, limit)
            started = time.monotonic()
            try:
                func()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
                if old_delay > 0:  # someone else's timer was running: give it back
                    left = old_delay - (time.monotonic() - started)
                    signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), old_interval)

        return timed


class EnvironmentDecorator(StepDecorator):
    """``@environment``: variables for the task's process.

    The core adds them to the worker's environment when it launches the task, over the
    client's variables, under every executor.
    """

    name = "environment"
    defaults: ClassVar[Mapping[str, Any]] = {"vars": {}}


class ResourcesDecorator(StepDecorator):
    """``@resources``: what a task needs (CPUs, GPUs, disk and memory in MB).

    The core records them as the task's ``resources`` metadata; executors that place workers
    (Kubernetes) enforce them, the local executor does not.
    """

    name = "resources"
    defaults: ClassVar[Mapping[str, Any]] = {
        "cpu": 1,
        "gpu": None,
        "disk": None,
        "memory": 4096,
        "shared_memory": None,
    }


# --- worker-side helpers ----------------------------------------------------------------------


def _caught(exception: BaseException) -> CaughtException:
    """Describe an exception as text, leaving Polyflow's own frames out of the traceback."""
    cls = type(exception)
    if isinstance(exception, FailureHandledByCatchError):
        text = ""  # no code ran: a traceback would only show Polyflow's stub
    else:
        summary = traceback.TracebackException.from_exception(exception)
        summary.stack = traceback.StackSummary.from_list(
            [frame for frame in summary.stack if not _in_sdk(frame.filename)]
        )
        text = "".join(summary.format())
    return CaughtException(f"{cls.__module__}.{cls.__qualname__}", str(exception), text)


def _in_sdk(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_SDK_DIR + os.sep)


def _take_static_transition(ctx: TaskContext) -> None:
    """Record the step's transition as written in the source, as if ``next`` was called."""
    static = ctx.step.transition if ctx.step is not None else None
    if static is None or static.kind in (TransitionKind.FOREACH, TransitionKind.SWITCH):
        return  # graph validation refuses @catch there; the transition check reports it
    state = ctx.flow._pf_state
    if static.kind is TransitionKind.UNSPECIFIED:
        state.transition = None  # the end step
    else:
        state.transition = TakenTransition(static.kind, tuple(static.targets))


def _seconds(seconds: float) -> str:
    """``2 seconds``, ``1.5 seconds``, ``1 minute 30 seconds``."""
    if seconds < 60 or seconds != int(seconds):
        value = f"{seconds:g}"
        return f"{value} second" + ("" if value == "1" else "s")
    whole, parts = int(seconds), []
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count} {unit}" + ("" if count == 1 else "s"))
    return " ".join(parts)


# --- the user-facing functions ---------------------------------------------------------------

_retry = step_decorator(RetryDecorator)
_catch = step_decorator(CatchDecorator)
_timeout = step_decorator(TimeoutDecorator)
_environment = step_decorator(EnvironmentDecorator)
_resources = step_decorator(ResourcesDecorator)


def _positional(name: str, func: object) -> None:
    if not callable(func):
        raise TypeError(f"@{name} takes keyword arguments only, e.g. @{name}(...)")


@overload
def retry(func: F, /) -> F: ...


@overload
def retry(*, times: int = 3, minutes_between_retries: float = 2) -> Callable[[F], F]: ...


def retry(
    func: F | None = None, /, *, times: int = 3, minutes_between_retries: float = 2
) -> F | Callable[[F], F]:
    """Run a failed task of the step again.

    A task gets ``1 + times`` attempts; each retry starts ``minutes_between_retries`` after
    the failure. ``current.retry_count`` tells the step's code which attempt it is; the client
    shows the latest attempt (``Task(pathspec, attempt=N)`` reads an earlier one). ``times``
    may be at most 4 (a task gets at most six attempts, ``@catch``'s fallback included).
    Place it above ``@step``.

    Args:
        func: The step (bare ``@retry``).
        times: Retries after the first attempt.
        minutes_between_retries: Wait before each retry, in minutes (fractions allowed).

    Returns:
        The step, or a decorator for it.
    """
    if func is not None:
        _positional("retry", func)
        return _retry(func)
    return _retry(times=times, minutes_between_retries=minutes_between_retries)


@overload
def catch(func: F, /) -> F: ...


@overload
def catch(*, var: str | None = None, print_exception: bool = True) -> Callable[[F], F]: ...


def catch(
    func: F | None = None, /, *, var: str | None = None, print_exception: bool = True
) -> F | Callable[[F], F]:
    """Let the flow go on when the step fails.

    After the last attempt (see ``@retry``) raised, the exception is stored in ``self.<var>``
    as a :class:`~polyflow.exceptions.CaughtException` (``type``, ``message``, ``traceback``;
    None when the step succeeded) and the flow continues as if the step's ``self.next(...)``
    had been called. Not allowed on foreach or switch steps. Place it above ``@step``.

    Args:
        func: The step (bare ``@catch``).
        var: The artifact that receives the exception; None stores nothing.
        print_exception: Print the traceback to the task's stderr.

    Returns:
        The step, or a decorator for it.
    """
    if func is not None:
        _positional("catch", func)
        return _catch(func)
    return _catch(var=var, print_exception=print_exception)


@overload
def timeout(func: F, /) -> F: ...


@overload
def timeout(*, seconds: float = 0, minutes: float = 0, hours: float = 0) -> Callable[[F], F]: ...


def timeout(
    func: F | None = None, /, *, seconds: float = 0, minutes: float = 0, hours: float = 0
) -> F | Callable[[F], F]:
    """Stop the step when it runs longer than the limit (the sum of the three values).

    The step's code gets a :class:`~polyflow.exceptions.StepTimeoutError` at the limit; the
    attempt fails, and ``@retry`` and ``@catch`` apply as for any failure. The limit must be
    above zero. Place it above ``@step``.

    Args:
        func: The step (bare ``@timeout`` is refused by ``check``: it sets no limit).
        seconds: Seconds of the limit.
        minutes: Minutes of the limit.
        hours: Hours of the limit.

    Returns:
        The step, or a decorator for it.
    """
    if func is not None:
        _positional("timeout", func)
        return _timeout(func)
    return _timeout(seconds=seconds, minutes=minutes, hours=hours)


@overload
def environment(func: F, /) -> F: ...


@overload
def environment(*, vars: Mapping[str, EnvValue] = _NO_VARS) -> Callable[[F], F]: ...


def environment(
    func: F | None = None, /, *, vars: Mapping[str, EnvValue] = _NO_VARS
) -> F | Callable[[F], F]:
    """Set environment variables for the step's tasks.

    They are added to the task's process environment when it starts, over the variables of
    the ``run`` command's environment. Place it above ``@step``.

    Args:
        func: The step (bare ``@environment`` sets nothing).
        vars: Variable names to values (numbers and booleans are set as their JSON text).

    Returns:
        The step, or a decorator for it.
    """
    if func is not None:
        _positional("environment", func)
        return _environment(func)
    return _environment(vars=dict(vars))


@overload
def resources(func: F, /) -> F: ...


@overload
def resources(
    *,
    cpu: float = 1,
    gpu: int | None = None,
    disk: int | None = None,
    memory: float = 4096,
    shared_memory: int | None = None,
) -> Callable[[F], F]: ...


def resources(
    func: F | None = None,
    /,
    *,
    cpu: float = 1,
    gpu: int | None = None,
    disk: int | None = None,
    memory: float = 4096,
    shared_memory: int | None = None,
) -> F | Callable[[F], F]:
    """Say what the step's tasks need.

    The values are recorded in each task's metadata (``Task.metadata_dict["resources"]``, as
    JSON); executors that place tasks (Kubernetes) size them from it, while local runs only
    record it. Place it above ``@step``.

    Args:
        func: The step (bare ``@resources`` records the defaults).
        cpu: CPUs.
        gpu: GPUs; None for none asked.
        disk: Disk in MB; None for the executor's default.
        memory: Memory in MB.
        shared_memory: Shared memory in MB; None for the executor's default.

    Returns:
        The step, or a decorator for it.
    """
    if func is not None:
        _positional("resources", func)
        return _resources(func)
    return _resources(cpu=cpu, gpu=gpu, disk=disk, memory=memory, shared_memory=shared_memory)
