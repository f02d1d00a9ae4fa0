"""Metaflow's names for Polyflow's errors, for code ported from Metaflow.

Metaflow code catches its errors by importing them from ``metaflow.exception``; changing
that import line to ``polyflow.exception`` keeps such code working. Each name here *is* the
Polyflow class (not a subclass), so ``except MetaflowNotFound`` catches exactly what
``except NotFoundError`` does. New code should use :mod:`polyflow.exceptions`.
"""

from __future__ import annotations

from polyflow.exceptions import (
    CaughtException,
    InternalError,
    InvalidNextError,
    InvalidPathspecError,
    MissingInMergeArtifactsError,
    NamespaceMismatchError,
    NotFoundError,
    ParameterError,
    PolyflowError,
    StepTimeoutError,
    UnhandledInMergeArtifactsError,
)

__all__ = [
    "InvalidNextException",
    "MetaflowException",
    "MetaflowExceptionWrapper",
    "MetaflowInternalError",
    "MetaflowInvalidPathspec",
    "MetaflowNamespaceMismatch",
    "MetaflowNotFound",
    "MissingInMergeArtifactsException",
    "ParameterFieldFailed",
    "TimeoutException",
    "UnhandledInMergeArtifactsException",
]

MetaflowException = PolyflowError
MetaflowNotFound = NotFoundError
MetaflowNamespaceMismatch = NamespaceMismatchError
MetaflowInvalidPathspec = InvalidPathspecError
MetaflowInternalError = InternalError
ParameterFieldFailed = ParameterError
UnhandledInMergeArtifactsException = UnhandledInMergeArtifactsError
MissingInMergeArtifactsException = MissingInMergeArtifactsError
InvalidNextException = InvalidNextError
TimeoutException = StepTimeoutError
MetaflowExceptionWrapper = CaughtException
