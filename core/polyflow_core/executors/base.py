"""The executor contract: where and how a task attempt's worker process runs.

An executor decides *where* a worker runs (a local process, a Kubernetes pod, a Dask worker),
never *what* it does: every executor starts the same worker entry point (see
:func:`worker_argv`) with the same serialized ``TaskSpec``. The scheduler talks to executors
only through this module:

- :meth:`Executor.launch` starts an attempt and returns a :class:`TaskHandle` at once;
- :meth:`Executor.kill` stops it (idempotent);
- the executor calls back an :class:`ExecutorListener` for each complete output line and,
  exactly once per launched attempt, when the attempt's process is gone (after its output was
  drained, so no line is lost).

The callbacks come from the executor's own threads; a listener must be quick and thread-safe
(the scheduler's listener only enqueues). Nothing here imports gRPC or protobuf: the task spec
arrives as opaque bytes.
"""

from __future__ import annotations

import abc
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Protocol

from polyflow_core.errors import FailedPreconditionError
from polyflow_core.paths import LogStreamName

__all__ = [
    "DEFAULT_PYTHON_WORKER_MODULE",
    "DEFAULT_R_WORKER_EXPRESSION",
    "R_WORKER_EXPRESSION_VARIABLE",
    "WORKER_MODULE_VARIABLE",
    "Executor",
    "ExecutorListener",
    "ExitStatus",
    "LaunchError",
    "LaunchRequest",
    "TaskHandle",
    "TaskKey",
    "WorkerLanguage",
    "worker_argv",
]

WorkerLanguage = Literal["python", "r"]
"""The language a step is written in, which picks the worker entry point."""

DEFAULT_PYTHON_WORKER_MODULE = "polyflow._worker"
"""The module run with ``<python> -m`` to execute a Python task."""

WORKER_MODULE_VARIABLE = "POLYFLOW_WORKER_MODULE"
"""Test seam: a worker environment variable naming another module to run with ``-m``
(integration tests of the core use a tiny fake worker, so they do not need the SDK)."""

DEFAULT_R_WORKER_EXPRESSION = "polyflow:::pf_worker_main()"
"""The R expression run with ``Rscript -e`` to execute an R task."""

R_WORKER_EXPRESSION_VARIABLE = "POLYFLOW_R_WORKER_EXPRESSION"
"""Seam like :data:`WORKER_MODULE_VARIABLE`, for the R worker expression."""


class LaunchError(FailedPreconditionError):
    """An executor could not start a worker (missing interpreter, bad working directory).

    The scheduler records it as the attempt's failure; it never reaches a gRPC caller.
    """

    default_reason = "WORKER_LAUNCH_FAILED"


@dataclass(frozen=True)
class TaskKey:
    """Identifies one task attempt across the scheduler and executors."""

    flow: str
    """The flow's name."""
    run: str
    """The run id."""
    step: str
    """The step's name."""
    task: str
    """The task id."""
    attempt: int
    """The attempt (0-based)."""

    @property
    def pathspec(self) -> str:
        """``flow/run/step/task``."""
        return f"{self.flow}/{self.run}/{self.step}/{self.task}"


@dataclass(frozen=True)
class LaunchRequest:
    """Everything an executor needs to start one task attempt."""

    key: TaskKey
    """Which attempt."""
    task_spec: bytes
    """The serialized ``polyflow.api.runtime.v1.TaskSpec``, handed to the worker as is."""
    language: WorkerLanguage
    """The step's language."""
    interpreter: str
    """The client's executable for that language (``sys.executable``, ``Rscript``)."""
    environment: Mapping[str, str]
    """The client's environment variables for workers (the daemon's own are not used)."""
    working_directory: str
    """The client's working directory."""
    stdout_path: Path
    """Where the attempt's stdout is stored as it arrives."""
    stderr_path: Path
    """Where the attempt's stderr is stored as it arrives."""
    max_log_size_bytes: int
    """Most bytes stored per stream; past it a truncation marker is stored."""
    decorators: tuple[tuple[str, Mapping[str, str]], ...] = field(default=())
    """The step's decorators (name, JSON-encoded attributes), for executors that size or
    place the worker (resources, node selectors); the local executor ignores them."""


