"""Validation of a flow graph, and the step roles derived from it.

An SDK reports what it found in the source: steps and their ``next`` calls. :func:`validate`
checks that the graph is one the scheduler can run and derives, for every step, its kind,
the steps leading into it and, for a join, the split it closes. Every language shares these
rules and these messages, so they live in the core.

The rules follow Metaflow's linter as users meet it:

* Names: reserved words and malformed step names are refused; a name may be defined once.
  Parameters likewise: a non-empty name, defined once, that is not an option of ``run``.
* Start and end: the steps named ``start`` and ``end``, or the ones marked ``is_start`` /
  ``is_end``; exactly one of each; a marked step next to a step literally named ``start`` /
  ``end`` is ambiguous; a flow of one step uses it as both. Nothing leads into the start,
  and the end has no ``next`` call and takes no ``inputs``.
* Transitions: every other step ends with a well-formed ``next`` call to known steps.
* Decorators: the built-in ones the core acts on (``retry``, ``catch``, ``timeout``,
  ``environment``, ``resources``) have known attributes of the right types; ``retry`` leaves
  a task at most six attempts; ``catch`` is not put on a foreach or switch step (see
  :mod:`polyflow_core.domain.step_decorators`).
* Shape: no loops except a switch pointing at itself (recursion); every step is reachable
  from the start; splits (branch, foreach) and joins nest like parentheses. A switch is not
  a split: its cases are alternatives, so they carry the same open splits and may meet again
  at an ordinary step. A foreach cannot lead straight into a join, nor can a switch.

All problems are reported in one pass, ordered by source position. When the graph's basic
structure is broken (a missing or malformed transition, an unknown target, a loop, no clear
start or end), the split/join balance is not reported: its findings would only echo the first
mistake. Likewise a balance problem silences further balance problems downstream of it.
"""

from __future__ import annotations

import dataclasses
import heapq
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from polyflow_core.domain import step_decorators
from polyflow_core.domain.model import FlowGraph, StepKind, StepSpec, TransitionKind
from polyflow_core.domain.names import RESERVED_PARAMETER_NAMES

RESERVED_STEP_NAMES = frozenset({"name", "next", "input", "index", "cmd"})
"""Names a step may not take: they are attributes of the flow object inside a task."""

_STEP_NAME = re.compile(r"[a-z0-9_]+")
_BAD_PARAMETER_CHARACTER = re.compile(r"[\s=]")


class Rule(StrEnum):
    """Machine-readable ids of the graph rules, as carried in ``GraphProblem.rule``."""

    DUPLICATE_STEP = "DUPLICATE_STEP"
    DUPLICATE_PARAMETER = "DUPLICATE_PARAMETER"
    RESERVED_PARAMETER_NAME = "RESERVED_PARAMETER_NAME"
    INVALID_PARAMETER_NAME = "INVALID_PARAMETER_NAME"
    RESERVED_STEP_NAME = "RESERVED_STEP_NAME"
    INVALID_STEP_NAME = "INVALID_STEP_NAME"
    MISSING_START = "MISSING_START"
    MISSING_END = "MISSING_END"
    MULTIPLE_START = "MULTIPLE_START"
    MULTIPLE_END = "MULTIPLE_END"
    AMBIGUOUS_START = "AMBIGUOUS_START"
    AMBIGUOUS_END = "AMBIGUOUS_END"
    START_HAS_INCOMING = "START_HAS_INCOMING"
    END_HAS_TRANSITION = "END_HAS_TRANSITION"
    END_IS_JOIN = "END_IS_JOIN"
    TOO_MANY_ARGUMENTS = "TOO_MANY_ARGUMENTS"
    JOIN_AND_SPLIT = "JOIN_AND_SPLIT"
    MISSING_TRANSITION = "MISSING_TRANSITION"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    UNKNOWN_TRANSITION = "UNKNOWN_TRANSITION"
    TRANSITION_ARITY = "TRANSITION_ARITY"
    FOREACH_WITHOUT_VAR = "FOREACH_WITHOUT_VAR"
    SWITCH_TOO_FEW_CASES = "SWITCH_TOO_FEW_CASES"
    SWITCH_WITHOUT_CONDITION = "SWITCH_WITHOUT_CONDITION"
    CYCLE = "CYCLE"
    UNREACHABLE_STEP = "UNREACHABLE_STEP"
    EMPTY_FOREACH = "EMPTY_FOREACH"
    AMBIGUOUS_JOIN = "AMBIGUOUS_JOIN"
    UNJOINED_SPLIT = "UNJOINED_SPLIT"
    JOIN_WITHOUT_SPLIT = "JOIN_WITHOUT_SPLIT"
    JOIN_PATH_MISMATCH = "JOIN_PATH_MISMATCH"
    CROSS_JOIN = "CROSS_JOIN"
    MERGE_WITHOUT_JOIN = "MERGE_WITHOUT_JOIN"
    DECORATOR_ATTRIBUTE = step_decorators.RULE_DECORATOR_ATTRIBUTE
    TOO_MANY_RETRIES = step_decorators.RULE_TOO_MANY_RETRIES
    CATCH_ON_SPLIT = step_decorators.RULE_CATCH_ON_SPLIT


