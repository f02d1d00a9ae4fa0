"""Helpers for the SDK unit tests: loading test flows and making task specs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from polyflow._authoring.artifacts import ForeachFrame
from polyflow._authoring.flowspec import FlowSpec
from polyflow._authoring.graph import FlowDefinition, extract_graph
from polyflow._worker.loader import find_flow_class, load_flow_module
from polyflow._worker.spec import TaskInputData, TaskSpecData
from polyflow_core.datastore.local import LocalBlobStore

FLOWS = Path(__file__).parent / "flows"


def flow_class(file: str, name: str) -> type[FlowSpec]:
    """A flow class from ``tests/unit/sdk/flows/<file>.py``."""
    return find_flow_class(load_flow_module(str(FLOWS / f"{file}.py")), name)


def line_of(file: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the n-th line containing ``needle`` in a test flow file."""
    seen = 0
    for number, line in enumerate((FLOWS / f"{file}.py").read_text().splitlines(), 1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in {file}")


def make_spec(
    definition: FlowDefinition,
    step: str,
    store: LocalBlobStore,
    inputs: Sequence[TaskInputData] = (),
    frames: Sequence[ForeachFrame] = (),
    *,
    max_num_splits: int = 100,
    parameter_names: Sequence[str] = (),
) -> TaskSpecData:
    """A TaskSpec for one task of ``definition``."""
    return TaskSpecData(
        task=f"flows/{definition.flow_name}/runs/1/steps/{step}/tasks/7",
        flow_name=definition.flow_name,
        run_id="1",
        step_name=step,
        task_id="7",
        attempt=0,
        inputs=tuple(inputs),
        foreach_stack=tuple(frames),
        graph=definition,
        max_num_splits=max_num_splits,
        code_path=definition.source_file,
        core_address="unix:/nowhere.sock",
        store_kind="local",
        store_root=str(store.root),
        user="alice",
        tags=("t1",),
        parameter_names=tuple(parameter_names),
        namespace="user:alice",
    )


def graph_of(file: str, name: str) -> tuple[type[FlowSpec], FlowDefinition]:
    """A test flow's class and its definition."""
    cls = flow_class(file, name)
    return cls, extract_graph(cls)
