"""``Task``: one unit of work (a step for one input), with its data, logs and status."""

from __future__ import annotations

import datetime as dt
from collections import namedtuple
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from polyflow.api.common.v1 import enums_pb2
from polyflow.client._base import PolyflowObject, core, to_datetime
from polyflow.exceptions import NotFoundError

if TYPE_CHECKING:
    from polyflow.api.metadata.v1 import message_pb2 as metadata_pb2
    from polyflow.client._artifact import DataArtifact
    from polyflow.client._step import Step

__all__ = ["Metadata", "Task", "TaskData", "TaskException"]

_TERMINAL = (enums_pb2.TASK_STATE_SUCCEEDED, enums_pb2.TASK_STATE_FAILED)


class Metadata(NamedTuple):
    """One metadata field recorded for a task (Metaflow's ``Metadata`` tuple)."""

    name: str
    """The field's name, e.g. ``attempt``."""
    value: str
    """Its value."""
    created_at: dt.datetime | None
    """When the task recording it was created."""
    type: str
    """The field's kind (``metadata`` for free-form fields)."""
    task: Task
    """The task it belongs to."""


@dataclass(frozen=True)
class TaskException:
    """Why a task attempt failed: the user exception, or the failure (signal, lost worker)."""

    type: str
    """Qualified exception type, e.g. ``builtins.ValueError``; empty when no exception."""
    message: str
    """``str()`` of the exception, or the failure message."""
    traceback: str
    """The formatted traceback; empty when none."""

    @property
    def exception(self) -> str:
        """The message (the name Metaflow's exception wrapper uses)."""
        return self.message

    @property
    def stacktrace(self) -> str:
        """The traceback (the name Metaflow's exception wrapper uses)."""
        return self.traceback

    def __str__(self) -> str:
        head = f"{self.type}: {self.message}" if self.type else self.message
        return f"{self.traceback.rstrip()}" if self.traceback else head


class TaskData:
    """Attribute access to a task's artifacts: ``task.data.x`` (Metaflow's ``MetaflowData``).

    Values are loaded on first access.
    """

    def __init__(self, artifacts: Iterable[DataArtifact]) -> None:
        """Wrap the artifacts.

        Args:
            artifacts: The task's artifacts.
        """
        self._artifacts = {artifact.id: artifact for artifact in artifacts}

    def __getattr__(self, name: str) -> Any:
        # Guard against lookups before __init__ ran (copy, pickle) recursing forever.
        if name.startswith("__") or name == "_artifacts":
            raise AttributeError(name)
        try:
            artifact = self._artifacts[name]
        except KeyError:
            raise AttributeError(f"the task has no artifact named {name!r}") from None
        return artifact.data

    def __contains__(self, name: object) -> bool:
        return name in self._artifacts

    def __dir__(self) -> list[str]:
        return sorted(self._artifacts)

    def __repr__(self) -> str:
        return f"<TaskData: {', '.join(sorted(self._artifacts))}>"

    __str__ = __repr__


