"""Artifacts are content-addressed and stored once; `current` tells a task where it is."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import FlowProject

pytestmark = pytest.mark.slow


def _blob_files(project: FlowProject) -> set[str]:
    blobs = project.root / "store" / "blobs"
    return {p.name for p in Path(blobs).rglob("*") if p.is_file()}


def test_current_in_tasks(fresh_project: FlowProject) -> None:
    run_id = fresh_project.run_flow_ok("artifacts_current.py", "--tag", "blue")
    from polyflow import Run

    with fresh_project.client_env():
        run = Run(f"ArtifactsFlow/{run_id}")
        start = run["start"].task
        middle = run["middle"].task
        seen = start.data.start_current
        assert seen["flow_name"] == "ArtifactsFlow"
        assert seen["run_id"] == run_id
        assert seen["step_name"] == "start"
        assert seen["task_id"] == start.id
        assert seen["pathspec"] == f"ArtifactsFlow/{run_id}/start/{start.id}"
        assert seen["retry_count"] == 0
        assert seen["origin_run_id"] is None
        assert seen["namespace"] == "user:tester"
        assert seen["username"] == "tester"
        assert seen["is_running_flow"] is True
        assert "blue" in seen["tags"] and "user:tester" in seen["tags"]
        assert seen["parameter_names"] == ["alpha"]
        assert seen["has_flow_name"] is True
        assert seen["get_missing"] == "fallback"
        later = middle.data.middle_current
        assert later["step_name"] == "middle"
        assert later["pathspec"] == f"ArtifactsFlow/{run_id}/middle/{middle.id}"
        # Parameters and class constants are artifacts of every task.
        assert middle.data.scaled == 20
        assert run.data.alpha == 2 and run.data.SCALE == 10


def test_equal_values_are_stored_once(fresh_project: FlowProject) -> None:
    first = fresh_project.run_flow_ok("artifacts_current.py")
    from polyflow import Run

    with fresh_project.client_env():
        run = Run(f"ArtifactsFlow/{first}")
        start, middle, end = (run[s].task for s in ("start", "middle", "end"))
        # Two names with equal values share one address.
        assert start["same_a"].sha == start["same_b"].sha
        # An inherited value keeps its address in later tasks, even after being read.
        assert start["big"].sha == middle["big"].sha == end["big"].sha
        assert middle.data.big_length == 200_000
        big_sha = start["big"].sha
        referenced = {art.sha for task in (start, middle, end) for art in task.artifacts}
    blobs = _blob_files(fresh_project)
    # Every referenced value is a blob, and nothing was stored twice.
    assert referenced <= blobs
    before = blobs

    second = fresh_project.run_flow_ok("artifacts_current.py")
    with fresh_project.client_env():
        run2 = Run(f"ArtifactsFlow/{second}")
        start2 = run2["start"].task
        assert start2["big"].sha == big_sha
        referenced2 = {
            art.sha for s in ("start", "middle", "end") for art in run2[s].task.artifacts
        }
    added = _blob_files(fresh_project) - before
    # The second run added only values it had not seen (its `current` snapshots).
    assert added == referenced2 - referenced
    assert big_sha not in added
