"""Running one task attempt: build the flow instance, run the step, check the transition,
store the artifacts. No protobuf and no gRPC here (see :mod:`polyflow._worker.main`)."""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

from polyflow_core.datastore.base import BlobStore

from polyflow._authoring.artifacts import ArtifactTable, Inputs, InputView, StoredArtifact
from polyflow._authoring.current import TaskContextInfo, clear_task_context, set_task_context
from polyflow._authoring.decorators import DecoratorRegistry, StepFunction, TaskContext
from polyflow._authoring.flowspec import FlowSpec, FlowState
from polyflow._authoring.graph import StepDef, TransitionDef, graph_info, make_decorators
from polyflow._authoring.members import flow_parameters
from polyflow._authoring.transitions import TakenTransition, TransitionKind
from polyflow._conversion import Converter, core_converter
from polyflow._worker.persist import persist_artifacts
from polyflow._worker.spec import TaskSpecData
from polyflow._worker.store import make_loader
from polyflow.exceptions import PolyflowError

if TYPE_CHECKING:
    from polyflow._transport import CoreClient

__all__ = [
    "ENV_CORE_ADDRESS",
    "ENV_NAMESPACE",
    "ExceptionData",
    "TaskResult",
    "check_transition",
    "exception_data",
    "run_task",
]

ENV_CORE_ADDRESS = "POLYFLOW_CORE_ADDRESS"
"""Set for the step's code: the core's address, for the client API."""
ENV_NAMESPACE = "POLYFLOW_NAMESPACE"
"""Set for the step's code: the run's namespace, for the client API."""

ENV_CORE_TOKEN = "POLYFLOW_CORE_TOKEN"
"""Set for the step's code when the core wants a bearer token, for the client API."""

_WORKER_DIR = os.path.dirname(os.path.abspath(__file__))
_SDK_DIR = os.path.dirname(_WORKER_DIR)
_MAX_MESSAGE = 500


@dataclass(frozen=True)
class ExceptionData:
    """An exception raised while running a task."""

    type: str
    """Qualified type, e.g. ``builtins.ValueError``."""
    message: str
    """``str()`` of the exception."""
    traceback: str
    """The formatted traceback (worker frames left out)."""


@dataclass(frozen=True)
class TaskResult:
    """How a task attempt ended (the proto's TaskOutcome)."""

    succeeded: bool
    """User code finished and the transition was valid."""
    artifacts: tuple[StoredArtifact, ...] = ()
    """Every artifact of the task."""
    next_steps: tuple[str, ...] = ()
    """The steps the task moves to."""
    foreach_num_splits: int = 0
    """FOREACH: the number of splits."""
    foreach_value_reprs: tuple[str, ...] = ()
    """FOREACH: short representations of the items."""
    exception: ExceptionData | None = None
    """The exception that failed the attempt."""
    failure_message: str = ""
    """Why the attempt failed, in one line."""


def _one_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 3] + "..."


