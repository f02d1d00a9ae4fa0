"""``python flow.py run``: every graph shape end to end, progress output, options, failures."""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import FlowProject

pytestmark = pytest.mark.slow

_TS = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}"


def _data(project: FlowProject, pathspec: str, user: str = "tester") -> Any:
    """The end task's artifacts of a run, all loaded (values are read lazily, so they must
    be read while the client points at the project)."""
    from polyflow import Run

    with project.client_env(user):
        end = Run(pathspec).end_task
        assert end is not None, f"{pathspec} has no end task"
        return SimpleNamespace(**{artifact.id: artifact.data for artifact in end})


class TestHello:
    def test_progress_lines_logs_and_done(self, shared_project: FlowProject) -> None:
        result = shared_project.run_flow("hello.py", "run").assert_ok()
        run_id = result.run_id
        assert run_id, result.describe()
        err, out = result.stderr, result.stdout
        assert "Validating your flow..." in err
        assert "The graph looks good!" in err
        for step in ("start", "hello", "end"):
            pathspec = rf"HelloFlow/{run_id}/{step}/\d+"
            assert re.search(rf"^{_TS} \[{pathspec}\] Task is starting\.$", err, re.M), err
            assert re.search(rf"^{_TS} \[{pathspec}\] Task finished successfully\.$", err, re.M), (
                err
            )
        # Task stdout goes to stdout, task stderr to stderr, each line prefixed.
        assert re.search(rf"^{_TS} \[HelloFlow/{run_id}/hello/\d+\] Polyflow says hi$", out, re.M)
        assert re.search(
            rf"^{_TS} \[HelloFlow/{run_id}/hello/\d+\] a warning on stderr$", err, re.M
        )
        assert re.search(rf"^{_TS} Done!$", err, re.M)
        assert _data(shared_project, f"HelloFlow/{run_id}").total == 6

    def test_quiet_keeps_only_task_output(self, shared_project: FlowProject) -> None:
        result = shared_project.run_flow("hello.py", "--quiet", "run").assert_ok()
        assert "Polyflow says hi" in result.stdout
        assert "Task is starting" not in result.stderr
        assert "Done!" not in result.stderr

    def test_run_id_file_is_written(self, shared_project: FlowProject) -> None:
        id_file = shared_project.run_id_file()
        result = shared_project.run_flow("hello.py", "run", "--run-id-file", str(id_file))
        result.assert_ok()
        assert id_file.read_text().strip() == result.run_id


