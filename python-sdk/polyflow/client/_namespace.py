"""The client namespace: which runs the client API shows.

An object is in namespace ``ns`` when its run carries ``ns`` as a tag (user or system). The
default is ``user:<username>``; inside a task it is the namespace the run was started in (the
worker sets ``POLYFLOW_NAMESPACE``, empty meaning global). ``namespace(None)`` shows every run.
"""

from __future__ import annotations

import getpass
import os
from typing import Final

__all__ = [
    "ENV_NAMESPACE",
    "ENV_USER",
    "current_user",
    "default_namespace",
    "get_namespace",
    "namespace",
]

ENV_NAMESPACE: Final = "POLYFLOW_NAMESPACE"
"""Set by the task worker to the run's namespace (empty: global)."""
ENV_USER: Final = "POLYFLOW_USER"
"""Overrides the user name runs are recorded under."""


class _Unset:
    """Marks that :func:`namespace` was never called in this process."""


_UNSET: Final = _Unset()
_current: str | _Unset | None = _UNSET


def current_user() -> str:
    """The user name runs are recorded under: ``POLYFLOW_USER``, ``USER``, else the login."""
    for variable in (ENV_USER, "USER"):
        value = os.environ.get(variable)
        if value:
            return value
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (e.g. a container with an arbitrary uid)
        return "unknown"


def _default() -> str | None:
    if ENV_NAMESPACE in os.environ:
        return os.environ[ENV_NAMESPACE] or None
    return f"user:{current_user()}"


def namespace(ns: str | None) -> str | None:
    """Switch the namespace the client API shows.

    Args:
        ns: A tag such as ``user:alice``, or None for the global namespace (every run).

    Returns:
        The namespace now in effect.
    """
    global _current
    _current = ns
    return ns


def get_namespace() -> str | None:
    """The namespace in effect (None means global)."""
    if isinstance(_current, _Unset):
        return _default()
    return _current


def default_namespace() -> str | None:
    """Go back to the default namespace and return it.

    Returns:
        ``user:<username>``, or inside a task the namespace its run was started in.
    """
    global _current
    _current = _default()
    return _current
