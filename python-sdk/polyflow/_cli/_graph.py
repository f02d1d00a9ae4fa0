"""``check`` and ``show``, and the graph validation every ``run`` starts with.

The rules live in the core (``RuntimeService.ValidateGraph``) so that every language gets the
same verdict and the same messages; this module extracts the graph, asks the core, and
prints the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from polyflow._cli._output import Console
from polyflow.exceptions import GraphError, GraphProblem

if TYPE_CHECKING:
    from polyflow._authoring.graph import FlowDefinition, StepDef
    from polyflow._transport import CoreClient
    from polyflow.api.common.v1 import graph_pb2

__all__ = ["extract", "format_problems", "show_text", "validate"]


def extract(flow_cls: type, decospecs: Sequence[str]) -> FlowDefinition:
    """Read the flow's graph from its source, with the ``--with`` decorators added.

    Raises:
        PolyflowError: A ``--with`` value names an unknown decorator or attribute.
        ParameterError: Two parameters share a name.
    """
    from polyflow._authoring.graph import extract_graph

    return extract_graph(flow_cls, decospecs=decospecs)


def validate(
    client: CoreClient, definition: FlowDefinition
) -> tuple[graph_pb2.FlowGraph, graph_pb2.FlowGraph, list[GraphProblem]]:
    """Ask the core to check the graph.

    Returns:
        The graph as sent, the graph with the core's derived kinds and edges, and every
        problem found (empty when the graph is valid).
    """
    from polyflow._transport import graph_problem_from_proto
    from polyflow._wire_graph import definition_to_proto

    graph = definition_to_proto(definition)
    try:
        response = client.validate_graph(graph)
    except GraphError as error:  # a graph the core cannot check at all
        return graph, graph, list(error.problems) or [GraphProblem(error.message)]
    problems = [graph_problem_from_proto(p) for p in response.problems]
    return graph, response.graph, problems


def format_problems(problems: Sequence[GraphProblem], source_file: str) -> list[str]:
    """Each problem as ``<file>:<line>: step '<s>': <message>``.

    Args:
        problems: What the core found.
        source_file: The flow's file, for problems that name none.
    """
    lines = []
    for problem in problems:
        if not problem.file:
            problem = GraphProblem(
                problem.message, problem.rule, problem.step, source_file, problem.line
            )
        lines.append(problem.format())
    return lines


def _edges(step: StepDef) -> str:
    from polyflow._authoring.transitions import TransitionKind

    transition = step.transition
    if transition.kind is TransitionKind.FOREACH:
        return f"=> {', '.join(transition.targets)} (foreach over self.{transition.foreach_var})"
    if transition.kind is TransitionKind.SWITCH:
        cases = ", ".join(f"{key!r}: {target}" for key, target in transition.switch_cases.items())
        return f"=> {{{cases}}} (switch on self.{transition.condition})"
    if transition.kind is TransitionKind.INVALID:
        return f"=> (invalid: {transition.error})"
    if transition.targets:
        return f"=> {', '.join(transition.targets)}"
    return ""


def _decorator(name: str, values: dict[str, object]) -> str:
    if not values:
        return f"@{name}"
    return f"@{name}({', '.join(f'{k}={v!r}' for k, v in values.items())})"


def show_text(graph: graph_pb2.FlowGraph) -> str:
    """The flow's docstring and each step with its kind, decorators and edges.

    Args:
        graph: The graph as the core returned it (steps in the core's order, kinds set).
    """
    from polyflow._wire_graph import definition_from_proto

    definition = definition_from_proto(graph)
    out: list[str] = []
    if definition.doc:
        out += [definition.doc, ""]
    for step in definition.steps:
        kind = f" ({step.kind})" if step.kind else ""
        out.append(f"Step {step.name}{kind}")
        if step.doc:
            out += [f"    {line}".rstrip() for line in step.doc.splitlines()]
        if step.decorators:
            shown = " ".join(_decorator(d.name, d.values()) for d in step.decorators)
            out.append(f"    decorators: {shown}")
        edges = _edges(step)
        if edges:
            out.append(f"    {edges}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def print_problems(console: Console, problems: Sequence[GraphProblem], source_file: str) -> None:
    """Print every problem, one per line, on standard error."""
    for line in format_problems(problems, source_file):
        console.error(line)
