"""Join bookkeeping: which arriving tasks belong together, and when a join task can start.

From ``docs/architecture.md`` ("Joins"):

- a join that closes a **foreach** collects under the key (join step, the arriving task's
  foreach frames minus the innermost one); it is complete when ``num_splits`` of that
  innermost frame have arrived, and its inputs are ordered by the innermost frame's index;
- a join that closes a **branch** collects under the key (join step, the arriving task's
  foreach frames); it is complete when one task per target of the split has arrived, and its
  inputs are ordered like the split's targets.

The join task's own foreach stack is the key's frames.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from polyflow_core.domain.model import FlowGraph, StepSpec, TransitionKind
from polyflow_core.metadata.base import ForeachFrameRecord

__all__ = ["JoinCollector", "JoinError", "JoinPlacement", "JoinPlanner"]

T = TypeVar("T")

JoinKey = tuple[str, tuple[ForeachFrameRecord, ...]]


class JoinError(Exception):
    """A task arrived at a join in a way the graph does not allow (a core or graph bug)."""


@dataclass(frozen=True)
class JoinPlacement:
    """Where one arriving task goes."""

    key: JoinKey
    """Identifies the join task being collected."""
    position: int
    """The input's place among the join task's inputs."""
    expected: int
    """How many inputs the join task takes."""
    join_stack: tuple[ForeachFrameRecord, ...]
    """The join task's foreach stack."""


@dataclass
class JoinCollector(Generic[T]):
    """The inputs of one join task gathered so far."""

    expected: int
    """How many inputs complete it."""
    slots: dict[int, T] = field(default_factory=dict)
    """Position to input."""

    def add(self, position: int, item: T) -> bool:
        """Place an input; True when the join is now complete.

        Raises:
            JoinError: The position is out of range or taken already.
        """
        if not 0 <= position < self.expected:
            raise JoinError(f"join input position {position} is outside 0..{self.expected - 1}")
        if position in self.slots:
            raise JoinError(f"join input position {position} arrived twice")
        self.slots[position] = item
        return len(self.slots) == self.expected

    def ordered(self) -> list[T]:
        """The inputs by position (call once complete)."""
        return [self.slots[position] for position in range(self.expected)]


class JoinPlanner:
    """Places tasks arriving at the joins of one graph.

    Args:
        graph: A validated graph (joins carry ``matching_split``).
    """

    def __init__(self, graph: FlowGraph) -> None:
        self._graph = graph
        self._branch_positions: dict[str, dict[str, int]] = {}

    def place(
        self, join: StepSpec, from_step: str, stack: tuple[ForeachFrameRecord, ...]
    ) -> JoinPlacement:
        """Where a task of ``from_step`` with foreach frames ``stack`` goes in ``join``.

        Raises:
            JoinError: The join has no usable matching split, or the task cannot belong to it.
        """
        if not join.matching_split or not self._graph.has_step(join.matching_split):
            raise JoinError(f"join step {join.name!r} has no matching split step")
        split = self._graph.step(join.matching_split)
        kind = split.transition.kind
        if kind is TransitionKind.FOREACH:
            if not stack:
                raise JoinError(
                    f"a task of step {from_step!r} reached foreach join {join.name!r} "
                    "without foreach frames"
                )
            innermost = stack[-1]
            return JoinPlacement(
                key=(join.name, stack[:-1]),
                position=innermost.index,
                expected=innermost.num_splits,
                join_stack=stack[:-1],
            )
        if kind is TransitionKind.BRANCH:
            positions = self._positions(join, split)
            if from_step not in positions:
                raise JoinError(
                    f"step {from_step!r} reached join {join.name!r} but lies on no branch "
                    f"of split {split.name!r}"
                )
            return JoinPlacement(
                key=(join.name, stack),
                position=positions[from_step],
                expected=len(split.transition.targets),
                join_stack=stack,
            )
        raise JoinError(
            f"join step {join.name!r} closes step {split.name!r}, which is not a branch or "
            f"a foreach ({kind.name})"
        )

    def _positions(self, join: StepSpec, split: StepSpec) -> dict[str, int]:
        """Incoming step of the join -> index of the split target whose branch it ends
        (computed once per join by walking each branch forward up to the join)."""
        cached = self._branch_positions.get(join.name)
        if cached is not None:
            return cached
        incoming = set(join.in_steps)
        positions: dict[str, int] = {}
        for index, target in enumerate(split.transition.targets):
            if target == join.name:  # an empty branch: the split itself is the input
                positions.setdefault(split.name, index)
                continue
            seen = {target}
            queue = deque([target])
            while queue:
                name = queue.popleft()
                if name in incoming:
                    positions.setdefault(name, index)
                if not self._graph.has_step(name):
                    continue
                for following in self._graph.step(name).transition.out_steps:
                    if following != join.name and following not in seen:
                        seen.add(following)
                        queue.append(following)
        self._branch_positions[join.name] = positions
        return positions
