"""``resume [STEP]``: start a run that continues an earlier one (Metaflow's ``resume``).

The core does the work (``StartRunRequest.origin_run``; see ``docs/architecture.md``,
"Resume"): tasks that succeeded in the origin run are cloned by reference, the others run,
and parameters (and class constants) are the origin run's. This command only picks the
origin run, checks the graph and follows the new run as ``run`` does.

The origin run is ``--origin-run-id``, or else the latest run of the flow started with
``run`` (not with ``resume``) in the namespace the run would use. That is Metaflow's rule
(its ``latest_run`` file is written only by ``run``): resuming twice in a row resumes the
same run again, not the first resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from polyflow._cli._graph import extract, print_problems, validate
from polyflow._cli._output import Console
from polyflow._cli._run import RunOptions, options_message, start_and_follow
from polyflow.exceptions import GraphError, ParameterError, PolyflowError

if TYPE_CHECKING:
    from polyflow._transport import CoreClient

__all__ = ["ResumeOptions", "execute_resume", "latest_run_id"]


@dataclass(frozen=True)
class ResumeOptions:
    """What ``resume`` adds to the options of ``run``."""

    step: str | None = None
    """Re-run this step and every step after it, even where they succeeded."""
    origin_run_id: str | None = None
    """The run to resume; None: the latest run started with ``run``."""
    clone_only: bool = False
    """Clone the tasks that succeeded and run nothing."""


def latest_run_id(client: CoreClient, flow: str, namespace: str | None) -> str | None:
    """The newest run of ``flow`` started with ``run`` (it has no origin run) in
    ``namespace`` (None: any), or None when there is none."""
    from polyflow.exceptions import NotFoundError

    tags = (namespace,) if namespace else ()
    try:
        for run in client.list_runs(f"flows/{flow}", tags=tags):
            if not run.origin_run:
                return str(run.run_id)
    except NotFoundError:  # the flow never ran
        return None
    return None


def execute_resume(flow_cls: type, options: RunOptions, resume: ResumeOptions) -> int:
    """Resume a run of the flow and follow it; return the process exit status.

    Returns:
        0 when the resumed run succeeded, 1 when it failed, was cancelled, or could not start.
    """
    console = Console(options.quiet)
    try:
        return _execute(flow_cls, options, resume, console)
    except ParameterError as error:
        console.error(f"Error: {error}")
        return 1
    except GraphError as error:
        console.error("The graph has problems:")
        print_problems(console, error.problems, "")
        return 1
    except PolyflowError as error:
        console.error(f"Error: {error}")
        return 1


def _execute(flow_cls: type, options: RunOptions, resume: ResumeOptions, console: Console) -> int:
    from polyflow._authoring.graph import run_launch_hooks
    from polyflow._cli._run import _environment, _system_tags
    from polyflow._cli.main import _version
    from polyflow._daemon import get_client
    from polyflow.api.runtime.v1 import request_response_pb2 as runtime_rr
    from polyflow.client._namespace import current_user, get_namespace

    flow = flow_cls.__name__
    user = current_user()
    console.info(f"Polyflow {_version()} resuming {flow} for user:{user}")
    definition = extract(flow_cls, options.decospecs)
    for tag in options.tags:
        if not tag.strip():
            raise ParameterError("--tag needs a non-empty value")
    if resume.origin_run_id is not None and not resume.origin_run_id.strip():
        raise ParameterError("--origin-run-id needs a run id")

    client = get_client()
    console.info("Validating your flow...")
    graph, _, problems = validate(client, definition)
    if problems:
        console.error("The graph has problems:")
        print_problems(console, problems, definition.source_file)
        return 1
    console.info("    The graph looks good!")
    if resume.step is not None and resume.step not in {step.name for step in graph.steps}:
        steps = ", ".join(step.name for step in graph.steps)
        raise click.UsageError(
            f"cannot resume from step {resume.step!r}: {flow} has no such step (its steps: {steps})"
        )
    run_launch_hooks(definition)

    ns = options.namespace if options.namespace is not None else get_namespace()
    origin = resume.origin_run_id.strip() if resume.origin_run_id else None
    if origin is None:
        origin = latest_run_id(client, flow, ns or None)
        if origin is None:
            where = f"namespace {ns}" if ns else "any namespace"
            raise click.ClickException(
                f"no run of {flow} to resume in {where}: run the flow first, or name a run "
                "with --origin-run-id"
            )
        console.info(f"Resuming run {flow}/{origin}, the latest run of {flow} started with run.")
    else:
        console.info(f"Resuming run {flow}/{origin}.")
    if resume.step:
        console.info(f"Re-running step {resume.step} and every step after it.")

    request = runtime_rr.StartRunRequest(
        graph=graph,
        tags=list(dict.fromkeys(options.tags)),
        options=options_message(options),
        environment=_environment(definition, graph),
        user=user,
        namespace=ns or "",
        system_tags=_system_tags(),
        origin_run=f"flows/{flow}/runs/{origin}",
        resume_step=resume.step or "",
        clone_only=resume.clone_only,
    )
    return start_and_follow(client, request, flow, options, console)
