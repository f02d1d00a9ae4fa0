"""Find the core daemon a client should talk to, starting a local one when none answers.

Resolution order:

1. ``POLYFLOW_CORE_ADDRESS``: a core somewhere else (a shared service, or the daemon that
   launched this task worker). Nothing is started.
2. The root: ``POLYFLOW_ROOT``, else the nearest ``.polyflow`` folder at or above the current
   folder (like git finds ``.git``), else a new ``./.polyflow`` (mode 0700).

For a root, the daemon listens on the root's unix socket. When nothing answers there, the
client starts ``<python> -m polyflow_core serve --root ROOT`` detached from itself (own
session, stdin from /dev/null, output appended to ``daemon.log``) and waits for it. Two
clients racing both start one; the daemon's flock lets only one live, and both clients simply
wait for the socket to answer.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from polyflow_core.paths import ROOT_DIR_NAME, RootLayout, core_address, find_root

from polyflow.exceptions import DaemonError, DeadlineExceededError, UnavailableError

if TYPE_CHECKING:
    from polyflow._transport import CoreClient
    from polyflow.api.runtime.v1.request_response_pb2 import GetServerInfoResponse

__all__ = [
    "ENV_ADDRESS",
    "ENV_CLIENT_CACHE",
    "ENV_ROOT",
    "ENV_TOKEN",
    "Endpoint",
    "ensure_daemon",
    "get_client",
    "probe",
    "reset_client",
    "resolve_endpoint",
    "resolve_root",
    "stop_daemon",
]

ENV_ADDRESS = "POLYFLOW_CORE_ADDRESS"
"""Address of a core to use as is (``unix:/...`` or ``host:port``)."""
ENV_ROOT = "POLYFLOW_ROOT"
"""The root folder (``.polyflow``) whose daemon to use."""
ENV_TOKEN = "POLYFLOW_CORE_TOKEN"
"""Bearer token for a core that wants one."""
ENV_CLIENT_CACHE = "POLYFLOW_CLIENT_CACHE"
"""``0`` turns off the cache of metadata reads (kept while the local daemon's change stamp
is unchanged; see ``polyflow_core.stamp``)."""

START_TIMEOUT = 20.0
"""Seconds to wait for a daemon this client started."""
PROBE_TIMEOUT = 2.0
"""Deadline of the call that asks whether a daemon answers."""

# A tiny launcher: it forks the daemon into its own session and exits at once, so the daemon
# is not this client's child (no zombie, no "still running" warning, no signal from the
# client's terminal) while the client never forks itself (its gRPC state is not fork-safe).
_LAUNCHER = (
    "import os, sys\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    argv = [sys.executable, '-m', 'polyflow_core', 'serve', '--root', sys.argv[1]]\n"
    "    os.execv(sys.executable, argv)\n"
    "os._exit(0)\n"
)


@dataclass(frozen=True)
class Endpoint:
    """Where a client finds its core."""

    address: str
    """The core's gRPC address."""
    root: Path | None
    """The local root whose daemon serves ``address``; None for a core given by address."""


def resolve_root(cwd: Path | None = None, *, create: bool = True) -> Path | None:
    """Find the root folder for the current project.

    Args:
        cwd: Where to start looking; the current folder by default.
        create: Create ``<cwd>/.polyflow`` (mode 0700) when no root is found, and the
            folder named by ``POLYFLOW_ROOT`` when it does not exist.

    Returns:
        The absolute root, or None when there is none and ``create`` is False.
    """
    start = cwd if cwd is not None else Path.cwd()
    from_env = os.environ.get(ENV_ROOT)
    if from_env:
        root = Path(from_env).expanduser().resolve()
        if create:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return root if create or root.is_dir() else None
    found: Path | None = find_root(start)
    if found is not None:
        return found
    if not create:
        return None
    root = (start / ROOT_DIR_NAME).resolve()
    root.mkdir(mode=0o700, exist_ok=True)
    return root


def resolve_endpoint(*, create_root: bool = True) -> Endpoint | None:
    """Decide which core this process talks to, without contacting it.

    Args:
        create_root: As ``create`` in :func:`resolve_root`.

    Returns:
        The endpoint, or None when no root exists and ``create_root`` is False.
    """
    address = os.environ.get(ENV_ADDRESS)
    if address:
        return Endpoint(address=address, root=None)
    root = resolve_root(create=create_root)
    if root is None:
        return None
    return Endpoint(address=core_address(RootLayout(root)), root=root)


def _client(address: str) -> CoreClient:
    from polyflow._transport import CoreClient

    return CoreClient(address, token=os.environ.get(ENV_TOKEN) or None)


def probe(
    address: str, *, timeout: float = PROBE_TIMEOUT, wait_for_ready: bool = False
) -> GetServerInfoResponse | None:
    """Ask the core at ``address`` to describe itself.

    Args:
        address: The core's address.
        timeout: Deadline of the call, in seconds.
        wait_for_ready: Wait (up to the deadline) for the channel to connect instead of
            failing at once when nothing listens.

    Returns:
        The core's description, or None when nothing answers in time.
    """
    try:
        return _client(address).get_server_info(
            timeout=timeout, retry=False, wait_for_ready=wait_for_ready
        )
    except (UnavailableError, DeadlineExceededError):
        return None


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip()
    except OSError:
        return ""


_launchers: dict[Path, subprocess.Popen[bytes]] = {}  # started early, not waited for yet


