"""Step decorators: the base class, the registry and ``--with`` specs.

A step decorator is a subclass of :class:`StepDecorator` with a registered ``name`` and a
``defaults`` dict of its attributes. Its effects are split into hooks that run on the
*launch* side (the submitting CLI: :meth:`StepDecorator.step_init`) and on the *worker* side
(in the task process, in this order: :meth:`~StepDecorator.task_pre_step`,
:meth:`~StepDecorator.task_decorate`, user code, then :meth:`~StepDecorator.task_post_step`
or :meth:`~StepDecorator.task_exception`, then :meth:`~StepDecorator.task_finished`), so the
same decorator works under every executor.

Decorators are found by name in a :class:`DecoratorRegistry`: those that packages declare in
the entry-point group ``polyflow.decorators``, loaded lazily, Polyflow's own built-ins
(``retry``, ``catch``, ``timeout``, ``environment``, ``resources``: see
:mod:`polyflow._authoring.builtin_decorators`) among them. Two decorators with one name are
an explicit error.

Users attach a decorator above ``@step`` (through the function :func:`step_decorator`
makes from the class) or to every step from the command line with
``--with name:attr=value,...`` (:func:`parse_decospec`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

from polyflow._authoring.step import step_marks
from polyflow.exceptions import PolyflowError

if TYPE_CHECKING:
    from polyflow._authoring.artifacts import Inputs
    from polyflow._authoring.flowspec import FlowSpec
    from polyflow._authoring.graph import FlowDefinition, StepDef

__all__ = [
    "BUILTIN_DECORATORS",
    "ENTRY_POINT_GROUP",
    "DecoratorRegistry",
    "StepDecorator",
    "StepFunction",
    "TaskContext",
    "default_registry",
    "parse_decospec",
    "step_decorator",
]

ENTRY_POINT_GROUP = "polyflow.decorators"
"""The entry-point group packages declare their step decorators in."""

BUILTIN_DECORATORS: Mapping[str, str] = {}
"""Extra decorators known without an entry point: name to ``"module:attribute"``, loaded
lazily like entry points. Empty: Polyflow's built-ins register in the entry-point group, as a
plugin's decorators do (see ``pyproject.toml``)."""

StepFunction = Callable[[], None]
"""A step's body, ready to call: the bound method with its ``inputs`` already applied."""

F = TypeVar("F", bound=Callable[..., Any])
D = TypeVar("D", bound="StepDecorator")

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
# Split "a=1,b=[1,2],c=x" on the commas that start a new "name=".
_ATTR_SPLIT_RE = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*\s*=)")


@dataclass(frozen=True)
class TaskContext:
    """What worker-side hooks receive about the running task."""

    step_name: str
    """The step being run."""
    flow: FlowSpec
    """The flow instance the step runs on."""
    retry_count: int
    """The attempt (0-based)."""
    inputs: Inputs | None = None
    """A join's inputs; None for other steps."""
    max_user_code_retries: int = 0
    """Retries the step's code gets (``@retry``'s ``times``, as the core counts them)."""
    previous_failure: str = ""
    """Why the previous attempt of the task failed, in one line; empty on the first."""
    step: StepDef | None = None
    """The step as the graph describes it (its static transition, its decorators)."""

    @property
    def is_fallback(self) -> bool:
        """Whether this is ``@catch``'s fallback attempt, which runs none of the step's code
        (an attempt beyond the retries of the step's code)."""
        return self.retry_count > self.max_user_code_retries


