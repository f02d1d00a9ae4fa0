"""A third-party step decorator, as a plugin package would ship it (for the stubs tests).

Its attribute types come from the three places the stub generator reads: class annotations
(``image``, ``cpu``), a ``name (type):`` docstring entry (``secrets``) and the default's type
(``namespace``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from polyflow._authoring.decorators import StepDecorator


class KubeDecorator(StepDecorator):
    """Run the step's tasks on Kubernetes.

    Args:
        image: The container image; None for the executor's default.
        cpu: CPUs for each task.
        secrets (list[str]): Kubernetes secrets mounted into the task.
        namespace: The Kubernetes namespace.
    """

    name = "kube"
    defaults: ClassVar[Mapping[str, Any]] = {
        "image": None,
        "cpu": 1.0,
        "secrets": [],
        "namespace": "default",
    }
    image: str | None
    cpu: float
