"""The flow graph as plain, immutable Python objects.

These dataclasses mirror the messages of ``polyflow/api/common/v1/graph.proto`` field for
field, so the domain code can work on a graph without touching protobuf. Conversion to and
from the wire lives in ``polyflow_core.services.graph_convert``.

Sequences are tuples and every class is frozen: a graph is shared between threads (the
scheduler, the servicers) and must not change under them. Mapping fields are copied on
construction; instances holding a mapping are not hashable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property


class Language(Enum):
    """The runtime a step's code is written in; values match ``common.v1.Language``."""

    UNSPECIFIED = 0
    PYTHON = 1
    R = 2


class TransitionKind(Enum):
    """The form of a step's ``next`` call; values match ``common.v1.TransitionKind``."""

    UNSPECIFIED = 0
    LINEAR = 1
    BRANCH = 2
    FOREACH = 3
    SWITCH = 4
    INVALID = 5


class StepKind(Enum):
    """The role the core derives for a step; values match ``common.v1.StepKind``."""

    UNSPECIFIED = 0
    START = 1
    LINEAR = 2
    SPLIT = 3
    FOREACH = 4
    JOIN = 5
    SWITCH = 6
    END = 7


class ParameterType(Enum):
    """The type a parameter's value is parsed into; values match ``common.v1.ParameterType``."""

    UNSPECIFIED = 0
    STRING = 1
    INT = 2
    FLOAT = 3
    BOOL = 4
    JSON = 5
    FILE = 6


def _unique(names: tuple[str, ...]) -> tuple[str, ...]:
    """Drops repeated names, keeping the first occurrence of each."""
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class DecoratorSpec:
    """A decorator attached to a step or a flow, with its attributes."""

    name: str
    """The decorator's registered name, e.g. ``retry``."""
    attributes: Mapping[str, str] = field(default_factory=dict)
    """Attribute name to its value encoded as JSON (e.g. ``times`` -> ``3``)."""
    line: int = 0
    """1-based source line of the decorator; 0 when attached from the command line."""

    def __post_init__(self) -> None:
        # A private copy, so a caller mutating its dict cannot change a frozen object.
        object.__setattr__(self, "attributes", dict(self.attributes))


@dataclass(frozen=True)
class ParameterSpec:
    """A flow parameter."""

    name: str
    """The parameter's name as used on the command line (``--name``)."""
    type: ParameterType = ParameterType.UNSPECIFIED
    """The value's type. Unspecified: the type of the default, else string."""
    default_json: str = ""
    """The default value encoded as JSON; empty when there is none."""
    required: bool = False
    """When true, a value must be given."""
    help: str = ""
    """Help text shown by ``run --help``."""
    separator: str = ""
    """Strings only: split the value on this separator into a list."""
    is_text: bool = False
    """FILE only: read the file as text (true) or bytes (false)."""
    encoding: str = ""
    """FILE only: the text encoding (empty means utf-8)."""


@dataclass(frozen=True)
class Transition:
    """A step's ``next`` call, as an SDK found it in the source."""

    kind: TransitionKind = TransitionKind.UNSPECIFIED
    """The form of the call; UNSPECIFIED when the step has no ``next`` call."""
    targets: tuple[str, ...] = ()
    """LINEAR: one step; BRANCH: two or more; FOREACH: one. Empty for SWITCH."""
    foreach_var: str = ""
    """FOREACH: the name of the artifact iterated over."""
    switch_cases: Mapping[str, str] = field(default_factory=dict)
    """SWITCH: case value (as written in the source, strings unquoted) to step."""
    condition: str = ""
    """SWITCH: the name of the artifact whose value selects the case."""
    error: str = ""
    """INVALID: why the call is not understood."""
    line: int = 0
    """1-based line of the ``next`` call (0 if absent or unknown)."""

    def __post_init__(self) -> None:
        # Accept any sequence or mapping from callers but store immutable/private copies.
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "switch_cases", dict(self.switch_cases))

    @property
    def out_steps(self) -> tuple[str, ...]:
        """Every step this transition may lead to, each once, targets first then cases.

        Both fields are read whatever the kind, so that a malformed transition still
        contributes its edges to the graph (and its mistakes get reported once, by kind).
        """
        return _unique(self.targets + tuple(self.switch_cases.values()))