class Task(PolyflowObject):
    """A task: ``Task("HelloFlow/3/start/1")``, optionally at one ``attempt``.

    Raises:
        NotFoundError: No such task.
        NamespaceMismatchError: Its run is outside the current namespace.
    """

    _NAME = "task"
    _DEPTH = 4

    def __init__(
        self,
        pathspec: str,
        attempt: int | None = None,
        _namespace_check: bool = True,
        *,
        _proto: metadata_pb2.Task | None = None,
        _run: metadata_pb2.Run | None = None,
    ) -> None:
        super().__init__(pathspec, attempt, _namespace_check)
        self._proto = _proto if _proto is not None else self._fetch()
        self._run = _run
        self._check_namespace()

    def _fetch(self) -> metadata_pb2.Task:
        try:
            return core().get_task(self._resource_name, self._attempt)
        except NotFoundError:
            raise NotFoundError(
                f"Task {self.pathspec!r} does not exist", pathspec=self.pathspec
            ) from None

    def _live(self) -> metadata_pb2.Task:
        """The task's record, fetched again while the attempt can still change."""
        if self._proto.state not in _TERMINAL:
            self._proto = self._fetch()
        return self._proto

    def _run_proto(self) -> metadata_pb2.Run:
        if self._run is None:
            self._run = core().get_run(self._resource_name.split("/steps/", 1)[0])
        return self._run

    def _run_tags(self) -> tuple[Iterable[str], Iterable[str]]:
        run = self._run_proto()
        return run.tags, run.system_tags

    # -- identity and status --------------------------------------------------------------

    @property
    def parent(self) -> Step:
        """The task's step."""
        from polyflow.client._step import Step

        return Step("/".join(self._components[:3]), _namespace_check=False, _run=self._run_proto())

    @property
    def created_at(self) -> dt.datetime | None:
        """When the task was created."""
        return to_datetime(self._proto.create_time, self._proto.HasField("create_time"))

    @property
    def finished_at(self) -> dt.datetime | None:
        """When the attempt finished, or None before."""
        proto = self._live()
        return to_datetime(proto.finish_time, proto.HasField("finish_time"))

    @property
    def finished(self) -> bool:
        """Whether the attempt has finished, successfully or not."""
        return self._live().state in _TERMINAL

    @property
    def successful(self) -> bool:
        """Whether the attempt succeeded."""
        return self._live().state == enums_pb2.TASK_STATE_SUCCEEDED

    @property
    def current_attempt(self) -> int:
        """The attempt described (0-based): the latest unless one was asked for."""
        return int(self._live().attempt)

    @property
    def index(self) -> int | None:
        """The task's index in its innermost foreach, or None outside a foreach."""
        stack = self._proto.foreach_stack
        return int(stack[-1].index) if stack else None

    @property
    def exception(self) -> TaskException | None:
        """Why the attempt failed, or None when it did not fail."""
        proto = self._live()
        if proto.HasField("exception") and (proto.exception.type or proto.exception.message):
            error = proto.exception
            return TaskException(error.type, error.message, error.traceback)
        if proto.state == enums_pb2.TASK_STATE_FAILED:
            return TaskException("", proto.failure_message, "")
        return None

    @property
    def metadata(self) -> list[Metadata]:
        """The metadata recorded for the task, as Metaflow's ``Metadata`` tuples."""
        proto = self._live()
        created = self.created_at
        return [
            Metadata(name, value, created, "metadata", self)
            for name, value in sorted(proto.metadata.items())
        ]

    @property
    def metadata_dict(self) -> dict[str, str]:
        """The metadata recorded for the task, by name."""
        return dict(self._live().metadata)

    @property
    def origin_pathspec(self) -> str | None:
        """For a task that a resume cloned instead of running it: the pathspec of the task of
        the origin run whose results it reuses; None for a task that ran."""
        from polyflow._transport import pathspec_from_name

        origin = self._proto.origin_task
        return pathspec_from_name(origin) if origin else None

    @property
    def parent_task_pathspecs(self) -> list[str]:
        """Pathspecs of the tasks whose outputs this task read."""
        from polyflow._transport import pathspec_from_name

        return [pathspec_from_name(name) for name in self._proto.input_tasks]

    # -- logs -----------------------------------------------------------------------------

    def _log(self, stream: enums_pb2.LogStream.ValueType) -> str:
        data = core().read_whole_task_log(self._resource_name, stream, attempt=self._attempt)
        return data.decode("utf-8", errors="replace")

    def _log_size(self, stream: enums_pb2.LogStream.ValueType) -> int:
        response = core().read_task_log(
            self._resource_name, stream, attempt=self._attempt, max_bytes=1
        )
        return int(response.size_bytes)

    @property
    def stdout(self) -> str:
        """What the attempt printed to standard output."""
        return self._log(enums_pb2.LOG_STREAM_STDOUT)

    @property
    def stderr(self) -> str:
        """What the attempt printed to standard error."""
        return self._log(enums_pb2.LOG_STREAM_STDERR)

    @property
    def stdout_size(self) -> int:
        """Size of the attempt's standard output, in bytes."""
        return self._log_size(enums_pb2.LOG_STREAM_STDOUT)

    @property
    def stderr_size(self) -> int:
        """Size of the attempt's standard error, in bytes."""
        return self._log_size(enums_pb2.LOG_STREAM_STDERR)

    # -- artifacts ------------------------------------------------------------------------

    def _artifact_list(self) -> list[DataArtifact]:
        from polyflow.client._artifact import DataArtifact

        run = self._run_proto()
        return [
            DataArtifact(
                f"{self.pathspec}/{proto.ref.name or proto.name.rsplit('/', 1)[-1]}",
                attempt=self._attempt,
                _namespace_check=False,
                _proto=proto,
                _run=run,
            )
            for proto in core().list_artifacts(self._resource_name, attempt=self._attempt)
        ]

    @property
    def artifacts(self) -> Any:
        """The task's artifacts as a named tuple of :class:`DataArtifact` (by name)."""
        artifacts = self._artifact_list()
        names = [artifact.id for artifact in artifacts]
        # rename=True: a name from another language that is not a Python identifier becomes
        # a positional field instead of failing.
        cls = namedtuple("PolyflowArtifacts", names, rename=True)  # type: ignore[misc]
        return cls(*artifacts)

    @property
    def data(self) -> TaskData:
        """The task's artifacts by attribute: ``task.data.x``."""
        return TaskData(self._artifact_list())

    def __iter__(self) -> Iterator[DataArtifact]:
        return iter(self._artifact_list())

    def __getitem__(self, name: str) -> DataArtifact:
        """The artifact of this name (private ones included).

        Raises:
            NotFoundError: (also a KeyError) No such artifact.
        """
        from polyflow.client._artifact import DataArtifact

        return DataArtifact(
            f"{self.pathspec}/{name}",
            attempt=self._attempt,
            _namespace_check=False,
            _run=self._run_proto(),
        )

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            core().get_artifact(f"{self._resource_name}/artifacts/{name}", self._attempt)
        except NotFoundError:
            return False
        return True
