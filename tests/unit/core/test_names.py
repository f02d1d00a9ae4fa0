"""Tests of polyflow_core.services.names: resource names and pathspecs."""

from __future__ import annotations

import pytest
from polyflow_core.errors import ErrorCode, InvalidArgumentError
from polyflow_core.services.names import (
    ArtifactName,
    FlowName,
    RunName,
    StepName,
    TaskName,
    format_pathspec,
    parse_artifact_name,
    parse_flow_name,
    parse_pathspec,
    parse_run_name,
    parse_step_name,
    parse_task_name,
)


def test_round_trips() -> None:
    assert parse_flow_name("flows/HelloFlow") == FlowName("HelloFlow")
    assert str(FlowName("HelloFlow")) == "flows/HelloFlow"
    run = parse_run_name("flows/HelloFlow/runs/12")
    assert run == RunName("HelloFlow", "12")
    assert str(run) == "flows/HelloFlow/runs/12"
    assert run.parent == FlowName("HelloFlow")
    step = parse_step_name("flows/HelloFlow/runs/12/steps/_parameters")
    assert step == StepName("HelloFlow", "12", "_parameters")
    assert step.parent == run
    task = parse_task_name("flows/HelloFlow/runs/12/steps/start/tasks/3")
    assert task == TaskName("HelloFlow", "12", "start", "3")
    assert task.parent == StepName("HelloFlow", "12", "start")
    assert str(task) == "flows/HelloFlow/runs/12/steps/start/tasks/3"
    assert task.pathspec == "HelloFlow/12/start/3"
    artifact = parse_artifact_name("flows/HelloFlow/runs/12/steps/start/tasks/3/artifacts/my.value")
    assert artifact == ArtifactName("HelloFlow", "12", "start", "3", "my.value")
    assert artifact.parent == task
    assert str(artifact) == "flows/HelloFlow/runs/12/steps/start/tasks/3/artifacts/my.value"


def test_foreign_ids_stay_addressable() -> None:
    assert parse_task_name("flows/F/runs/argo-hello-x7/steps/a/tasks/t-1a2b").task == "t-1a2b"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "flows/",
        "flows/HelloFlow/",
        "flow/HelloFlow",
        "flows/Hello-Flow",
        "flows/1Flow",
        "flows/HelloFlow\n",
        "/flows/HelloFlow",
        "flows/HelloFlow/runs/1",
    ],
)
def test_malformed_flow_names(name: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_flow_name(name)
    error = info.value
    assert error.code is ErrorCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_NAME"
    assert error.metadata == {"field": "name", "name": name, "expected": "flows/{flow}"}


@pytest.mark.parametrize(
    ("parse", "name"),
    [
        (parse_run_name, "flows/F/runs/"),
        (parse_run_name, "flows/F/runs/1/"),
        (parse_run_name, "flows/F/runs/1.2"),
        (parse_run_name, "flows/F/runs/.."),
        (parse_step_name, "flows/F/runs/1/steps/a-b"),
        (parse_step_name, "flows/F/runs/1/step/a"),
        (parse_task_name, "flows/F/runs/1/steps/a/tasks/"),
        (parse_task_name, "flows/F/runs/1/steps/a/tasks/1/x"),
        (parse_task_name, "F/1/a/1"),
        (parse_artifact_name, "flows/F/runs/1/steps/a/tasks/1/artifacts/.."),
        (parse_artifact_name, "flows/F/runs/1/steps/a/tasks/1/artifacts/a/b"),
        (parse_artifact_name, "flows/F/runs/1/steps/a/tasks/1/artifacts/"),
    ],
)
def test_malformed_deeper_names(parse: object, name: str) -> None:
    assert callable(parse)
    with pytest.raises(InvalidArgumentError) as info:
        parse(name, "parent")
    assert info.value.reason == "INVALID_NAME"
    assert info.value.metadata["field"] == "parent"
    assert info.value.metadata["name"] == name


def test_pathspecs() -> None:
    assert format_pathspec("F", "1", "start", "2") == "F/1/start/2"
    assert parse_pathspec("F/1/start/2") == TaskName("F", "1", "start", "2")
    for bad in ("F/1/start", "F/1/start/2/x", "flows/F/runs/1/steps/s/tasks/2", "F//s/2"):
        with pytest.raises(InvalidArgumentError) as info:
            parse_pathspec(bad)
        assert info.value.reason == "INVALID_PATHSPEC"
