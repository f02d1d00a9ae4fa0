"""The errors Polyflow raises.

Every error derives from one root, :class:`PolyflowError`, so ``except PolyflowError`` catches
anything the SDK raises on purpose. Raw ``grpc.RpcError`` never leaks out of the SDK: the
transport turns it into an :class:`RPCError` (or one of the more specific errors below).

The tree::

    PolyflowError
    ├── ParameterError                 a flow parameter is missing, malformed or ill-declared
    ├── GraphError                     the flow's graph breaks a rule (carries every problem)
    ├── InvalidNextError               a ``self.next(...)`` call is wrong at run time
    ├── MergeArtifactsError            ``merge_artifacts`` cannot merge
    │   ├── UnhandledInMergeArtifactsError   a name has different values across inputs
    │   └── MissingInMergeArtifactsError     an ``include`` name is in no input
    ├── TaskFailedError                a task failed (user code, signal, lost worker)
    ├── StepTimeoutError               a step ran over its ``@timeout`` (also a TimeoutError)
    ├── FailureHandledByCatchError     ``@catch``'s fallback attempt: an earlier attempt
    │                                  failed where no exception could be caught
    ├── NamespaceMismatchError         the object is outside the current namespace
    ├── DaemonError                    the core daemon cannot be started or reached
    ├── InvalidPathspecError           a client pathspec is malformed (also a ValueError)
    └── RPCError                       the core answered a call with an error status
        ├── NotFoundError              the object asked for does not exist (names its pathspec;
        │                              also a KeyError, as Metaflow's ``run["nope"]`` raises)
        ├── InvalidArgumentError
        ├── FailedPreconditionError
        ├── AlreadyExistsError
        ├── PermissionDeniedError
        ├── UnauthenticatedError
        ├── ResourceExhaustedError
        ├── DeadlineExceededError
        ├── UnavailableError
        ├── DataLossError
        │   └── ArtifactCorruptedError an artifact's bytes do not match its content address
        └── InternalError

Every constructor takes the message as its only required argument and keeps the other
values as keyword arguments with defaults, so the errors pickle (``BaseException.__reduce__``
re-creates them from ``args`` and restores ``__dict__``).

:class:`CaughtException` is not an error but what ``@catch`` stores in its variable: a
picklable description of the exception it caught.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "AlreadyExistsError",
    "ArtifactCorruptedError",
    "CaughtException",
    "DaemonError",
    "DataLossError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FailureHandledByCatchError",
    "GraphError",
    "GraphProblem",
    "InternalError",
    "InvalidArgumentError",
    "InvalidNextError",
    "InvalidPathspecError",
    "MergeArtifactsError",
    "MissingInMergeArtifactsError",
    "NamespaceMismatchError",
    "NotFoundError",
    "ParameterError",
    "PermissionDeniedError",
    "PolyflowError",
    "RPCError",
    "ResourceExhaustedError",
    "StepTimeoutError",
    "TaskFailedError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnhandledInMergeArtifactsError",
]


class PolyflowError(Exception):
    """The root of every error Polyflow raises on purpose."""

    def __init__(self, message: str = "") -> None:
        """Create the error.

        Args:
            message: A sentence for people.
        """
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        """The message."""
        return self.message


class ParameterError(PolyflowError):
    """A flow parameter is missing, cannot be parsed, or is declared wrongly."""

    def __init__(self, message: str = "", *, parameter: str = "") -> None:
        """Create the error.

        Args:
            message: What is wrong, naming the parameter.
            parameter: The parameter's name, when one is involved.
        """
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class GraphProblem:
    """One reason a flow's graph is invalid."""

    message: str
    """A sentence for people, naming the step(s) involved."""
    rule: str = ""
    """Machine-readable rule, UPPER_SNAKE (e.g. ``UNKNOWN_TRANSITION``)."""
    step: str = ""
    """The step the problem is reported at; empty for flow-wide problems."""
    file: str = ""
    """The file of that step."""
    line: int = 0
    """The 1-based line of that step; 0 when unknown."""

    def format(self) -> str:
        """Return the problem as ``<file>:<line>: step '<s>': <message>``.

        Parts that are unknown are left out, so a flow-wide problem reads
        ``<file>: <message>``.
        """
        where = self.file or "<flow>"
        if self.line:
            where = f"{where}:{self.line}"
        if self.step:
            return f"{where}: step '{self.step}': {self.message}"
        return f"{where}: {self.message}"


