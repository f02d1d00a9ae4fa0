"""Static graph extraction: what a flow's source says, as a :class:`FlowDefinition`.

Each step's source is parsed with :mod:`ast`; its last statement must be a
``self.next(...)`` call, which is classified into one of the transition forms. A call that
fits no form is reported as INVALID with the reason; a step with no call as UNSPECIFIED.
Nothing is validated here: the core's ``ValidateGraph`` applies the graph rules for every
language alike, using the line numbers reported here.
"""

from __future__ import annotations

import ast
import inspect
import json
import linecache
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from polyflow._authoring.decorators import DecoratorRegistry, StepDecorator, default_registry
from polyflow._authoring.decorators import parse_decospec as _parse_decospec
from polyflow._authoring.members import flow_constants, flow_parameters, flow_steps
from polyflow._authoring.parameters import ParameterDef
from polyflow._authoring.step import step_marks
from polyflow._authoring.transitions import TransitionKind

__all__ = [
    "DecoratorDef",
    "FlowDefinition",
    "StepDef",
    "TransitionDef",
    "extract_graph",
    "graph_info",
    "make_decorators",
    "run_launch_hooks",
]

_NEXT_KEYWORDS = ("foreach", "condition")


@dataclass(frozen=True)
class TransitionDef:
    """A step's ``self.next(...)`` call as written."""

    kind: TransitionKind
    """The form of the call."""
    targets: tuple[str, ...] = ()
    """LINEAR: one step; BRANCH: two or more; FOREACH: one. Empty for SWITCH."""
    foreach_var: str = ""
    """FOREACH: the artifact iterated over."""
    switch_cases: Mapping[str, str] = field(default_factory=dict)
    """SWITCH: case value (strings unquoted, numbers as written) to step."""
    condition: str = ""
    """SWITCH: the artifact whose value selects the case."""
    error: str = ""
    """INVALID: why the call is not understood."""
    line: int = 0
    """1-based line of the call (0 when there is none)."""


@dataclass(frozen=True)
class DecoratorDef:
    """A decorator attached to a step, with its attributes encoded as JSON."""

    name: str
    """The registered name."""
    attributes: Mapping[str, str] = field(default_factory=dict)
    """Attribute name to its value as JSON text."""
    line: int = 0
    """1-based line of the decorator; 0 when attached from the command line."""

    def values(self) -> dict[str, Any]:
        """The attributes decoded from JSON."""
        return {k: json.loads(v) for k, v in self.attributes.items()}


@dataclass(frozen=True)
class StepDef:
    """One step as found in the source."""

    name: str
    """The step's name."""
    line: int
    """1-based line of the ``def``."""
    is_join: bool
    """Takes a second argument (``inputs``)."""
    num_args: int
    """Positional arguments, ``self`` included."""
    transition: TransitionDef
    """The ``self.next`` call at its end."""
    decorators: tuple[DecoratorDef, ...] = ()
    """Decorators, innermost first."""
    doc: str = ""
    """The docstring."""
    is_start: bool = False
    """Marked ``@step(start=True)``."""
    is_end: bool = False
    """Marked ``@step(end=True)``."""
    source_file: str = ""
    """The file defining the step when it is not the flow's file (an inherited step)."""
    kind: str = ""
    """Output of the core: "start", "linear", "split", "foreach", "join", "switch", "end"."""
    in_steps: tuple[str, ...] = ()
    """Output of the core: steps with an edge into this one."""
    matching_split: str = ""
    """Output of the core: for a join, the split it closes."""
    language: str = ""
    """The step's language when it is not the flow's: ``"r"`` or ``"python"``."""
    foreign_file: str = ""
    """For a step in another language: its source file, relative to the flow's folder."""
    foreign_function: str = ""
    """For a step in another language: the function to call."""