RULE_DESCRIPTIONS: Mapping[Rule, str] = {
    Rule.DUPLICATE_STEP: "two steps have the same name",
    Rule.DUPLICATE_PARAMETER: "two parameters have the same name",
    Rule.RESERVED_PARAMETER_NAME: "a parameter is named like an option of run (e.g. tag)",
    Rule.INVALID_PARAMETER_NAME: "a parameter name is empty, starts with - or has a space or =",
    Rule.RESERVED_STEP_NAME: "a step is named name, next, input, index or cmd",
    Rule.INVALID_STEP_NAME: "a step name is not [a-z0-9_]+ or starts with an underscore",
    Rule.MISSING_START: "no step is named start or marked as the start step",
    Rule.MISSING_END: "no step is named end or marked as the end step",
    Rule.MULTIPLE_START: "more than one step is marked as the start step",
    Rule.MULTIPLE_END: "more than one step is marked as the end step",
    Rule.AMBIGUOUS_START: "a step is marked as the start step while another is named start",
    Rule.AMBIGUOUS_END: "a step is marked as the end step while another is named end",
    Rule.START_HAS_INCOMING: "some step transitions into the start step",
    Rule.END_HAS_TRANSITION: "the end step has a next call",
    Rule.END_IS_JOIN: "the end step takes inputs (is written as a join)",
    Rule.TOO_MANY_ARGUMENTS: "a step function takes more than self and inputs",
    Rule.JOIN_AND_SPLIT: "a join step also splits (branch, foreach or switch)",
    Rule.MISSING_TRANSITION: "a step other than the end has no next call",
    Rule.INVALID_TRANSITION: "a next call has a form that is not supported",
    Rule.UNKNOWN_TRANSITION: "a next call names a step that does not exist",
    Rule.TRANSITION_ARITY: "wrong number of targets for the kind of next call",
    Rule.FOREACH_WITHOUT_VAR: "a foreach does not name the artifact to iterate over",
    Rule.SWITCH_TOO_FEW_CASES: "a switch has fewer than two cases",
    Rule.SWITCH_WITHOUT_CONDITION: "a switch does not name its condition artifact",
    Rule.CYCLE: "the transitions form a loop (other than a switch pointing at itself)",
    Rule.UNREACHABLE_STEP: "a step cannot be reached from the start step",
    Rule.EMPTY_FOREACH: "a foreach leads straight into a join",
    Rule.AMBIGUOUS_JOIN: "a switch case leads straight into a join",
    Rule.UNJOINED_SPLIT: "the end step is reached while a split is still open",
    Rule.JOIN_WITHOUT_SPLIT: "a join is reached by a path on which no split is open",
    Rule.JOIN_PATH_MISMATCH: "a join is not reached by every branch of the split it closes",
    Rule.CROSS_JOIN: "a join gathers paths that come from different splits",
    Rule.MERGE_WITHOUT_JOIN: "branches of a split meet at a step that is not a join",
    Rule.DECORATOR_ATTRIBUTE: "a built-in decorator has an unknown attribute or a bad value",
    Rule.TOO_MANY_RETRIES: "@retry(times=N) with N + 2 above six attempts",
    Rule.CATCH_ON_SPLIT: "@catch is on a foreach or switch step",
}
"""One line per rule, for documentation and ``check --explain`` style output."""

# Problems that break the structure the split/join balance reasons about. While one of
# them stands (at a step reachable from the start, or flow-wide), balance findings are
# withheld, as Metaflow's linter stops at the first failed check.
_STRUCTURAL_RULES = frozenset(
    {
        Rule.MISSING_START,
        Rule.MISSING_END,
        Rule.MULTIPLE_START,
        Rule.MULTIPLE_END,
        Rule.AMBIGUOUS_START,
        Rule.AMBIGUOUS_END,
        Rule.JOIN_AND_SPLIT,
        Rule.MISSING_TRANSITION,
        Rule.INVALID_TRANSITION,
        Rule.UNKNOWN_TRANSITION,
        Rule.TRANSITION_ARITY,
        Rule.FOREACH_WITHOUT_VAR,
        Rule.SWITCH_TOO_FEW_CASES,
        Rule.SWITCH_WITHOUT_CONDITION,
        Rule.CYCLE,
    }
)


