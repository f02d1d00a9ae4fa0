"""Resource names and pathspecs: parsing (with INVALID_ARGUMENT on malformed input) and
formatting.

Resource names (AIP-122) follow Metaflow's pathspec::

    flows/{flow}/runs/{run}/steps/{step}/tasks/{task}/artifacts/{artifact}

and a pathspec is the same path without the collection words: ``{flow}/{run}/{step}/{task}``.

Segments: a flow is ``[A-Za-z_][A-Za-z0-9_]*``; a step ``[A-Za-z0-9_]+`` (``_parameters``
included); run and task ids ``[A-Za-z0-9_-]+`` (decimal for this core's own ids, but other
orchestrators' ids stay addressable); an artifact ``[A-Za-z0-9_.]+`` (R names may hold dots).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from polyflow_core.errors import InvalidArgumentError

__all__ = [
    "ArtifactName",
    "FlowName",
    "RunName",
    "StepName",
    "TaskName",
    "format_pathspec",
    "parse_artifact_name",
    "parse_flow_name",
    "parse_pathspec",
    "parse_run_name",
    "parse_step_name",
    "parse_task_name",
]

_FLOW = r"[A-Za-z_][A-Za-z0-9_]*"
_ID = r"[A-Za-z0-9_-]+"
_STEP = r"[A-Za-z0-9_]+"
_ARTIFACT = r"(?!\.{1,2}\Z)[A-Za-z0-9_.]+"

_FLOW_RE = re.compile(rf"flows/(?P<flow>{_FLOW})")
_RUN_RE = re.compile(rf"flows/(?P<flow>{_FLOW})/runs/(?P<run>{_ID})")
_STEP_RE = re.compile(rf"flows/(?P<flow>{_FLOW})/runs/(?P<run>{_ID})/steps/(?P<step>{_STEP})")
_TASK_RE = re.compile(
    rf"flows/(?P<flow>{_FLOW})/runs/(?P<run>{_ID})/steps/(?P<step>{_STEP})"
    rf"/tasks/(?P<task>{_ID})"
)
_ARTIFACT_RE = re.compile(
    rf"flows/(?P<flow>{_FLOW})/runs/(?P<run>{_ID})/steps/(?P<step>{_STEP})"
    rf"/tasks/(?P<task>{_ID})/artifacts/(?P<artifact>{_ARTIFACT})"
)
_PATHSPEC_RE = re.compile(rf"(?P<flow>{_FLOW})/(?P<run>{_ID})/(?P<step>{_STEP})/(?P<task>{_ID})")


@dataclass(frozen=True)
class FlowName:
    """``flows/{flow}``."""

    flow: str
    """The flow's name."""

    def __str__(self) -> str:
        """The resource name."""
        return f"flows/{self.flow}"


@dataclass(frozen=True)
class RunName:
    """``flows/{flow}/runs/{run}``."""

    flow: str
    """The flow's name."""
    run: str
    """The run's id."""

    @property
    def parent(self) -> FlowName:
        """The flow."""
        return FlowName(self.flow)

    def __str__(self) -> str:
        """The resource name."""
        return f"flows/{self.flow}/runs/{self.run}"


@dataclass(frozen=True)
class StepName:
    """``flows/{flow}/runs/{run}/steps/{step}``."""

    flow: str
    """The flow's name."""
    run: str
    """The run's id."""
    step: str
    """The step's name."""

    @property
    def parent(self) -> RunName:
        """The run."""
        return RunName(self.flow, self.run)

    def __str__(self) -> str:
        """The resource name."""
        return f"flows/{self.flow}/runs/{self.run}/steps/{self.step}"


@dataclass(frozen=True)
class TaskName:
    """``flows/{flow}/runs/{run}/steps/{step}/tasks/{task}``."""

    flow: str
    """The flow's name."""
    run: str
    """The run's id."""
    step: str
    """The step's name."""
    task: str
    """The task's id."""

    @property
    def parent(self) -> StepName:
        """The step."""
        return StepName(self.flow, self.run, self.step)

    @property
    def pathspec(self) -> str:
        """``{flow}/{run}/{step}/{task}``."""
        return format_pathspec(self.flow, self.run, self.step, self.task)

    def __str__(self) -> str:
        """The resource name."""
        return f"flows/{self.flow}/runs/{self.run}/steps/{self.step}/tasks/{self.task}"


