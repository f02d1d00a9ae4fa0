"""The files under a Polyflow root (a ``.polyflow/`` folder), computed by pure functions.

Both the daemon and the SDK import this module (see ``docs/architecture.md``), so it imports
nothing heavy and touches the file system only in :func:`find_root` (reads) and
:meth:`RootLayout.ensure_socket_dir` (creates a folder, when asked)::

    .polyflow/
      daemon.sock | /tmp/polyflow-<uid>/<16 hex of sha256(root)>.sock   (path over 100 bytes)
      daemon.lock  daemon.pid  daemon.log  metadata.db
      store/
      logs/<flow>/<run>/<step>/<task>/<attempt>.stdout|.stderr
      tasks/<run>-<task>-<attempt>.pb
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from polyflow_core.errors import FailedPreconditionError, InvalidArgumentError

__all__ = [
    "MAX_SOCKET_PATH_BYTES",
    "ROOT_DIR_NAME",
    "LogStreamName",
    "RootLayout",
    "core_address",
    "find_root",
]

ROOT_DIR_NAME = ".polyflow"
"""Name of the root folder, looked for like git looks for ``.git``."""

MAX_SOCKET_PATH_BYTES = 100
"""Longest socket path used in place; longer ones fall back to a short path under /tmp.
(``sun_path`` holds 108 bytes on Linux, 104 on macOS, including the final NUL.)"""

LogStreamName = Literal["stdout", "stderr"]
"""The two captured output streams of a task attempt."""

_FALLBACK_PARENT = Path("/tmp")  # not $TMPDIR: on macOS it is itself too long for a socket


def _check_segment(kind: str, value: str) -> str:
    """Refuse a path segment that could leave its folder."""
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\x00" in value:
        raise InvalidArgumentError(
            f"{kind} {value!r} cannot be used as a path segment",
            reason="INVALID_PATH_SEGMENT",
            metadata={"kind": kind, "value": value},
        )
    return value


@dataclass(frozen=True)
class RootLayout:
    """Where each file of a root lives.

    Args:
        root: The ``.polyflow`` folder (it need not exist yet). It is made absolute and
            resolved, so two spellings of one folder share one layout and one socket.
    """

    root: Path
    """The absolute, resolved root folder."""

    def __post_init__(self) -> None:
        """Normalise ``root``."""
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    @property
    def socket_in_root(self) -> Path:
        """The socket path inside the root (may be too long to bind)."""
        return self.root / "daemon.sock"

    @property
    def uses_socket_fallback(self) -> bool:
        """True when the in-root socket path is over :data:`MAX_SOCKET_PATH_BYTES` bytes."""
        return len(os.fsencode(self.socket_in_root)) > MAX_SOCKET_PATH_BYTES

    @property
    def socket_path(self) -> Path:
        """The daemon's unix socket: in the root, or the short fallback under /tmp."""
        if not self.uses_socket_fallback:
            return self.socket_in_root
        digest = hashlib.sha256(os.fsencode(self.root)).hexdigest()[:16]
        return _FALLBACK_PARENT / f"polyflow-{os.getuid()}" / f"{digest}.sock"

    def ensure_socket_dir(self) -> Path:
        """Create the socket's folder, owner-only (0700), and return it.

        For the in-root socket this is the root itself (created 0700 when missing). For the
        fallback it is ``/tmp/polyflow-<uid>``, which must belong to the current user and be
        private: one made by another user is refused rather than trusted.

        Raises:
            FailedPreconditionError: The fallback folder belongs to another user, or is not
                a folder.
        """
        folder = self.socket_path.parent
        if not self.uses_socket_fallback:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            return folder
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise FailedPreconditionError(
                f"{folder} is not a folder owned by the current user; refusing to put the "
                "daemon socket there",
                reason="UNSAFE_SOCKET_DIR",
                metadata={"path": str(folder)},
            )
        if stat.S_IMODE(info.st_mode) != 0o700:
            folder.chmod(0o700)
        return folder

    @property
    def lock_path(self) -> Path:
        """The flock file held by the running daemon."""
        return self.root / "daemon.lock"

    @property
    def pid_path(self) -> Path:
        """The running daemon's pid."""
        return self.root / "daemon.pid"

    @property
    def log_path(self) -> Path:
        """The daemon's own stdout/stderr."""
        return self.root / "daemon.log"

    @property
    def db_path(self) -> Path:
        """The SQLite metadata database."""
        return self.root / "metadata.db"

    @property
    def store_root(self) -> Path:
        """The local content-addressed store."""
        return self.root / "store"

    @property
    def logs_root(self) -> Path:
        """The folder of captured task output."""
        return self.root / "logs"

    @property
    def tasks_dir(self) -> Path:
        """The folder of serialized ``TaskSpec`` files handed to workers."""
        return self.root / "tasks"

    def task_log_path(
        self, flow: str, run: str, step: str, task: str, attempt: int, stream: LogStreamName
    ) -> Path:
        """The captured output of one stream of a task attempt.

        Returns:
            ``logs/<flow>/<run>/<step>/<task>/<attempt>.<stream>``.

        Raises:
            InvalidArgumentError: A segment is empty or could leave its folder, the attempt
                is negative, or ``stream`` is not ``"stdout"``/``"stderr"``.
        """
        if stream not in ("stdout", "stderr"):
            raise InvalidArgumentError(
                f"unknown log stream {stream!r}",
                reason="INVALID_LOG_STREAM",
                metadata={"stream": str(stream)},
            )
        if attempt < 0:
            raise InvalidArgumentError(
                f"attempt must be >= 0, got {attempt}", metadata={"attempt": str(attempt)}
            )
        return (
            self.logs_root
            / _check_segment("flow", flow)
            / _check_segment("run", run)
            / _check_segment("step", step)
            / _check_segment("task", task)
            / f"{attempt}.{stream}"
        )

    def task_spec_path(self, run: str, task: str, attempt: int) -> Path:
        """The serialized ``TaskSpec`` of a task attempt: ``tasks/<run>-<task>-<attempt>.pb``.

        Raises:
            InvalidArgumentError: A segment could leave its folder.
        """
        _check_segment("run", run)
        _check_segment("task", task)
        return self.tasks_dir / f"{run}-{task}-{attempt}.pb"


def find_root(start: Path) -> Path | None:
    """Find the nearest ``.polyflow`` folder at or above ``start``, like git finds ``.git``.

    Args:
        start: A folder (or file) to start from; relative paths are taken from the current
            folder.

    Returns:
        The ``.polyflow`` folder's absolute path, or None when no ancestor has one.
    """
    here = Path(start).expanduser().resolve()
    if here.name == ROOT_DIR_NAME and here.is_dir():
        return here
    for folder in (here, *here.parents):
        candidate = folder / ROOT_DIR_NAME
        if candidate.is_dir():
            return candidate
    return None


def core_address(layout: RootLayout) -> str:
    """The gRPC target of the daemon of a root: ``unix:<absolute socket path>``."""
    return f"unix:{layout.socket_path}"