def start_early() -> None:
    """Start the project's daemon now, without waiting for it, when none can be answering
    (no socket): a command that will need it (``run``) overlaps the daemon's start with its
    own. :func:`ensure_daemon` then waits for this one rather than starting another."""
    if os.environ.get(ENV_ADDRESS):
        return
    try:
        root = resolve_root()
        if root is None:
            return
        layout = RootLayout(root)
        if not layout.socket_path.exists() and layout.root not in _launchers:
            if not _launchers:
                atexit.register(_reap_early)  # when the command never needed the daemon
            _launchers[layout.root] = _spawn(layout, wait=False)
    except OSError:
        pass  # ensure_daemon will try again, and report


def _reap_early() -> None:
    while _launchers:
        _reap(_launchers.popitem()[1])


def _spawn(layout: RootLayout, *, wait: bool = True) -> subprocess.Popen[bytes]:
    layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(layout.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        launcher = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(layout.root)],
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            cwd=layout.root,
            close_fds=True,
        )
    finally:
        os.close(fd)
    if wait:
        _reap(launcher)
    return launcher


def _reap(launcher: subprocess.Popen[bytes]) -> None:
    """Wait for a launcher (it forks the daemon and exits at once)."""
    try:
        launcher.wait(timeout=10)
    except subprocess.TimeoutExpired:
        launcher.kill()
        launcher.wait()


def ensure_daemon(root: Path, *, timeout: float = START_TIMEOUT) -> GetServerInfoResponse:
    """Return the description of the root's daemon, starting the daemon when none answers.

    Args:
        root: The root folder.
        timeout: Seconds to wait for a daemon this call started.

    Returns:
        The daemon's description.

    Raises:
        DaemonError: No daemon answered within ``timeout``; the message quotes the end of
            ``daemon.log``.
    """
    layout = RootLayout(root)
    address = core_address(layout)
    # Without a socket file nothing can answer: skip the probe and start at once.
    early = _launchers.pop(layout.root, None)
    if layout.socket_path.exists():
        info = probe(address)
        if info is not None:
            if early is not None:
                _reap(early)
            return info
    if early is not None:
        _reap(early)  # started by start_early(): wait for it below
    else:
        _spawn(layout)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        # wait_for_ready makes the call wait for the socket to accept, so the loop does not
        # spin; the short deadline keeps the overall timeout honoured.
        info = probe(address, timeout=min(0.5, remaining), wait_for_ready=True)
        if info is not None:
            return info
        time.sleep(0.05)
    tail = _log_tail(layout.log_path)
    message = (
        f"the polyflow daemon for {layout.root} did not answer on {address} within {timeout:g} s"
    )
    if tail:
        message += f"; the end of {layout.log_path}:\n{tail}"
    else:
        message += f" (nothing in {layout.log_path})"
    raise DaemonError(message, address=address, log_tail=tail)


_client_lock = threading.Lock()
_cached: CoreClient | None = None


def _forget_client_after_fork() -> None:
    global _cached, _client_lock
    _cached = None
    _client_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_client_after_fork)


def get_client() -> CoreClient:
    """Return this process's client of its core, finding or starting the daemon once.

    Returns:
        A client shared by the whole process. For a local daemon, a read that finds the
        daemon gone (it exits when idle) starts it again and retries.

    Raises:
        DaemonError: The daemon could not be started.
    """
    global _cached
    with _client_lock:
        if _cached is not None:
            return _cached
        endpoint = resolve_endpoint()
        assert endpoint is not None  # create_root=True always yields one
        from polyflow._transport import CoreClient

        if endpoint.root is None:
            client = CoreClient(endpoint.address, token=os.environ.get(ENV_TOKEN) or None)
        else:
            root = endpoint.root
            ensure_daemon(root)

            def restart() -> None:
                ensure_daemon(root)

            stamp = None
            if os.environ.get(ENV_CLIENT_CACHE, "1") != "0":
                from polyflow_core.stamp import StampReader, stamp_path_for

                stamp = StampReader(stamp_path_for(RootLayout(root).db_path)).read
            client = CoreClient(endpoint.address, reconnect=restart, change_stamp=stamp)
        _cached = client
        return client


def reset_client() -> None:
    """Forget the cached client (after the environment changed, e.g. in tests)."""
    global _cached
    with _client_lock:
        _cached = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but not been reaped yet (Linux; False elsewhere). A daemon
    is its launcher's orphan: until init reaps it, signal 0 still finds it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].startswith("Z")


def _looks_like_daemon(pid: int) -> bool:
    """Guard against a recycled pid: on Linux, check the process runs polyflow_core."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return True  # not Linux (or no /proc): trust the pid file
    try:
        return b"polyflow_core" in cmdline.read_bytes()
    except OSError:
        return False


def read_pid(layout: RootLayout) -> int | None:
    """The pid in the root's ``daemon.pid``, or None when absent or unreadable."""
    try:
        return int(layout.pid_path.read_text().strip())
    except (OSError, ValueError):
        return None


def stop_daemon(root: Path, *, timeout: float = 15.0) -> int | None:
    """Stop the root's daemon with SIGTERM and wait until it is gone.

    Args:
        root: The root folder.
        timeout: Seconds to wait for the process to exit.

    Returns:
        The stopped daemon's pid, or None when no daemon was running.

    Raises:
        DaemonError: The daemon did not exit within ``timeout``.
    """
    layout = RootLayout(root)
    info = probe(core_address(layout)) if layout.socket_path.exists() else None
    pid = int(info.pid) if info is not None and info.pid else read_pid(layout)
    if pid is None or not _pid_alive(pid) or not _looks_like_daemon(pid):
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            raise DaemonError(
                f"the polyflow daemon (pid {pid}) did not exit within {timeout:g} s of SIGTERM",
                address=core_address(layout),
                log_tail=_log_tail(layout.log_path),
            )
        time.sleep(0.05)
    reset_client()
    return pid
