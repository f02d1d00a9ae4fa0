"""``FlowSpec``: the base class of every flow.

Constructing a flow class (``if __name__ == "__main__": MyFlow()``) hands over to the
command line (``polyflow._cli.flow_cli.main``). The task worker makes instances through
:meth:`FlowSpec._pf_for_task` instead, with the task's artifacts attached lazily.

On an instance, artifacts are the public attributes the steps set; parameters and
class-level constants are read-only; ``self.next(...)`` records the transition for the
worker (see :mod:`polyflow._authoring.transitions`).
"""

from __future__ import annotations

import reprlib
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from polyflow._authoring.artifacts import (
    ArtifactTable,
    ForeachFrame,
    Inputs,
    InputView,
    StoredArtifact,
    foreach_item,
)
from polyflow._authoring.members import constant_names
from polyflow._authoring.step import step_marks
from polyflow._authoring.transitions import TakenTransition, TransitionKind
from polyflow.exceptions import (
    InvalidNextError,
    MergeArtifactsError,
    MissingInMergeArtifactsError,
    TaskFailedError,
    UnhandledInMergeArtifactsError,
)

if TYPE_CHECKING:
    from polyflow._authoring.parameters import Parameter

__all__ = ["DEFAULT_MAX_NUM_SPLITS", "FlowSpec", "FlowState"]

DEFAULT_MAX_NUM_SPLITS = 100
"""Most splits one foreach may create unless the run says otherwise."""

_VALUE_REPR_CHARS = 30
_NEXT_KEYWORDS = frozenset({"foreach", "condition"})


def _short_repr(value: object) -> str:
    text = _REPR.repr(value)
    return text if len(text) <= _VALUE_REPR_CHARS else text[: _VALUE_REPR_CHARS - 3] + "..."


_REPR = reprlib.Repr()
_REPR.maxstring = _VALUE_REPR_CHARS
_REPR.maxother = _VALUE_REPR_CHARS


@dataclass
class FlowState:
    """The per-task state of a flow instance (private to the SDK)."""

    step_name: str = ""
    """The step being run."""
    table: ArtifactTable = field(default_factory=ArtifactTable)
    """Inherited and merged artifacts, as references."""
    foreach_stack: tuple[ForeachFrame, ...] = ()
    """The task's foreach frames, outermost first."""
    inputs: Inputs | None = None
    """A join's inputs."""
    max_num_splits: int = DEFAULT_MAX_NUM_SPLITS
    """Most splits a foreach may create."""
    transition: TakenTransition | None = None
    """What ``self.next`` recorded."""


def _reject_pickle() -> NoReturn:
    raise TypeError(
        "Flows cannot be pickled. Did you store self, or a join's inputs, in an artifact? "
        "Store the values you need instead, e.g. self.x = inp.x"
    )


