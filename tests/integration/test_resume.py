"""``python flow.py resume`` end to end: a real daemon, real workers, the flow CLI and the
client API. Successful tasks of the origin run are cloned by reference (no blob is written
for them), the rest runs, parameters come from the origin run; ``resume STEP``,
``--origin-run-id``, foreach splits, nested foreach, a switch loop, a successful origin,
``--clone-only``, and a run whose daemon was killed with SIGKILL.

Failures are steered through the environment (``flows/_resume_control.py``): the failing run
gets ``RESUME_FAIL`` and the resume does not.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import FlowProject

pytestmark = pytest.mark.slow

CLONING = "Cloning results of a previously successful task."


def _blobs(project: FlowProject) -> set[str]:
    """The digests of every blob file in the project's store."""
    return {path.name for path in (project.root / "store" / "blobs").glob("*/*")}


def _digests(task: Any) -> dict[str, str]:
    """Artifact name to the hex of its digest."""
    return {artifact.id: artifact.digest.removeprefix("sha256:") for artifact in task}


def _run_failing(
    project: FlowProject, flow: str, *args: str, env: dict[str, str] | None = None
) -> str:
    """Run a flow that must fail; return its run id."""
    id_file = project.run_id_file()
    result = project.run_flow(flow, "run", "--run-id-file", str(id_file), *args, env=env)
    assert result.returncode == 1, result.describe()
    assert "Workflow failed" in result.stderr, result.describe()
    return id_file.read_text().strip()


def _resume(
    project: FlowProject, flow: str, *args: str, env: dict[str, str] | None = None
) -> tuple[str, str]:
    """``resume`` that must succeed; returns the new run's id and the command's output
    (standard output, where task output goes, then standard error)."""
    id_file = project.run_id_file()
    result = project.run_flow(flow, "resume", "--run-id-file", str(id_file), *args, env=env)
    result.assert_ok()
    return id_file.read_text().strip(), result.output


def _tasks(run: Any) -> dict[str, list[Any]]:
    """Step name to its tasks, by task id."""
    return {step.id: sorted(step, key=lambda task: int(task.id)) for step in run}


def _markers(tmp_path: Path) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir(exist_ok=True)
    return folder


# --- linear -------------------------------------------------------------------------------------


def test_linear_resume_clones_the_first_steps_and_reruns_the_rest(
    shared_project: FlowProject,
) -> None:
    origin = _run_failing(
        shared_project, "resume_linear.py", "--alpha", "5", env={"RESUME_FAIL": "four"}
    )
    before = _blobs(shared_project)
    resumed, err = _resume(shared_project, "resume_linear.py")  # the latest run by default
    after = _blobs(shared_project)
    assert f"Resuming run ResumeLinearFlow/{origin}," in err, err
    assert err.count(CLONING) == 3, err
    for step in ("start", "two", "three"):
        assert f"[ResumeLinearFlow/{resumed}/{step}/" in err
    assert "four sees origin run " + origin in err

    from polyflow import Run

    with shared_project.client_env():
        run = Run(f"ResumeLinearFlow/{resumed}")
        assert run.successful
        assert run.origin_pathspec == f"ResumeLinearFlow/{origin}"
        assert Run(f"ResumeLinearFlow/{origin}").origin_pathspec is None
        old, new = _tasks(Run(f"ResumeLinearFlow/{origin}")), _tasks(run)
        for step in ("start", "two", "three"):
            clone, source = new[step][0], old[step][0]
            assert clone.origin_pathspec == source.pathspec
            assert clone.metadata_dict["origin-task-id"] == source.id
            assert clone.metadata_dict["origin-run-id"] == origin
            assert _digests(clone) == _digests(source)
            assert clone.successful
        rerun_digests: set[str] = set()
        for step in ("four", "end"):
            task = new[step][0]
            assert task.origin_pathspec is None
            assert task.metadata_dict["origin-run-id"] == origin
            rerun_digests |= set(_digests(task).values())
        # A clone's logs are its origin's (hard links: no bytes copied).
        assert new["two"][0].stdout == old["two"][0].stdout == f"two ran in run {origin}\n"
        four = new["four"][0]
        # Parameters come from the origin run; current.origin_run_id is set in re-run tasks.
        assert four.data.alpha_in_four == 5 and new["start"][0].data.alpha_in_start == 5
        assert four.data.origin_in_four == origin
        assert run.data.origin_in_end == origin
        assert four["payload_three"].digest == old["three"][0]["payload_three"].digest
        cloned_digests = {
            d for s in ("start", "two", "three") for d in _digests(new[s][0]).values()
        }
    # Cloning wrote no blob: every new blob is an artifact of a re-run task, new to the store.
    assert cloned_digests <= before
    assert after - before == rerun_digests - before
    assert len(after - before) >= 1  # payload_four is fresh random bytes