class TestGraphShapes:
    def test_branch_and_merge(self, shared_project: FlowProject) -> None:
        run_id = shared_project.run_flow_ok("branch.py")
        data = _data(shared_project, f"BranchFlow/{run_id}")
        assert (data.from_a, data.from_b, data.x) == (1, 2, 2)
        assert data.shared == "same everywhere"
        assert (data.only_a, data.only_b) == ("from a", "from b")

    @pytest.mark.parametrize(("mode", "merged"), [("exclude", ["y", "z"]), ("include", ["y"])])
    def test_merge_include_exclude(
        self, shared_project: FlowProject, mode: str, merged: list[str]
    ) -> None:
        run_id = shared_project.run_flow_ok("merge_cases.py", "--mode", mode)
        assert _data(shared_project, f"MergeCasesFlow/{run_id}").merged == merged

    @pytest.mark.parametrize(
        ("mode", "error", "names"),
        [
            ("conflict", "UnhandledInMergeArtifactsError", "x"),
            ("missing", "MissingInMergeArtifactsError", "nowhere"),
        ],
    )
    def test_merge_errors(
        self, shared_project: FlowProject, mode: str, error: str, names: str
    ) -> None:
        result = shared_project.run_flow("merge_cases.py", "run", "--mode", mode)
        assert result.returncode == 1, result.describe()
        assert error in result.stderr, result.describe()
        assert names in result.stderr
        assert "Task failed" in result.stderr

    def test_metaflow_exception_names_catch_polyflow_errors(
        self, shared_project: FlowProject
    ) -> None:
        """A flow catching errors by their ``metaflow.exception`` names, imported from
        ``polyflow.exception``: they are Polyflow's classes under Metaflow's names."""
        from polyflow import Run
        from polyflow.exception import MetaflowException, MetaflowNotFound

        run_id = shared_project.run_flow_ok("ported_exceptions.py")
        data = _data(shared_project, f"PortedExceptionsFlow/{run_id}")
        assert data.caught == [("unhandled", True), ("missing", True)]
        assert data.y == "same"
        assert data.client_caught == "MetaflowNotFound"
        with shared_project.client_env(), pytest.raises(MetaflowNotFound) as caught:
            Run(f"PortedExceptionsFlow/{int(run_id) + 1000}")
        assert isinstance(caught.value, MetaflowException)

    def test_foreach(self, shared_project: FlowProject) -> None:
        run_id = shared_project.run_flow_ok("foreach.py")
        data = _data(shared_project, f"ForeachFlow/{run_id}")
        assert data.results == ["APPLE", "BANANA", "CHERRY"]
        assert data.positions == [0, 1, 2]
        from polyflow import Step

        with shared_project.client_env():
            tasks = list(Step(f"ForeachFlow/{run_id}/process"))
            assert len(tasks) == 3
            by_index = {t.index: t for t in tasks}
            assert sorted(by_index) == [0, 1, 2]
            assert by_index[1].data.item == "banana"
            assert by_index[1].data.stack == [(1, 3, "banana")]

    def test_nested_foreach(self, shared_project: FlowProject) -> None:
        run_id = shared_project.run_flow_ok("nested_foreach.py")
        data = _data(shared_project, f"NestedForeachFlow/{run_id}")
        assert data.all_pairs == ["a1", "a2", "a3", "b1", "b2", "b3"]
        from polyflow import Step

        with shared_project.client_env():
            stacks = sorted(t.data.stack for t in Step(f"NestedForeachFlow/{run_id}/inner"))
        assert stacks == [[(i, 2), (j, 3)] for i in range(2) for j in range(3)]

    @pytest.mark.parametrize("route", ["left", "right"])
    def test_switch(self, shared_project: FlowProject, route: str) -> None:
        run_id = shared_project.run_flow_ok("switch.py", "--route", route)
        assert _data(shared_project, f"SwitchFlow/{run_id}").went == route
        from polyflow import Run

        with shared_project.client_env():
            steps = {s.id for s in Run(f"SwitchFlow/{run_id}")}
        other = "right" if route == "left" else "left"
        assert route in steps and other not in steps

    def test_switch_value_without_case_fails(self, shared_project: FlowProject) -> None:
        result = shared_project.run_flow("switch.py", "run", "--route", "up")
        assert result.returncode == 1, result.describe()
        assert "matches none of the switch cases" in result.stderr

    def test_recursion_counts_to_three(self, shared_project: FlowProject) -> None:
        result = shared_project.run_flow("recursion.py", "run").assert_ok()
        assert result.stdout.count("iteration ") == 3
        assert _data(shared_project, f"RecursionFlow/{result.run_id}").counter == 3
        from polyflow import Step

        with shared_project.client_env():
            assert len(list(Step(f"RecursionFlow/{result.run_id}/loop"))) == 3

    def test_marked_start_and_end(self, shared_project: FlowProject) -> None:
        run_id = shared_project.run_flow_ok("marked_steps.py")
        from polyflow import Run

        with shared_project.client_env():
            run = Run(f"MarkedStepsFlow/{run_id}")
            assert run.successful
            assert run.end_task is not None and run.end_task.parent.id == "finish"
            assert run.data.value == 20

    def test_one_step_flow(self, shared_project: FlowProject) -> None:
        result = shared_project.run_flow("one_step.py", "run").assert_ok()
        assert "the only step" in result.stdout
        assert _data(shared_project, f"OneStepFlow/{result.run_id}").answer == 42

    def test_inherited_steps_parameter_and_constant(self, shared_project: FlowProject) -> None:
        run_id = shared_project.run_flow_ok("inherit.py", "--scale", "10")
        data = _data(shared_project, f"InheritFlow/{run_id}")
        assert data.result == 30
        assert data.constant_seen == "from the base"


class TestFailures:
    def test_failing_task_prints_traceback_and_exits_1(self, shared_project: FlowProject) -> None:
        result = shared_project.run_flow("failing.py", "run")
        assert result.returncode == 1, result.describe()
        err = result.stderr
        run_id = result.run_id
        prefix = rf"{_TS} \[FailingFlow/{run_id}/explode/\d+\]"
        assert re.search(rf"^{prefix} Task failed", err, re.M), err
        assert re.search(rf"^{prefix} Traceback \(most recent call last\):", err, re.M), err
        assert re.search(rf"^{prefix} ValueError: boom: something went wrong", err, re.M), err
        assert "Workflow failed" in err
        assert "Done!" not in err
        from polyflow import Run, Step

        with shared_project.client_env():
            run = Run(f"FailingFlow/{run_id}")
            assert run.finished and not run.successful
            assert run.end_task is None and run.data is None
            task = Step(f"FailingFlow/{run_id}/explode").task
            assert task is not None and task.finished and not task.successful
            assert task.exception is not None
            assert "ValueError" in task.exception.type
            assert "boom" in task.exception.message
            assert "Traceback" in task.exception.traceback
            assert "about to fail" in task.stdout

    def test_transition_not_in_static_graph_fails(self, shared_project: FlowProject) -> None:
        result = shared_project.run_flow("runtime_mismatch.py", "run")
        assert result.returncode == 1, result.describe()
        # The message must say which step went where, against what the graph allows.
        assert re.search(r"start", result.stderr)
        assert re.search(r"\bb\b", result.stderr)
        assert "Task failed" in result.stderr

    def test_class_constant_is_read_only(self, shared_project: FlowProject) -> None:
        result = shared_project.run_flow("constant_write.py", "run")
        assert result.returncode == 1, result.describe()
        assert "LIMIT" in result.stderr and "read-only" in result.stderr

    def test_max_num_splits_exceeded_names_both_numbers(self, shared_project: FlowProject) -> None:
        result = shared_project.run_flow(
            "wide_foreach.py", "run", "--width", "7", "--max-num-splits", "5"
        )
        assert result.returncode == 1, result.describe()
        assert re.search(r"\b7\b", result.stderr) and re.search(r"\b5\b", result.stderr)
        assert "max-num-splits" in result.stderr

    def test_ctrl_c_cancels_the_run(self, shared_project: FlowProject) -> None:
        id_file = shared_project.run_id_file()
        proc = shared_project.start_flow(
            "slow.py", "run", "--seconds", "60", "--run-id-file", str(id_file)
        )
        try:
            deadline = time.monotonic() + 60
            while not id_file.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert id_file.exists(), "the run never started"
            time.sleep(1.0)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 1, err
        assert "cancel" in err.lower()
        from polyflow import Run

        run_id = id_file.read_text().strip()
        with shared_project.client_env():
            run = Run(f"SlowFlow/{run_id}")
            deadline = time.monotonic() + 30
            while not run.finished and time.monotonic() < deadline:
                time.sleep(0.2)
            assert run.finished and not run.successful


