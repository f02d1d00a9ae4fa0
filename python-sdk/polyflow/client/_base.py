"""What every client object shares: pathspec handling, namespace checks, times and tags.

Objects are addressed by Metaflow pathspecs (``Flow/run/step/task/artifact``); the wire uses
resource names (``flows/F/runs/R/...``). Protobuf messages stay inside these objects: users
see plain Python values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from polyflow.client._namespace import get_namespace
from polyflow.exceptions import InvalidPathspecError, NamespaceMismatchError

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp

    from polyflow._transport import CoreClient

__all__ = ["PolyflowObject", "core", "to_datetime"]

ObjT = TypeVar("ObjT", bound="PolyflowObject")

_KINDS = ("flow", "run", "step", "task", "artifact")


def core() -> CoreClient:
    """This process's client of the core (the daemon is found or started on first use)."""
    from polyflow._daemon import get_client

    return get_client()


def to_datetime(timestamp: Timestamp, is_set: bool = True) -> dt.datetime | None:
    """Turn a wire timestamp into a naive local datetime, as Metaflow's client returns.

    Args:
        timestamp: The wire value.
        is_set: Whether the field is set (``HasField``); unset gives None.

    Returns:
        The local time, or None.
    """
    if not is_set:
        return None
    return dt.datetime.fromtimestamp(timestamp.seconds + timestamp.nanos / 1e9)


def split_pathspec(pathspec: str, depth: int) -> tuple[str, ...]:
    """Split and check a pathspec of ``depth`` components.

    Raises:
        InvalidPathspecError: Wrong number of components, or an empty one.
    """
    if not isinstance(pathspec, str):
        raise InvalidPathspecError(f"a pathspec must be a string, got {type(pathspec).__name__}")
    parts = tuple(pathspec.strip("/").split("/"))
    kind = _KINDS[depth - 1]
    if len(parts) != depth or not all(parts):
        example = "/".join(("HelloFlow", "3", "start", "1", "x")[:depth])
        raise InvalidPathspecError(
            f"{pathspec!r} is not the pathspec of a {kind}: expected {depth} part(s) like "
            f"{example!r}"
        )
    return parts


def _restore(cls: type[ObjT], pathspec: str, attempt: int | None) -> ObjT:
    return cls(pathspec, attempt=attempt, _namespace_check=False)


class PolyflowObject:
    """The base of Flow, Run, Step, Task and DataArtifact (Metaflow's ``MetaflowObject``).

    Args:
        pathspec: The object's pathspec.
        attempt: For tasks and artifacts, the attempt to describe (latest by default).
        _namespace_check: Raise :class:`~polyflow.exceptions.NamespaceMismatchError` when
            the object is outside the current namespace. Parents and children reached from
            an object skip the check, as in Metaflow.
    """

    _NAME: ClassVar[str] = "object"
    _DEPTH: ClassVar[int] = 0

    def __init__(
        self,
        pathspec: str,
        attempt: int | None = None,
        _namespace_check: bool = True,
    ) -> None:
        self._components = split_pathspec(pathspec, self._DEPTH)
        self._pathspec = "/".join(self._components)
        self._attempt = attempt
        self._namespace_check = _namespace_check
        self._current_namespace = get_namespace()

    # -- identity -------------------------------------------------------------------------

    @property
    def pathspec(self) -> str:
        """The object's pathspec, e.g. ``HelloFlow/3/start/1``."""
        return self._pathspec

    @property
    def path_components(self) -> list[str]:
        """The pathspec's parts."""
        return list(self._components)

    @property
    def id(self) -> str:
        """The last part of the pathspec (flow name, run id, step name, task id, name)."""
        return self._components[-1]

    @property
    def _resource_name(self) -> str:
        keys = ("flows", "runs", "steps", "tasks", "artifacts")
        return "/".join(f"{k}/{v}" for k, v in zip(keys, self._components, strict=False))

    def __repr__(self) -> str:
        extra = f", attempt={self._attempt}" if self._attempt is not None else ""
        return f"{type(self).__name__}({self._pathspec!r}{extra})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PolyflowObject):
            return NotImplemented
        return (type(self), self._pathspec, self._attempt) == (
            type(other),
            other._pathspec,
            other._attempt,
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._pathspec, self._attempt))

    def __reduce__(self) -> tuple[Any, ...]:
        # Objects pickle as their address (an artifact may hold a Run); they reload lazily.
        return (_restore, (type(self), self._pathspec, self._attempt))

    # -- tags and namespace ---------------------------------------------------------------

    def _run_tags(self) -> tuple[Iterable[str], Iterable[str]]:
        """The (user, system) tags of the object's run; flows have none."""
        return (), ()

    @property
    def tags(self) -> frozenset[str]:
        """User and system tags of the object's run."""
        user, system = self._run_tags()
        return frozenset(user) | frozenset(system)

    @property
    def user_tags(self) -> frozenset[str]:
        """Tags given with ``--tag``."""
        return frozenset(self._run_tags()[0])

    @property
    def system_tags(self) -> frozenset[str]:
        """Tags the system added (``user:``, ``runtime:``, ``python_version:`` ...)."""
        return frozenset(self._run_tags()[1])

    def _in_namespace(self, ns: str) -> bool:
        return ns in self.tags

    def is_in_namespace(self) -> bool:
        """Whether the object is visible in the current namespace."""
        ns = get_namespace()
        return ns is None or self._in_namespace(ns)

    def _check_namespace(self) -> None:
        ns = self._current_namespace
        if self._namespace_check and ns is not None and not self._in_namespace(ns):
            raise NamespaceMismatchError(
                f"{self!r} is not in the current namespace {ns!r}; switch with "
                "namespace('<tag>') or see every run with namespace(None)",
                namespace=ns,
            )