class GraphError(PolyflowError):
    """The flow's graph breaks a rule; :attr:`problems` lists every problem found."""

    def __init__(
        self,
        message: str = "",
        problems: Iterable[GraphProblem] = (),
        *,
        step: str = "",
        file: str = "",
        line: int = 0,
    ) -> None:
        """Create the error.

        Args:
            message: A summary; built from the problems when empty.
            problems: Every problem found.
            step: The step involved, for an error about one step.
            file: The file of that step.
            line: The 1-based line of that step.
        """
        found = tuple(problems)
        if not message:
            message = "\n".join(p.format() for p in found) or "the flow's graph is invalid"
        super().__init__(message)
        self.problems: tuple[GraphProblem, ...] = found
        self.step = step
        self.file = file
        self.line = line


class InvalidNextError(PolyflowError):
    """A ``self.next(...)`` call is invalid at run time (Metaflow's InvalidNextException)."""


class MergeArtifactsError(PolyflowError):
    """``merge_artifacts`` cannot merge the inputs of a join."""

    def __init__(self, message: str = "", names: Sequence[str] = ()) -> None:
        """Create the error.

        Args:
            message: What went wrong.
            names: The artifact names involved.
        """
        super().__init__(message)
        self.names: tuple[str, ...] = tuple(names)


class UnhandledInMergeArtifactsError(MergeArtifactsError):
    """Artifacts have different values across the inputs and were not set on the join."""


class MissingInMergeArtifactsError(MergeArtifactsError):
    """Names given in ``include`` were found in no input."""


class TaskFailedError(PolyflowError):
    """A task failed: user code raised, the worker was killed, or it never reported."""

    def __init__(
        self,
        message: str = "",
        *,
        pathspec: str = "",
        exception_type: str = "",
        traceback: str = "",
    ) -> None:
        """Create the error.

        Args:
            message: Why the task failed, in one line.
            pathspec: The task's pathspec, ``Flow/run/step/task``.
            exception_type: The qualified type of the user exception, if any.
            traceback: The formatted traceback of the user exception, if any.
        """
        super().__init__(message)
        self.pathspec = pathspec
        self.exception_type = exception_type
        self.traceback = traceback


class StepTimeoutError(PolyflowError, TimeoutError):
    """A step's code ran over its ``@timeout`` (Metaflow's ``TimeoutException``).

    Raised inside the step's code when the limit is reached, so ``@retry`` and ``@catch``
    treat it as any other failure.
    """

    def __init__(self, message: str = "", *, seconds: float = 0.0) -> None:
        """Create the error.

        Args:
            message: Names the step and the limit.
            seconds: The limit, in seconds.
        """
        super().__init__(message)
        self.seconds = seconds


class FailureHandledByCatchError(PolyflowError):
    """What ``@catch`` records on its fallback attempt.

    An attempt of the step failed where its own ``@catch`` could not catch anything (the
    worker was killed, crashed, or stopped by the core's ``@timeout`` backstop). The core
    then runs one more attempt, which does not run the step's code: it raises this error,
    whose message repeats the earlier failure, and ``@catch`` stores it.
    """


