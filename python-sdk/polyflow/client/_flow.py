"""``Flow``: every run of one flow name."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING

from polyflow.client._base import PolyflowObject, core, to_datetime
from polyflow.client._namespace import get_namespace
from polyflow.exceptions import NotFoundError

if TYPE_CHECKING:
    from polyflow.api.metadata.v1 import message_pb2 as metadata_pb2
    from polyflow.client._run import Run

__all__ = ["Flow"]


class Flow(PolyflowObject):
    """A flow: ``Flow("HelloFlow")``.

    A flow is in a namespace when at least one of its runs is.

    Raises:
        NotFoundError: The flow has no run at all.
        NamespaceMismatchError: No run of the flow is in the current namespace.
    """

    _NAME = "flow"
    _DEPTH = 1

    def __init__(
        self,
        pathspec: str,
        attempt: int | None = None,
        _namespace_check: bool = True,
        *,
        _proto: metadata_pb2.Flow | None = None,
    ) -> None:
        super().__init__(pathspec, attempt, _namespace_check)
        self._proto = _proto if _proto is not None else core().get_flow(self._resource_name)
        self._check_namespace()

    def _in_namespace(self, ns: str) -> bool:
        return next(self._run_protos((ns,), page_size=1), None) is not None

    def _run_protos(
        self, tags: tuple[str, ...], page_size: int = 100
    ) -> Iterator[metadata_pb2.Run]:
        return core().list_runs(self._resource_name, tags=tags, page_size=page_size)

    def _namespaced(self, tags: tuple[str, ...]) -> tuple[str, ...]:
        ns = get_namespace()
        return (*tags, ns) if ns is not None and ns not in tags else tags

    @property
    def created_at(self) -> dt.datetime | None:
        """When the flow's first run was created."""
        return to_datetime(self._proto.create_time, self._proto.HasField("create_time"))

    @property
    def parent(self) -> None:
        """Flows have no parent."""
        return None

    def runs(self, *tags: str) -> Iterator[Run]:
        """The flow's runs in the current namespace that carry every tag, newest first.

        Args:
            *tags: Tags every run must carry.

        Yields:
            Runs, fetched page by page.
        """
        from polyflow.client._run import Run

        for proto in self._run_protos(self._namespaced(tags)):
            yield Run(f"{self.id}/{proto.run_id}", _namespace_check=False, _proto=proto)

    def __iter__(self) -> Iterator[Run]:
        return self.runs()

    @property
    def latest_run(self) -> Run | None:
        """The newest run in the current namespace (finished or not), or None."""
        from polyflow.client._run import Run

        proto = next(self._run_protos(self._namespaced(()), page_size=1), None)
        if proto is None:
            return None
        return Run(f"{self.id}/{proto.run_id}", _namespace_check=False, _proto=proto)

    @property
    def latest_successful_run(self) -> Run | None:
        """The newest successful run in the current namespace, or None."""
        from polyflow.api.common.v1 import enums_pb2
        from polyflow.client._run import Run

        protos = core().list_runs(
            self._resource_name,
            tags=self._namespaced(()),
            states=(enums_pb2.RUN_STATE_SUCCEEDED,),
            page_size=1,
        )
        proto = next(protos, None)
        if proto is None:
            return None
        return Run(f"{self.id}/{proto.run_id}", _namespace_check=False, _proto=proto)

    def __getitem__(self, run_id: str) -> Run:
        """The run with this id (subject to the namespace check)."""
        from polyflow.client._run import Run

        return Run(f"{self.id}/{run_id}")

    def __contains__(self, run_id: object) -> bool:
        if not isinstance(run_id, str):
            return False
        try:
            core().get_run(f"{self._resource_name}/runs/{run_id}")
        except NotFoundError:
            return False
        return True