@dataclass(frozen=True)
class Problem:
    """One reason a graph is invalid; mirrors ``runtime.v1.GraphProblem``."""

    rule: str
    """Machine-readable rule id, UPPER_SNAKE (a :class:`Rule` value)."""
    message: str
    """A sentence for people, naming the step(s) involved."""
    step: str = ""
    """The step the problem is reported at; empty for flow-wide problems."""
    file: str = ""
    """The file of that step (the flow's file for flow-wide problems)."""
    line: int = 0
    """1-based line in ``file``; 0 when unknown."""


@dataclass(frozen=True)
class ValidationResult:
    """What :func:`validate` found."""

    problems: list[Problem]
    """Every problem, ordered by file (the flow's own first) and line. Empty when valid."""
    graph: FlowGraph
    """The input graph with ``kind``, ``in_steps`` and ``matching_split`` derived."""
    start: str | None = None
    """The start step, when it could be determined."""
    end: str | None = None
    """The end step, when it could be determined."""

    @property
    def ok(self) -> bool:
        """True when the graph has no problem."""
        return not self.problems


# A path's open splits, outermost first: each frame is a split step and the branch(es)
# of it the path went down. A set of branches rather than one, because once an error has
# merged several branches, carrying their union keeps the report from cascading.
_Frame = tuple[str, frozenset[str]]
_Context = tuple[_Frame, ...]
_ProblemSink = Callable[[Rule, str, str], None]
_Successors = Callable[[str], list[str]]
_Priority = Callable[[str], int]


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def _takes_inputs(step: StepSpec) -> bool:
    # ``num_args`` counts ``self``; SDKs that do not count arguments leave it at 0. More
    # than two arguments is its own error and says nothing about being a join.
    return step.is_join or step.num_args == 2


def start_and_end(graph: FlowGraph) -> tuple[str | None, str | None]:
    """Finds the start and end steps of a graph, by the rules :func:`validate` applies.

    Args:
        graph: The flow graph.

    Returns:
        The names of the start and end steps; ``None`` for one that is missing or ambiguous.
    """
    finder = _EndpointFinder(graph)
    return finder.find(start=True), finder.find(start=False)


class _EndpointFinder:
    """Works out the start or end step, optionally reporting why it cannot."""

    def __init__(self, graph: FlowGraph, report: _Reporter | None = None) -> None:
        self._graph = graph
        self._report = report
        self._names = list(dict.fromkeys(step.name for step in graph.steps))

    def find(self, *, start: bool) -> str | None:
        role = "start" if start else "end"
        marked = list(
            dict.fromkeys(s.name for s in self._graph.steps if (s.is_start if start else s.is_end))
        )
        report = self._report
        if len(marked) > 1:
            if report:
                rule = Rule.MULTIPLE_START if start else Rule.MULTIPLE_END
                report.at_step(
                    rule,
                    marked[1],
                    f"Steps {_quoted(marked)} are all marked as the {role} step; "
                    f"a flow has exactly one {role} step.",
                )
            return None
        if marked:
            if role in self._names and marked[0] != role:
                if report:
                    rule = Rule.AMBIGUOUS_START if start else Rule.AMBIGUOUS_END
                    report.at_step(
                        rule,
                        marked[0],
                        f"Step '{marked[0]}' is marked as the {role} step, but a step named "
                        f"'{role}' exists too. Rename '{role}' or drop the mark.",
                    )
                return None
            return marked[0]
        if role in self._names:
            return role
        if len(self._names) == 1:
            # A flow of a single step runs it as both start and end.
            return self._names[0]
        if report:
            rule = Rule.MISSING_START if start else Rule.MISSING_END
            report.flow_wide(
                rule,
                f"The flow has no {role} step. Name a step '{role}' or mark one as the "
                f"{role} step (e.g. @step({role}=True)).",
            )
        return None


class _Reporter:
    """Collects problems with their file and line filled in from the graph."""

    def __init__(self, graph: FlowGraph) -> None:
        self._graph = graph
        self._first: dict[str, StepSpec] = {}
        for step in graph.steps:
            self._first.setdefault(step.name, step)
        self.problems: list[Problem] = []

    def _file_of(self, step: StepSpec | None) -> str:
        if step is not None and step.source_file:
            return step.source_file
        return self._graph.source_file

    def flow_wide(self, rule: Rule, message: str) -> None:
        self.problems.append(Problem(rule.value, message, "", self._graph.source_file, 0))

    def at_step(
        self,
        rule: Rule,
        name: str,
        message: str,
        *,
        at_transition: bool = False,
        step: StepSpec | None = None,
        line: int = 0,
    ) -> None:
        """Records a problem at a step (``step`` overrides the lookup, for duplicates; a
        positive ``line``, e.g. a decorator's, overrides the step's)."""
        spec = step if step is not None else self._first.get(name)
        if spec is not None and line <= 0:
            line = spec.line
            # The ``next`` call's own line points at the mistake more closely, when known.
            if at_transition and spec.transition.line > 0:
                line = spec.transition.line
        self.problems.append(Problem(rule.value, message, name, self._file_of(spec), line))

    def sorted(self) -> list[Problem]:
        own = self._graph.source_file
        keyed = sorted(
            enumerate(self.problems),
            key=lambda item: (item[1].file != own, item[1].file, item[1].line, item[0]),
        )
        return [problem for _, problem in keyed]