@dataclass(frozen=True)
class CaughtException:
    """An exception ``@catch`` caught, as stored in its ``var`` artifact.

    Only text is kept, so the value loads anywhere, without the classes of the task that
    raised it (Metaflow's ``MetaflowExceptionWrapper``).
    """

    type: str
    """Qualified type of the exception, e.g. ``builtins.ValueError``."""
    message: str
    """``str()`` of the exception."""
    traceback: str
    """The formatted traceback."""

    @property
    def exception(self) -> str:
        """The message (the name Metaflow's wrapper uses)."""
        return self.message

    @property
    def stacktrace(self) -> str:
        """The traceback (the name Metaflow's wrapper uses)."""
        return self.traceback

    def __str__(self) -> str:
        """``<type>: <message>``, after the traceback when there is one."""
        head = f"{self.type}: {self.message}" if self.message else self.type
        return f"{self.traceback.rstrip()}" if self.traceback else head


class NamespaceMismatchError(PolyflowError):
    """The object asked for exists but is outside the current namespace."""

    def __init__(self, message: str = "", *, namespace: str | None = None) -> None:
        """Create the error.

        Args:
            message: What was asked for and in which namespace.
            namespace: The current namespace (None means global).
        """
        super().__init__(message)
        self.namespace = namespace


class DaemonError(PolyflowError):
    """The core daemon cannot be started or reached."""

    def __init__(self, message: str = "", *, address: str = "", log_tail: str = "") -> None:
        """Create the error.

        Args:
            message: What failed.
            address: The address tried.
            log_tail: The last lines of the daemon's log, when there is one.
        """
        super().__init__(message)
        self.address = address
        self.log_tail = log_tail


class InvalidPathspecError(PolyflowError, ValueError):
    """A client object was asked for with a malformed pathspec (e.g. too few parts)."""


class RPCError(PolyflowError):
    """The core answered a call with an error status.

    Attributes:
        code: The canonical status code's name, e.g. ``"NOT_FOUND"``.
        reason: The ``google.rpc.ErrorInfo`` reason (UPPER_SNAKE), or empty.
        metadata: The ErrorInfo metadata (every dynamic value of the error).
        details: Every status detail, parsed into its protobuf message.
        method: The RPC called, e.g. ``"/polyflow.api.metadata.v1.MetadataService/GetRun"``.
    """

    default_code = "UNKNOWN"

    def __init__(
        self,
        message: str = "",
        *,
        code: str = "",
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        details: Sequence[object] = (),
        method: str = "",
    ) -> None:
        """Create the error.

        Args:
            message: The status message.
            code: The canonical status code's name; the class default when empty.
            reason: The ErrorInfo reason.
            metadata: The ErrorInfo metadata.
            details: The parsed status details.
            method: The RPC called.
        """
        super().__init__(message)
        self.code = code or self.default_code
        self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.details: tuple[object, ...] = tuple(details)
        self.method = method

    def __str__(self) -> str:
        """The message, then the code (and reason) in brackets."""
        label = (
            self.code
            if not self.reason or self.reason == self.code
            else (f"{self.code}/{self.reason}")
        )
        return f"{self.message} [{label}]" if self.message else label


class NotFoundError(RPCError, KeyError):
    """The object asked for does not exist; :attr:`pathspec` names it.

    It is also a ``KeyError`` because Metaflow code expects ``run["nope"]`` and
    ``task["nope"]`` to raise one.
    """

    default_code = "NOT_FOUND"

    def __init__(
        self,
        message: str = "",
        *,
        pathspec: str = "",
        code: str = "",
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        details: Sequence[object] = (),
        method: str = "",
    ) -> None:
        """Create the error.

        Args:
            message: The message; built from the pathspec when empty.
            pathspec: What was asked for, e.g. ``HelloFlow/3/start``.
            code: As for :class:`RPCError`.
            reason: As for :class:`RPCError`.
            metadata: As for :class:`RPCError`.
            details: As for :class:`RPCError`.
            method: As for :class:`RPCError`.
        """
        if not message:
            message = f"{pathspec!r} does not exist" if pathspec else "not found"
        super().__init__(
            message, code=code, reason=reason, metadata=metadata, details=details, method=method
        )
        self.pathspec = pathspec

    def __str__(self) -> str:
        """The message."""
        return self.message


