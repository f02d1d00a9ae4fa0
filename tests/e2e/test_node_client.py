"""A client in another language drives the daemon: Node.js with @grpc/grpc-js and the same
.proto files lists the runs of a flow the Python SDK ran and reads one of its artifacts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import Project

NODE_DIR = Path(__file__).resolve().parents[1] / "node"

FLOW = """
from polyflow import FlowSpec, step


class GreetFlow(FlowSpec):
    @step
    def start(self):
        self.greeting = {"text": "hello from python", "count": 3}
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    GreetFlow()
"""


def test_node_lists_runs_and_reads_artifact(project: Project) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("Node.js and tests/node/node_modules are required: run ./dev setup")
    (project.path / "greet.py").write_text(FLOW)
    project.run("greet.py", "run")
    project.run("greet.py", "run")
    address = (
        project.python(
            "from polyflow._daemon import resolve_endpoint; print(resolve_endpoint().address)"
        )
        .strip()
        .splitlines()[-1]
    )

    proc = subprocess.run(
        [node, str(NODE_DIR / "list_runs.js"), address, "GreetFlow", "greeting"],
        capture_output=True,
        text=True,
        timeout=60,
        env=project.env,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["runs"]) == 2
    assert all(r["state"] == "RUN_STATE_SUCCEEDED" for r in out["runs"])
    # Newest first.
    assert int(out["runs"][0]["run_id"]) > int(out["runs"][1]["run_id"])
    assert out["artifact"]["encoding"] == "json"
    assert out["artifact"]["value"] == {"text": "hello from python", "count": 3}
    assert out["artifact"]["digest"].startswith("sha256:")