class TestRunOptions:
    def test_tags(self, shared_project: FlowProject) -> None:
        run_id = shared_project.run_flow_ok("hello.py", "--tag", "alpha", "--tag", "beta")
        from polyflow import Flow, Run

        with shared_project.client_env():
            run = Run(f"HelloFlow/{run_id}")
            assert {"alpha", "beta"} <= run.user_tags
            assert {"alpha", "beta"} <= run.tags
            assert "user:tester" in run.system_tags
            assert "runtime:dev" in run.system_tags
            assert any(t.startswith("python_version:") for t in run.system_tags)
            assert any(t.startswith("polyflow_version:") for t in run.system_tags)
            tagged = [r.id for r in Flow("HelloFlow").runs("alpha", "beta")]
            assert run_id in tagged
            assert all("alpha" in r.tags for r in Flow("HelloFlow").runs("alpha"))

    def test_namespace_option_reaches_tasks(self, shared_project: FlowProject) -> None:
        shared_project.run_flow_ok("hello.py")
        run_id = shared_project.run_flow_ok("client_in_task.py")
        data = _data(shared_project, f"ClientInTaskFlow/{run_id}")
        assert data.namespace_seen == "user:tester"
        assert data.hello_total == 6
        run_id = shared_project.run_flow_ok("client_in_task.py", "--namespace", "user:nobody")
        data = _data(shared_project, f"ClientInTaskFlow/{run_id}")
        assert data.namespace_seen == "user:nobody"
        assert data.hello_total is None  # no HelloFlow run is in that namespace

    def test_max_workers_one_runs_tasks_one_at_a_time(self, shared_project: FlowProject) -> None:
        run_id = shared_project.run_flow_ok(
            "wide_foreach.py", "--width", "3", "--pause", "0.5", "--max-workers", "1"
        )
        spans = _data(shared_project, f"WideForeachFlow/{run_id}").spans
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, spans

    def test_two_runs_at_once(self, shared_project: FlowProject) -> None:
        files = [shared_project.run_id_file() for _ in range(3)]
        procs = [
            shared_project.start_flow(
                "slow.py", "run", "--seconds", "1", "--run-id-file", str(files[0])
            ),
            shared_project.start_flow(
                "slow.py", "run", "--seconds", "1", "--run-id-file", str(files[1])
            ),
            shared_project.start_flow("hello.py", "run", "--run-id-file", str(files[2])),
        ]
        outputs = [proc.communicate(timeout=180) for proc in procs]
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, out + err
        ids = [f.read_text().strip() for f in files]
        assert ids[0] != ids[1]
        from polyflow import Run

        with shared_project.client_env():
            assert Run(f"SlowFlow/{ids[0]}").successful
            assert Run(f"SlowFlow/{ids[1]}").successful
            assert Run(f"HelloFlow/{ids[2]}").successful

    def test_bad_run_option_is_a_usage_error(self, shared_project: FlowProject) -> None:
        result = shared_project.run_flow("hello.py", "run", "--max-workers", "0")
        assert result.returncode == 2, result.describe()
        assert "--max-workers" in result.stderr


def test_daemon_killed_during_a_run_fails_the_run(fresh_project: FlowProject) -> None:
    id_file = fresh_project.run_id_file()
    proc = fresh_project.start_flow(
        "slow.py", "run", "--seconds", "3", "--run-id-file", str(id_file)
    )
    try:
        deadline = time.monotonic() + 60
        while not id_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = fresh_project.daemon_pid()
        assert pid is not None and id_file.exists()
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "Workflow failed" in err