class StepDecorator:
    """Base class of step decorators.

    Subclasses set :attr:`name` and :attr:`defaults` and override the hooks they need;
    every hook does nothing by default. An instance holds the resolved :attr:`attributes`
    (the defaults overridden by what the user gave).
    """

    name: ClassVar[str] = ""
    """The registered name, used by ``--with`` and in the graph."""
    defaults: ClassVar[Mapping[str, Any]] = {}
    """Every attribute the decorator accepts, with its default value."""
    allow_multiple: ClassVar[bool] = False
    """Whether the decorator may be attached more than once to one step."""

    def __init__(
        self,
        attributes: Mapping[str, Any] | None = None,
        *,
        statically_defined: bool = True,
    ) -> None:
        """Resolve the attributes against :attr:`defaults`.

        Args:
            attributes: Attribute values given by the user.
            statically_defined: True when written in the source, False when attached
                with ``--with``.

        Raises:
            PolyflowError: An attribute the decorator does not define.
        """
        given = dict(attributes or {})
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise PolyflowError(
                f"@{self.name} has no attribute {', '.join(map(repr, unknown))} "
                f"(its attributes: {known})"
            )
        self.attributes: dict[str, Any] = {**self.defaults, **given}
        """The resolved attributes."""
        self.statically_defined = statically_defined
        """True when written in the source, False when attached with ``--with``."""

    def __repr__(self) -> str:
        """``@name(attr=value, ...)``."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.attributes.items())
        return f"@{self.name}({args})"

    def attributes_json(self) -> dict[str, str]:
        """The attributes with each value encoded as JSON (``repr`` for non-JSON values)."""
        out: dict[str, str] = {}
        for key, value in self.attributes.items():
            try:
                out[key] = json.dumps(value, sort_keys=True, allow_nan=False)
            except (TypeError, ValueError):
                out[key] = json.dumps(repr(value))
        return out

    # Launch side (the submitting process).

    def step_init(self, flow: FlowDefinition, step_name: str) -> None:
        """Check the decorator against the flow before a run starts.

        Args:
            flow: The flow's static definition.
            step_name: The step the decorator is attached to.

        Raises:
            PolyflowError: The decorator cannot be used on this step.
        """

    # Worker side (the task process).

    def task_pre_step(self, ctx: TaskContext) -> None:
        """Run before the step's code."""

    def task_decorate(self, func: StepFunction, ctx: TaskContext) -> StepFunction:
        """Return the callable to run in place of the step's code (``func`` by default)."""
        return func

    def task_post_step(self, ctx: TaskContext) -> None:
        """Run after the step's code succeeded."""

    def task_exception(self, exception: BaseException, ctx: TaskContext) -> bool:
        """Run after the step's code raised; return True to mark the exception handled."""
        return False

    def task_finished(self, ctx: TaskContext, ok: bool) -> None:
        """Run last, whether the task succeeded (``ok``) or not."""


class _DecoratorFunction(Generic[D]):
    """The user-facing form of a decorator class: ``@name`` or ``@name(attr=value)``."""

    def __init__(self, cls: type[D]) -> None:
        self._cls = cls
        self.__name__ = cls.name
        self.__doc__ = cls.__doc__

    @overload
    def __call__(self, func: F, /) -> F: ...

    @overload
    def __call__(self, /, **attributes: Any) -> Callable[[F], F]: ...

    def __call__(self, func: F | None = None, /, **attributes: Any) -> F | Callable[[F], F]:
        if func is not None:
            if attributes:
                raise TypeError(f"@{self._cls.name} takes keyword arguments only")
            return _attach(func, self._cls())
        deco = self._cls(attributes)

        def apply(inner: F) -> F:
            return _attach(inner, deco)

        return apply


def _attach(func: F, deco: StepDecorator) -> F:
    marks = step_marks(func)
    if marks is None:
        raise TypeError(
            f"@{deco.name} must be placed above @step (@step must be the decorator closest "
            f"to the function {getattr(func, '__name__', func)!r})"
        )
    if not deco.allow_multiple and any(d.name == deco.name for d in marks.decorators):
        raise PolyflowError(f"@{deco.name} is attached more than once to step {marks.name!r}")
    marks.decorators.append(deco)
    return func


def step_decorator(cls: type[D]) -> _DecoratorFunction[D]:
    """Make the user-facing decorator for a :class:`StepDecorator` subclass.

    Args:
        cls: The decorator class.

    Returns:
        A callable usable as ``@name`` or ``@name(attr=value, ...)`` above ``@step``.
    """
    return _DecoratorFunction(cls)