@dataclass(frozen=True)
class FlowDefinition:
    """A flow as its source defines it; converts to the proto's FlowGraph."""

    flow_name: str
    """The flow's name (its class name)."""
    entrypoint: str
    """The class to load in workers."""
    source_file: str
    """Absolute path of the file defining the flow class."""
    doc: str
    """The flow's docstring."""
    steps: tuple[StepDef, ...]
    """Every step, in declaration order (base classes' first)."""
    parameters: tuple[ParameterDef, ...] = ()
    """Every parameter, in declaration order."""
    constants: tuple[str, ...] = ()
    """Names of the class-level constants."""
    decorators: tuple[DecoratorDef, ...] = ()
    """Flow-level decorators."""

    def step(self, name: str) -> StepDef:
        """The step called ``name``.

        Raises:
            KeyError: No such step.
        """
        for step_def in self.steps:
            if step_def.name == name:
                return step_def
        raise KeyError(name)

    @property
    def step_names(self) -> list[str]:
        """The steps' names in order."""
        return [s.name for s in self.steps]


# Parsing.


class _FileIndex:
    """Function definitions of source files, by first line (decorators included)."""

    def __init__(self) -> None:
        self._files: dict[str, dict[int, ast.FunctionDef | ast.AsyncFunctionDef] | None] = {}

    def find(self, func: Callable[..., Any]) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        code = getattr(func, "__code__", None)
        if code is None:
            return None
        nodes = self._nodes(code.co_filename)
        node = None if nodes is None else nodes.get(code.co_firstlineno)
        return node if node is not None and node.name == code.co_name else None

    def _nodes(self, filename: str) -> dict[int, ast.FunctionDef | ast.AsyncFunctionDef] | None:
        if filename not in self._files:
            self._files[filename] = None
            lines = linecache.getlines(filename)
            if lines:
                try:
                    tree = ast.parse("".join(lines), filename=filename)
                except SyntaxError:
                    tree = None
                if tree is not None:
                    found: dict[int, ast.FunctionDef | ast.AsyncFunctionDef] = {}
                    for node in ast.walk(tree):
                        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                            first = min([d.lineno for d in node.decorator_list] + [node.lineno])
                            found[first] = node
                    self._files[filename] = found
        return self._files[filename]


def _invalid(reason: str, line: int) -> TransitionDef:
    return TransitionDef(TransitionKind.INVALID, error=reason, line=line)


def _is_next_call(node: ast.AST, self_name: str) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "next"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == self_name
    )


def _self_attr(node: ast.expr, self_name: str) -> str | None:
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == self_name
    ):
        return node.attr
    return None


def _str_literal(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _case_key(node: ast.expr) -> str | None:
    """A switch case written as a string or number literal, as text."""
    text = _str_literal(node)
    if text is not None:
        return text
    inner = (
        node.operand
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd)
        else node
    )
    if isinstance(inner, ast.Constant) and isinstance(inner.value, int | float):
        return ast.unparse(node)
    return None


def _switch(call: ast.Call, condition: ast.expr, self_name: str) -> TransitionDef:
    line = call.lineno
    var = _str_literal(condition)
    if var is None:
        return _invalid("condition= must be a string literal naming an artifact", line)
    if len(call.args) != 1 or not isinstance(call.args[0], ast.Dict):
        return _invalid(
            "with condition=, self.next() takes exactly one dict literal of case values to "
            'steps, e.g. self.next({"a": self.a, "b": self.b}, condition="var")',
            line,
        )
    cases: dict[str, str] = {}
    table = call.args[0]
    for key_node, value_node in zip(table.keys, table.values, strict=True):
        if key_node is None:
            return _invalid("the switch dict cannot use ** unpacking", line)
        key = _case_key(key_node)
        if key is None:
            return _invalid(
                f"switch case {ast.unparse(key_node)} is not a string or number literal", line
            )
        target = _self_attr(value_node, self_name)
        if target is None:
            return _invalid(
                f"switch case {key!r} must map to a step written as {self_name}.<step>, "
                f"not {ast.unparse(value_node)}",
                line,
            )
        if key in cases:
            return _invalid(f"switch case {key!r} is given twice", line)
        cases[key] = target
    return TransitionDef(TransitionKind.SWITCH, switch_cases=cases, condition=var, line=line)