def test_resume_step_reruns_it_and_every_step_after_it(shared_project: FlowProject) -> None:
    origin = shared_project.run_flow_ok("resume_linear.py")
    resumed, err = _resume(shared_project, "resume_linear.py", "three", "--origin-run-id", origin)
    assert err.count(CLONING) == 2, err
    assert "Re-running step three and every step after it." in err

    from polyflow import Run

    with shared_project.client_env():
        old = _tasks(Run(f"ResumeLinearFlow/{origin}"))
        new = _tasks(Run(f"ResumeLinearFlow/{resumed}"))
        # three succeeded in the origin run, but it is re-run with what follows it.
        assert {s for s in new if new[s][0].origin_pathspec} == {"start", "two"}
        three = new["three"][0]
        assert three["payload_three"].digest != old["three"][0]["payload_three"].digest
        assert three["payload_two"].digest == old["two"][0]["payload_two"].digest


def test_resume_of_a_successful_run_clones_everything(shared_project: FlowProject) -> None:
    origin = shared_project.run_flow_ok("resume_linear.py", "--alpha", "3")
    before = _blobs(shared_project)
    resumed, err = _resume(shared_project, "resume_linear.py", "--origin-run-id", origin)
    assert err.count(CLONING) == 5, err
    assert "Task is starting" not in err
    assert _blobs(shared_project) == before

    from polyflow import Run

    with shared_project.client_env():
        run = Run(f"ResumeLinearFlow/{resumed}")
        assert run.successful and run.data.alpha_in_four == 3
        assert run.end_task is not None
        assert run.end_task.origin_pathspec is not None
        assert run.end_task.origin_pathspec.startswith(f"ResumeLinearFlow/{origin}/end/")


def test_origin_run_id_and_the_default_origin(shared_project: FlowProject) -> None:
    older = _run_failing(
        shared_project, "resume_linear.py", "--alpha", "2", env={"RESUME_FAIL": "four"}
    )
    newer = _run_failing(
        shared_project, "resume_linear.py", "--alpha", "3", env={"RESUME_FAIL": "three"}
    )
    picked, err = _resume(shared_project, "resume_linear.py", "--origin-run-id", older)
    assert f"Resuming run ResumeLinearFlow/{older}." in err and err.count(CLONING) == 3

    from polyflow import Run

    with shared_project.client_env():
        assert Run(f"ResumeLinearFlow/{picked}").data.alpha_in_four == 2
    # Without --origin-run-id: the latest run started with `run`, never a resume (Metaflow's
    # rule), so a failed resume is not what the next resume continues.
    failed_resume = shared_project.run_flow(
        "resume_linear.py", "resume", env={"RESUME_FAIL": "four"}
    )
    assert failed_resume.returncode == 1, failed_resume.describe()
    assert f"Resuming run ResumeLinearFlow/{newer}," in failed_resume.stderr
    again, err = _resume(shared_project, "resume_linear.py")
    assert f"Resuming run ResumeLinearFlow/{newer}," in err
    assert err.count(CLONING) == 2, err  # start and two: three failed in `newer`
    with shared_project.client_env():
        run = Run(f"ResumeLinearFlow/{again}")
        assert run.origin_pathspec == f"ResumeLinearFlow/{newer}"
        assert run.data.alpha_in_four == 3


