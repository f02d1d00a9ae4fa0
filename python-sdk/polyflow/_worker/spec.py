"""Reading a ``TaskSpec``: the proto becomes plain data the rest of the worker uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from polyflow._authoring.artifacts import ForeachFrame, StoredArtifact
from polyflow._authoring.graph import FlowDefinition
from polyflow._wire_graph import definition_from_proto
from polyflow.api.common.v1 import graph_pb2
from polyflow.api.runtime.v1 import message_pb2

__all__ = ["TaskInputData", "TaskSpecData", "read_task_spec", "task_spec_from_proto"]


@dataclass(frozen=True)
class TaskInputData:
    """One task whose outputs the task reads."""

    pathspec: str
    """``flow/run/step/task``."""
    step: str
    """Its step."""
    artifacts: tuple[StoredArtifact, ...]
    """Its artifacts (inherited ones included)."""
    foreach_stack: tuple[ForeachFrame, ...] = ()
    """Its foreach frames, outermost first."""


@dataclass(frozen=True)
class TaskSpecData:
    """Everything one task attempt needs (the proto's TaskSpec)."""

    task: str
    """The task's resource name."""
    flow_name: str
    """The flow's name."""
    run_id: str
    """The run's id."""
    step_name: str
    """The step to run."""
    task_id: str
    """The task's id."""
    attempt: int
    """The attempt (0-based)."""
    inputs: tuple[TaskInputData, ...]
    """The input tasks: one, or several for a join."""
    foreach_stack: tuple[ForeachFrame, ...]
    """This task's frames, outermost first."""
    graph: FlowDefinition
    """The run's graph."""
    max_num_splits: int
    """Most splits a foreach may create."""
    code_path: str
    """The flow's source file."""
    core_address: str
    """Where to report, e.g. ``unix:/path/daemon.sock``."""
    store_kind: str
    """``local`` or ``s3``."""
    store_root: str
    """The store's root."""
    store_options: dict[str, str] = field(default_factory=dict)
    """Store settings."""
    user: str = ""
    """Who started the run."""
    tags: tuple[str, ...] = ()
    """The run's tags."""
    origin_run_id: str = ""
    """The run this one resumed."""
    parameter_names: tuple[str, ...] = ()
    """The flow's parameters."""
    namespace: str = ""
    """The client namespace."""
    token: str = ""
    """Bearer token for calls to the core."""
    max_user_code_retries: int = 0
    """Retries the step's code gets; a later attempt is ``@catch``'s fallback attempt."""
    previous_failure_message: str = ""
    """Why the previous attempt failed (empty on the first attempt)."""

    @property
    def pathspec(self) -> str:
        """``flow/run/step/task``."""
        return f"{self.flow_name}/{self.run_id}/{self.step_name}/{self.task_id}"


def _artifact(ref: graph_pb2.ArtifactRef) -> StoredArtifact:
    return StoredArtifact(ref.name, ref.digest, ref.encoding, ref.size_bytes, ref.type_name)


def _frame(frame: graph_pb2.ForeachFrame) -> ForeachFrame:
    return ForeachFrame(frame.step, frame.var, frame.index, frame.num_splits, frame.value_repr)


def task_spec_from_proto(spec: message_pb2.TaskSpec) -> TaskSpecData:
    """The plain form of a TaskSpec message."""
    return TaskSpecData(
        task=spec.task,
        flow_name=spec.flow_name,
        run_id=spec.run_id,
        step_name=spec.step_name,
        task_id=spec.task_id,
        attempt=spec.attempt,
        inputs=tuple(
            TaskInputData(
                pathspec=item.pathspec,
                step=item.step,
                artifacts=tuple(_artifact(a) for a in item.artifacts),
                foreach_stack=tuple(_frame(f) for f in item.foreach_stack),
            )
            for item in spec.inputs
        ),
        foreach_stack=tuple(_frame(f) for f in spec.foreach_stack),
        graph=definition_from_proto(spec.graph),
        max_num_splits=spec.max_num_splits or 100,
        code_path=spec.code_path,
        core_address=spec.core_address,
        store_kind=spec.store.kind,
        store_root=spec.store.root,
        store_options=dict(spec.store.options),
        user=spec.user,
        tags=tuple(spec.tags),
        origin_run_id=spec.origin_run_id,
        parameter_names=tuple(spec.parameter_names),
        namespace=spec.namespace,
        token=spec.token,
        max_user_code_retries=spec.max_user_code_retries,
        previous_failure_message=spec.previous_failure_message,
    )


def read_task_spec(path: str) -> TaskSpecData:
    """Read a serialized TaskSpec file.

    Raises:
        OSError: The file cannot be read.
        google.protobuf.message.DecodeError: It is not a TaskSpec.
    """
    with open(path, "rb") as handle:
        message = message_pb2.TaskSpec.FromString(handle.read())
    return task_spec_from_proto(message)
