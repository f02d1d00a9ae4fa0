"""The conformance vectors run through the R package (``tests/conformance/runner_r.R``).

For each vector the R runner generates an R flow, runs it with ``Rscript flow.R run`` in a
fresh project (a private daemon), reads the run back through the R client and checks it
against ``expect``. The observation it wrote is then checked again with the Python runner's
``check``, so both languages are held to one set of rules.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from r_support import REPO, RSetup, r_setup, stop_daemon

from tests.conformance import runner_python

VECTORS = sorted((REPO / "tests" / "conformance" / "vectors").glob("*.json"))
RUNNER = REPO / "tests" / "conformance" / "runner_r.R"


@pytest.fixture(scope="module")
def r(tmp_path_factory: pytest.TempPathFactory) -> RSetup:
    """R with the package installed in a private library."""
    return r_setup(tmp_path_factory)


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in VECTORS])
def test_generated_r_flow_parses(path: Path, r: RSetup, tmp_path: Path) -> None:
    """The R runner generates a flow that R parses and that loads as a polyflow flow."""
    flow_file = tmp_path / f"{path.stem}_flow.R"
    proc = subprocess.run(
        [r.rscript, str(RUNNER), "generate", str(path), "-o", str(flow_file)],
        env=r.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    expression = (
        f"flow <- polyflow::pf_flow_from_file('{flow_file}'); "
        "cat(flow$name, length(flow$steps), '\\n')"
    )
    loaded = subprocess.run(
        [r.rscript, "-e", expression],
        env=r.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    vector = runner_python.load_vector(path)
    name = runner_python.flow_class_name(vector["name"])
    assert loaded.stdout.split() == [name, str(len(vector["steps"]))]


@pytest.mark.slow
@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in VECTORS])
def test_vector_runs_through_r(path: Path, r: RSetup, tmp_path: Path) -> None:
    """The R flow of the vector runs and the daemon holds the expected state."""
    project = tmp_path / "project"
    observation = tmp_path / "observation.json"
    try:
        proc = subprocess.run(
            [r.rscript, str(RUNNER), "run", str(path), "--project", str(project),
             "--observation", str(observation)],
            cwd=tmp_path,
            env=r.env(),
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )  # fmt: skip
    finally:
        stop_daemon(project / ".polyflow")
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    data = json.loads(observation.read_text(encoding="utf-8"))
    exit_code = data.pop("exit_code")
    problems = runner_python.check(runner_python.load_vector(path), data, exit_code)
    assert not problems, "\n".join(problems)
