"""The client API: read flows, runs, steps, tasks and artifacts (Metaflow's client API).

``Flow("HelloFlow").latest_run.data.x`` works as in Metaflow. Objects outside the current
namespace (default ``user:<you>``) raise
:class:`~polyflow.exceptions.NamespaceMismatchError`; missing ones
:class:`~polyflow.exceptions.NotFoundError`.
"""

from __future__ import annotations

from polyflow.client._artifact import DataArtifact
from polyflow.client._flow import Flow
from polyflow.client._namespace import default_namespace, get_namespace, namespace
from polyflow.client._polyflow import Polyflow, get_metadata
from polyflow.client._run import Run
from polyflow.client._step import Step
from polyflow.client._task import Metadata, Task, TaskData, TaskException

Metaflow = Polyflow
"""Metaflow's name for :class:`Polyflow`, so Metaflow code runs unchanged."""

__all__ = [
    "DataArtifact",
    "Flow",
    "Metadata",
    "Metaflow",
    "Polyflow",
    "Run",
    "Step",
    "Task",
    "TaskData",
    "TaskException",
    "default_namespace",
    "get_metadata",
    "get_namespace",
    "namespace",
]