def test_parameters_cannot_be_given_to_resume(shared_project: FlowProject) -> None:
    result = shared_project.run_flow("resume_linear.py", "resume", "--alpha", "9")
    assert result.returncode == 2, result.describe()
    assert "parameters cannot be changed on resume (--alpha given)" in result.stderr
    assert "Workflow starting" not in result.stderr


def test_resume_errors(shared_project: FlowProject) -> None:
    unknown = shared_project.run_flow("resume_linear.py", "resume", "--origin-run-id", "999999")
    assert unknown.returncode == 1, unknown.describe()
    assert "ResumeLinearFlow/999999 does not exist" in unknown.stderr
    step = shared_project.run_flow("resume_linear.py", "resume", "nope")
    assert step.returncode == 2, step.describe()
    assert "cannot resume from step 'nope'" in step.stderr
    assert "its steps: start, two, three, four, end" in step.stderr
    nothing = shared_project.run_flow(
        "resume_linear.py", "resume", "--namespace", "user:nobody-ran-this"
    )
    assert nothing.returncode == 1, nothing.describe()
    assert "no run of ResumeLinearFlow to resume in namespace user:nobody-ran-this" in (
        nothing.stderr
    )


def test_clone_only_clones_and_runs_nothing(shared_project: FlowProject) -> None:
    origin = _run_failing(shared_project, "resume_linear.py", env={"RESUME_FAIL": "four"})
    result = shared_project.run_flow(
        "resume_linear.py", "resume", "--clone-only", "--origin-run-id", origin
    )
    assert result.returncode == 1, result.describe()
    assert result.stderr.count(CLONING) == 3
    assert "Task is starting" not in result.stderr
    assert "clone-only resume" in result.stderr and "'four'" in result.stderr


# --- foreach, nested foreach, switch loop --------------------------------------------------------


def _succeeded(tasks: Iterable[Any]) -> list[Any]:
    return [task for task in tasks if task.successful]


def test_foreach_resume_reruns_only_the_failed_splits_and_the_join(
    shared_project: FlowProject, tmp_path: Path
) -> None:
    env = {
        "RESUME_FAIL": "work:2,work:4",
        "RESUME_WAIT_FOR": "work:0,work:1,work:3,work:5",
        "RESUME_MARKERS": str(_markers(tmp_path)),
    }
    origin = _run_failing(shared_project, "resume_foreach.py", env=env)

    from polyflow import Run

    with shared_project.client_env():
        old = _tasks(Run(f"ResumeForeachFlow/{origin}"))
        assert sorted(t.index for t in _succeeded(old["work"])) == [0, 1, 3, 5]
    before = _blobs(shared_project)
    resumed, err = _resume(shared_project, "resume_foreach.py", "--origin-run-id", origin)
    assert err.count(CLONING) == 5, err  # start and four splits
    with shared_project.client_env():
        run = Run(f"ResumeForeachFlow/{resumed}")
        new = _tasks(run)
        work = new["work"]
        assert len(work) == 6
        assert sorted(t.index for t in work if t.origin_pathspec) == [0, 1, 3, 5]
        assert sorted(t.index for t in work if not t.origin_pathspec) == [2, 4]
        by_index = {t.index: t for t in old["work"]}
        for task in work:
            if task.origin_pathspec:
                assert task.origin_pathspec == by_index[task.index].pathspec
                assert _digests(task) == _digests(by_index[task.index])
        assert new["join"][0].origin_pathspec is None
        assert len(new["join"][0].parent_task_pathspecs) == 6
        assert new["start"][0].origin_pathspec is not None
        assert run.data.squares == [0, 1, 4, 9, 16, 25]
        rerun = {d for t in work if not t.origin_pathspec for d in _digests(t).values()}
        rerun |= {d for s in ("join", "end") for d in _digests(new[s][0]).values()}
    assert _blobs(shared_project) - before == rerun - before


