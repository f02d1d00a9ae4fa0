"""Tie a worker's life to the process that started it (Linux ``PR_SET_PDEATHSIG``).

A worker whose daemon died can no longer report its outcome, so whatever it goes on
computing is lost, and it may hold memory or devices a rerun needs. Linux kills such a
process when asked to beforehand; elsewhere nothing is done.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

__all__ = ["ENV_PARENT_PID", "die_with_launcher", "die_with_parent", "find_prctl"]

ENV_PARENT_PID = "POLYFLOW_PARENT_PID"
"""Set by the local executor to its own pid: a spawned worker dies with that process."""

_PR_SET_PDEATHSIG = 1


def find_prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (Linux only), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return function
    except (OSError, AttributeError):
        return None


def die_with_parent(prctl: Callable[..., int] | None) -> None:
    """Ask Linux to SIGKILL this process when the thread that started it ends."""
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def die_with_launcher() -> None:
    """In a spawned worker: die with the daemon named by :data:`ENV_PARENT_PID` (and now, if
    it is gone already). The variable is removed, so a step's own processes do not see it."""
    raw = os.environ.pop(ENV_PARENT_PID, "")
    if not raw.isdigit():
        return
    prctl = find_prctl()
    if prctl is None:
        return
    die_with_parent(prctl)
    if os.getppid() != int(raw):  # the daemon died before prctl took effect
        os._exit(1)
