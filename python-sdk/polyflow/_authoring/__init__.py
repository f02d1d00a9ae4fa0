"""The flow-authoring API: ``FlowSpec``, ``step``, parameters and ``current``.

``polyflow`` re-exports these names; the modules here are private. Graph extraction
(:mod:`polyflow._authoring.graph`) is imported only by the tools that need it.
"""

from __future__ import annotations

from polyflow._authoring.current import current
from polyflow._authoring.flowspec import FlowSpec
from polyflow._authoring.parameters import IncludeFile, JSONType, Parameter
from polyflow._authoring.step import step

__all__ = ["FlowSpec", "IncludeFile", "JSONType", "Parameter", "current", "step"]