def parse_decospec(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse a ``--with`` value: ``name`` or ``name:attr=value,attr=value``.

    A value is read as JSON when it parses as JSON (``times=3`` gives 3,
    ``vars={"A":"1","B":"2"}`` a dict), else kept as a string (``queue=fast``).

    Args:
        spec: The text after ``--with``.

    Returns:
        The decorator's name and its attributes.

    Raises:
        PolyflowError: A malformed spec.
    """
    name, sep, rest = spec.strip().partition(":")
    name = name.strip()
    if not _NAME_RE.match(name):
        raise PolyflowError(f"invalid decorator spec {spec!r}: {name!r} is not a decorator name")
    attributes: dict[str, Any] = {}
    if not sep or not rest.strip():
        return name, attributes
    for item in _ATTR_SPLIT_RE.split(rest):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise PolyflowError(
                f"invalid decorator spec {spec!r}: expected attr=value, got {item.strip()!r}"
            )
        if key in attributes:
            raise PolyflowError(f"invalid decorator spec {spec!r}: {key!r} is given twice")
        raw = raw.strip()
        try:
            attributes[key] = json.loads(raw)
        except ValueError:
            attributes[key] = raw
    return name, attributes


class DecoratorRegistry:
    """Step decorator classes by name.

    Built-ins and the entry-point group are read on the first lookup of a name that was not
    registered directly; a class is imported only when its name is asked for. Tests inject
    classes with :meth:`register`.
    """

    def __init__(
        self,
        *,
        builtins: Mapping[str, str] | None = None,
        entry_point_group: str | None = ENTRY_POINT_GROUP,
    ) -> None:
        """Create a registry.

        Args:
            builtins: Name to ``"module:attribute"`` of the built-in decorators
                (default :data:`BUILTIN_DECORATORS`).
            entry_point_group: The group to read, or None to read none.
        """
        self._builtins = dict(BUILTIN_DECORATORS if builtins is None else builtins)
        self._group = entry_point_group
        self._targets: dict[str, str] | None = None
        self._classes: dict[str, type[StepDecorator]] = {}

    def register(self, cls: type[StepDecorator]) -> None:
        """Add a decorator class (for tests and embedding).

        Raises:
            PolyflowError: Its name is empty or already taken by another class.
        """
        if not cls.name:
            raise PolyflowError(f"{cls.__qualname__} has no name")
        taken = self._classes.get(cls.name)
        if taken is cls:
            return
        if taken is not None or cls.name in self._discovered():
            raise PolyflowError(f"two step decorators are named {cls.name!r}")
        self._classes[cls.name] = cls

    def get(self, name: str) -> type[StepDecorator]:
        """The decorator class registered as ``name``.

        Raises:
            PolyflowError: No such decorator, or its entry point does not give a
                StepDecorator subclass.
        """
        cls = self._classes.get(name)
        if cls is not None:
            return cls
        target = self._discovered().get(name)
        if target is None:
            known = ", ".join(self.names()) or "none"
            raise PolyflowError(f"unknown step decorator {name!r} (known: {known})")
        module_name, _, attr = target.partition(":")
        loaded: object = import_module(module_name)
        for part in attr.split(".") if attr else ():
            loaded = getattr(loaded, part)
        loaded = getattr(loaded, "_cls", loaded)  # accept the user-facing function too
        if not (isinstance(loaded, type) and issubclass(loaded, StepDecorator)):
            raise PolyflowError(f"step decorator {name!r} ({target}) is not a StepDecorator")
        self._classes[name] = loaded
        return loaded

    def names(self) -> list[str]:
        """Every known decorator name, sorted."""
        return sorted(set(self._classes) | set(self._discovered()))

    def make(
        self, name: str, attributes: Mapping[str, Any] | None = None, *, static: bool = False
    ) -> StepDecorator:
        """An instance of decorator ``name`` with ``attributes``.

        Raises:
            PolyflowError: Unknown decorator or attribute.
        """
        return self.get(name)(attributes, statically_defined=static)

    def _discovered(self) -> dict[str, str]:
        if self._targets is None:
            targets = dict(self._builtins)
            if self._group is not None:
                from importlib.metadata import entry_points

                for ep in entry_points(group=self._group):
                    if ep.name in targets and targets[ep.name] != ep.value:
                        raise PolyflowError(
                            f"two step decorators are named {ep.name!r}: "
                            f"{targets[ep.name]} and {ep.value}"
                        )
                    targets[ep.name] = ep.value
            self._targets = targets
        return self._targets


_default: list[DecoratorRegistry] = []


def default_registry() -> DecoratorRegistry:
    """The process-wide registry (built-ins plus the ``polyflow.decorators`` group)."""
    if not _default:
        _default.append(DecoratorRegistry())
    return _default[0]