class FlowSpec:
    """Base class of flows. Subclass it, define steps with ``@step``, and end the file with
    ``if __name__ == "__main__": MyFlow()``."""

    _pf_state: FlowState

    def __init__(self, use_cli: bool = True) -> None:
        """Run the flow's command line (``use_cli=False`` makes a bare instance).

        Args:
            use_cli: Hand over to the command line with ``sys.argv``; does not return.
        """
        object.__setattr__(self, "_pf_state", FlowState())
        if use_cli:
            from polyflow._cli.flow_cli import main

            main(type(self), None)

    @classmethod
    def _pf_for_task(cls, state: FlowState) -> FlowSpec:
        """An instance for a task, without the command line (used by the worker)."""
        flow = cls.__new__(cls)
        object.__setattr__(flow, "_pf_state", state)
        return flow

    # Attributes and artifacts.

    @property
    def name(self) -> str:
        """The flow's name (its class name)."""
        return type(self).__name__

    def __getattr__(self, name: str) -> Any:
        if name == "_pf_state":  # a subclass __init__ that skipped FlowSpec.__init__
            fresh = FlowState()
            object.__setattr__(self, "_pf_state", fresh)
            return fresh
        if name.startswith("__"):
            raise AttributeError(name)
        state: FlowState | None = self.__dict__.get("_pf_state")
        if state is not None and name in state.table:
            value = state.table.get(name)
            self.__dict__[name] = value
            return value
        raise AttributeError(f"Flow {type(self).__name__} has no attribute or artifact {name!r}")

    def __setattr__(self, name: str, value: object) -> None:
        if name in constant_names(type(self)):
            raise AttributeError(
                f"Cannot set {name!r}: it is a class-level constant of {type(self).__name__}, "
                "read-only in steps"
            )
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        state: FlowState = self._pf_state
        found = name in self.__dict__ or name in state.table
        if name in constant_names(type(self)) or not found:
            raise AttributeError(f"Cannot delete {name!r}: not an artifact of this task")
        self.__dict__.pop(name, None)
        state.table.discard(name)

    def __getstate__(self) -> object:
        _reject_pickle()

    def __reduce_ex__(self, protocol: Any) -> Any:
        _reject_pickle()

    def _pf_parameter_value(self, param: Parameter) -> Any:
        table = self._pf_state.table
        if param.attribute in table:
            return table.get(param.attribute)
        return param.default_value()

    def _pf_artifact_values(self) -> dict[str, Any]:
        """The public attributes the task holds (set, loaded or merged), functions and
        methods left out."""
        return {
            k: v
            for k, v in self.__dict__.items()
            if not k.startswith("_") and not isinstance(v, types.FunctionType | types.MethodType)
        }

    # Foreach.

    @property
    def index(self) -> int | None:
        """The task's index in its innermost foreach, or None outside a foreach."""
        stack = self._pf_state.foreach_stack
        return stack[-1].index if stack else None

    @property
    def input(self) -> Any:
        """The item of the innermost foreach this task stands for, or None."""
        stack = self._pf_state.foreach_stack
        return self._frame_value(stack[-1]) if stack else None

    def foreach_stack(self) -> list[tuple[int, int, Any]]:
        """``(index, num_splits, value)`` for each enclosing foreach, outermost first."""
        return [(f.index, f.num_splits, self._frame_value(f)) for f in self._pf_state.foreach_stack]

    def _frame_value(self, frame: ForeachFrame) -> Any:
        # Read like any artifact (loaded into the instance, so in-place changes persist).
        try:
            values = getattr(self, frame.var)
        except AttributeError:
            return None
        return foreach_item(values, frame.index)

    # Transitions.

    def _step_label(self) -> str:
        return repr(self._pf_state.step_name) if self._pf_state.step_name else "(unknown)"

    def _target_name(self, target: object) -> str:
        if getattr(target, "__self__", None) is self and step_marks(target) is not None:
            return step_marks(target).name  # type: ignore[union-attr]
        shown = getattr(target, "__name__", repr(target))
        raise InvalidNextError(
            f"Step {self._step_label()}: self.next() target {shown} is not a step of this flow; "
            "pass steps as self.<step_name>"
        )

    def next(self, *targets: Any, **kwargs: Any) -> None:
        """Name the step(s) that follow this one; must end every step but the end step.

        Forms: ``next(self.a)``, ``next(self.a, self.b)`` (branch),
        ``next(self.a, foreach="items")`` and
        ``next({"x": self.a, "y": self.b}, condition="choice")`` (switch).

        Raises:
            InvalidNextError: The call is not valid (see the message).
            TaskFailedError: A foreach makes more splits than allowed.
            RuntimeError: A switch value matches none of the cases.
        """
        state = self._pf_state
        step = self._step_label()
        if state.transition is not None:
            raise InvalidNextError(
                f"Step {step} calls self.next() more than once; a step may call it only once"
            )
        unknown = sorted(set(kwargs) - _NEXT_KEYWORDS)
        if unknown:
            raise InvalidNextError(
                f"Step {step}: self.next() got an unknown keyword {unknown[0]!r} "
                "(accepted: foreach, condition)"
            )
        foreach = kwargs.get("foreach")
        condition = kwargs.get("condition")
        if foreach is not None and condition is not None:
            raise InvalidNextError(
                f"Step {step}: self.next() cannot combine condition= with foreach="
            )
        if condition is not None:
            state.transition = self._switch(targets, condition)
        elif foreach is not None:
            state.transition = self._foreach(targets, foreach)
        else:
            if not targets:
                raise InvalidNextError(f"Step {step}: self.next() needs at least one step")
            names = tuple(self._target_name(t) for t in targets)
            kind = TransitionKind.LINEAR if len(names) == 1 else TransitionKind.BRANCH
            state.transition = TakenTransition(kind, names)

    def _foreach(self, targets: tuple[Any, ...], var: object) -> TakenTransition:
        step = self._step_label()
        if len(targets) != 1:
            raise InvalidNextError(
                f"Step {step}: self.next() with foreach= takes exactly one step, got {len(targets)}"
            )
        target = self._target_name(targets[0])
        if not isinstance(var, str):
            raise InvalidNextError(f"Step {step}: foreach= must name an artifact, got {var!r}")
        try:
            values = getattr(self, var)
        except AttributeError:
            raise InvalidNextError(f"Step {step}: foreach variable self.{var} is not set") from None
        try:
            count = len(values) if hasattr(values, "__len__") else sum(1 for _ in iter(values))
        except TypeError:
            raise InvalidNextError(
                f"Step {step}: foreach variable self.{var} is not iterable "
                f"({type(values).__name__})"
            ) from None
        if count == 0:
            raise InvalidNextError(f"Step {step}: foreach variable self.{var} is empty")
        limit = self._pf_state.max_num_splits
        if count > limit:
            raise TaskFailedError(
                f"Step {step}: foreach over self.{var} makes {count} splits, more than the "
                f"maximum of {limit}; raise it with --max-num-splits"
            )
        reprs = tuple(_short_repr(v) for v in iter(values))[:count]
        return TakenTransition(
            TransitionKind.FOREACH, (target,), foreach_var=var, num_splits=count, value_reprs=reprs
        )

    def _switch(self, targets: tuple[Any, ...], condition: object) -> TakenTransition:
        step = self._step_label()
        if len(targets) != 1 or not isinstance(targets[0], Mapping):
            raise InvalidNextError(
                f"Step {step}: self.next() with condition= takes one dict of case values "
                'to steps, e.g. self.next({"a": self.a, "b": self.b}, condition="var")'
            )
        if not isinstance(condition, str):
            raise InvalidNextError(
                f"Step {step}: condition= must name an artifact, got {condition!r}"
            )
        cases: Mapping[Any, Any] = targets[0]
        names = {key: self._target_name(t) for key, t in cases.items()}
        try:
            value = getattr(self, condition)
        except AttributeError:
            raise InvalidNextError(
                f"Step {step}: condition variable self.{condition} is not set"
            ) from None
        try:
            chosen = names.get(value)
        except TypeError:  # unhashable value
            chosen = None
        if chosen is None:
            raise RuntimeError(
                f"Step {step}: the value {value!r} of self.{condition} matches none of the "
                f"switch cases {list(cases)!r}"
            )
        return TakenTransition(
            TransitionKind.SWITCH,
            (chosen,),
            condition=condition,
            cases=tuple(dict.fromkeys(names.values())),
        )

    # Joins.

    def merge_artifacts(
        self,
        inputs: Inputs,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """Copy into a join the artifacts its inputs agree on.

        Only names not already set on ``self`` are considered. A name with different values
        in different inputs fails the merge, and nothing is merged; set it on ``self``
        first, or exclude it. Values are compared by digest (not loaded unless a step read
        them) and merged by reference.

        Args:
            inputs: The join's ``inputs``.
            exclude: Names not to merge.
            include: Only these names (all of them must be in some input).

        Raises:
            MergeArtifactsError: Not called in a join, or both include and exclude.
            UnhandledInMergeArtifactsError: Names whose values differ across inputs.
            MissingInMergeArtifactsError: ``include`` names found in no input.
        """
        step = self._step_label()
        state = self._pf_state
        if state.inputs is None or inputs is not state.inputs:
            raise MergeArtifactsError(
                f"Step {step}: merge_artifacts() can only be called in a join step, "
                "with the join's inputs"
            )
        if include is not None and exclude is not None:
            raise MergeArtifactsError(
                f"Step {step}: merge_artifacts() takes include= or exclude=, not both"
            )
        wanted = None if include is None else list(dict.fromkeys(include))
        skip = set(exclude or ())
        found: dict[str, tuple[InputView, StoredArtifact, str]] = {}
        conflicts: list[str] = []
        for view in inputs:
            table: ArtifactTable = view._pf_table
            for name, ref in table.refs.items():
                if name.startswith("_") or name in skip or self._is_set(name):
                    continue
                if wanted is not None and name not in wanted:
                    continue
                digest = _current_digest(table, ref)
                first = found.setdefault(name, (view, ref, digest))
                if first[2] != digest and name not in conflicts:
                    conflicts.append(name)
        if conflicts:
            raise UnhandledInMergeArtifactsError(
                f"Step {step} cannot merge artifacts with different values in different "
                f"inputs: {', '.join(conflicts)}. Set them on self (self.<name> = ...) "
                "before calling merge_artifacts(), or exclude them",
                conflicts,
            )
        missing = [n for n in wanted or () if n not in found and not self._is_set(n)]
        if missing:
            raise MissingInMergeArtifactsError(
                f"Step {step}: merge_artifacts() was asked to include {', '.join(missing)}, "
                "found in no input",
                missing,
            )
        for name, (view, ref, digest) in found.items():
            table = view._pf_table
            if digest == ref.digest:
                loaded = table.is_loaded(name)
                value = table.loaded_value(name) if loaded else None
                state.table.add(ref, value, loaded=loaded, loader=table.loader)
            else:  # changed in place after loading: store the value as new
                object.__setattr__(self, name, table.loaded_value(name))

    def _is_set(self, name: str) -> bool:
        return name in self.__dict__ or name in self._pf_state.table or hasattr(type(self), name)


def _current_digest(table: ArtifactTable, ref: StoredArtifact) -> str:
    if not table.is_loaded(ref.name):
        return ref.digest
    from polyflow._codecs import value_digest

    return value_digest(table.loaded_value(ref.name))
