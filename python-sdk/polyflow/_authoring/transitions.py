"""Transition kinds and the transition a step takes at run time."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["TakenTransition", "TransitionKind"]


class TransitionKind(enum.IntEnum):
    """The form of a ``self.next(...)`` call (values match the proto's TransitionKind)."""

    UNSPECIFIED = 0
    """No ``next`` call (only valid for the end step)."""
    LINEAR = 1
    """``next(a)``."""
    BRANCH = 2
    """``next(a, b, ...)``: a static split."""
    FOREACH = 3
    """``next(a, foreach="var")``."""
    SWITCH = 4
    """``next({"k": a, ...}, condition="var")``."""
    INVALID = 5
    """A call whose form is not understood."""


@dataclass(frozen=True)
class TakenTransition:
    """What a ``self.next(...)`` call did at run time."""

    kind: TransitionKind
    """The form of the call."""
    targets: tuple[str, ...]
    """The steps the task moves to (for a switch: the chosen step only)."""
    foreach_var: str = ""
    """FOREACH: the artifact iterated over."""
    num_splits: int = 0
    """FOREACH: the number of items."""
    value_reprs: tuple[str, ...] = ()
    """FOREACH: short representations of the items (at most 30 characters each)."""
    condition: str = ""
    """SWITCH: the artifact whose value chose the case."""
    cases: tuple[str, ...] = ()
    """SWITCH: every step named in the call's cases."""
