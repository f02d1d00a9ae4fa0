"""Steps in another language: ``@r_step`` in Python flows (graph extraction and the wire), and
the Python worker running a Python function of an R flow (``pf_python()`` in R), plus the
conversion hook of the worker's artifact loader."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from polyflow import FlowSpec, step
from polyflow._authoring.artifacts import ForeachFrame, StoredArtifact
from polyflow._authoring.graph import FlowDefinition, StepDef, TransitionDef, extract_graph
from polyflow._authoring.transitions import TransitionKind
from polyflow._codecs import decode, encode
from polyflow._conversion import converted_digest, readable
from polyflow._wire_graph import definition_from_proto, definition_to_proto
from polyflow._worker.foreign import is_foreign_python_step
from polyflow._worker.main import execute
from polyflow._worker.persist import persist_artifacts
from polyflow._worker.spec import TaskInputData
from polyflow._worker.store import make_loader
from polyflow.api.common.v1 import enums_pb2
from polyflow.r import r_step
from polyflow_core.datastore.local import LocalBlobStore

from .helpers import make_spec


class ModelFlow(FlowSpec):
    """A Python flow with one R step."""

    @step
    def start(self) -> None:
        self.x = 1
        self.next(self.fit)

    @r_step(file="fit.R", function="fit_lm")
    @step
    def fit(self) -> None:
        self.next(self.end)

    @step
    def end(self) -> None:
        pass


def test_r_step_marks_the_step_for_the_r_worker() -> None:
    """The step's language and foreign function reach the wire and come back."""
    definition = extract_graph(ModelFlow)
    fit = definition.step("fit")
    assert (fit.language, fit.foreign_file, fit.foreign_function) == ("r", "fit.R", "fit_lm")
    assert fit.transition.targets == ("end",)
    assert definition.step("start").language == ""
    graph = definition_to_proto(definition)
    wire = {s.name: s for s in graph.steps}
    assert wire["fit"].language == enums_pb2.LANGUAGE_R
    assert wire["start"].language == enums_pb2.LANGUAGE_UNSPECIFIED
    back = definition_from_proto(graph).step("fit")
    assert (back.language, back.foreign_function) == ("r", "fit_lm")


def test_r_step_must_sit_above_step() -> None:
    """Below @step, or with a bad function name, it is a TypeError at once."""
    with pytest.raises(TypeError, match="above @step"):
        r_step(file="x.R", function="f")(lambda self: None)
    with pytest.raises(TypeError, match="function="):
        r_step(file="x.R", function="not a name")


PY_STEPS = """
def double(self):
    self.doubled = self.x * 2
    print("doubled", self.doubled)

def each(self):
    self.item = self.input

def gather(self, inputs):
    self.items = [inp.item for inp in inputs]
"""


def _r_flow(tmp_path: Path, steps: list[StepDef], module: str) -> FlowDefinition:
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(PY_STEPS))
    flow_file = tmp_path / "flow.R"
    flow_file.write_text("# an R flow; Python cannot import it\n")
    return FlowDefinition(
        flow_name="RFlow",
        entrypoint="RFlow",
        source_file=str(flow_file),
        doc="",
        steps=tuple(steps),
    )


def _linear(name: str, target: str, **extra: Any) -> StepDef:
    return StepDef(
        name=name,
        line=0,
        is_join=False,
        num_args=1,
        transition=TransitionDef(TransitionKind.LINEAR, (target,)),
        **extra,
    )


