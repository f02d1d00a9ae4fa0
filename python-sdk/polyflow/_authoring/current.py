"""``current``: what a step can learn about the task it runs in.

Inside a task the worker fills it in (:func:`set_task_context`); outside one every task
field is None and ``current.is_running_flow`` is False. Decorators may add fields of their
own (:func:`update_current`), read as attributes, with :meth:`Current.get` or with ``in``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Current",
    "TaskContextInfo",
    "clear_task_context",
    "current",
    "set_task_context",
    "update_current",
]


@dataclass(frozen=True)
class TaskContextInfo:
    """The task fields of ``current``, as the worker sets them."""

    flow_name: str
    """The flow's name."""
    run_id: str
    """The run's id."""
    step_name: str
    """The step being run."""
    task_id: str
    """The task's id."""
    retry_count: int = 0
    """The attempt (0-based)."""
    origin_run_id: str | None = None
    """The run this one resumed, if any."""
    namespace: str | None = None
    """The namespace the run was started in."""
    username: str | None = None
    """The user who started the run."""
    tags: tuple[str, ...] = ()
    """The run's tags."""
    parameter_names: tuple[str, ...] = ()
    """The flow's parameters."""
    graph: Mapping[str, Any] = field(default_factory=dict)
    """The flow's graph as a dict (see ``polyflow._authoring.graph.graph_info``)."""


_TASK_FIELDS = (
    "flow_name",
    "run_id",
    "step_name",
    "task_id",
    "retry_count",
    "origin_run_id",
    "pathspec",
    "namespace",
    "username",
    "tags",
    "parameter_names",
    "graph",
    "is_running_flow",
)


class Current:
    """The task a step runs in. Use the ``current`` singleton."""

    def __init__(self) -> None:
        """Create an empty context (outside any task)."""
        self._info: TaskContextInfo | None = None
        self._extra: dict[str, Any] = {}

    @property
    def is_running_flow(self) -> bool:
        """True inside a task."""
        return self._info is not None

    @property
    def flow_name(self) -> str | None:
        """The flow's name."""
        return None if self._info is None else self._info.flow_name

    @property
    def run_id(self) -> str | None:
        """The run's id."""
        return None if self._info is None else self._info.run_id

    @property
    def step_name(self) -> str | None:
        """The step being run."""
        return None if self._info is None else self._info.step_name

    @property
    def task_id(self) -> str | None:
        """The task's id."""
        return None if self._info is None else self._info.task_id

    @property
    def retry_count(self) -> int | None:
        """The attempt (0 for the first)."""
        return None if self._info is None else self._info.retry_count

    @property
    def origin_run_id(self) -> str | None:
        """The run this one resumed, if any."""
        return None if self._info is None else self._info.origin_run_id

    @property
    def pathspec(self) -> str | None:
        """``flow/run/step/task``."""
        info = self._info
        if info is None:
            return None
        return f"{info.flow_name}/{info.run_id}/{info.step_name}/{info.task_id}"

    @property
    def namespace(self) -> str | None:
        """The namespace the run was started in."""
        return None if self._info is None else self._info.namespace

    @property
    def username(self) -> str | None:
        """The user who started the run."""
        return None if self._info is None else self._info.username

    @property
    def tags(self) -> list[str] | None:
        """The run's tags."""
        return None if self._info is None else list(self._info.tags)

    @property
    def parameter_names(self) -> list[str] | None:
        """The flow's parameter names."""
        return None if self._info is None else list(self._info.parameter_names)

    @property
    def graph(self) -> dict[str, Any] | None:
        """The flow's graph as a dict."""
        return None if self._info is None else dict(self._info.graph)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.__dict__["_extra"][name]
        except KeyError:
            raise AttributeError(f"current has no attribute {name!r}") from None

    def get(self, key: str, default: Any = None) -> Any:
        """The field ``key``, or ``default`` when it is not set."""
        value = getattr(self, key, None)
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        if key == "is_running_flow":
            return True
        return getattr(self, key, None) is not None

    def __repr__(self) -> str:
        if self._info is None:
            return "<current: not in a task>"
        return f"<current {self.pathspec} attempt {self._info.retry_count}>"


current = Current()
"""The singleton."""


def set_task_context(info: TaskContextInfo) -> None:
    """Fill ``current`` for a task (the worker calls this)."""
    current._info = info
    current._extra.clear()


def update_current(**fields: Any) -> None:
    """Add fields to ``current`` (for decorators, e.g. ``card``).

    Raises:
        ValueError: A field name that ``current`` defines itself.
    """
    clash = sorted(set(fields) & set(_TASK_FIELDS))
    if clash:
        raise ValueError(f"cannot override current.{clash[0]}")
    current._extra.update(fields)


def clear_task_context() -> None:
    """Reset ``current`` to outside any task."""
    current._info = None
    current._extra.clear()
