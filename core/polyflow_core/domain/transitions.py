"""Checks a task's reported transition against the static graph.

Workers check ``self.next(...)`` themselves, but the core trusts no worker: a worker of another
language, an older SDK or a bug must not move a run along an edge the graph does not have.
The rules follow Metaflow's runtime (``metaflow.md`` §1 and §8): a linear step goes to its one
target, a branch to all of its targets, a foreach to its target with between 1 and
``max_num_splits`` splits, a switch to exactly one of its cases, the end step nowhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from polyflow_core.domain.model import StepKind, StepSpec, TransitionKind

__all__ = ["check_transition", "is_terminal", "ordered_targets"]


def is_terminal(step: StepSpec) -> bool:
    """True for the end step (no ``next`` call): its success ends the run."""
    return step.kind is StepKind.END or step.transition.kind is TransitionKind.UNSPECIFIED


def _names(steps: Sequence[str]) -> str:
    """``'a', 'b'`` (or ``nothing``) for messages."""
    return ", ".join(repr(step) for step in steps) if steps else "nothing"


def check_transition(
    step: StepSpec, next_steps: Sequence[str], foreach_num_splits: int, max_num_splits: int
) -> str:
    """Why a reported transition is not allowed by the graph, or ``""`` when it is.

    Args:
        step: The step of the task that reported.
        next_steps: The steps it says it moves to.
        foreach_num_splits: FOREACH only: the number of splits it made.
        max_num_splits: The run's bound on splits.

    Returns:
        A one-line message for the task's failure, or an empty string.
    """
    transition = step.transition
    kind = transition.kind
    went = _names(next_steps)
    if kind is TransitionKind.UNSPECIFIED:
        if next_steps:
            return f"step {step.name!r} ends the flow but its task went to {went}"
        return ""
    if kind is TransitionKind.LINEAR:
        if list(next_steps) != list(transition.targets):
            return (
                f"step {step.name!r} must go to {_names(transition.targets)} "
                f"but its task went to {went}"
            )
        return ""
    if kind is TransitionKind.BRANCH:
        if len(next_steps) != len(transition.targets) or set(next_steps) != set(transition.targets):
            return (
                f"step {step.name!r} must go to all of {_names(transition.targets)} "
                f"but its task went to {went}"
            )
        return ""
    if kind is TransitionKind.FOREACH:
        if list(next_steps) != list(transition.targets):
            return (
                f"foreach step {step.name!r} must go to {_names(transition.targets)} "
                f"but its task went to {went}"
            )
        var = transition.foreach_var
        if foreach_num_splits < 1:
            return (
                f"foreach step {step.name!r} made {foreach_num_splits} splits over {var!r}; "
                "a foreach needs at least 1"
            )
        if foreach_num_splits > max_num_splits:
            return (
                f"foreach step {step.name!r} made {foreach_num_splits} splits over {var!r}, "
                f"more than max_num_splits {max_num_splits}; raise the bound "
                "(--max-num-splits) or split less"
            )
        return ""
    if kind is TransitionKind.SWITCH:
        cases = list(dict.fromkeys(transition.switch_cases.values()))
        if len(next_steps) != 1 or next_steps[0] not in cases:
            return (
                f"switch step {step.name!r} must go to exactly one of {_names(cases)} "
                f"but its task went to {went}"
            )
        return ""
    return f"step {step.name!r} has a transition the core cannot follow ({kind.name})"


def ordered_targets(step: StepSpec, next_steps: Sequence[str]) -> list[str]:
    """The steps to create tasks for, in graph order (a branch's targets as written in the
    source, whatever order the worker reported them in)."""
    if step.transition.kind is TransitionKind.BRANCH:
        return list(step.transition.targets)
    return list(next_steps)