def test_a_python_step_of_an_r_flow_runs_in_the_python_worker(tmp_path: Path) -> None:
    """The stand-in class runs the function, inherits artifacts and takes the transition."""
    store = LocalBlobStore(tmp_path / "store")
    definition = _r_flow(
        tmp_path,
        [
            _linear("start", "double"),
            _linear(
                "double",
                "end",
                language="python",
                foreign_file="steps_linear.py",
                foreign_function="double",
            ),
            StepDef("end", 0, False, 1, TransitionDef(TransitionKind.UNSPECIFIED)),
        ],
        "steps_linear",
    )
    encoded = encode(21)
    info = store.put_bytes(encoded.buffers)
    x = StoredArtifact("x", info.digest, encoded.encoding, encoded.size, encoded.type_name)
    spec = make_spec(definition, "double", store, [TaskInputData("RFlow/1/start/1", "start", (x,))])
    assert is_foreign_python_step(spec)
    assert not is_foreign_python_step(make_spec(definition, "start", store))
    result = execute(spec)
    assert result.succeeded, result.failure_message
    assert result.next_steps == ("end",)
    values = {a.name: decode(store.get_view(a.digest), a.encoding) for a in result.artifacts}
    assert values == {"x": 21, "doubled": 42}
    refs = {a.name: a for a in result.artifacts}
    assert refs["x"] == x


def test_foreach_and_join_steps_in_python(tmp_path: Path) -> None:
    """A foreach item reaches ``self.input``; a join gets ``inputs``."""
    store = LocalBlobStore(tmp_path / "store")
    definition = _r_flow(
        tmp_path,
        [
            StepDef("start", 0, False, 1, TransitionDef(TransitionKind.FOREACH, ("each",), "xs")),
            _linear(
                "each",
                "gather",
                language="python",
                foreign_file="steps_fan.py",
                foreign_function="each",
            ),
            StepDef(
                "gather",
                0,
                True,
                2,
                TransitionDef(TransitionKind.LINEAR, ("end",)),
                language="python",
                foreign_file="steps_fan.py",
                foreign_function="gather",
            ),
            StepDef("end", 0, False, 1, TransitionDef(TransitionKind.UNSPECIFIED)),
        ],
        "steps_fan",
    )
    encoded = encode(["a", "b"])
    info = store.put_bytes(encoded.buffers)
    xs = StoredArtifact("xs", info.digest, "json", encoded.size, encoded.type_name)
    items = []
    for index in range(2):
        frame = ForeachFrame("start", "xs", index, 2)
        spec = make_spec(
            definition, "each", store, [TaskInputData("RFlow/1/start/1", "start", (xs,))], [frame]
        )
        result = execute(spec)
        assert result.succeeded, result.failure_message
        items.append(TaskInputData(f"RFlow/1/each/{index + 2}", "each", result.artifacts, (frame,)))
    joined = execute(make_spec(definition, "gather", store, items))
    assert joined.succeeded, joined.failure_message
    values = {a.name: decode(store.get_view(a.digest), a.encoding) for a in joined.artifacts}
    assert values["items"] == ["a", "b"]


def test_loader_converts_foreign_encodings_and_keeps_unchanged_refs(tmp_path: Path) -> None:
    """An rds value is read through the converter; unchanged, it keeps its rds reference."""
    store = LocalBlobStore(tmp_path / "store")
    rds = store.put_bytes(b"pretend rds")
    as_json = encode({"k": [1, 2]})
    converted = store.put_bytes(as_json.buffers)
    calls: list[tuple[str, str]] = []

    def convert(digest: str, encoding: str) -> tuple[str, str]:
        calls.append((digest, encoding))
        return converted.digest, "json"

    ref = StoredArtifact("v", rds.digest, "rds", rds.size, "list")
    loader = make_loader(store, convert)
    assert loader(ref) == {"k": [1, 2]}
    assert loader(ref) == {"k": [1, 2]}
    assert calls == [(rds.digest, "rds")]
    assert converted_digest(rds.digest, "rds") == converted.digest
    assert readable("sha256:x", "json", convert) == ("sha256:x", "json")

    class Holder(FlowSpec):
        pass

    from polyflow._authoring.artifacts import ArtifactTable
    from polyflow._authoring.flowspec import FlowState

    flow = Holder._pf_for_task(FlowState(table=ArtifactTable({"v": ref}, loader)))
    assert flow.v == {"k": [1, 2]}  # loaded, unchanged
    stored = {a.name: a for a in persist_artifacts(flow, store)}
    assert stored["v"] == ref