@dataclass(frozen=True)
class ExitStatus:
    """How an attempt's process ended."""

    exit_code: int | None = None
    """The exit code, when the process exited by itself."""
    signal_number: int | None = None
    """The signal that killed it, when it was killed."""
    detail: str = ""
    """A description from the executor when neither applies (e.g. a pod was evicted)."""

    @property
    def succeeded(self) -> bool:
        """True for exit code 0."""
        return self.exit_code == 0

    def describe(self) -> str:
        """``exited with code 1`` / ``killed by signal 9 (SIGKILL)`` / the detail."""
        if self.signal_number is not None:
            try:
                name = signal.Signals(self.signal_number).name
            except ValueError:
                return f"killed by signal {self.signal_number}"
            return f"killed by signal {self.signal_number} ({name})"
        if self.exit_code is not None:
            return f"exited with code {self.exit_code}"
        return self.detail or "ended for an unknown reason"

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        """Decode a ``subprocess`` return code (negative means killed by that signal)."""
        if returncode < 0:
            return cls(signal_number=-returncode)
        return cls(exit_code=returncode)


class ExecutorListener(Protocol):
    """Receives an executor's reports. Called from the executor's threads.

    A listener may also have ``on_report(key, outcome)``, taking a worker's outcome
    (``polyflow_core.domain.execution.TaskOutcome``) that reached the executor instead of
    ``CompleteTask``: the local executor's pre-forked workers report that way, always before
    the exit of the same attempt.
    """

    def on_output(self, key: TaskKey, stream: LogStreamName, line: str) -> None:
        """One complete line (no trailing newline) an attempt printed."""

    def on_exit(self, key: TaskKey, status: ExitStatus) -> None:
        """The attempt's process is gone and its output drained. Called once per launch."""


@dataclass(eq=False)
class TaskHandle:
    """An executor's reference to a launched attempt; executors subclass it to keep their
    own state. Compared by identity."""

    key: TaskKey
    """The attempt."""


class Executor(abc.ABC):
    """Runs task attempts somewhere. Plugins register under the ``polyflow.executors``
    entry-point group; the daemon constructs them as ``cls(layout)`` with the root's
    :class:`~polyflow_core.paths.RootLayout`."""

    name: ClassVar[str] = ""
    """The registered name (``local``, ``kubernetes``...)."""

    @abc.abstractmethod
    def start(self, listener: ExecutorListener) -> None:
        """Start the executor's threads; reports go to ``listener`` from now on."""

    @abc.abstractmethod
    def launch(self, request: LaunchRequest) -> TaskHandle:
        """Start an attempt and return at once.

        Raises:
            LaunchError: The worker could not be started; no exit will be reported.
        """

    @abc.abstractmethod
    def kill(self, handle: TaskHandle) -> None:
        """Stop an attempt and everything it started. Idempotent; its exit is still
        reported through :meth:`ExecutorListener.on_exit`."""

    @abc.abstractmethod
    def shutdown(self, timeout: float = 5.0) -> None:
        """Kill every attempt, report their exits (waiting at most ``timeout`` seconds for
        them) and stop the executor's threads."""

    def check_environment(
        self, interpreters: Mapping[WorkerLanguage, str], working_directory: str
    ) -> list[str]:
        """Problems that would keep workers from starting with these settings, for
        ``StartRun`` to refuse the run at once. The default finds none (a remote executor
        cannot check the client's paths)."""
        del interpreters, working_directory
        return []


def worker_argv(
    language: WorkerLanguage, interpreter: str, environment: Mapping[str, str]
) -> list[str]:
    """The command line that runs the worker of ``language``.

    Python: ``<interpreter> -m <module>``, the module being ``polyflow._worker`` unless the
    worker environment sets :data:`WORKER_MODULE_VARIABLE`. R: ``<Rscript> -e <expression>``.

    Raises:
        LaunchError: Unknown language.
    """
    if language == "python":
        module = environment.get(WORKER_MODULE_VARIABLE) or DEFAULT_PYTHON_WORKER_MODULE
        return [interpreter, "-m", module]
    if language == "r":
        expression = environment.get(R_WORKER_EXPRESSION_VARIABLE) or DEFAULT_R_WORKER_EXPRESSION
        return [interpreter, "-e", expression]
    raise LaunchError(
        f"no worker entry point for language {language!r}",
        metadata={"language": str(language)},
    )
