"""Flow parameters on the command line: every type, the environment, and bad values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import FlowProject

pytestmark = pytest.mark.slow


def _seen(project: FlowProject, run_id: str) -> dict[str, Any]:
    from polyflow import Run

    with project.client_env():
        seen: dict[str, Any] = Run(f"ParamsFlow/{run_id}")["start"].task.data.seen
        return seen


def _run_count(project: FlowProject) -> int:
    from polyflow import Flow, namespace
    from polyflow.exceptions import NotFoundError

    with project.client_env():
        namespace(None)
        try:
            return len(list(Flow("ParamsFlow").runs()))
        except NotFoundError:
            return 0


@pytest.fixture
def files(shared_project: FlowProject) -> dict[str, Path]:
    folder = shared_project.path / "inputs"
    folder.mkdir(exist_ok=True)
    data = folder / "data.txt"
    data.write_text("line one\nline two\n", encoding="utf-8")
    table = folder / "table.json"
    table.write_text(json.dumps({"rows": [1, 2, 3]}), encoding="utf-8")
    raw = folder / "raw.bin"
    raw.write_bytes(b"\x00\x01\xfe\xff")
    return {"data": data, "table": table, "raw": raw}


def test_every_type_from_the_command_line(
    shared_project: FlowProject, files: dict[str, Path]
) -> None:
    run_id = shared_project.run_flow_ok(
        "params.py",
        "--name", "Ann",
        "--count", "5",
        "--ratio", "0.25",
        "--verbose", "yes",
        "--config", '{"layers": [1, 2], "ok": true}',
        "--colors", "cyan,magenta,yellow",
        "--data", str(files["data"]),
        "--table", str(files["table"]),
        "--raw", str(files["raw"]),
        "--dry-run",
    )  # fmt: skip
    seen = _seen(shared_project, run_id)
    assert seen["name"] == "Ann"
    assert seen["count"] == 5 and isinstance(seen["count"], int)
    assert seen["ratio"] == 0.25
    assert seen["verbose"] is True
    assert seen["config"] == {"layers": [1, 2], "ok": True}
    assert seen["colors"] == ["cyan", "magenta", "yellow"]
    assert seen["data"] == "line one\nline two\n"
    assert seen["table"] == {"rows": [1, 2, 3]}
    assert seen["raw"] == b"\x00\x01\xfe\xff"
    assert seen["limit"] == 7 and seen["labels"] == {"a": 1}
    assert seen["dry"] is True


def test_defaults_and_parameters_reach_every_step(shared_project: FlowProject) -> None:
    run_id = shared_project.run_flow_ok("params.py", "--name", "Bo")
    seen = _seen(shared_project, run_id)
    assert seen["count"] == 2
    assert seen["ratio"] == 0.5
    assert seen["verbose"] is False
    assert seen["config"] == {"depth": 1}
    assert seen["colors"] == ["red", "green"]
    assert seen["data"] is None
    assert seen["dry"] is False
    from polyflow import Run

    with shared_project.client_env():
        assert Run(f"ParamsFlow/{run_id}").data.count_in_end == 2


def test_values_from_the_environment(shared_project: FlowProject) -> None:
    env = {"POLYFLOW_RUN_NAME": "FromEnv", "POLYFLOW_RUN_COUNT": "9"}
    run_id = shared_project.run_flow_ok("params.py", env=env)
    seen = _seen(shared_project, run_id)
    assert (seen["name"], seen["count"]) == ("FromEnv", 9)
    # The command line wins over the environment.
    run_id = shared_project.run_flow_ok("params.py", "--count", "4", env=env)
    assert _seen(shared_project, run_id)["count"] == 4


@pytest.mark.parametrize(
    ("args", "env", "parameter"),
    [
        (["--name", "x", "--count", "abc"], {}, "count"),
        (["--name", "x", "--ratio", "fast"], {}, "ratio"),
        (["--name", "x", "--verbose", "maybe"], {}, "verbose"),
        (["--name", "x", "--config", "{not json"], {}, "config"),
        ([], {}, "name"),
        (["--name", "x", "--data", "/no/such/file.txt"], {}, "data"),
        (["--name", "x"], {"POLYFLOW_RUN_COUNT": "1.5"}, "count"),
        (["--name", "x", "--table", "__BAD_JSON__"], {}, "table"),
    ],
)
def test_bad_values_fail_before_any_run(
    shared_project: FlowProject, args: list[str], env: dict[str, str], parameter: str
) -> None:
    shared_project.run_flow_ok("params.py", "--name", "baseline")
    if "__BAD_JSON__" in args:
        bad = shared_project.path / "bad.json"
        bad.write_text("{oops", encoding="utf-8")
        args = [str(bad) if a == "__BAD_JSON__" else a for a in args]
    before = _run_count(shared_project)
    result = shared_project.run_flow("params.py", "run", *args, env=env)
    assert result.returncode == 1, result.describe()
    assert f"'{parameter}'" in result.stderr, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert "Workflow starting" not in result.stderr
    assert _run_count(shared_project) == before


def test_run_help_lists_parameters(shared_project: FlowProject) -> None:
    result = shared_project.run_flow("params.py", "run", "--help").assert_ok()
    for option, text in [
        ("--name", "Who to greet"),
        ("--count", "How many times"),
        ("--config", "Any JSON"),
        ("--data", "A data file"),
    ]:
        assert option in result.stdout and text in result.stdout, result.stdout
    assert "POLYFLOW_RUN_COUNT" in result.stdout
    for option in ("--max-workers", "--max-num-splits", "--tag", "--run-id-file", "--namespace"):
        assert option in result.stdout