def test_nested_foreach_resume(shared_project: FlowProject, tmp_path: Path) -> None:
    env = {
        "RESUME_FAIL": "inner:b2",
        "RESUME_WAIT_FOR": "inner:a1,inner:a2,inner:a3,inner:b1,inner:b3,join_inner:a",
        "RESUME_MARKERS": str(_markers(tmp_path)),
    }
    origin = _run_failing(shared_project, "resume_nested.py", env=env)
    resumed, err = _resume(shared_project, "resume_nested.py", "--origin-run-id", origin)
    # start, both outer tasks, five inner tasks and the join of "a".
    assert err.count(CLONING) == 9, err
    assert "a1 a2 a3 b1 b2 b3" in err

    from polyflow import Run

    with shared_project.client_env():
        new = _tasks(Run(f"ResumeNestedFlow/{resumed}"))
        rerun_inner = [t for t in new["inner"] if not t.origin_pathspec]
        assert [t.data.pair for t in rerun_inner] == ["b2"]
        joins = {t.data.pairs[0][0]: t for t in new["join_inner"]}
        assert joins["a"].origin_pathspec is not None and joins["b"].origin_pathspec is None
        assert new["join_outer"][0].origin_pathspec is None
        assert all(t.origin_pathspec for t in new["outer"])


def test_switch_loop_resume_clones_the_iterations_that_succeeded(
    shared_project: FlowProject,
) -> None:
    origin = _run_failing(shared_project, "resume_loop.py", env={"RESUME_FAIL": "loop:3"})
    resumed, err = _resume(shared_project, "resume_loop.py", "--origin-run-id", origin)
    assert err.count(CLONING) == 3, err  # start and the first two iterations
    assert "visited [1, 2, 3, 4]" in err

    from polyflow import Run

    with shared_project.client_env():
        old = _tasks(Run(f"ResumeLoopFlow/{origin}"))["loop"]
        new = _tasks(Run(f"ResumeLoopFlow/{resumed}"))["loop"]
        assert len(new) == 4
        assert [t.origin_pathspec for t in new] == [old[0].pathspec, old[1].pathspec, None, None]
        assert [t.data.counter for t in new] == [1, 2, 3, 4]


# --- a daemon killed mid-run ---------------------------------------------------------------------


def test_resume_completes_a_run_whose_daemon_was_killed(
    fresh_project: FlowProject, tmp_path: Path
) -> None:
    markers = _markers(tmp_path)
    id_file = fresh_project.run_id_file()
    proc = fresh_project.start_flow(
        "resume_linear.py",
        "run",
        "--run-id-file",
        str(id_file),
        env={"RESUME_BLOCK": "four", "RESUME_MARKERS": str(markers)},
    )
    try:
        deadline = time.monotonic() + 120
        while not (markers / "four.started").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        pid = fresh_project.daemon_pid()
        assert pid is not None and (markers / "four.started").exists()
        os.kill(pid, signal.SIGKILL)  # the daemon this test's run started
        _, err = proc.communicate(timeout=120)
    finally:
        (markers / "release").touch()  # the orphaned worker of `four` stops waiting
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    origin = id_file.read_text().strip()

    from polyflow import Run

    with fresh_project.client_env():
        killed = Run(f"ResumeLinearFlow/{origin}")
        assert not killed.successful and killed.finished
        assert "daemon stopped" in killed.failure_message
        old = _tasks(killed)
        assert [old[s][0].successful for s in ("start", "two", "three")] == [True] * 3
        assert not old["four"][0].successful
    resumed, err = _resume(fresh_project, "resume_linear.py")
    assert f"Resuming run ResumeLinearFlow/{origin}," in err
    assert err.count(CLONING) == 3, err
    with fresh_project.client_env():
        run = Run(f"ResumeLinearFlow/{resumed}")
        assert run.successful and run.data.origin_in_end == origin
        new = _tasks(run)
        assert new["three"][0].origin_pathspec == old["three"][0].pathspec
        assert new["four"][0].origin_pathspec is None
