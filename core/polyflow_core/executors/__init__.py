"""Executors: where task attempts run. The contract is in :mod:`.base`; the built-in ``local``
executor (child processes of the daemon) is in :mod:`.local`. Plugins register under the
``polyflow.executors`` entry-point group (see :mod:`polyflow_core.plugins`)."""

from __future__ import annotations

from polyflow_core.executors.base import (
    Executor,
    ExecutorListener,
    ExitStatus,
    LaunchError,
    LaunchRequest,
    TaskHandle,
    TaskKey,
    WorkerLanguage,
    worker_argv,
)

__all__ = [
    "Executor",
    "ExecutorListener",
    "ExitStatus",
    "LaunchError",
    "LaunchRequest",
    "TaskHandle",
    "TaskKey",
    "WorkerLanguage",
    "worker_argv",
]
