"""The built-in step decorators end to end: a real daemon, real workers, the flow CLI and the
client API. ``@retry`` (attempts, delays, the client's view of earlier attempts), ``@catch``
(on an exception, on a killed worker, refused on a foreach), ``@timeout`` (the worker's timer
and the core's backstop), ``@environment``, ``@resources``, ``--with``, and attribute checks.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import FlowProject

pytestmark = pytest.mark.slow

FLOWS = Path(__file__).parent / "flows"
_STARTED = re.compile(r"attempt (\d+) started at (\d+\.\d+)")


def _line_of(flow: str, needle: str) -> int:
    for number, line in enumerate((FLOWS / flow).read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {flow}")


# --- @retry ---------------------------------------------------------------------------------------


def test_retry_until_success_and_earlier_attempts_in_the_client(
    shared_project: FlowProject,
) -> None:
    id_file = shared_project.run_id_file()
    result = shared_project.run_flow("deco_retry.py", "run", "--run-id-file", str(id_file))
    result.assert_ok()
    run_id = id_file.read_text().strip()
    err = result.stderr
    pathspec = f"RetryFlow/{run_id}/start/"
    assert err.count("The task will be retried.") == 2, result.describe()
    assert re.search(rf"retrying task {pathspec}\d+ \(retry 1 of 2\)$", err, re.M), err
    assert re.search(rf"\[{pathspec}\d+\] Task is starting \(retry 2\)\.$", err, re.M), err

    from polyflow import Run, Task

    with shared_project.client_env():
        task = Run(f"RetryFlow/{run_id}")["start"].task
        # The latest attempt is the one shown.
        assert task.current_attempt == 2 and task.successful
        assert task.data.attempt_seen == 2
        assert "attempt 2 started" in task.stdout
        assert Run(f"RetryFlow/{run_id}")["end"].task.data.end_retry_count == 0
        # Earlier attempts stay readable: status, exception, logs and artifacts.
        for attempt in (0, 1):
            earlier = Task(task.pathspec, attempt=attempt)
            assert earlier.current_attempt == attempt
            assert earlier.finished and not earlier.successful
            assert earlier.exception is not None
            assert earlier.exception.type == "builtins.ValueError"
            assert earlier.exception.message == f"flaky failure on attempt {attempt}"
            assert f"attempt {attempt} started" in earlier.stdout
            assert f"ValueError: flaky failure on attempt {attempt}" in earlier.stderr
            assert earlier.data.attempt_seen == attempt
            assert earlier["attempt_seen"].data == attempt


def _attempt_starts(project: FlowProject, run_id: str) -> list[float]:
    """When each attempt of RetryFlow's start task began, from its own stdout."""
    from polyflow import Run, Task

    with project.client_env():
        task = Run(f"RetryFlow/{run_id}")["start"].task
        starts = []
        for attempt in range(task.current_attempt + 1):
            found = _STARTED.search(Task(task.pathspec, attempt=attempt).stdout)
            assert found and int(found.group(1)) == attempt
            starts.append(float(found.group(2)))
    return starts


@pytest.mark.parametrize("minutes", ["0", "0.02"])
def test_minutes_between_retries_is_waited(shared_project: FlowProject, minutes: str) -> None:
    id_file = shared_project.run_id_file()
    result = shared_project.run_flow(
        "deco_retry.py",
        "run",
        "--run-id-file",
        str(id_file),
        env={"RETRY_DELAY_MINUTES": minutes},
    ).assert_ok()
    starts = _attempt_starts(shared_project, id_file.read_text().strip())
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(gaps) == 2
    if minutes == "0":
        assert "retrying task" in result.stderr and " in 0" not in result.stderr
    else:
        # 0.02 minutes = 1.2 s between an attempt's failure and the next start, so at least
        # that much between two starts.
        assert result.stderr.count("(retry 1 of 2) in 1.2 seconds") == 1, result.describe()
        assert all(gap >= 1.2 for gap in gaps), gaps


def test_retries_exhausted_fail_the_run(shared_project: FlowProject) -> None:
    id_file = shared_project.run_id_file()
    result = shared_project.run_flow(
        "deco_retry_exhausted.py", "run", "--run-id-file", str(id_file)
    )
    assert result.returncode == 1, result.describe()
    run_id = id_file.read_text().strip()
    assert result.stderr.count("The task will be retried.") == 1, result.describe()
    assert "Workflow failed: task RetryExhaustedFlow" in result.stderr
    assert "RuntimeError: always failing (attempt 1)" in result.stderr

    from polyflow import Run, Task

    with shared_project.client_env():
        run = Run(f"RetryExhaustedFlow/{run_id}")
        assert run.finished and not run.successful
        task = run["start"].task
        assert task.current_attempt == 1 and not task.successful
        assert task.exception is not None
        assert task.exception.message == "always failing (attempt 1)"
        assert Task(task.pathspec, attempt=0).exception.message == "always failing (attempt 0)"