@dataclass(frozen=True)
class ArtifactName:
    """``flows/{flow}/runs/{run}/steps/{step}/tasks/{task}/artifacts/{artifact}``."""

    flow: str
    """The flow's name."""
    run: str
    """The run's id."""
    step: str
    """The step's name."""
    task: str
    """The task's id."""
    artifact: str
    """The artifact's name."""

    @property
    def parent(self) -> TaskName:
        """The task."""
        return TaskName(self.flow, self.run, self.step, self.task)

    def __str__(self) -> str:
        """The resource name."""
        return f"{self.parent}/artifacts/{self.artifact}"


def _match(pattern: re.Pattern[str], value: str, field: str, expected: str) -> dict[str, str]:
    match = pattern.fullmatch(value)
    if match is None:
        raise InvalidArgumentError(
            f"{field} {value!r} is not a resource name of the form {expected}",
            reason="INVALID_NAME",
            metadata={"field": field, "name": value, "expected": expected},
        )
    return match.groupdict()


def parse_flow_name(name: str, field: str = "name") -> FlowName:
    """Parse ``flows/{flow}``.

    Args:
        name: The resource name.
        field: The request field it came from (named in the error).

    Raises:
        InvalidArgumentError: Malformed name (reason ``INVALID_NAME``; metadata ``field``,
            ``name``, ``expected``).
    """
    return FlowName(**_match(_FLOW_RE, name, field, "flows/{flow}"))


def parse_run_name(name: str, field: str = "name") -> RunName:
    """Parse ``flows/{flow}/runs/{run}`` (errors as :func:`parse_flow_name`)."""
    return RunName(**_match(_RUN_RE, name, field, "flows/{flow}/runs/{run}"))


def parse_step_name(name: str, field: str = "name") -> StepName:
    """Parse ``flows/{flow}/runs/{run}/steps/{step}`` (errors as :func:`parse_flow_name`)."""
    return StepName(**_match(_STEP_RE, name, field, "flows/{flow}/runs/{run}/steps/{step}"))


def parse_task_name(name: str, field: str = "name") -> TaskName:
    """Parse ``flows/{flow}/runs/{run}/steps/{step}/tasks/{task}`` (errors as
    :func:`parse_flow_name`)."""
    return TaskName(
        **_match(_TASK_RE, name, field, "flows/{flow}/runs/{run}/steps/{step}/tasks/{task}")
    )


def parse_artifact_name(name: str, field: str = "name") -> ArtifactName:
    """Parse ``.../tasks/{task}/artifacts/{artifact}`` (errors as :func:`parse_flow_name`)."""
    return ArtifactName(
        **_match(
            _ARTIFACT_RE,
            name,
            field,
            "flows/{flow}/runs/{run}/steps/{step}/tasks/{task}/artifacts/{artifact}",
        )
    )


def parse_pathspec(pathspec: str, field: str = "pathspec") -> TaskName:
    """Parse a task pathspec ``{flow}/{run}/{step}/{task}``.

    Raises:
        InvalidArgumentError: Malformed pathspec (reason ``INVALID_PATHSPEC``).
    """
    match = _PATHSPEC_RE.fullmatch(pathspec)
    if match is None:
        raise InvalidArgumentError(
            f"{field} {pathspec!r} is not a task pathspec of the form flow/run/step/task",
            reason="INVALID_PATHSPEC",
            metadata={"field": field, "pathspec": pathspec},
        )
    return TaskName(**match.groupdict())


def format_pathspec(flow: str, run: str, step: str, task: str) -> str:
    """``{flow}/{run}/{step}/{task}``."""
    return f"{flow}/{run}/{step}/{task}"