def _classify(call: ast.Call, self_name: str) -> TransitionDef:
    line = call.lineno
    if any(isinstance(a, ast.Starred) for a in call.args) or any(
        kw.arg is None for kw in call.keywords
    ):
        return _invalid("self.next() cannot take *args or **kwargs", line)
    keywords = {kw.arg: kw.value for kw in call.keywords if kw.arg is not None}
    for key in keywords:
        if key not in _NEXT_KEYWORDS:
            return _invalid(
                f"self.next() got an unsupported keyword {key!r} (accepted: foreach, condition)",
                line,
            )
    if "foreach" in keywords and "condition" in keywords:
        return _invalid("condition= cannot be combined with foreach=", line)
    if "condition" in keywords:
        return _switch(call, keywords["condition"], self_name)
    if any(isinstance(a, ast.Dict) for a in call.args):
        return _invalid('a dict of cases needs condition="<artifact>"', line)
    targets: list[str] = []
    for arg in call.args:
        name = _self_attr(arg, self_name)
        if name is None:
            return _invalid(
                f"self.next() targets must be steps written as {self_name}.<step>, "
                f"not {ast.unparse(arg)}",
                line,
            )
        targets.append(name)
    if not targets:
        return _invalid("self.next() names no step", line)
    if "foreach" in keywords:
        var = _str_literal(keywords["foreach"])
        if var is None:
            return _invalid("foreach= must be a string literal naming an artifact", line)
        if len(targets) != 1:
            return _invalid(
                f"self.next() with foreach= takes exactly one step, not {len(targets)}", line
            )
        return TransitionDef(
            TransitionKind.FOREACH, targets=tuple(targets), foreach_var=var, line=line
        )
    kind = TransitionKind.LINEAR if len(targets) == 1 else TransitionKind.BRANCH
    return TransitionDef(kind, targets=tuple(targets), line=line)


def _transition(node: ast.FunctionDef | ast.AsyncFunctionDef) -> TransitionDef:
    params = node.args.posonlyargs + node.args.args
    self_name = params[0].arg if params else "self"
    last = node.body[-1]
    if isinstance(last, ast.Expr) and _is_next_call(last.value, self_name):
        assert isinstance(last.value, ast.Call)
        return _classify(last.value, self_name)
    for inner in ast.walk(node):
        if _is_next_call(inner, self_name):
            return _invalid(
                f"self.next() must be the last statement of the step (a call is at line "
                f"{getattr(inner, 'lineno', 0)})",
                getattr(inner, "lineno", 0),
            )
    return TransitionDef(TransitionKind.UNSPECIFIED)


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def _decorator_lines(
    node: ast.FunctionDef | ast.AsyncFunctionDef | None, decorators: Sequence[StepDecorator]
) -> list[int]:
    """Source lines of the step decorators, innermost first (0 when unknown)."""
    if node is None:
        return [0] * len(decorators)
    above = list(reversed(node.decorator_list[:-1]))  # the last one is @step
    if len(above) == len(decorators):
        return [d.lineno for d in above]
    lines = []
    for deco in decorators:
        match = [d.lineno for d in above if _decorator_name(d) == deco.name]
        lines.append(match[0] if match else node.lineno)
    return lines


def _doc(obj: object) -> str:
    text = getattr(obj, "__doc__", None)
    return inspect.cleandoc(text) if isinstance(text, str) else ""


def _source_file(obj: Any) -> str:
    try:
        path = inspect.getsourcefile(obj) or inspect.getfile(obj)
    except TypeError:
        return ""
    return os.path.abspath(path)


def _step_def(
    func: Callable[..., Any],
    index: _FileIndex,
    flow_file: str,
    extra: Sequence[tuple[StepDecorator, dict[str, str]]],
) -> StepDef:
    marks = step_marks(func)
    assert marks is not None
    code = func.__code__
    node = index.find(func)
    if node is None:
        transition = _invalid("the step's source code is not available", 0)
        line = code.co_firstlineno
    else:
        transition = _transition(node)
        line = node.lineno
    lines = _decorator_lines(node, marks.decorators)
    decorators = [
        DecoratorDef(d.name, d.attributes_json(), ln)
        for d, ln in zip(marks.decorators, lines, strict=True)
    ]
    for deco, attributes in extra:
        if deco.allow_multiple or all(d.name != deco.name for d in decorators):
            decorators.append(DecoratorDef(deco.name, attributes, 0))
    file = _source_file(func)
    return StepDef(
        name=marks.name,
        line=line,
        is_join=code.co_argcount >= 2,
        num_args=code.co_argcount,
        transition=transition,
        decorators=tuple(decorators),
        doc=_doc(func),
        is_start=marks.is_start,
        is_end=marks.is_end,
        source_file="" if file == flow_file else file,
        language=marks.language,
        foreign_file=marks.foreign_file,
        foreign_function=marks.foreign_function,
    )


