"""An editor completes Polyflow code from the stubs: jedi (the completion engine of many
editors), with the stub package on its search path, lists the documented names."""

from __future__ import annotations

from pathlib import Path

import jedi
import pytest

from .checkers import STUB_ROOT

CURRENT_FIELDS = {
    "flow_name",
    "run_id",
    "step_name",
    "task_id",
    "retry_count",
    "origin_run_id",
    "pathspec",
    "namespace",
    "username",
    "tags",
    "parameter_names",
    "graph",
    "is_running_flow",
    "get",
}
"""What ``current`` documents (Metaflow's fields that Polyflow supports, and ``get``)."""

DECORATOR_ARGUMENTS = {
    "retry": {"times", "minutes_between_retries"},
    "catch": {"var", "print_exception"},
    "timeout": {"seconds", "minutes", "hours"},
    "environment": {"vars"},
    "resources": {"cpu", "gpu", "disk", "memory", "shared_memory"},
}

FLOW = """from polyflow import FlowSpec, step, {decorator}


class CompletionFlow(FlowSpec):
    @{decorator}(
    @step
    def start(self) -> None:
        self.next(self.end)

    @step
    def end(self) -> None:
        pass
"""


def _complete(tmp_path: Path, source: str, line: int, column: int) -> list[jedi.api.Completion]:
    project = jedi.Project(
        tmp_path, sys_path=[str(STUB_ROOT)], smart_sys_path=False, added_sys_path=()
    )
    path = tmp_path / "flow.py"
    path.write_text(source)
    return jedi.Script(source, path=path, project=project).complete(line, column)


def _from_stubs(completions: list[jedi.api.Completion], names: set[str]) -> dict[str, Path]:
    """Where each of ``names`` was completed from."""
    found: dict[str, Path] = {}
    for completion in completions:
        name = completion.name.rstrip("=")
        if name in names and completion.module_path is not None:
            found[name] = Path(completion.module_path)
    return found


def _assert_from_stubs(found: dict[str, Path], names: set[str]) -> None:
    assert set(found) == names, f"missing: {sorted(names - set(found))}"
    for name, path in found.items():
        assert path.suffix == ".pyi" and STUB_ROOT in path.parents, (name, path)


def test_current_completes_its_fields(tmp_path: Path) -> None:
    source = "from polyflow import current\ncurrent."
    completions = _complete(tmp_path, source, 2, len("current."))
    _assert_from_stubs(_from_stubs(completions, CURRENT_FIELDS), CURRENT_FIELDS)
    docs = {c.name: c.docstring() for c in completions}
    assert "The run's id." in docs["run_id"]


@pytest.mark.parametrize("decorator", sorted(DECORATOR_ARGUMENTS))
def test_decorator_completes_its_arguments(tmp_path: Path, decorator: str) -> None:
    column = len(f"    @{decorator}(")
    completions = _complete(tmp_path, FLOW.format(decorator=decorator), 5, column)
    keywords = [c for c in completions if c.name.endswith("=")]
    wanted = DECORATOR_ARGUMENTS[decorator]
    _assert_from_stubs(_from_stubs(keywords, wanted), wanted)


def test_retry_signature_shows_types_defaults_and_docs(tmp_path: Path) -> None:
    source = "from polyflow import retry\n@retry("
    project = jedi.Project(
        tmp_path, sys_path=[str(STUB_ROOT)], smart_sys_path=False, added_sys_path=()
    )
    script = jedi.Script(source, path=tmp_path / "flow.py", project=project)
    keywords = {c.name: c.description for c in script.complete(2, 7) if c.name.endswith("=")}
    assert keywords["times="] == "param times: int=3"
    assert keywords["minutes_between_retries="] == "param minutes_between_retries: float=2"
    signatures = script.get_signatures(2, 7)
    assert any("Run a failed task of the step again." in s.docstring() for s in signatures)


def test_flow_and_client_complete(tmp_path: Path) -> None:
    flow = (
        "from polyflow import FlowSpec\n"
        "class F(FlowSpec):\n"
        "    def start(self) -> None:\n"
        "        self."
    )
    flow_names = {"next", "merge_artifacts", "input", "index", "foreach_stack", "name"}
    found = _from_stubs(_complete(tmp_path, flow, 4, len("        self.")), flow_names)
    _assert_from_stubs(found, flow_names)
    client = "from polyflow import Run\nRun('F/1')."
    run_names = {"successful", "finished", "data", "end_task", "steps", "tags", "created_at"}
    _assert_from_stubs(
        _from_stubs(_complete(tmp_path, client, 2, len("Run('F/1').")), run_names), run_names
    )