@dataclass(frozen=True)
class StepSpec:
    """One step as found in the source, plus the fields the core derives."""

    name: str
    """The step's name: ``[a-z0-9_]+``, not starting with ``_``."""
    line: int = 0
    """1-based line of the step's definition in its source file (0 if unknown)."""
    is_join: bool = False
    """True when the step takes a second argument (``inputs``), which makes it a join."""
    num_args: int = 0
    """Number of positional arguments of the step function, ``self`` included (0: unknown)."""
    transition: Transition = field(default_factory=Transition)
    """The static transition taken at the end of the step."""
    decorators: tuple[DecoratorSpec, ...] = ()
    """Decorators attached to the step, in the order they apply (innermost first)."""
    language: Language = Language.UNSPECIFIED
    """The step's language. Unspecified: the flow's language."""
    doc: str = ""
    """The step's docstring."""
    is_start: bool = False
    """Marked as the entry step explicitly (``@step(start=True)``)."""
    is_end: bool = False
    """Marked as the terminal step explicitly (``@step(end=True)``)."""
    kind: StepKind = StepKind.UNSPECIFIED
    """The role the core derived for this step. Output only."""
    in_steps: tuple[str, ...] = ()
    """Steps with an edge into this one, in source order. Output only."""
    foreign_file: str = ""
    """For a step in another language than the flow's: its source file, relative to the flow."""
    foreign_function: str = ""
    """For a step in another language than the flow's: the function to call."""
    source_file: str = ""
    """The file defining the step when it is not the flow's (e.g. an inherited step)."""
    matching_split: str = ""
    """JOIN only: the BRANCH or FOREACH step this join closes. Output only."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "decorators", tuple(self.decorators))
        object.__setattr__(self, "in_steps", tuple(self.in_steps))


@dataclass(frozen=True)
class FlowGraph:
    """A flow as an SDK submits it: steps, transitions, decorators and parameters."""

    flow_name: str
    """The flow's name, e.g. ``HelloFlow``."""
    source_file: str = ""
    """The file the flow was defined in, as given to the interpreter."""
    doc: str = ""
    """The flow's docstring (may be empty)."""
    steps: tuple[StepSpec, ...] = ()
    """Every step, in source order."""
    parameters: tuple[ParameterSpec, ...] = ()
    """Every parameter, in declaration order."""
    decorators: tuple[DecoratorSpec, ...] = ()
    """Flow-level decorators."""
    language: Language = Language.UNSPECIFIED
    """The language of steps that do not name one. Unspecified means Python."""
    entrypoint: str = ""
    """The class (Python) or object (R) defining the flow. Empty means ``flow_name``."""
    constants: tuple[str, ...] = ()
    """Names of read-only, class-level constants stored with the parameters."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "parameters", tuple(self.parameters))
        object.__setattr__(self, "decorators", tuple(self.decorators))
        object.__setattr__(self, "constants", tuple(self.constants))

    @cached_property
    def _by_name(self) -> dict[str, StepSpec]:
        # First definition wins, as in the validator; duplicates are reported there.
        index: dict[str, StepSpec] = {}
        for step in self.steps:
            index.setdefault(step.name, step)
        return index

    def has_step(self, name: str) -> bool:
        """Tells whether the flow defines a step of this name.

        Args:
            name: A step name.

        Returns:
            True when some step has that name.
        """
        return name in self._by_name

    def step(self, name: str) -> StepSpec:
        """Returns the step of this name (the first one, should the name repeat).

        Args:
            name: A step name.

        Returns:
            The step.

        Raises:
            KeyError: No step has that name.
        """
        return self._by_name[name]
