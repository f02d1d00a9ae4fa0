"""``Rscript flow.R tag|dump``: the R command line's ``tag`` and ``dump`` against a real daemon.

An R flow runs; its tags are changed from R and read back through the Python client (and
the other way round); R's ``tag list`` prints exactly what Python's prints for the same runs
(a Python flow of the same name reads them); ``dump`` prints R values one line each, and
``dump --file`` writes an .rds file that ``readRDS`` reads back.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from r_support import RSetup, r_setup

if TYPE_CHECKING:
    from tests.integration.conftest import FlowProject

pytestmark = pytest.mark.slow

OTHER_USER = "someone-else"

R_FLOW = """
library(polyflow)

flow <- pf_flow("TagDumpFlow") |>
  pf_step("start", function(self) {
    self$greeting <- "hi there"
    self$n <- 42
    self$df <- data.frame(a = 1:3, b = c("x", "y", "z"))
    self$big <- strrep("x", 5000)
  }, next_step = "end") |>
  pf_step("end", function(self) self$total <- self$n + 1)

pf_main(flow)
"""

PY_FLOW = '''
"""A Python flow named as the R flow, so that Python's ``tag`` reads the R flow's runs."""

from polyflow import FlowSpec, step


class TagDumpFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    TagDumpFlow()
'''


@dataclass
class RProject:
    """A project folder with the R flow and its Python namesake, and R to run them."""

    project: FlowProject
    r: RSetup

    def rscript(
        self, *args: str, user: str = "tester", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``Rscript tag_dump.R <args>`` in the project."""
        env = self.r.env(self.project.path)
        env["POLYFLOW_USER"] = user
        proc = subprocess.run(
            [self.r.rscript, "tag_dump.R", *args],
            cwd=self.project.path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check:
            assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def python(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``python tag_dump.py <args>``: the Python CLI on the same flow name."""
        result = self.project.run_flow(str(self.project.path / "tag_dump.py"), *args)
        assert result.returncode == 0, result.describe()
        return subprocess.CompletedProcess(result.args, 0, result.stdout, result.stderr)

    def run(self, *args: str, user: str = "tester") -> str:
        """Run the R flow; return its run id."""
        id_file = self.project.run_id_file()
        self.rscript("run", "--run-id-file", str(id_file), *args, user=user)
        return id_file.read_text().strip()

    def user_tags(self, run_id: str) -> set[str]:
        """A run's user tags, read by the Python client."""
        from polyflow import Run

        with self.project.client_env():
            return set(Run(f"TagDumpFlow/{run_id}", _namespace_check=False).user_tags)


@pytest.fixture(scope="module")
def rp(shared_project: FlowProject, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RProject]:
    """A project of this module's own (its own daemon), so that tag listings see only its
    runs."""
    r = r_setup(tmp_path_factory)
    project = type(shared_project)(tmp_path_factory.mktemp("r-cli-tag-dump") / "project")
    (project.path / "tag_dump.R").write_text(R_FLOW, encoding="utf-8")
    (project.path / "tag_dump.py").write_text(PY_FLOW, encoding="utf-8")
    try:
        yield RProject(project, r)
    finally:
        project.stop_daemon()


@pytest.fixture(scope="module")
def run_id(rp: RProject) -> str:
    """A run of the R flow, tagged "first" when it started."""
    return rp.run("--tag", "first")


def test_tag_add_in_r_is_seen_by_the_python_client(rp: RProject, run_id: str) -> None:
    pathspec = f"TagDumpFlow/{run_id}"
    added = rp.rscript("tag", "add", "--run-id", run_id, "foo")
    lines = added.stdout.splitlines()
    assert lines[:3] == ["Operation successful. New tags:", pathspec, "    user tags:   first, foo"]
    assert lines[3].startswith("    system tags: ") and "user:tester" in lines[3]
    assert rp.user_tags(run_id) == {"first", "foo"}

    from polyflow import Flow, namespace

    with rp.project.client_env():
        namespace(None)
        assert run_id in [run.id for run in Flow("TagDumpFlow").runs("foo")]

    quiet = rp.rscript("--quiet", "tag", "replace", "--run-id", run_id, "--remove", "foo",
                       "--add", "bar")  # fmt: skip
    assert re.fullmatch(rf"{pathspec} ; [^;]*user:tester[^;]* ; bar,first\n", quiet.stdout)
    assert rp.user_tags(run_id) == {"first", "bar"}
    rp.rscript("tag", "remove", "--run-id", run_id, "bar")
    assert rp.user_tags(run_id) == {"first"}

    refused = rp.rscript("tag", "remove", "--run-id", run_id, "user:tester", check=False)
    assert refused.returncode == 1
    assert "SYSTEM_TAG_IMMUTABLE" in refused.stderr
    latest = rp.rscript("tag", "add", "foo", check=False)
    assert latest.returncode == 1
    assert "The latest run of TagDumpFlow in namespace user:tester is " in latest.stderr
    assert rp.user_tags(run_id) == {"first"}


def test_tag_list_in_r_prints_what_python_prints(rp: RProject, run_id: str) -> None:
    theirs = rp.run("--tag", "theirs", "--tag", "shared", user=OTHER_USER)
    rp.python("tag", "add", "--run-id", run_id, "shared", "from-python")  # Python tags, R lists
    cases = [
        (),
        ("--all",),
        ("--my-runs",),
        ("--hide-system-tags",),
        ("--group-by-run",),
        ("--group-by-tag",),
        ("--group-by-tag", "--hide-system-tags"),
        ("--flat",),
        ("--run-id", theirs),
        (run_id,),
    ]
    for options in cases:
        for quiet in ((), ("--quiet",)):
            args = (*quiet, "tag", "list", *options)
            r_out = rp.rscript(*args).stdout
            assert r_out and r_out == rp.python(*args).stdout, args
    listed = rp.rscript("tag", "list", "--group-by-tag", "--hide-system-tags").stdout
    assert f"user tag 'shared': TagDumpFlow/{theirs}, TagDumpFlow/{run_id}" in listed.splitlines()
    assert (
        f"system tag 'user:{OTHER_USER}': TagDumpFlow/{theirs}"
        in rp.rscript("tag", "list", "--group-by-tag").stdout.splitlines()
    )
    rp.rscript("tag", "remove", "--run-id", run_id, "shared", "from-python")


def test_dump_prints_r_values_one_line_each(rp: RProject, run_id: str) -> None:
    from polyflow import Run

    with rp.project.client_env():
        task = Run(f"TagDumpFlow/{run_id}", _namespace_check=False)["start"].task
        task_id = task.id
        df_size = task["df"].size
    expected = [
        "big [size: 5002 type: character] = "
        "<not loaded: 5002 bytes stored, over --max-value-size 1000>",
        f"df [size: {df_size} type: data.frame] = structure(list(a = 1:3, "
        'b = c("x", "y", "z")), class = "data.frame", row.names = c(NA, -3L))',
        'greeting [size: 10 type: character] = "hi there"',
        "n [size: 4 type: numeric] = 42",
    ]
    for pathspec in (f"{run_id}/start", f"{run_id}/start/{task_id}", f"TagDumpFlow/{run_id}/start"):
        dumped = rp.rscript("dump", pathspec)
        assert dumped.stdout.splitlines() == expected, dumped.stderr
        assert f"Artifacts of task TagDumpFlow/{run_id}/start/{task_id}:" in dumped.stderr
    end = rp.rscript("dump", f"{run_id}/end", "--include", "total")
    assert end.stdout == "total [size: 4 type: numeric] = 43\n"
    names = rp.rscript("dump", f"{run_id}/start", "--max-value-size", "0").stdout.splitlines()
    assert all(line.endswith("= <not loaded: --max-value-size is 0>") for line in names)
    malformed = rp.rscript("dump", "nope", check=False)
    assert malformed.returncode == 2 and "is not run_id/step_name" in malformed.stderr
    missing = rp.rscript("dump", "99999/start", check=False)
    assert missing.returncode == 1 and "'TagDumpFlow/99999'" in missing.stderr


def test_dump_file_is_an_rds_that_readrds_reads(rp: RProject, run_id: str) -> None:
    out = rp.project.path / "artifacts.rds"
    written = rp.rscript("--quiet", "dump", f"{run_id}/start", "--file", str(out))
    assert written.stdout == "" and written.stderr == ""
    from polyflow import Run

    with rp.project.client_env():
        task_id = Run(f"TagDumpFlow/{run_id}", _namespace_check=False)["start"].task.id
    key = f"{run_id}/start/{task_id}"
    code = textwrap.dedent(
        f"""
        x <- readRDS({json.dumps(str(out))})
        task <- x[[{json.dumps(key)}]]
        cat(jsonlite::toJSON(list(
          keys = I(names(x)), names = names(task), greeting = task$greeting, n = task$n,
          big = identical(task$big, strrep("x", 5000)),
          df = identical(task$df, data.frame(a = 1:3, b = c("x", "y", "z")))
        ), auto_unbox = TRUE), "\\n")
        """
    )
    proc = subprocess.run(
        [rp.r.rscript, "-e", code],
        cwd=rp.project.path,
        env=rp.r.env(rp.project.path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found == {
        "keys": [key],
        "names": ["big", "df", "greeting", "n"],
        "greeting": "hi there",
        "n": 42,
        "big": True,  # --file writes every value uncut
        "df": True,
    }
    loud = rp.rscript("dump", f"{run_id}/start", "--file", str(out), "--include", "n")
    assert f"Artifacts written to {out}" in loud.stderr
