"""Assembles what an executor needs to start a task attempt: the ``TaskSpec`` content (with
the inputs' artifact references read from the metadata store) and the launch settings.

The launch-side effects of the built-in decorators are applied here, so that every executor
gets them: ``@environment``'s variables are added to the worker's environment, and the
worker learns how many retries ``@retry`` allows (``@catch``'s fallback attempt comes after).
"""

from __future__ import annotations

from polyflow_core.datastore.base import StoreLocationInfo
from polyflow_core.domain._run_state import ActiveRun, InputRef, PendingTask
from polyflow_core.domain.execution import (
    TaskInputData,
    TaskSpecData,
    TaskSpecEncoder,
    step_language,
)
from polyflow_core.domain.model import Language
from polyflow_core.domain.step_decorators import environment_variables, retry_settings
from polyflow_core.executors.base import LaunchRequest, TaskKey, WorkerLanguage
from polyflow_core.metadata.base import MetadataStore
from polyflow_core.paths import RootLayout

__all__ = ["build_launch_request"]

_LANGUAGES: dict[Language, WorkerLanguage] = {Language.PYTHON: "python", Language.R: "r"}


def build_launch_request(
    run: ActiveRun,
    task: PendingTask,
    key: TaskKey,
    *,
    metadata: MetadataStore,
    encode: TaskSpecEncoder,
    core_address: str,
    store: StoreLocationInfo,
    layout: RootLayout,
) -> LaunchRequest:
    """The executor's request for one attempt, with its serialized ``TaskSpec``.

    Raises:
        KeyError: The request names no interpreter for the step's language.
        CoreError: An input task's artifacts cannot be read.
    """
    request = run.request
    graph = request.graph
    step = graph.step(task.step)
    language = step_language(graph, step)
    environment = request.environment
    spec = TaskSpecData(
        flow=run.flow,
        run=run.run_id,
        step=task.step,
        task=key.task,
        attempt=key.attempt,
        inputs=tuple(_input_data(run, ref, metadata) for ref in task.inputs),
        foreach_stack=task.foreach_stack,
        graph_bytes=request.graph_bytes,
        max_num_splits=request.options.max_num_splits,
        code_path=environment.code_path,
        core_address=core_address,
        store=store,
        user=request.user,
        tags=tuple(request.tags) + tuple(request.system_tags),
        parameter_names=tuple(parameter.name for parameter in graph.parameters),
        namespace=request.namespace,
        origin_run_id=request.origin_run_id,
        max_user_code_retries=retry_settings(step).times,
        previous_failure_message=task.previous_failure if key.attempt else "",
    )
    variables = dict(environment.variables)
    variables.update(environment_variables(step))
    return LaunchRequest(
        key=key,
        task_spec=encode(spec),
        language=_LANGUAGES[language],
        interpreter=environment.interpreters[language],
        environment=variables,
        working_directory=environment.working_directory,
        stdout_path=layout.task_log_path(
            key.flow, key.run, key.step, key.task, key.attempt, "stdout"
        ),
        stderr_path=layout.task_log_path(
            key.flow, key.run, key.step, key.task, key.attempt, "stderr"
        ),
        max_log_size_bytes=request.options.max_log_size_bytes,
        decorators=tuple((d.name, d.attributes) for d in step.decorators),
    )


def _input_data(run: ActiveRun, ref: InputRef, metadata: MetadataStore) -> TaskInputData:
    """An input task with the artifacts it stored, read from the metadata store."""
    artifacts = metadata.list_artifacts(run.flow, run.run_id, ref.task_id, ref.attempt)
    return TaskInputData(
        pathspec=run.pathspec(ref.step, ref.task_id),
        step=ref.step,
        artifacts=tuple(artifacts),
        foreach_stack=ref.foreach_stack,
    )
