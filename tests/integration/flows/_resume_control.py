"""Helpers the resume test flows share: fail or wait where the test's environment says.

- ``RESUME_FAIL``: comma-separated labels of tasks that raise (e.g. ``four``, ``work:2``).
- ``RESUME_MARKERS``: a folder where tasks drop marker files (``<label>.done``).
- ``RESUME_WAIT_FOR``: comma-separated labels a failing task waits for (their markers)
  before it raises, so that they are recorded as succeeded first.
- ``RESUME_BLOCK``: the label of a task that drops ``<label>.started`` and then waits for a
  ``release`` marker (at most 60 s) before raising (the daemon-kill test).
"""

import os
import time
from pathlib import Path


def _labels(name: str) -> set[str]:
    return {label for label in os.environ.get(name, "").split(",") if label}


def _marker(name: str) -> Path | None:
    folder = os.environ.get("RESUME_MARKERS")
    return Path(folder) / name if folder else None


def _wait(path: Path | None, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while path is not None and not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def checkpoint(label: str) -> None:
    """Block, fail, or leave a marker, as the environment says for this task."""
    if label == os.environ.get("RESUME_BLOCK"):
        started = _marker(f"{label}.started")
        if started is not None:
            started.touch()
        _wait(_marker("release"), 60)
        raise RuntimeError(f"task {label} was blocked and released")
    if label in _labels("RESUME_FAIL"):
        for other in sorted(_labels("RESUME_WAIT_FOR")):
            _wait(_marker(f"{other}.done"), 60)
        time.sleep(2)  # the tasks waited for report their success meanwhile
        raise ValueError(f"task {label} fails on purpose")
    done = _marker(f"{label}.done")
    if done is not None:
        done.touch()
