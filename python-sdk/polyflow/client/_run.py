"""``Run``: one execution of a flow."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from polyflow.api.common.v1 import enums_pb2
from polyflow.client._base import PolyflowObject, core, to_datetime
from polyflow.exceptions import NotFoundError

if TYPE_CHECKING:
    from polyflow.api.metadata.v1 import message_pb2 as metadata_pb2
    from polyflow.client._flow import Flow
    from polyflow.client._step import Step
    from polyflow.client._task import Task, TaskData

__all__ = ["Run"]

_TERMINAL = (enums_pb2.RUN_STATE_SUCCEEDED, enums_pb2.RUN_STATE_FAILED)


def _tag_list(tags: str | Iterable[str]) -> list[str]:
    """One tag or an iterable of tags, as a list of strings.

    Raises:
        TypeError: A tag is not a string.
    """
    items = [tags] if isinstance(tags, str) else list(tags)
    for tag in items:
        if not isinstance(tag, str):
            raise TypeError(f"a tag must be a string, got {type(tag).__name__}: {tag!r}")
    return items


class Run(PolyflowObject):
    """A run: ``Run("HelloFlow/3")``.

    Raises:
        NotFoundError: No such run.
        NamespaceMismatchError: The run does not carry the current namespace as a tag.
    """

    _NAME = "run"
    _DEPTH = 2

    def __init__(
        self,
        pathspec: str,
        attempt: int | None = None,
        _namespace_check: bool = True,
        *,
        _proto: metadata_pb2.Run | None = None,
    ) -> None:
        super().__init__(pathspec, attempt, _namespace_check)
        self._proto = _proto if _proto is not None else self._fetch()
        self._check_namespace()

    def _fetch(self) -> metadata_pb2.Run:
        try:
            return core().get_run(self._resource_name)
        except NotFoundError:
            # Whether the flow or the run is missing, the user asked for this run.
            raise NotFoundError(
                f"Run {self.pathspec!r} does not exist", pathspec=self.pathspec
            ) from None

    def _live(self) -> metadata_pb2.Run:
        """The run's record, fetched again while the run can still change."""
        if self._proto.state not in _TERMINAL:
            self._proto = self._fetch()
        return self._proto

    def _graph_proto(self) -> metadata_pb2.Run:
        """The run's record with its graph (list calls leave the graph out)."""
        if not self._proto.HasField("graph"):
            self._proto = self._fetch()
        return self._proto

    def _run_tags(self) -> tuple[Iterable[str], Iterable[str]]:
        return self._proto.tags, self._proto.system_tags

    # -- tag mutation (Metaflow's API) ----------------------------------------------------

    def add_tag(self, tag: str | Iterable[str]) -> None:
        """Add a user tag to the run.

        Adding a tag the run carries already, or one of its system tags, does nothing.

        Args:
            tag: The tag (an iterable of tags is accepted too, as in Metaflow).

        Raises:
            InvalidArgumentError: The tag is empty, longer than 500 characters, or starts
                with a system tag prefix (``user:``, ``runtime:``, ``python_version:``,
                ``polyflow_version:``; reason ``SYSTEM_TAG_IMMUTABLE``).
        """
        self.replace_tags((), _tag_list(tag))

    def add_tags(self, tags: Iterable[str]) -> None:
        """Add user tags to the run (see :meth:`add_tag`).

        Args:
            tags: The tags.
        """
        self.replace_tags((), _tag_list(tags))

    def remove_tag(self, tag: str | Iterable[str]) -> None:
        """Remove a user tag from the run; removing a tag it does not carry does nothing.

        Args:
            tag: The tag (an iterable of tags is accepted too, as in Metaflow).

        Raises:
            InvalidArgumentError: The tag is one of the run's system tags (reason
                ``SYSTEM_TAG_IMMUTABLE``); nothing is changed.
        """
        self.replace_tags(_tag_list(tag), ())

    def remove_tags(self, tags: Iterable[str]) -> None:
        """Remove user tags from the run (see :meth:`remove_tag`).

        Args:
            tags: The tags.
        """
        self.replace_tags(_tag_list(tags), ())

    def replace_tag(
        self, tag_to_remove: str | Iterable[str], tag_to_add: str | Iterable[str]
    ) -> None:
        """Remove a tag and add another, atomically; the removal comes first.

        Args:
            tag_to_remove: The tag to remove (or an iterable of tags).
            tag_to_add: The tag to add (or an iterable of tags).
        """
        self.replace_tags(_tag_list(tag_to_remove), _tag_list(tag_to_add))

    def replace_tags(self, tags_to_remove: Iterable[str], tags_to_add: Iterable[str]) -> None:
        """Remove tags, then add tags, in one atomic change, and refresh :attr:`tags`.

        The rules of :meth:`add_tag` and :meth:`remove_tag` apply; a refused change changes
        nothing.

        Args:
            tags_to_remove: Tags to remove.
            tags_to_add: Tags to add.

        Raises:
            InvalidArgumentError: Both lists are empty, a tag is invalid, a system tag would
                change, or the run would carry more than 50 user tags.
            NotFoundError: The run no longer exists.
        """
        proto = core().mutate_run_tags(
            self._resource_name, add=_tag_list(tags_to_add), remove=_tag_list(tags_to_remove)
        )
        if self._proto.HasField("graph"):  # the answer leaves the graph out: keep ours
            proto.graph.CopyFrom(self._proto.graph)
        self._proto = proto

    # -- Metaflow's Run API ---------------------------------------------------------------

    @property
    def parent(self) -> Flow:
        """The run's flow."""
        from polyflow.client._flow import Flow

        return Flow(self._components[0], _namespace_check=False)

    @property
    def created_at(self) -> dt.datetime | None:
        """When the run was created."""
        return to_datetime(self._proto.create_time, self._proto.HasField("create_time"))

    @property
    def finished_at(self) -> dt.datetime | None:
        """When the run finished, or None while it runs."""
        proto = self._live()
        return to_datetime(proto.finish_time, proto.HasField("finish_time"))

    @property
    def finished(self) -> bool:
        """Whether the run has finished, successfully or not."""
        return self._live().state in _TERMINAL

    @property
    def successful(self) -> bool:
        """Whether the run finished successfully."""
        return self._live().state == enums_pb2.RUN_STATE_SUCCEEDED

    @property
    def user(self) -> str:
        """The user who started the run."""
        return self._proto.user

    @property
    def failure_message(self) -> str:
        """Why the run failed; empty unless it failed."""
        return self._live().failure_message

    @property
    def origin_pathspec(self) -> str | None:
        """For a run started with ``resume``: the pathspec of the run it resumed
        (``Flow/run``); None otherwise."""
        from polyflow._transport import pathspec_from_name

        origin = self._proto.origin_run
        return pathspec_from_name(origin) if origin else None

    @property
    def end_task(self) -> Task | None:
        """The end step's task, or None when the end step has not run."""
        from polyflow._transport import pathspec_from_name
        from polyflow.client._task import Task

        proto = self._live()
        if proto.end_task:
            return Task(pathspec_from_name(proto.end_task), _namespace_check=False, _run=proto)
        end_step = self._end_step_name()
        if end_step is None:
            return None
        try:
            return self[end_step].task
        except NotFoundError:
            return None

    def _end_step_name(self) -> str | None:
        from polyflow.api.common.v1 import enums_pb2 as enums

        graph = self._graph_proto().graph
        for step in graph.steps:
            if step.kind == enums.STEP_KIND_END or step.is_end:
                return step.name
        names = {step.name for step in graph.steps}
        return "end" if "end" in names or not names else None

    @property
    def data(self) -> TaskData | None:
        """The end task's artifacts (``run.data.x``), or None when the end step has not run."""
        task = self.end_task
        return task.data if task is not None else None

    def steps(self, *tags: str) -> Iterator[Step]:
        """The run's steps that have tasks, newest first (as Metaflow orders children).

        The ``_parameters`` pseudo-step is left out.

        Args:
            *tags: Tags the run must carry; a run without them yields nothing.
        """
        from polyflow.client._step import Step

        if not set(tags) <= self.tags:
            return iter(())
        protos = list(core().list_steps(self._resource_name))
        return iter(
            Step(
                f"{self.pathspec}/{proto.step_name}",
                _namespace_check=False,
                _proto=proto,
                _run=self._proto,
            )
            for proto in reversed(protos)
            # The _parameters pseudo-step is hidden, as in Metaflow (run["_parameters"]
            # still reaches it).
            if not proto.step_name.startswith("_")
        )

    def __iter__(self) -> Iterator[Step]:
        return self.steps()

    def __getitem__(self, step_name: str) -> Step:
        """The step of this name.

        Raises:
            NotFoundError: (also a KeyError) The step has no task in this run.
        """
        from polyflow.client._step import Step

        return Step(f"{self.pathspec}/{step_name}", _namespace_check=False, _run=self._proto)

    def __contains__(self, step_name: object) -> bool:
        if not isinstance(step_name, str):
            return False
        try:
            core().get_step(f"{self._resource_name}/steps/{step_name}")
        except NotFoundError:
            return False
        return True