def test_with_retry_makes_a_flaky_step_pass(shared_project: FlowProject) -> None:
    failed = shared_project.run_flow("deco_flaky.py", "run")
    assert failed.returncode == 1, failed.describe()
    id_file = shared_project.run_id_file()
    result = shared_project.run_flow(
        "deco_flaky.py",
        "run",
        "--with",
        "retry:times=1,minutes_between_retries=0",
        "--run-id-file",
        str(id_file),
    ).assert_ok()
    assert "The task will be retried." in result.stderr

    from polyflow import Run

    with shared_project.client_env():
        task = Run(f"FlakyFlow/{id_file.read_text().strip()}")["start"].task
        assert task.current_attempt == 1 and task.data.attempts == 2


# --- @catch -------------------------------------------------------------------------------------


def test_catch_stores_the_exception_and_the_flow_goes_on(shared_project: FlowProject) -> None:
    id_file = shared_project.run_id_file()
    result = shared_project.run_flow("deco_catch.py", "run", "--run-id-file", str(id_file))
    result.assert_ok()
    run_id = id_file.read_text().strip()
    assert "@catch caught ValueError in step 'start'" in result.stderr
    assert result.stderr.count("The task will be retried.") == 1  # @retry(times=1) first

    from polyflow import CaughtException, Run

    with shared_project.client_env():
        run = Run(f"CatchFlow/{run_id}")
        assert run.successful
        start = run["start"].task
        assert start.successful and start.current_attempt == 1
        error = run.data.start_error
        assert isinstance(error, CaughtException)
        assert error.type == "builtins.ValueError"
        assert error.message == "boom on attempt 1"
        assert "in fail" in error.traceback and "ValueError: boom on attempt 1" in str(error)
        assert run.data.tries == 2  # set before the exception, kept
        assert run.data.a_error is None  # @catch on a step that succeeded
        assert (run.data.a_value, run.data.b_value) == (1, 2)  # both branches ran


def test_catch_handles_a_killed_worker_with_its_fallback_attempt(
    shared_project: FlowProject,
) -> None:
    id_file = shared_project.run_id_file()
    result = shared_project.run_flow(
        "deco_catch_killed.py", "run", "--run-id-file", str(id_file)
    ).assert_ok()
    run_id = id_file.read_text().strip()
    assert "killed by signal 9" in result.stderr

    from polyflow import Run, Task

    with shared_project.client_env():
        run = Run(f"CatchKilledFlow/{run_id}")
        task = run["start"].task
        assert task.current_attempt == 1 and task.successful
        assert Task(task.pathspec, attempt=0).exception.message == (
            "worker killed by signal 9 (SIGKILL) before reporting its outcome"
        )
        crash = run.data.crash
        assert crash.type == "polyflow.exceptions.FailureHandledByCatchError"
        assert "worker killed by signal 9" in crash.message
        # The killed attempt stored nothing, and the fallback attempt ran none of the code.
        assert "attempt_seen" not in task


def test_catch_on_a_foreach_is_refused_at_check(shared_project: FlowProject) -> None:
    line = _line_of("deco_catch_foreach.py", "@catch(var")
    for command in ("check", "run"):
        result = shared_project.run_flow("deco_catch_foreach.py", command)
        assert result.returncode == 1, result.describe()
        assert f"deco_catch_foreach.py:{line}: step 'start': " in result.stderr
        assert "@catch" in result.stderr and "foreach" in result.stderr
        assert "Workflow starting" not in result.stderr


# --- @timeout -----------------------------------------------------------------------------------


def test_timeout_fails_the_attempt_and_retry_applies(shared_project: FlowProject) -> None:
    id_file = shared_project.run_id_file()
    result = shared_project.run_flow("deco_timeout.py", "run", "--run-id-file", str(id_file))
    result.assert_ok()
    run_id = id_file.read_text().strip()
    assert (
        "Task failed: StepTimeoutError: Step 'start' timed out: it ran over its @timeout of "
        "2 seconds" in result.stderr
    ), result.describe()

    from polyflow import Run, Task

    with shared_project.client_env():
        task = Run(f"TimeoutFlow/{run_id}")["start"].task
        assert task.successful and task.current_attempt == 1
        first = Task(task.pathspec, attempt=0)
        assert first.exception is not None
        assert first.exception.type == "polyflow.exceptions.StepTimeoutError"
        assert "2 seconds" in first.exception.message
        assert first.finished_at is not None and task.created_at is not None


