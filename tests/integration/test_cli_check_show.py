"""``check``, ``show``, ``help`` and ``--with`` on the flow command line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import FlowProject

pytestmark = pytest.mark.slow


def test_check_accepts_a_good_graph(shared_project: FlowProject) -> None:
    result = shared_project.run_flow("branch.py", "check").assert_ok()
    assert "The graph looks good!" in result.output


@pytest.mark.parametrize(
    ("flow", "step", "words"),
    [
        ("broken_missing_end.py", "", ["end"]),
        ("broken_unknown_target.py", "start", ["nowhere"]),
        ("broken_missing_next.py", "middle", ["next"]),
        ("broken_join_without_split.py", "join", ["split"]),
        ("broken_orphan.py", "orphan", []),
    ],
)
def test_check_names_step_file_and_line(
    shared_project: FlowProject, flow: str, step: str, words: list[str]
) -> None:
    result = shared_project.run_flow(flow, "check")
    assert result.returncode == 1, result.describe()
    err = result.stderr
    if step:
        first, last = _step_lines(flow, step)
        found = re.search(rf"{re.escape(flow)}:(\d+): step '{step}': ", err)
        assert found, result.describe()
        # The def line, or the line of the offending statement inside the step.
        assert first <= int(found.group(1)) <= last, result.describe()
    else:
        assert re.search(rf"{re.escape(flow)}(:\d+)?: ", err), result.describe()
    for word in words:
        assert word in err, result.describe()
    assert "The graph looks good!" not in result.output


def test_run_refuses_a_broken_graph_without_creating_a_run(
    shared_project: FlowProject,
) -> None:
    result = shared_project.run_flow("broken_unknown_target.py", "run")
    assert result.returncode == 1, result.describe()
    assert "step 'start'" in result.stderr
    assert "Workflow starting" not in result.stderr
    from polyflow import Flow, namespace
    from polyflow.exceptions import NotFoundError

    with shared_project.client_env():
        namespace(None)
        with pytest.raises(NotFoundError):
            Flow("UnknownTargetFlow")


def test_show_prints_doc_steps_kinds_and_edges(shared_project: FlowProject) -> None:
    result = shared_project.run_flow("branch.py", "show").assert_ok()
    out = result.stdout
    assert out.startswith("Branches a and b, then a join.")
    order = [out.index(f"Step {name} ") for name in ("start", "a", "b", "join", "end")]
    assert order.index(min(order)) == 0 and max(order) == order[-1]
    assert "Step start (split)" in out  # the core's kind: a start step that branches
    assert "Step a (linear)" in out
    assert "Step join (join)" in out
    assert "Step end (end)" in out
    assert "=> a, b" in out
    assert "=> join" in out


def test_show_foreach_and_switch_edges(shared_project: FlowProject) -> None:
    out = shared_project.run_flow("foreach.py", "show").assert_ok().stdout
    assert "=> process (foreach over self.items)" in out
    out = shared_project.run_flow("switch.py", "show").assert_ok().stdout
    assert "switch on self.choice" in out
    assert "'left': left" in out and "'right': right" in out


def test_help_prints_every_command(shared_project: FlowProject) -> None:
    result = shared_project.run_flow("hello.py", "help").assert_ok()
    for command in ("run", "check", "show"):
        assert f"Usage: hello.py {command}" in result.stdout, result.stdout
    assert "--with" in result.stdout and "--quiet" in result.stdout


def test_with_unknown_decorator_fails(shared_project: FlowProject) -> None:
    result = shared_project.run_flow("hello.py", "--with", "no_such_decorator", "run")
    assert result.returncode == 1, result.describe()
    assert "no_such_decorator" in result.stderr
    assert "Workflow starting" not in result.stderr


def _step_lines(flow: str, step: str) -> tuple[int, int]:
    """The first and last line of a step's definition in a test flow."""
    source = Path(__file__).parent / "flows" / flow
    lines = source.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if re.match(rf"\s+def {step}\(", line):
            end = number
            while end < len(lines) and not re.match(r"\s+@step|\S", lines[end]):
                end += 1
            return number, end
    raise AssertionError(f"no step {step} in {flow}")


def test_help_is_quick_and_loads_no_grpc(shared_project: FlowProject) -> None:
    flow = Path(__file__).parent / "flows" / "params.py"
    code = f"""
import runpy, sys
sys.argv = ["params.py", "run", "--help"]
try:
    runpy.run_path({str(flow)!r}, run_name="__main__")
except SystemExit as done:
    assert done.code == 0, done.code
heavy = [m for m in sys.modules if m.startswith(("grpc", "polyflow.client", "polyflow._daemon"))]
assert not heavy, heavy
"""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=shared_project.path,
        env=shared_project.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--count" in proc.stdout
