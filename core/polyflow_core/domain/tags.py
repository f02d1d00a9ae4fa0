"""User tags of runs: the rules of a tag change (Metaflow's), and where changes are applied.

A change removes some user tags, then adds some (``MetadataService.MutateRunTags``). The rules
that need nothing stored are checked by :func:`check_tag_change` on the caller's thread; the
rest by :class:`RunTagEditor`, which runs on the scheduler thread, the single writer of the
metadata store (see :mod:`polyflow_core.domain.scheduler`):

- system tags never change: removing one of the run's system tags is refused, adding one is
  skipped (Metaflow skips it silently);
- a new tag with a system prefix (:data:`SYSTEM_TAG_PREFIXES`) is refused, so a tag never puts
  a run into another user's namespace (namespaces are tags such as ``user:alice``);
- removing an absent tag or adding a present one does nothing.

Both refusals are INVALID_ARGUMENT with reason ``SYSTEM_TAG_IMMUTABLE``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from polyflow_core.errors import InvalidArgumentError
from polyflow_core.metadata.base import MetadataStore, RunRecord

__all__ = [
    "MAX_TAG_LENGTH",
    "REMEMBERED_REQUESTS",
    "SYSTEM_TAG_PREFIXES",
    "RunTagEditor",
    "RunTagWriter",
    "TagChange",
    "check_tag_change",
]

SYSTEM_TAG_PREFIXES = ("user:", "runtime:", "python_version:", "polyflow_version:")
"""Prefixes of the system tags the core and the SDKs give every run; no user tag has them."""
MAX_TAG_LENGTH = 500
"""Longest tag, in characters (Metaflow's limit)."""
REMEMBERED_REQUESTS = 1024
"""How many tag changes' request ids the editor remembers (newest kept)."""


@dataclass(frozen=True)
class TagChange:
    """A checked change of a run's user tags: ``remove`` first, then ``add``."""

    add: tuple[str, ...]
    """Tags to add, without duplicates, in the order given."""
    remove: tuple[str, ...]
    """Tags to remove, without duplicates, in the order given."""


def _check_tag(tag: str) -> None:
    if not tag:
        raise InvalidArgumentError(
            "a tag must not be empty", reason="INVALID_TAG", metadata={"tag": tag}
        )
    if len(tag) > MAX_TAG_LENGTH:
        raise InvalidArgumentError(
            f"tag {tag[:40]!r}... is {len(tag)} characters long; at most {MAX_TAG_LENGTH} "
            "are allowed",
            reason="INVALID_TAG",
            metadata={"tag": tag[:MAX_TAG_LENGTH], "length": str(len(tag))},
        )


def check_tag_change(add: Iterable[str], remove: Iterable[str]) -> TagChange:
    """Check the parts of a change that need no stored state.

    Args:
        add: Tags to add.
        remove: Tags to remove.

    Returns:
        The change, duplicates dropped.

    Raises:
        InvalidArgumentError: Both lists are empty (reason ``NO_TAG_CHANGE``), or a tag is
            empty or too long (reason ``INVALID_TAG``).
    """
    to_add = tuple(dict.fromkeys(add))
    to_remove = tuple(dict.fromkeys(remove))
    if not to_add and not to_remove:
        raise InvalidArgumentError(
            "a tag change must add or remove at least one tag", reason="NO_TAG_CHANGE"
        )
    for tag in (*to_add, *to_remove):
        _check_tag(tag)
    return TagChange(add=to_add, remove=to_remove)


def _immutable(tag: str, why: str, flow_id: str, run_id: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"tag {tag!r} {why}: system tags cannot be changed",
        reason="SYSTEM_TAG_IMMUTABLE",
        metadata={"tag": tag, "flow_id": flow_id, "run_id": run_id},
    )


class RunTagWriter(Protocol):
    """Applies tag changes on the metadata store's single writer (the scheduler)."""

    def update_run_tags(
        self, flow_id: str, run_id: str, change: TagChange, request_id: str = ""
    ) -> RunRecord:
        """Apply ``change`` to a run and return the run (its graph left empty).

        Raises:
            NotFoundError: No such run.
            InvalidArgumentError: The change touches a system tag (``SYSTEM_TAG_IMMUTABLE``)
                or leaves too many tags (``TOO_MANY_TAGS``).
        """
        ...


class RunTagEditor:
    """Applies tag changes to the metadata store. Not thread-safe: the scheduler thread owns
    it, which keeps the store's writes on one thread.

    Args:
        store: The metadata store.
        remembered: How many request ids to remember for idempotent retries.
    """

    def __init__(self, store: MetadataStore, remembered: int = REMEMBERED_REQUESTS) -> None:
        self._store = store
        self._remembered = remembered
        self._requests: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def apply(
        self, flow_id: str, run_id: str, change: TagChange, request_id: str = ""
    ) -> RunRecord:
        """Apply a checked change (see the module docstring) durably.

        A ``request_id`` seen before for this run changes nothing: the run is returned as
        it is now.

        Raises:
            NotFoundError: No such run.
            InvalidArgumentError: A system tag would change (``SYSTEM_TAG_IMMUTABLE``), or too
                many tags (``TOO_MANY_TAGS``).
        """
        key = (flow_id, run_id, request_id)
        if request_id and key in self._requests:
            self._requests.move_to_end(key)
            return replace(self._store.get_run(flow_id, run_id), graph=b"")
        # System tags are fixed when the run is created, so reading them before the write
        # transaction cannot race with a change of them.
        system = set(self._store.get_run(flow_id, run_id).system_tags)
        for tag in change.remove:
            if tag in system:
                raise _immutable(tag, "is a system tag of the run", flow_id, run_id)
        add = []
        for tag in change.add:
            if tag in system:
                continue  # Metaflow: adding an existing system tag is a silent no-op
            if tag.startswith(SYSTEM_TAG_PREFIXES):
                raise _immutable(tag, "has the prefix of a system tag", flow_id, run_id)
            add.append(tag)
        record = self._store.update_run_tags(flow_id, run_id, add=add, remove=change.remove)
        if request_id:
            self._requests[key] = None
            while len(self._requests) > self._remembered:
                self._requests.popitem(last=False)
        return record