def exception_data(exc: BaseException) -> ExceptionData:
    """Describe an exception, leaving the SDK's outer frames (the worker's, decorator
    wrappers) out of the traceback."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        if not _in_sdk(tb.tb_frame.f_code.co_filename):
            break
        tb = tb.tb_next
    cls = type(exc)
    summary = traceback.TracebackException(cls, exc, tb)
    if isinstance(exc, PolyflowError):  # raised by the SDK (self.next...): end at user code
        while len(summary.stack) > 1 and _in_sdk(summary.stack[-1].filename):
            summary.stack.pop()
    return ExceptionData(
        type=f"{cls.__module__}.{cls.__qualname__}",
        message=str(exc),
        traceback="".join(summary.format()),
    )


def _in_sdk(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_SDK_DIR + os.sep)


def failure_line(exc: BaseException) -> str:
    """One line naming an exception: ``ValueError: message``."""
    text = _one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _describe_static(t: TransitionDef) -> str:
    if t.kind is TransitionKind.UNSPECIFIED:
        return "no self.next() call"
    if t.kind is TransitionKind.SWITCH:
        return f"a switch on self.{t.condition} to one of {sorted(set(t.switch_cases.values()))}"
    targets = ", ".join(f"self.{s}" for s in t.targets)
    if t.kind is TransitionKind.FOREACH:
        return f"self.next({targets}, foreach={t.foreach_var!r})"
    if t.kind is TransitionKind.INVALID:
        return f"an invalid self.next() call ({t.error})"
    return f"self.next({targets})"


def _describe_taken(t: TakenTransition | None) -> str:
    if t is None:
        return "no self.next() call"
    if t.kind is TransitionKind.SWITCH:
        return f"a switch on self.{t.condition} to {t.targets[0]!r}"
    targets = ", ".join(f"self.{s}" for s in t.targets)
    if t.kind is TransitionKind.FOREACH:
        return f"self.next({targets}, foreach={t.foreach_var!r})"
    return f"self.next({targets})"


def check_transition(step_def: StepDef, taken: TakenTransition | None) -> str:
    """Compare the transition a step took with the static graph.

    Returns:
        An empty string when they match, else a sentence naming the step, what was taken
        and what the graph says.
    """
    static = step_def.transition
    if taken is None:
        ok = static.kind is TransitionKind.UNSPECIFIED
    elif taken.kind is not static.kind:
        ok = False
    elif taken.kind is TransitionKind.SWITCH:
        ok = (
            taken.condition == static.condition and taken.targets[0] in static.switch_cases.values()
        )
    elif taken.kind is TransitionKind.FOREACH:
        ok = taken.targets == static.targets and taken.foreach_var == static.foreach_var
    else:
        ok = taken.targets == static.targets
    if ok:
        return ""
    where = f" (line {static.line or step_def.line})" if (static.line or step_def.line) else ""
    return (
        f"Step {step_def.name!r} took {_describe_taken(taken)}, but the flow's graph says "
        f"{_describe_static(static)}{where}"
    )


def _converter(spec: TaskSpecData) -> Converter | None:
    """Converts values Python cannot decode through the task's core (its client is made on
    first use, in the task's own process)."""
    if not spec.core_address:
        return None
    clients: list[CoreClient] = []

    def client() -> CoreClient:
        if not clients:
            from polyflow._transport import CoreClient

            clients.append(CoreClient(spec.core_address, token=spec.token or None))
        return clients[0]

    return core_converter(client)


def _build_state(
    spec: TaskSpecData, step_def: StepDef, flow_cls: type[FlowSpec], store: BlobStore
) -> FlowState:
    convert = _converter(spec)
    # One loader per input task, so that a corrupt value names the task it came from.
    loader = make_loader(store, convert, spec.inputs[0].pathspec if spec.inputs else "")
    inputs: Inputs | None = None
    if step_def.is_join:
        inputs = Inputs(
            [
                InputView(
                    item.step,
                    item.pathspec,
                    ArtifactTable(
                        {a.name: a for a in item.artifacts},
                        make_loader(store, convert, item.pathspec),
                    ),
                    item.foreach_stack,
                )
                for item in spec.inputs
            ]
        )
        keep = {*spec.parameter_names, *spec.graph.constants}
        keep.update(p.attribute for p in flow_parameters(flow_cls))
        first = spec.inputs[0].artifacts if spec.inputs else ()
        table = ArtifactTable({a.name: a for a in first if a.name in keep}, loader)
    else:
        refs = {a.name: a for item in spec.inputs[:1] for a in item.artifacts}
        table = ArtifactTable(refs, loader)
    return FlowState(
        step_name=spec.step_name,
        table=table,
        foreach_stack=spec.foreach_stack,
        inputs=inputs,
        max_num_splits=spec.max_num_splits,
    )


