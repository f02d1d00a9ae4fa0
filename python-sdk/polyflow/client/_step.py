"""``Step``: every task of one step in a run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from polyflow.client._base import PolyflowObject, core, to_datetime
from polyflow.exceptions import NotFoundError

if TYPE_CHECKING:
    from polyflow.api.metadata.v1 import message_pb2 as metadata_pb2
    from polyflow.client._run import Run
    from polyflow.client._task import Task

__all__ = ["Step"]


class Step(PolyflowObject):
    """A step of a run: ``Step("HelloFlow/3/start")``.

    Raises:
        NotFoundError: The step has no task in that run (or the run does not exist).
        NamespaceMismatchError: The run is outside the current namespace.
    """

    _NAME = "step"
    _DEPTH = 3

    def __init__(
        self,
        pathspec: str,
        attempt: int | None = None,
        _namespace_check: bool = True,
        *,
        _proto: metadata_pb2.Step | None = None,
        _run: metadata_pb2.Run | None = None,
    ) -> None:
        super().__init__(pathspec, attempt, _namespace_check)
        self._proto = _proto if _proto is not None else self._fetch()
        self._run = _run
        self._check_namespace()

    def _fetch(self) -> metadata_pb2.Step:
        try:
            return core().get_step(self._resource_name)
        except NotFoundError:
            raise NotFoundError(
                f"Step {self.pathspec!r} does not exist", pathspec=self.pathspec
            ) from None

    def _run_proto(self) -> metadata_pb2.Run:
        if self._run is None:
            self._run = core().get_run(self._resource_name.rsplit("/steps/", 1)[0])
        return self._run

    def _run_tags(self) -> tuple[Iterable[str], Iterable[str]]:
        run = self._run_proto()
        return run.tags, run.system_tags

    @property
    def parent(self) -> Run:
        """The step's run."""
        from polyflow.client._run import Run

        return Run("/".join(self._components[:2]), _namespace_check=False, _proto=self._run_proto())

    @property
    def created_at(self) -> dt.datetime | None:
        """When the step's first task was created."""
        return to_datetime(self._proto.create_time, self._proto.HasField("create_time"))

    @property
    def finished_at(self) -> dt.datetime | None:
        """When the step's last task finished, or None while any task is unfinished."""
        if not self._proto.HasField("finish_time"):
            self._proto = self._fetch()
        return to_datetime(self._proto.finish_time, self._proto.HasField("finish_time"))

    def tasks(self, *tags: str) -> Iterator[Task]:
        """The step's tasks, newest first (as Metaflow orders children).

        Args:
            *tags: Tags the run must carry; a run without them yields nothing.
        """
        from polyflow.client._task import Task

        if not set(tags) <= self.tags:
            return iter(())
        run = self._run_proto()
        protos = list(core().list_tasks(self._resource_name))
        return iter(
            Task(
                f"{self.pathspec}/{proto.task_id}",
                _namespace_check=False,
                _proto=proto,
                _run=run,
            )
            for proto in reversed(protos)
        )

    def __iter__(self) -> Iterator[Task]:
        return self.tasks()

    @property
    def task(self) -> Task | None:
        """One task of the step (the newest); for a step that is not a foreach, its task."""
        return next(self.tasks(), None)

    def __getitem__(self, task_id: str) -> Task:
        """The task with this id.

        Raises:
            NotFoundError: (also a KeyError) No such task.
        """
        from polyflow.client._task import Task

        return Task(f"{self.pathspec}/{task_id}", _namespace_check=False, _run=self._run_proto())

    def __contains__(self, task_id: object) -> bool:
        if not isinstance(task_id, str):
            return False
        try:
            core().get_task(f"{self._resource_name}/tasks/{task_id}")
        except NotFoundError:
            return False
        return True
