"""Flows that mix R and Python, and values converted between the two by the core.

- The tutorial flow (``r-package/inst/tutorials/05-mixed-lm``): Python makes a pandas
  DataFrame, an R step fits ``lm`` and stores its coefficients, Python reads them as floats.
- An R flow with a Python step: values of every supported kind cross both ways (data frames
  with NA, matrices, named vectors, factors, nested lists, NULL), read back by both clients.
- Values without a counterpart fail with the reason ``CONVERSION_UNSUPPORTED``.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from r_support import R_PACKAGE, RSetup, r_setup, stop_daemon

pytest.importorskip("rpy2", reason="rpy2 is needed where the core converts values")
pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def r(tmp_path_factory: pytest.TempPathFactory) -> RSetup:
    """R with the package installed in a private library."""
    return r_setup(tmp_path_factory)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A project folder whose daemon is stopped at the end."""
    folder = tmp_path / "project"
    folder.mkdir()
    try:
        yield folder
    finally:
        stop_daemon(folder / ".polyflow")


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _python(code: str, cwd: Path, env: dict[str, str]) -> object:
    """Run client code in a fresh interpreter and return the JSON it prints last."""
    proc = _run([sys.executable, "-c", textwrap.dedent(code)], cwd, env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _r(code: str, r: RSetup, cwd: Path, env: dict[str, str]) -> object:
    """Run client code in Rscript and return the JSON it prints last."""
    proc = _run([r.rscript, "-e", textwrap.dedent(code)], cwd, env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_tutorial_python_flow_with_an_r_lm_step(r: RSetup, project: Path) -> None:
    """Python prepares a DataFrame, R fits lm, Python reads the coefficients as floats."""
    tutorial = R_PACKAGE / "inst" / "tutorials" / "05-mixed-lm"
    for name in ("lm_flow.py", "fit.R"):
        shutil.copy(tutorial / name, project / name)
    env = r.env(project)
    proc = _run([sys.executable, "lm_flow.py", "run"], project, env)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "[LinearModelFlow/1/fit/2] Task finished successfully." in proc.stderr
    assert "intercept 1.2" in proc.stdout

    found = _python(
        """
        import json
        from polyflow import Flow, namespace
        namespace(None)
        run = Flow("LinearModelFlow").latest_run
        fit = run["fit"].task
        coefficients = fit.data.coefficients
        print(json.dumps({
            "types": sorted({type(v).__name__ for v in coefficients.values()}),
            "keys": sorted(coefficients), "slope": run.data.slope,
            "intercept": run.data.intercept, "encoding": fit["coefficients"].encoding,
            "r2": fit.data.r_squared,
        }))
        """,
        project,
        env,
    )
    assert isinstance(found, dict)
    assert found["types"] == ["float"]
    assert found["keys"] == ["(Intercept)", "x"]
    assert found["encoding"] == "rds"
    assert abs(found["slope"] - 2.0) < 0.1
    assert abs(found["intercept"] - 1.5) < 0.5
    assert 0.99 < found["r2"] <= 1.0

    # R reads the DataFrame Python wrote, as a data.frame.
    seen = _r(
        """
        library(polyflow)
        pf_namespace(NULL)
        df <- pf_data("LinearModelFlow/1/start/1", "data")
        cat(jsonlite::toJSON(list(class = class(df), rows = nrow(df), cols = names(df)),
                             auto_unbox = TRUE), "\\n")
        """,
        r,
        project,
        env,
    )
    assert seen == {"class": "data.frame", "rows": 50, "cols": ["x", "y"]}


R_FLOW = """
library(polyflow)

flow <- pf_flow("MixedValuesFlow") |>
  pf_parameter("scale", default = 2L) |>
  pf_step("start", function(self) {
    self$df <- data.frame(a = c(1.5, NA, 3), b = c("x", NA, "z"), n = c(1L, NA, 3L),
                          f = factor(c("u", "v", "u")), l = c(TRUE, NA, FALSE))
    self$m <- matrix(c(1, 2, 3, 4, 5, 6), nrow = 2)
    self$v <- c(1L, 2L, NA)
    self$named <- c(a = 1, b = 2)
    self$nested <- list(x = list(1L, "a", NULL), y = TRUE)
    self$nothing <- NULL
    self$model <- lm(y ~ x, data = data.frame(x = 1:5, y = c(2, 4, 6, 8, 11)))
  }, next_step = "py") |>
  pf_step("py", python = pf_python("py_step.py", "transform"), next_step = "end") |>
  pf_step("end", function(self) {
    stopifnot(
      identical(self$from_py, list(k = list(1L, 2.5, NULL), t = TRUE)),
      identical(dim(self$arr), c(2L, 3L)), identical(self$arr[2, 3], 5L),
      identical(self$tup, list(1L, "two")),
      identical(rownames(self$pdf), c("r1", "r2")), is.na(self$pdf$p[[2]]),
      is.na(self$pdf$q[[2]]), identical(self$df_back, self$df),
      identical(self$summary$df_dtypes$n, "Int32")
    )
    self$checked <- TRUE
  })

pf_main(flow)
"""

PY_STEP = """
import numpy as np
import pandas as pd


def transform(self):
    df = self.df
    self.summary = {
        "df_dtypes": {name: str(dtype) for name, dtype in df.dtypes.items()},
        "a_missing": bool(np.isnan(df["a"][1])),
        "b": [None if pd.isna(v) else v for v in df["b"]],
        "categories": list(df["f"].cat.categories),
        "m_shape": list(self.m.shape),
        "m": self.m.tolist(),
        "v": self.v,
        "named": self.named,
        "nested": self.nested,
        "nothing": self.nothing,
        "scale": self.scale,
    }
    self.from_py = {"k": [1, 2.5, None], "t": True}
    self.pdf = pd.DataFrame({"p": [1.0, np.nan], "q": ["a", None], "i": [1, 2]},
                            index=["r1", "r2"])
    self.arr = np.arange(6, dtype=np.int64).reshape(2, 3)
    self.tup = (1, "two")
    self.df_back = self.df
"""


@pytest.mark.slow
def test_r_flow_with_a_python_step_converts_values_both_ways(r: RSetup, project: Path) -> None:
    """Every supported kind of value crosses R -> Python -> R intact."""
    (project / "values_flow.R").write_text(R_FLOW, encoding="utf-8")
    (project / "py_step.py").write_text(PY_STEP, encoding="utf-8")
    env = r.env(project)
    proc = _run([r.rscript, "values_flow.R", "run"], project, env)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"

    summary = _python(
        """
        import json
        from polyflow import Run, namespace
        namespace(None)
        print(json.dumps(Run("MixedValuesFlow/1")["py"].task.data.summary))
        """,
        project,
        env,
    )
    assert summary == {
        "df_dtypes": {"a": "float64", "b": "str", "n": "Int32", "f": "category",
                      "l": "boolean"},
        "a_missing": True,
        "b": ["x", None, "z"],
        "categories": ["u", "v"],
        "m_shape": [2, 3],
        "m": [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]],
        "v": [1, 2, None],
        "named": {"a": 1.0, "b": 2.0},
        "nested": {"x": [1, "a", None], "y": True},
        "nothing": None,
        "scale": 2,
    }  # fmt: skip

    # Inherited R values the Python step never changed keep their R encoding.
    encodings = _python(
        """
        import json
        from polyflow import Task, namespace
        namespace(None)
        task = Task("MixedValuesFlow/1/py/2")
        print(json.dumps({name: task[name].encoding for name in ("df", "m", "model", "summary")}))
        """,
        project,
        env,
    )
    assert encodings == {"df": "rds", "m": "rds", "model": "rds", "summary": "json"}

    checked = _r(
        """
        library(polyflow)
        pf_namespace(NULL)
        cat(jsonlite::toJSON(pf_data("MixedValuesFlow/1", "checked"), auto_unbox = TRUE), "\\n")
        """,
        r,
        project,
        env,
    )
    assert checked is True


@pytest.mark.slow
def test_values_without_a_counterpart_fail_with_a_reason(r: RSetup, project: Path) -> None:
    """An R model object cannot become a Python value, nor a Python set an R one."""
    (project / "values_flow.R").write_text(R_FLOW, encoding="utf-8")
    (project / "py_step.py").write_text(PY_STEP, encoding="utf-8")
    env = r.env(project)
    assert _run([r.rscript, "values_flow.R", "run"], project, env).returncode == 0
    found = _python(
        """
        import json
        from polyflow import Task, namespace
        from polyflow.exceptions import PolyflowError
        namespace(None)
        try:
            Task("MixedValuesFlow/1/start/1").data.model
        except PolyflowError as error:
            print(json.dumps({"type": type(error).__name__, "reason": error.reason,
                              "message": str(error), "meta": error.metadata}))
        """,
        project,
        env,
    )
    assert isinstance(found, dict)
    assert found["reason"] == "CONVERSION_UNSUPPORTED"
    assert "'lm'" in found["message"]
    assert found["meta"]["type_name"] == "lm"

    # Python side: a value with no R counterpart.
    (project / "set_flow.py").write_text(
        textwrap.dedent(
            """
            from polyflow import FlowSpec, step

            class SetFlow(FlowSpec):
                @step
                def start(self):
                    self.things = {1, 2}
                    self.fine = [1.5, math_pi()]
                    self.next(self.end)

                @step
                def end(self):
                    pass

            def math_pi():
                return 3.14159

            if __name__ == "__main__":
                SetFlow()
            """
        ),
        encoding="utf-8",
    )
    assert _run([sys.executable, "set_flow.py", "run"], project, env).returncode == 0
    seen = _r(
        """
        library(polyflow)
        pf_namespace(NULL)
        task <- pf_list_tasks(pf_get_step(pf_latest_run("SetFlow"), "start"))[[1]]
        fine <- pf_data(task, "fine")
        err <- tryCatch(pf_data(task, "things"),
                        polyflow_error_conversion = function(e) conditionMessage(e))
        cat(jsonlite::toJSON(list(fine = fine, err = err), auto_unbox = TRUE, digits = NA), "\\n")
        """,
        r,
        project,
        env,
    )
    assert isinstance(seen, dict)
    assert seen["fine"] == [1.5, 3.14159]
    assert "builtins.set" in seen["err"]
    assert not math.isnan(seen["fine"][0])