def _set_context(spec: TaskSpecData) -> None:
    set_task_context(
        TaskContextInfo(
            flow_name=spec.flow_name,
            run_id=spec.run_id,
            step_name=spec.step_name,
            task_id=spec.task_id,
            retry_count=spec.attempt,
            origin_run_id=spec.origin_run_id or None,
            namespace=spec.namespace or None,
            username=spec.user or None,
            tags=spec.tags,
            parameter_names=spec.parameter_names,
            graph=graph_info(spec.graph),
        )
    )
    if spec.core_address:
        os.environ[ENV_CORE_ADDRESS] = spec.core_address
    # Always set: an empty namespace is the global one (`run --namespace ""`).
    os.environ[ENV_NAMESPACE] = spec.namespace
    if spec.token:
        os.environ[ENV_CORE_TOKEN] = spec.token


def _report_exception(exc: BaseException) -> ExceptionData:
    data = exception_data(exc)
    sys.stderr.write(data.traceback)
    sys.stderr.flush()
    return data


def _step_callable(flow: FlowSpec, step_name: str, inputs: Inputs | None) -> StepFunction:
    method = getattr(flow, step_name)
    if inputs is None:
        return method  # type: ignore[no-any-return]

    def call_join() -> None:
        method(inputs)

    return call_join


def run_task(
    spec: TaskSpecData,
    flow_cls: type[FlowSpec],
    store: BlobStore,
    *,
    registry: DecoratorRegistry | None = None,
) -> TaskResult:
    """Run one task attempt and store its artifacts.

    User code errors do not raise: they come back as a failed :class:`TaskResult`, with
    the traceback also printed to stderr.

    Args:
        spec: The task.
        flow_cls: The flow class (see :func:`polyflow._worker.main.prepare`).
        store: The artifact store.
        registry: Where step decorators are looked up (default: the process-wide one).
    """
    try:
        step_def = spec.graph.step(spec.step_name)
    except KeyError:
        message = f"step {spec.step_name!r} is not in the flow's graph"
        sys.stderr.write(message + "\n")
        return TaskResult(succeeded=False, failure_message=message)
    state = _build_state(spec, step_def, flow_cls, store)
    flow = flow_cls._pf_for_task(state)
    _set_context(spec)
    ctx = TaskContext(
        spec.step_name,
        flow,
        spec.attempt,
        state.inputs,
        max_user_code_retries=spec.max_user_code_retries,
        previous_failure=spec.previous_failure_message,
        step=step_def,
    )
    error: ExceptionData | None = None
    failure = ""
    ok = False
    decorators = []
    try:
        decorators = make_decorators(step_def, registry)
        for deco in decorators:
            deco.task_pre_step(ctx)
        func = _step_callable(flow, spec.step_name, state.inputs)
        for deco in decorators:
            func = deco.task_decorate(func, ctx)
        try:
            func()
        except Exception as exc:
            if not any([deco.task_exception(exc, ctx) for deco in decorators]):
                raise
        else:
            for deco in decorators:
                deco.task_post_step(ctx)
        failure = check_transition(step_def, state.transition)
        ok = not failure
        if failure:
            sys.stderr.write(failure + "\n")
    except BaseException as exc:  # SystemExit from user code fails the task too
        error = _report_exception(exc)
        failure = failure_line(exc)
    finally:
        for deco in decorators:
            try:
                deco.task_finished(ctx, ok)
            except Exception as exc:  # a failing hook fails the task, once
                if ok:
                    error, failure, ok = _report_exception(exc), failure_line(exc), False

    problems: list[str] = []
    artifacts = persist_artifacts(flow, store, lambda e: problems.append(str(e)))
    clear_task_context()
    for line in problems:
        sys.stderr.write(f"{line}\n")
    if ok and problems:
        ok, failure = False, problems[0]
    if not ok:
        return TaskResult(
            succeeded=False,
            artifacts=tuple(artifacts),
            exception=error,
            failure_message=_one_line(failure) or "the task failed",
        )
    taken = state.transition
    return TaskResult(
        succeeded=True,
        artifacts=tuple(artifacts),
        next_steps=taken.targets if taken else (),
        foreach_num_splits=taken.num_splits if taken else 0,
        foreach_value_reprs=taken.value_reprs if taken else (),
    )