def validate(graph: FlowGraph) -> ValidationResult:
    """Checks a flow graph against the graph rules and derives each step's role.

    Args:
        graph: The graph as an SDK reported it. Its output-only fields are ignored.

    Returns:
        The problems found (empty when the graph is valid) and a copy of the graph with each
        step's ``kind``, ``in_steps`` and, for joins, ``matching_split`` filled in as far as
        they can be derived.
    """
    return _Validator(graph).run()


class _Validator:
    """One validation pass over one graph."""

    def __init__(self, graph: FlowGraph) -> None:
        self.graph = graph
        self.report = _Reporter(graph)
        self.steps: dict[str, StepSpec] = {}
        self.position: dict[str, int] = {}
        for index, step in enumerate(graph.steps):
            if step.name not in self.steps:
                self.steps[step.name] = step
                self.position[step.name] = index
        self.start: str | None = None
        self.end: str | None = None
        # Known out-edges per step (unknown targets and the end's edges left out).
        self.out: dict[str, list[str]] = {}
        self.in_steps: dict[str, list[str]] = {}
        self.reachable: set[str] = set()
        self.matching_split: dict[str, str] = {}
        self.structural_steps: set[str] = set()
        self.flow_wide_structural = False

    # --- driver ---------------------------------------------------------------------

    def run(self) -> ValidationResult:
        self.check_duplicates()
        self.check_names()
        self.check_parameters()
        finder = _EndpointFinder(self.graph, self.report)
        self.start = finder.find(start=True)
        self.end = finder.find(start=False)
        self.flow_wide_structural = any(p.rule in _STRUCTURAL_RULES for p in self.report.problems)
        for step in self.steps.values():
            self.check_arguments(step)
            if step.name == self.end:
                self.check_end(step)
            else:
                self.check_transition(step)
        self.build_edges()
        self.check_start_degree()
        acyclic = self.check_cycles()
        self.check_reachability()
        switched_joins = self.check_local_shapes()
        self.walk_splits(acyclic, switched_joins)
        self.check_decorators()
        return ValidationResult(
            problems=self.report.sorted(),
            graph=self.derived_graph(),
            start=self.start,
            end=self.end,
        )

    def check_decorators(self) -> None:
        """The built-in decorators' attributes and placement."""
        for step in self.steps.values():
            for problem in step_decorators.decorator_problems(step, self.graph):
                self.report.at_step(
                    Rule(problem.rule), step.name, problem.message, line=problem.line
                )

    def structural(self, rule: Rule, name: str, message: str, *, at_transition: bool) -> None:
        """Reports a problem that makes the split/join balance moot at this step."""
        self.report.at_step(rule, name, message, at_transition=at_transition)
        self.structural_steps.add(name)

    # --- names ----------------------------------------------------------------------

    def check_duplicates(self) -> None:
        seen: set[str] = set()
        for step in self.graph.steps:
            if step.name in seen:
                self.report.at_step(
                    Rule.DUPLICATE_STEP,
                    step.name,
                    f"Step '{step.name}' is defined more than once; step names must be "
                    f"unique within a flow.",
                    step=step,
                )
            seen.add(step.name)

    def check_names(self) -> None:
        for name in self.steps:
            if name in RESERVED_STEP_NAMES:
                self.report.at_step(
                    Rule.RESERVED_STEP_NAME,
                    name,
                    f"Step name '{name}' is reserved (so are "
                    f"{_quoted(sorted(RESERVED_STEP_NAMES - {name}))}); give the step another "
                    f"name.",
                )
            elif not _STEP_NAME.fullmatch(name) or name.startswith("_"):
                self.report.at_step(
                    Rule.INVALID_STEP_NAME,
                    name,
                    f"Step name '{name}' is not valid: use only lowercase ASCII letters, digits "
                    f"and underscores, and do not start it with an underscore.",
                )

    def check_parameters(self) -> None:
        """Parameter names, which become options of ``run`` (flow-wide problems: the graph
        carries no line for a parameter)."""
        seen: set[str] = set()
        for parameter in self.graph.parameters:
            name = parameter.name
            option = name.lower().replace("_", "-")
            if not name or name.startswith("-") or _BAD_PARAMETER_CHARACTER.search(name):
                self.report.flow_wide(
                    Rule.INVALID_PARAMETER_NAME,
                    f"Parameter name {name!r} is not valid: it must be non-empty, must not "
                    f"start with '-' and must hold no whitespace or '='.",
                )
            elif option in RESERVED_PARAMETER_NAMES:
                self.report.flow_wide(
                    Rule.RESERVED_PARAMETER_NAME,
                    f"Parameter name '{name}' is reserved (it is an option of 'run'); choose "
                    f"another name.",
                )
            elif option in seen:
                self.report.flow_wide(
                    Rule.DUPLICATE_PARAMETER,
                    f"Parameter '{name}' is declared more than once; parameter names must be "
                    f"unique within a flow ('_' and '-' count as the same).",
                )
            seen.add(option)

    # --- per-step checks ------------------------------------------------------------

    def check_arguments(self, step: StepSpec) -> None:
        if step.num_args > 2:
            self.report.at_step(
                Rule.TOO_MANY_ARGUMENTS,
                step.name,
                f"Step '{step.name}' takes {step.num_args} arguments. A step takes only "
                f"'self'; a join step takes 'self' and 'inputs'.",
            )
        kind = step.transition.kind
        if (
            step.name != self.end
            and _takes_inputs(step)
            and kind in (TransitionKind.BRANCH, TransitionKind.FOREACH, TransitionKind.SWITCH)
        ):
            self.structural(
                Rule.JOIN_AND_SPLIT,
                step.name,
                f"Step '{step.name}' is both a join (it takes 'inputs') and a split (its next "
                f"call fans out). Split and join must be separate steps: add a step between "
                f"them.",
                at_transition=False,
            )

    def check_end(self, step: StepSpec) -> None:
        if step.transition.kind is not TransitionKind.UNSPECIFIED:
            self.report.at_step(
                Rule.END_HAS_TRANSITION,
                step.name,
                f"The end step '{step.name}' must not call next; remove the call.",
                at_transition=True,
            )
        if _takes_inputs(step):
            self.report.at_step(
                Rule.END_IS_JOIN,
                step.name,
                f"The end step '{step.name}' takes 'inputs', which makes it a join. The end "
                f"step cannot be a join: add a join step before it.",
            )

    def check_transition(self, step: StepSpec) -> None:
        t = step.transition
        name = step.name
        if t.kind is TransitionKind.UNSPECIFIED:
            if not step.is_end and name != "end":
                # A would-be end step (marked or named so) is already reported as ambiguous.
                self.structural(
                    Rule.MISSING_TRANSITION,
                    name,
                    f"Step '{name}' does not end with a next call to the following step; add "
                    f"one as its last statement.",
                    at_transition=False,
                )
            return
        if t.kind is TransitionKind.INVALID:
            why = t.error or "the call matches none of the supported forms"
            self.structural(
                Rule.INVALID_TRANSITION,
                name,
                f"The next call of step '{name}' is not valid: {why}. Supported forms: "
                f"next(a), next(a, b, ...), next(a, foreach='var') and "
                f"next({{'case': a, ...}}, condition='var').",
                at_transition=True,
            )
            return
        mixed = self.mixed_fields(step)
        if mixed:
            self.structural(
                Rule.INVALID_TRANSITION,
                name,
                f"The next call of step '{name}' is not valid: {mixed}.",
                at_transition=True,
            )
        count = len(t.targets)
        if t.kind is TransitionKind.LINEAR and count != 1:
            self.arity(step, f"a transition to a single step names {count} targets")
        elif t.kind is TransitionKind.BRANCH and count < 2:
            self.arity(step, f"a branch needs at least two targets, it has {count}")
        elif t.kind is TransitionKind.FOREACH and count != 1:
            self.arity(step, f"a foreach has exactly one target, it has {count}")
        repeated = sorted({target for target in t.targets if t.targets.count(target) > 1})
        if repeated:
            self.arity(step, f"it names {_quoted(repeated)} more than once")
        if t.kind is TransitionKind.FOREACH and not t.foreach_var:
            self.structural(
                Rule.FOREACH_WITHOUT_VAR,
                name,
                f"Step '{name}' is a foreach but does not name the artifact to iterate over "
                f"(foreach='...').",
                at_transition=True,
            )
        if t.kind is TransitionKind.SWITCH:
            cases = len(t.switch_cases)
            if cases < 2:
                self.structural(
                    Rule.SWITCH_TOO_FEW_CASES,
                    name,
                    f"Step '{name}' is a switch with {cases} case(s); a switch needs at least "
                    f"two cases.",
                    at_transition=True,
                )
            if not t.condition:
                self.structural(
                    Rule.SWITCH_WITHOUT_CONDITION,
                    name,
                    f"Step '{name}' is a switch but names no condition artifact (condition='...').",
                    at_transition=True,
                )

    @staticmethod
    def mixed_fields(step: StepSpec) -> str:
        """Says which fields of the transition do not belong to its kind, if any."""
        t = step.transition
        if t.kind is not TransitionKind.FOREACH and t.foreach_var:
            if t.kind is TransitionKind.SWITCH:
                return "a switch (condition) cannot be combined with foreach"
            return "foreach is given but the call is not a foreach"
        if t.kind is not TransitionKind.SWITCH and (t.switch_cases or t.condition):
            return "a condition or switch cases are given but the call is not a switch"
        if t.kind is TransitionKind.SWITCH and t.targets:
            return "a switch takes a single dictionary of cases and no other targets"
        return ""

    def arity(self, step: StepSpec, detail: str) -> None:
        self.structural(
            Rule.TRANSITION_ARITY,
            step.name,
            f"The next call of step '{step.name}' has the wrong number of targets: {detail}.",
            at_transition=True,
        )

    # --- edges and graph-wide checks --------------------------------------------------

    def build_edges(self) -> None:
        for name in self.steps:
            self.in_steps[name] = []
        for name, step in self.steps.items():
            known: list[str] = []
            # The end's next call is already an error; its edges would only add noise.
            if name != self.end:
                for target in step.transition.out_steps:
                    if target in self.steps:
                        known.append(target)
                    else:
                        self.structural(
                            Rule.UNKNOWN_TRANSITION,
                            name,
                            f"Step '{name}' transitions to '{target}', which is not a step "
                            f"of this flow.",
                            at_transition=True,
                        )
            self.out[name] = known
            for target in known:
                self.in_steps[target].append(name)
        for name in self.steps:
            self.in_steps[name].sort(key=self.position.__getitem__)

    def loop_allowed(self, name: str, target: str) -> bool:
        return name == target and self.steps[name].transition.kind is TransitionKind.SWITCH

    def forward(self, name: str) -> list[str]:
        """Out-edges of a step without a switch's allowed edge to itself."""
        return [t for t in self.out[name] if not self.loop_allowed(name, t)]

    def check_start_degree(self) -> None:
        if self.start is None:
            return
        preds = self.in_steps[self.start]
        if preds:
            self.report.at_step(
                Rule.START_HAS_INCOMING,
                self.start,
                f"The start step '{self.start}' is the target of a transition from "
                f"{_quoted(preds)}; nothing may lead into the start step.",
            )

    def check_cycles(self) -> bool:
        """Reports every loop (strongly connected part); returns True when there is none."""
        acyclic = True
        for component in _strongly_connected(list(self.steps), self.forward):
            first = min(component, key=self.position.__getitem__)
            if len(component) == 1 and first not in self.forward(first):
                continue
            acyclic = False
            path = self.loop_through(first, set(component))
            if len(path) == 2:
                message = (
                    f"Step '{first}' transitions to itself. Only a switch may point back at "
                    f"its own step (recursion); fix the next call."
                )
            else:
                loop = " -> ".join(f"'{name}'" for name in path)
                message = (
                    f"The transitions form a loop: {loop}. Only a switch may point back at "
                    f"its own step; break the loop by fixing the next calls."
                )
            self.structural(Rule.CYCLE, first, message, at_transition=True)
        return acyclic

    def loop_through(self, first: str, members: set[str]) -> list[str]:
        """A shortest loop from ``first`` back to itself inside one strongly connected part."""
        parent: dict[str, str] = {}
        frontier = [first]
        while frontier:
            following: list[str] = []
            for name in frontier:
                for target in self.forward(name):
                    if target == first:
                        path = [first]
                        node = name
                        while node != first:
                            path.append(node)
                            node = parent[node]
                        return [first, *reversed(path[1:]), first]
                    if target in members and target not in parent:
                        parent[target] = name
                        following.append(target)
            frontier = following
        return [first, first]  # not reached: a component with a loop always closes

    def check_reachability(self) -> None:
        if self.start is None:
            return
        seen = {self.start}
        stack = [self.start]
        while stack:
            for target in self.out[stack.pop()]:
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
        self.reachable = seen
        for name in self.steps:
            if name not in seen:
                self.report.at_step(
                    Rule.UNREACHABLE_STEP,
                    name,
                    f"Step '{name}' cannot be reached from the start step '{self.start}'. "
                    f"Add a transition to it or remove it.",
                )

    def check_local_shapes(self) -> set[str]:
        """Foreach and switch edges straight into joins; returns the joins a switch hits."""
        switched_joins: set[str] = set()
        for name, step in self.steps.items():
            kind = step.transition.kind
            joins = [t for t in self.out[name] if t != self.end and _takes_inputs(self.steps[t])]
            if not joins:
                continue
            if kind is TransitionKind.FOREACH:
                self.report.at_step(
                    Rule.EMPTY_FOREACH,
                    name,
                    f"Step '{name}' is a foreach that leads straight into the join "
                    f"{_quoted(joins)}: the foreach has no step to run per item. Add a step "
                    f"between the foreach and the join.",
                    at_transition=True,
                )
            elif kind is TransitionKind.SWITCH:
                switched_joins.update(joins)
                self.report.at_step(
                    Rule.AMBIGUOUS_JOIN,
                    name,
                    f"A case of the switch in step '{name}' leads straight into the join "
                    f"{_quoted(joins)}. A conditional path cannot end in a join directly: "
                    f"add an ordinary step on that path before the join.",
                    at_transition=True,
                )
        return switched_joins

    # --- split/join balance -----------------------------------------------------------

    def walk_splits(self, acyclic: bool, switched_joins: set[str]) -> None:
        """Follows every path from the start, tracking the splits open along it.

        Steps are visited in topological order, so a step is judged once all the paths into
        it are known. ``matching_split`` is recorded for every join whose paths agree.
        """
        if self.start is None or not acyclic:
            return
        silent = self.flow_wide_structural or bool(self.structural_steps & self.reachable)
        order = _topological(
            [n for n in self.steps if n in self.reachable],
            self.forward,
            priority=self.position.__getitem__,
        )
        arrivals: dict[str, list[tuple[str, _Context]]] = {self.start: [("", ())]}
        # Steps at or after a reported balance problem: further findings would echo it.
        tainted: set[str] = set(switched_joins)

        def problem(rule: Rule, name: str, message: str) -> None:
            if name not in tainted and not silent:
                self.report.at_step(rule, name, message)
            tainted.add(name)

        for name in order:
            arrived = arrivals.get(name)
            if not arrived:
                continue
            if any(pred in tainted for pred, _ in arrived):
                tainted.add(name)
            step = self.steps[name]
            if name == self.end:
                open_splits = [ctx for _, ctx in arrived if ctx]
                if open_splits and not _takes_inputs(step):
                    innermost = open_splits[0][-1][0]
                    problem(
                        Rule.UNJOINED_SPLIT,
                        name,
                        f"The end step '{name}' is reached while the split at step "
                        f"'{innermost}' (branches {_quoted(self.split_branches(innermost))}) "
                        f"is still open. Add a join step before '{name}'.",
                    )
                continue
            if _takes_inputs(step):
                context = self.judge_join(name, arrived, problem)
            else:
                context = self.judge_merge(name, arrived, problem)
            fans_out = step.transition.kind in (TransitionKind.BRANCH, TransitionKind.FOREACH)
            for target in self.forward(name):
                pushed = (*context, (name, frozenset({target}))) if fans_out else context
                arrivals.setdefault(target, []).append((name, pushed))

    def split_branches(self, split: str) -> list[str]:
        return self.forward(split)

    def judge_merge(
        self,
        name: str,
        arrived: list[tuple[str, _Context]],
        problem: _ProblemSink,
    ) -> _Context:
        """An ordinary step: every path into it must carry the same open splits."""
        contexts = list(dict.fromkeys(ctx for _, ctx in arrived))
        if len(contexts) == 1:
            return contexts[0]
        preds = self.sorted_names(pred for pred, _ in arrived)
        problem(
            Rule.MERGE_WITHOUT_JOIN,
            name,
            f"Step '{name}' is reached by parallel paths (from {_quoted(preds)}) that "
            f"belong to different branches of a split, but it is not a join. Make it a join "
            f"(take 'inputs') or keep the branches apart until their join.",
        )
        return _union(contexts)

    def judge_join(
        self,
        name: str,
        arrived: list[tuple[str, _Context]],
        problem: _ProblemSink,
    ) -> _Context:
        """A join: all paths into it must close the same, innermost open split."""
        outside = self.sorted_names(pred for pred, ctx in arrived if not ctx)
        if outside:
            problem(
                Rule.JOIN_WITHOUT_SPLIT,
                name,
                f"Step '{name}' is a join (it takes 'inputs') but the path from "
                f"{_quoted(outside)} reaches it with no split open. Every join must close "
                f"a split (a branch or a foreach).",
            )
            inside = [ctx for _, ctx in arrived if ctx]
            return inside[0][:-1] if inside else ()
        contexts = [ctx for _, ctx in arrived]
        shapes = {tuple(frame[0] for frame in ctx) for ctx in contexts}
        if len(shapes) > 1:
            innermost = self.sorted_names({ctx[-1][0] for ctx in contexts})
            problem(
                Rule.CROSS_JOIN,
                name,
                f"Step '{name}' joins paths from unrelated splits (opened at "
                f"{_quoted(innermost)}). Each join must close exactly one split; add a join "
                f"for each split.",
            )
            self.matching_split[name] = contexts[0][-1][0]
            return contexts[0][:-1]
        split = contexts[0][-1][0]
        self.matching_split[name] = split
        reached: set[str] = set()
        for ctx in contexts:
            reached |= ctx[-1][1]
        expected = self.split_branches(split)
        if reached != set(expected):
            missing = [b for b in expected if b not in reached]
            preds = self.sorted_names(pred for pred, _ in arrived)
            problem(
                Rule.JOIN_PATH_MISMATCH,
                name,
                f"Step '{name}' joins the split at '{split}', which opens "
                f"{len(expected)} branches ({_quoted(expected)}), but the paths into it (from "
                f"{_quoted(preds)}) miss {_quoted(missing)}. A join must be reached by every "
                f"branch of the split it closes.",
            )
        return _union([ctx[:-1] for ctx in contexts])

    def sorted_names(self, names: Iterable[str]) -> list[str]:
        return sorted(set(names), key=self.position.__getitem__)

    # --- output -----------------------------------------------------------------------

    def kind_of(self, step: StepSpec) -> StepKind:
        if step.name == self.end:
            return StepKind.END
        if _takes_inputs(step):
            return StepKind.JOIN
        kind = step.transition.kind
        if kind is TransitionKind.BRANCH:
            return StepKind.SPLIT
        if kind is TransitionKind.FOREACH:
            return StepKind.FOREACH
        if kind is TransitionKind.SWITCH:
            return StepKind.SWITCH
        if step.name == self.start:
            return StepKind.START
        if kind is TransitionKind.LINEAR:
            return StepKind.LINEAR
        return StepKind.UNSPECIFIED

    def derived_graph(self) -> FlowGraph:
        steps = []
        for step in self.graph.steps:
            kind = self.kind_of(step)
            steps.append(
                dataclasses.replace(
                    step,
                    kind=kind,
                    in_steps=tuple(self.in_steps.get(step.name, ())),
                    matching_split=(
                        self.matching_split.get(step.name, "") if kind is StepKind.JOIN else ""
                    ),
                )
            )
        return dataclasses.replace(self.graph, steps=tuple(steps))


