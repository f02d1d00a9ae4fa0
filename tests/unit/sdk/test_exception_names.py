"""``polyflow.exception``: Metaflow's error names are Polyflow's classes."""

from __future__ import annotations

import polyflow.exception as compat
import polyflow.exceptions as errors


def test_every_metaflow_name_is_a_polyflow_class() -> None:
    assert compat.__all__
    for name in compat.__all__:
        value = getattr(compat, name)
        assert isinstance(value, type), name
        assert getattr(errors, value.__name__) is value, name


def test_the_names_map_to_the_matching_errors() -> None:
    assert compat.MetaflowException is errors.PolyflowError
    assert compat.MetaflowNotFound is errors.NotFoundError
    assert compat.UnhandledInMergeArtifactsException is errors.UnhandledInMergeArtifactsError
    assert compat.MissingInMergeArtifactsException is errors.MissingInMergeArtifactsError
    assert compat.TimeoutException is errors.StepTimeoutError
    assert compat.MetaflowExceptionWrapper is errors.CaughtException