class InvalidArgumentError(RPCError):
    """The request was malformed (INVALID_ARGUMENT)."""

    default_code = "INVALID_ARGUMENT"


class FailedPreconditionError(RPCError):
    """The system is not in a state the request needs (FAILED_PRECONDITION)."""

    default_code = "FAILED_PRECONDITION"


class AlreadyExistsError(RPCError):
    """The object to create exists already (ALREADY_EXISTS)."""

    default_code = "ALREADY_EXISTS"


class PermissionDeniedError(RPCError):
    """The caller may not do this (PERMISSION_DENIED)."""

    default_code = "PERMISSION_DENIED"


class UnauthenticatedError(RPCError):
    """The call carried no valid credentials (UNAUTHENTICATED)."""

    default_code = "UNAUTHENTICATED"


class ResourceExhaustedError(RPCError):
    """A limit was reached (RESOURCE_EXHAUSTED)."""

    default_code = "RESOURCE_EXHAUSTED"


class DeadlineExceededError(RPCError):
    """The call did not finish in time (DEADLINE_EXCEEDED)."""

    default_code = "DEADLINE_EXCEEDED"


class UnavailableError(RPCError):
    """The core cannot be reached right now (UNAVAILABLE)."""

    default_code = "UNAVAILABLE"


class DataLossError(RPCError):
    """Stored bytes are lost or corrupted (DATA_LOSS)."""

    default_code = "DATA_LOSS"


class ArtifactCorruptedError(DataLossError):
    """An artifact's stored bytes do not hash to its content address, so its value is not
    returned: ``artifact 'x' of HelloFlow/3/start/1 is corrupt: expected sha256:..., found
    sha256:...``."""

    def __init__(
        self,
        message: str = "",
        *,
        artifact: str = "",
        pathspec: str = "",
        expected_digest: str = "",
        found_digest: str = "",
        code: str = "",
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        details: Sequence[object] = (),
        method: str = "",
    ) -> None:
        """Create the error.

        Args:
            message: The message; built from the other values when empty.
            artifact: The artifact's name.
            pathspec: The task that stored it, ``Flow/run/step/task``.
            expected_digest: Its content address.
            found_digest: What the stored bytes hash to.
            code: As for :class:`RPCError`.
            reason: As for :class:`RPCError`.
            metadata: As for :class:`RPCError`.
            details: As for :class:`RPCError`.
            method: As for :class:`RPCError`.
        """
        if not message:
            where = f" of {pathspec}" if pathspec else ""
            message = (
                f"artifact {artifact!r}{where} is corrupt: expected {expected_digest or '?'}, "
                f"found {found_digest or '?'}"
            )
        super().__init__(
            message, code=code, reason=reason, metadata=metadata, details=details, method=method
        )
        self.artifact = artifact
        self.pathspec = pathspec
        self.expected_digest = expected_digest
        self.found_digest = found_digest

    def __str__(self) -> str:
        """The message."""
        return self.message

    @classmethod
    def from_data_loss(
        cls, error: DataLossError, *, artifact: str, pathspec: str = ""
    ) -> ArtifactCorruptedError:
        """The error for an artifact whose blob read failed with ``error`` (the store's
        mismatch, whose metadata names the expected and found digests)."""
        return cls(
            artifact=artifact,
            pathspec=pathspec,
            expected_digest=error.metadata.get("expected_digest", ""),
            found_digest=error.metadata.get("found_digest", ""),
            code=error.code,
            reason=error.reason,
            metadata={**error.metadata, "artifact": artifact, "pathspec": pathspec},
            details=error.details,
            method=error.method,
        )


class InternalError(RPCError):
    """The core failed unexpectedly (INTERNAL)."""

    default_code = "INTERNAL"