def _union(contexts: list[_Context]) -> _Context:
    """Merges contexts of the same shape frame by frame; otherwise keeps the first."""
    first = contexts[0]
    if any(len(ctx) != len(first) for ctx in contexts) or any(
        tuple(f[0] for f in ctx) != tuple(f[0] for f in first) for ctx in contexts
    ):
        return first
    return tuple(
        (split, frozenset().union(*(ctx[i][1] for ctx in contexts)))
        for i, (split, _) in enumerate(first)
    )


def _strongly_connected(nodes: list[str], successors: _Successors) -> list[list[str]]:
    """Tarjan's algorithm, iterative so that long flows do not hit the recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = []
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work.append((root, iter(successors(root))))
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors(child))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _topological(nodes: list[str], successors: _Successors, *, priority: _Priority) -> list[str]:
    """Kahn's algorithm; among ready steps, the lowest ``priority`` comes first.

    Steps left on a loop are appended in priority order, so the result always lists every
    node once.
    """
    members = set(nodes)
    indegree = dict.fromkeys(nodes, 0)
    for node in nodes:
        for child in successors(node):
            if child in members:
                indegree[child] += 1
    ready = [(priority(n), n) for n in nodes if indegree[n] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, node = heapq.heappop(ready)
        order.append(node)
        for child in successors(node):
            if child in members:
                indegree[child] -= 1
                if indegree[child] == 0:
                    heapq.heappush(ready, (priority(child), child))
    if len(order) < len(nodes):
        placed = set(order)
        order.extend(sorted((n for n in nodes if n not in placed), key=priority))
    return order


def topological_order(graph: FlowGraph) -> list[str]:
    """Lists the steps so that every step comes after the steps leading into it.

    A switch's edge to itself is ignored, as are transitions to unknown steps. The start step
    comes first; otherwise ties keep source order. On a graph with a loop (an invalid graph)
    the steps of the loop follow the rest, in source order.

    Args:
        graph: The flow graph (validated or not).

    Returns:
        Every step name once.
    """
    names = list(dict.fromkeys(step.name for step in graph.steps))
    position = {name: i for i, name in enumerate(names)}
    start, _ = start_and_end(graph)

    def successors(name: str) -> list[str]:
        step = graph.step(name)
        is_switch = step.transition.kind is TransitionKind.SWITCH
        return [
            t for t in step.transition.out_steps if t in position and not (is_switch and t == name)
        ]

    def priority(name: str) -> int:
        return -1 if name == start else position[name]

    return _topological(names, successors, priority=priority)