def extract_graph(
    flow_cls: type,
    *,
    decospecs: Sequence[str] = (),
    registry: DecoratorRegistry | None = None,
) -> FlowDefinition:
    """Read a flow class's graph, parameters and constants from its source.

    Args:
        flow_cls: The flow class.
        decospecs: ``--with`` values; each decorator is added to every step that does not
            already have it.
        registry: Where ``--with`` names are looked up (default: the process-wide one).

    Returns:
        The definition.

    Raises:
        PolyflowError: A ``--with`` value names an unknown decorator or attribute.
        ParameterError: Two parameters share a name.
    """
    reg = registry or (default_registry() if decospecs else None)
    extra: list[tuple[StepDecorator, dict[str, str]]] = []
    for spec in decospecs:
        name, attributes = _parse_decospec(spec)
        assert reg is not None
        deco = reg.make(name, attributes, static=False)
        extra.append((deco, deco.attributes_json()))
    flow_file = _source_file(flow_cls)
    index = _FileIndex()
    steps = tuple(
        _step_def(func, index, flow_file, extra) for func in flow_steps(flow_cls).values()
    )
    return FlowDefinition(
        flow_name=flow_cls.__name__,
        entrypoint=flow_cls.__name__,
        source_file=flow_file,
        doc=_doc(flow_cls),
        steps=steps,
        parameters=tuple(p.spec() for p in flow_parameters(flow_cls)),
        constants=tuple(flow_constants(flow_cls)),
    )


# Using a definition.


def make_decorators(
    step_def: StepDef, registry: DecoratorRegistry | None = None
) -> list[StepDecorator]:
    """Instances of a step's decorators (innermost first), from their names and attributes.

    Raises:
        PolyflowError: A decorator that is not installed here.
    """
    reg = registry or default_registry()
    return [reg.make(d.name, d.values(), static=d.line > 0) for d in step_def.decorators]


def run_launch_hooks(definition: FlowDefinition, registry: DecoratorRegistry | None = None) -> None:
    """Call every step decorator's launch-side :meth:`StepDecorator.step_init`.

    Raises:
        PolyflowError: A decorator rejects its step.
    """
    if not any(s.decorators for s in definition.steps):
        return
    for step_def in definition.steps:
        for deco in make_decorators(step_def, registry):
            deco.step_init(definition, step_def.name)


def _transition_info(t: TransitionDef) -> dict[str, Any]:
    return {
        "type": t.kind.name.lower(),
        "next": list(t.switch_cases.values()) if t.switch_cases else list(t.targets),
        "foreach": t.foreach_var or None,
        "condition": t.condition or None,
        "switch_cases": dict(t.switch_cases),
    }


def graph_info(definition: FlowDefinition) -> dict[str, Any]:
    """The graph as a plain dict (``current.graph``)."""
    steps: dict[str, Any] = {}
    for s in definition.steps:
        steps[s.name] = {
            "name": s.name,
            "type": s.kind or None,
            "line": s.line,
            "doc": s.doc,
            "decorators": [{"name": d.name, "attributes": d.values()} for d in s.decorators],
            "in": list(s.in_steps),
            "matching_split": s.matching_split or None,
            "transition": _transition_info(s.transition),
            "next": _transition_info(s.transition)["next"],
        }
    return {
        "name": definition.flow_name,
        "file": definition.source_file,
        "doc": definition.doc,
        "parameters": [p.attribute for p in definition.parameters],
        "constants": list(definition.constants),
        "steps": steps,
        "decorators": [{"name": d.name, "attributes": d.values()} for d in definition.decorators],
    }