def test_timeout_backstop_stops_a_worker_deaf_to_its_timer(shared_project: FlowProject) -> None:
    # The step blocks SIGALRM, as code stuck in C would ignore the worker's own timer: the
    # core kills the worker once the limit (1 s) plus its grace (10 s) is over.
    id_file = shared_project.run_id_file()
    result = shared_project.run_flow(
        "deco_timeout.py",
        "run",
        "--run-id-file",
        str(id_file),
        env={"TIMEOUT_BLOCK_ALARM": "1"},
    )
    assert result.returncode == 1, result.describe()
    expected = (
        "worker killed by signal 9 (SIGKILL): the step ran over its @timeout of 1 second and "
        "the core stopped its worker"
    )
    assert expected in result.stderr, result.describe()
    assert "still running past its @timeout of 1 second: stopping it" in result.stderr

    from polyflow import Run

    with shared_project.client_env():
        task = Run(f"TimeoutFlow/{id_file.read_text().strip()}")["start"].task
        assert not task.successful and task.exception is not None
        assert task.exception.message == expected


# --- @environment and @resources ----------------------------------------------------------------


def test_environment_and_resources(shared_project: FlowProject) -> None:
    id_file = shared_project.run_id_file()
    shared_project.run_flow(
        "deco_env_resources.py",
        "--with",
        "resources:memory=1000",
        "run",
        "--run-id-file",
        str(id_file),
        env={"PF_DECO_GREETING": "from the client"},
    ).assert_ok()
    run_id = id_file.read_text().strip()
    from polyflow import Run

    with shared_project.client_env():
        run = Run(f"EnvResourcesFlow/{run_id}")
        start, end = run["start"].task, run["end"].task
        # The decorator's variables are set for its step only, over the client's.
        assert start.data.greeting == "hello" and start.data.number == "3"
        assert end.data.end_greeting == "from the client"
        assert json.loads(start.metadata_dict["resources"]) == {
            "cpu": 2,
            "gpu": 1,
            "disk": None,
            "memory": 8192,  # the static decorator wins over --with
            "shared_memory": None,
        }
        assert json.loads(end.metadata_dict["resources"])["memory"] == 1000


# --- bad attributes ---------------------------------------------------------------------------


def test_bad_attribute_values_are_check_errors(shared_project: FlowProject) -> None:
    for command in ("check", "run"):
        result = shared_project.run_flow("deco_bad_attribute.py", command)
        assert result.returncode == 1, result.describe()
        err = result.stderr
        line = _line_of("deco_bad_attribute.py", '@retry(times="3")')
        assert (
            f"deco_bad_attribute.py:{line}: step 'start': Step 'start': @retry's times must be "
            'a whole number of at least 0, not the string "3".' in err
        ), result.describe()
        line = _line_of("deco_bad_attribute.py", "@retry(times=5)")
        assert f"deco_bad_attribute.py:{line}: step 'end': " in err
        assert "times can be at most 4" in err
        assert "Workflow starting" not in err
    from polyflow import Flow, namespace
    from polyflow.exceptions import NotFoundError

    with shared_project.client_env():
        namespace(None)
        with pytest.raises(NotFoundError):
            Flow("BadAttributeFlow")  # nothing was started


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--with", "retry:tims=1"), "@retry has no attribute 'tims' (its attributes: "),
        (("--with", "retry:times=abc"), "@retry's times must be a whole number"),
        (("--with", "timeout"), "@timeout sets no limit"),
    ],
)
def test_bad_with_attributes_are_check_errors(
    shared_project: FlowProject, args: tuple[str, ...], message: str
) -> None:
    for command in ("check", "run"):
        result = shared_project.run_flow("deco_flaky.py", *args, command)
        assert result.returncode == 1, result.describe()
        assert message in result.stderr, result.describe()
        assert "Workflow starting" not in result.stderr


def test_unknown_keyword_in_the_source_is_a_type_error(shared_project: FlowProject) -> None:
    result = shared_project.run_flow("deco_bad_keyword.py", "check")
    assert result.returncode == 1, result.describe()
    assert "TypeError: retry() got an unexpected keyword argument 'tims'" in result.stderr
