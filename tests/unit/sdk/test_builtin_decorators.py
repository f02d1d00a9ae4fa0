"""The built-in step decorators in the SDK: their user-facing functions and signatures, their
registration, ``--with``, and the worker-side hooks of ``@catch`` and ``@timeout``."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import polyflow
import pytest
from polyflow._authoring import builtin_decorators as bd
from polyflow._authoring.decorators import DecoratorRegistry, default_registry
from polyflow._authoring.graph import extract_graph
from polyflow._authoring.step import step, step_marks
from polyflow._codecs import decode
from polyflow._worker.task import TaskResult, run_task
from polyflow.exceptions import (
    CaughtException,
    FailureHandledByCatchError,
    PolyflowError,
    StepTimeoutError,
)
from polyflow_core.datastore.local import LocalBlobStore

from .helpers import graph_of, make_spec

BUILTINS = {
    "retry": bd.RetryDecorator,
    "catch": bd.CatchDecorator,
    "timeout": bd.TimeoutDecorator,
    "environment": bd.EnvironmentDecorator,
    "resources": bd.ResourcesDecorator,
}

# --- the user-facing functions ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_served_from_the_package_with_real_signatures(name: str) -> None:
    func = getattr(polyflow, name)
    assert func is getattr(bd, name)
    assert name in polyflow.__all__
    parameters = inspect.signature(func).parameters
    keywords = {
        p.name: p.default for p in parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    defaults = dict(BUILTINS[name].defaults)
    if name == "environment":  # an immutable empty mapping stands for Metaflow's {}
        assert dict(keywords.pop("vars")) == defaults.pop("vars") == {}
    assert keywords == defaults
    assert all(p.annotation is not inspect.Parameter.empty for p in parameters.values())


def test_bare_and_with_arguments() -> None:
    @bd.resources
    @bd.timeout(minutes=2)
    @bd.environment(vars={"A": "1", "N": 2})
    @bd.catch(var="error", print_exception=False)
    @bd.retry
    @step
    def start(self: Any) -> None:
        pass

    marks = step_marks(start)
    assert marks is not None
    by_name = {d.name: d for d in marks.decorators}
    assert [d.name for d in marks.decorators] == [
        "retry",
        "catch",
        "environment",
        "timeout",
        "resources",
    ]
    assert by_name["retry"].attributes == {"times": 3, "minutes_between_retries": 2}
    assert by_name["catch"].attributes == {"var": "error", "print_exception": False}
    assert by_name["environment"].attributes_json() == {"vars": '{"A": "1", "N": 2}'}
    assert by_name["timeout"].attributes == {"seconds": 0, "minutes": 2, "hours": 0}
    assert isinstance(by_name["timeout"], bd.TimeoutDecorator)
    assert by_name["timeout"].limit_seconds == 120
    assert by_name["resources"].attributes_json()["memory"] == "4096"


def test_misuse_is_a_type_error() -> None:
    def plain(self: Any) -> None:
        pass

    with pytest.raises(TypeError, match="keyword arguments only"):
        bd.retry(3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="unexpected keyword argument 'tims'"):
        bd.retry(tims=3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="@catch must be placed above @step"):
        bd.catch(plain)

    @bd.retry(times=1)
    @step
    def once(self: Any) -> None:
        pass

    with pytest.raises(PolyflowError, match="@retry is attached more than once"):
        bd.retry(once)


def test_registered_in_the_entry_point_group() -> None:
    group = {
        ep.name: ep.value for ep in importlib.metadata.entry_points(group="polyflow.decorators")
    }
    for name, cls in BUILTINS.items():
        assert group[name] == f"{cls.__module__}:{cls.__qualname__}"
        assert default_registry().get(name) is cls
    # A registry that reads no entry points knows none of them: nothing is hard-wired.
    assert DecoratorRegistry(entry_point_group=None).names() == []


def test_with_attaches_builtins_to_steps_that_lack_them() -> None:
    cls, static = graph_of("deco_flow", "DecoFlow")
    d = extract_graph(cls, decospecs=["retry:times=1,minutes_between_retries=0", "resources"])
    start = {x.name: x for x in d.step("start").decorators}
    assert start["retry"].values() == {"times": 1, "minutes_between_retries": 2}  # static wins
    end = {x.name: x for x in d.step("end").decorators}
    assert end["retry"].values() == {"times": 1, "minutes_between_retries": 0}
    assert end["retry"].line == 0 and end["resources"].values()["cpu"] == 1
    assert static.step("end").decorators == ()
    with pytest.raises(PolyflowError, match=r"@retry has no attribute 'tims'.*times"):
        extract_graph(cls, decospecs=["retry:tims=1"])


# --- @catch in the worker ---------------------------------------------------------------------


def _run(store: LocalBlobStore, step_name: str, **spec_fields: Any) -> TaskResult:
    cls, definition = graph_of("deco_flow", "DecoFlow")
    spec = make_spec(definition, step_name, store)
    return run_task(dataclasses.replace(spec, **spec_fields), cls, store)


def _values(store: LocalBlobStore, result: TaskResult) -> dict[str, Any]:
    return {a.name: decode(store.get_view(a.digest), a.encoding) for a in result.artifacts}


def test_catch_lets_a_retry_happen_first(store: LocalBlobStore) -> None:
    result = _run(store, "start", attempt=0, max_user_code_retries=1)
    assert not result.succeeded
    assert result.failure_message == "ValueError: nope"


def test_catch_stores_the_exception_of_the_last_attempt(
    store: LocalBlobStore, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _run(store, "start", attempt=1, max_user_code_retries=1)
    assert result.succeeded, result
    assert result.next_steps == ("a", "b")  # the static transition: a branch
    values = _values(store, result)
    assert values["before"] == 1  # what the step set before failing is kept
    error = values["error"]
    assert isinstance(error, CaughtException)
    assert (error.type, error.message, error.exception) == ("builtins.ValueError", "nope", "nope")
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert 'deco_flow.py", line' in error.traceback and "in fail" in error.traceback
    assert "polyflow/" not in error.traceback.replace("tests/unit/sdk/flows", "")
    assert str(error) == error.traceback.rstrip() and error.stacktrace == error.traceback
    err = capsys.readouterr().err
    assert "ValueError: nope" in err
    assert "@catch caught ValueError in step 'start'" in err and "self.error" in err


def test_catch_sets_its_variable_to_none_on_success(
    store: LocalBlobStore, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _run(store, "a")
    assert result.succeeded and result.next_steps == ("join",)
    assert _values(store, result)["error"] is None
    quiet = _run(store, "b")  # no var, print_exception=False
    assert quiet.succeeded and quiet.next_steps == ("join",)
    assert "error" not in _values(store, quiet)
    assert "quietly" not in capsys.readouterr().err


def test_catch_fallback_attempt_records_the_earlier_failure(store: LocalBlobStore) -> None:
    result = _run(
        store,
        "start",
        attempt=2,
        max_user_code_retries=1,
        previous_failure_message="worker killed by signal 9 (SIGKILL) before reporting",
    )
    assert result.succeeded, result
    values = _values(store, result)
    assert "before" not in values  # the step's code did not run
    error = values["error"]
    assert error.type == f"{FailureHandledByCatchError.__module__}.FailureHandledByCatchError"
    assert error.message == (
        "Step 'start' failed on attempt 1 where no exception could be caught: "
        "worker killed by signal 9 (SIGKILL) before reporting"
    )
    assert error.traceback == ""


# --- @timeout in the worker -------------------------------------------------------------------


def test_timeout_stops_the_step_and_restores_the_signal(store: LocalBlobStore) -> None:
    handler = signal.getsignal(signal.SIGALRM)  # pytest-timeout may use SIGALRM itself
    timer = signal.getitimer(signal.ITIMER_REAL)[0]
    started = time.monotonic()
    result = _run(store, "sleepy")
    assert time.monotonic() - started < 3
    assert not result.succeeded
    assert result.exception is not None
    assert result.exception.type == "polyflow.exceptions.StepTimeoutError"
    assert result.failure_message == (
        "StepTimeoutError: Step 'sleepy' timed out: it ran over its @timeout of 0.3 seconds"
    )
    assert "time.sleep(5)" in result.exception.traceback
    assert "builtin_decorators" not in result.exception.traceback
    assert signal.getsignal(signal.SIGALRM) is handler
    left = signal.getitimer(signal.ITIMER_REAL)[0]
    assert (left > 0) == (timer > 0) and left <= timer


def test_timeout_gives_back_a_timer_that_was_running(store: LocalBlobStore) -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    saved = signal.setitimer(signal.ITIMER_REAL, 0.8)
    try:
        result = _run(store, "quick")  # a one-minute @timeout around a quick step
        assert result.succeeded
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 0 < left <= 0.8
        time.sleep(left + 0.2)
        assert fired == [signal.SIGALRM]
    finally:
        signal.signal(signal.SIGALRM, previous)
        signal.setitimer(signal.ITIMER_REAL, *saved)


def test_a_quick_step_is_not_disturbed(store: LocalBlobStore) -> None:
    result = _run(store, "quick")
    assert result.succeeded and result.next_steps == ("end",)


def test_step_timeout_error_is_a_timeout_error() -> None:
    error = StepTimeoutError("late", seconds=2.0)
    assert isinstance(error, TimeoutError) and isinstance(error, PolyflowError)
    assert (str(error), error.seconds) == ("late", 2.0)


# --- what type checkers see -------------------------------------------------------------------


@pytest.mark.slow
def test_type_checkers_accept_good_uses_and_reject_bad_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mypy_api = pytest.importorskip("mypy.api")
    sdk = Path(polyflow.__file__).parent.parent
    good = tmp_path / "good.py"
    good.write_text(
        textwrap.dedent(
            """
            from polyflow import FlowSpec, catch, environment, resources, retry, step, timeout

            class Good(FlowSpec):
                @retry
                @catch(var="error")
                @step
                def start(self) -> None:
                    self.next(self.end)

                @retry(times=2, minutes_between_retries=0.5)
                @timeout(seconds=10)
                @environment(vars={"A": "1", "B": 2})
                @resources(cpu=2, memory=8192, gpu=None)
                @step
                def end(self) -> None:
                    pass

            reveal_type(Good.start)
            """
        )
    )
    bad = tmp_path / "bad.py"
    bad.write_text(
        textwrap.dedent(
            """
            from polyflow import FlowSpec, catch, retry, step

            class Bad(FlowSpec):
                @retry(times="3")
                @step
                def start(self) -> None:
                    self.next(self.end)

                @catch(vars="x")
                @step
                def end(self) -> None:
                    pass
            """
        )
    )
    common = [
        "--strict",
        "--ignore-missing-imports",
        "--follow-imports=silent",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--config-file",
        "",
    ]
    monkeypatch.setenv("MYPYPATH", str(sdk))
    out, _, status = mypy_api.run([*common, str(good)])
    assert status == 0, out
    assert 'Revealed type is "def (self: good.Good)"' in out
    out, _, status = mypy_api.run([*common, str(bad)])
    assert status == 1
    assert 'bad.py:5: error: No overload variant of "retry"' in out
    assert 'Unexpected keyword argument "vars" for overloaded function "catch"' in out
