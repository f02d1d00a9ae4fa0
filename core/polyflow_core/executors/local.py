"""The local executor: one child process per task attempt, on the daemon's machine.

Each attempt runs ``<interpreter> -m polyflow._worker`` (see :func:`.base.worker_argv`) in the
client's working directory and environment, plus ``POLYFLOW_TASK_SPEC=<spec file>`` and
``PYTHONUNBUFFERED=1``. The spec file is ``tasks/<run>-<task>-<attempt>.pb`` under the root;
it is deleted once the attempt is over.

One I/O thread serves every attempt:

- it reads all stdout/stderr pipes through :mod:`selectors`, appends the bytes to the
  attempt's log files as they arrive (so ``ReadTaskLog`` sees a killed task's last words) and
  reports each complete line to the listener. Past the run's ``max_log_size_bytes`` a stream
  is no longer stored nor reported: one :func:`truncation_marker` line is, and the rest of the
  output is read and dropped (so the worker never blocks on a full pipe, and the run's
  in-memory event log stays bounded too);
- it reaps the processes (``Popen.poll``) and reports an exit only after both pipes of the
  process reached end-of-file, so no output is lost. A grandchild that keeps a pipe open after
  the worker exited gets ``exit_grace_seconds`` before the pipe is closed on it.

Workers start in a new session (``start_new_session=True``): a kill signals the whole process
group, so the processes a task started die with it. A worker also dies with the daemon, whose
outcome it could no longer report: the Python worker asks Linux for that itself
(``PARENT_PID_VARIABLE``); other workers (R) are started through util-linux's
``setpriv --pdeathsig KILL`` where it exists, which asks the same and then runs the worker in
its own process.

Python steps run in pre-forked workers when possible (:mod:`.forkserver`): the same pipes and
log pump, the same exit statuses, no interpreter start per task.
"""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from polyflow_core.executors.base import (
    Executor,
    ExecutorListener,
    ExitStatus,
    LaunchError,
    LaunchRequest,
    TaskHandle,
    WorkerLanguage,
    worker_argv,
)
from polyflow_core.paths import LogStreamName, RootLayout

if TYPE_CHECKING:
    from polyflow_core.executors.forkserver import WorkerPool

__all__ = ["TASK_SPEC_VARIABLE", "LocalExecutor", "truncation_marker"]

_log = logging.getLogger(__name__)

TASK_SPEC_VARIABLE = "POLYFLOW_TASK_SPEC"
"""The environment variable naming the serialized ``TaskSpec`` file of an attempt."""
PARENT_PID_VARIABLE = "POLYFLOW_PARENT_PID"
"""The environment variable holding the daemon's pid: a worker that can (the Python one, on
Linux) asks to be killed when the daemon dies, as pre-forked workers are."""

_READ_SIZE = 65536
_MAX_LINE_BYTES = 64 * 1024
"""Unterminated output buffered past this size is reported as a line of its own, so one
endless line cannot eat memory (a reported line is thus at most about twice this long)."""


def _dying_with_daemon(argv: list[str]) -> list[str]:
    """``argv`` run through ``setpriv --pdeathsig KILL`` (Linux, util-linux) when both resolve;
    else as is (a missing interpreter then fails to launch exactly as without the wrapper)."""
    setpriv = _setpriv()
    if setpriv is None or shutil.which(argv[0]) is None:
        return argv
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]


_setpriv_path: str | bool | None = False  # False: not looked for yet


def _setpriv() -> str | None:
    """The ``setpriv`` executable if it supports ``--pdeathsig``, looked for once."""
    global _setpriv_path
    if _setpriv_path is False:
        _setpriv_path = None
        found = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        if found is not None:
            probe = subprocess.run(
                [found, "--pdeathsig", "KILL", "--", "true"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
            if probe.returncode == 0:
                _setpriv_path = found
    return _setpriv_path if isinstance(_setpriv_path, str) else None


@dataclass(eq=False)
class _Stream:
    """One output pipe of an attempt and the log file it is stored in."""

    name: LogStreamName
    pipe: IO[bytes]
    log_file: IO[bytes]
    limit: int
    written: int = 0
    truncated: bool = False
    is_open: bool = True
    partial: bytearray = field(default_factory=bytearray)

    @property
    def fd(self) -> int:
        """The pipe's file descriptor."""
        return self.pipe.fileno()


@dataclass(eq=False)
class _LocalHandle(TaskHandle):
    """A launched local attempt."""

    popen: subprocess.Popen[bytes] | None = None
    spec_path: Path | None = None
    streams: list[_Stream] = field(default_factory=list)
    status: ExitStatus | None = None
    exit_deadline: float = 0.0


class LocalExecutor(Executor):
    """Runs each task attempt as a child process of the daemon.

    Args:
        layout: The root's layout (for the spec files' folder).
        exit_grace_seconds: How long to wait, after a worker exited, for its pipes to close
            (a background grandchild may hold them) before reporting the exit anyway.
        poll_interval: Seconds between checks for exited processes.
    """

    name = "local"

    def __init__(
        self,
        layout: RootLayout,
        *,
        exit_grace_seconds: float = 2.0,
        poll_interval: float = 0.05,
    ) -> None:
        self._layout = layout
        self._exit_grace = exit_grace_seconds
        self._poll_interval = poll_interval
        self._listener: ExecutorListener | None = None
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._incoming: list[_LocalHandle] = []  # launched, not yet seen by the I/O thread
        self._live: dict[int, _LocalHandle] = {}  # id(handle) -> handle, until reported
        # Owned by the I/O thread: every attempt not reported yet, and those of them
        # whose process has exited (waiting for their pipes to drain).
        self._procs: dict[int, _LocalHandle] = {}
        self._exited: dict[int, _LocalHandle] = {}
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        # Python tasks run in pre-forked workers when possible (see .forkserver); their exit
        # statuses are posted by the pool's thread and applied by the I/O thread.
        self._posted: list[tuple[_LocalHandle, ExitStatus]] = []
        self._pool = _make_pool(self)

    # --- Executor API -------------------------------------------------------------------
    def start(self, listener: ExecutorListener) -> None:
        """Start the I/O thread."""
        self._listener = listener
        self._thread = threading.Thread(target=self._run, name="polyflow-local-executor-io")
        self._thread.daemon = True
        self._thread.start()
        if self._pool is not None:
            self._pool.start(sys.executable)  # most clients run flows with this interpreter

    def launch(self, request: LaunchRequest) -> TaskHandle:
        """Start the attempt in a pre-forked worker when it can; else write the spec file,
        open the log files and start the worker process."""
        if self._pool is not None:
            forked = self._pool.launch(request)
            if forked is not None:
                return forked
        key = request.key
        spec_path = self._layout.task_spec_path(key.run, key.task, key.attempt)
        argv = worker_argv(request.language, request.interpreter, request.environment)
        if request.language != "python":
            argv = _dying_with_daemon(argv)
        env = dict(request.environment)
        env[TASK_SPEC_VARIABLE] = str(spec_path)
        env[PARENT_PID_VARIABLE] = str(os.getpid())
        env["PYTHONUNBUFFERED"] = "1"
        log_files: list[IO[bytes]] = []
        try:
            spec_path.parent.mkdir(parents=True, exist_ok=True)
            _write_private(spec_path, request.task_spec)
            for path in (request.stdout_path, request.stderr_path):
                path.parent.mkdir(parents=True, exist_ok=True)
                # Unbuffered: ReadTaskLog must see output as it arrives.
                log_files.append(open(path, "ab", buffering=0))
            popen = subprocess.Popen(
                argv,
                cwd=request.working_directory or None,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as error:
            for log_file in log_files:
                log_file.close()
            spec_path.unlink(missing_ok=True)
            raise LaunchError(
                f"could not start the worker ({argv[0]}): {error.strerror or error}",
                metadata={"executable": argv[0], "pathspec": key.pathspec},
            ) from error
        assert popen.stdout is not None and popen.stderr is not None  # PIPE was asked for
        handle = _LocalHandle(key=key, popen=popen, spec_path=spec_path)
        limit = request.max_log_size_bytes
        handle.streams = [
            _Stream("stdout", popen.stdout, log_files[0], limit),
            _Stream("stderr", popen.stderr, log_files[1], limit),
        ]
        for stream in handle.streams:
            os.set_blocking(stream.fd, False)
        with self._lock:
            self._incoming.append(handle)
            self._live[id(handle)] = handle
        self._wake()
        return handle

    def kill(self, handle: TaskHandle) -> None:
        """SIGKILL the attempt's process group (the worker and what it started)."""
        if self._pool is not None and self._pool.owns(handle):
            self._pool.kill(handle)
            return
        if not isinstance(handle, _LocalHandle) or handle.popen is None:
            return
        popen = handle.popen
        if popen.returncode is not None:
            return  # reaped: its pid (and group id) may belong to someone else by now
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def shutdown(self, timeout: float = 5.0) -> None:
        """Kill every attempt, wait for their exits to be reported, stop the I/O thread."""
        with self._lock:
            if self._closed:
                return
            self._stopping = True
            live = list(self._live.values())
        for handle in live:
            self.kill(handle)
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                _log.warning("local executor: I/O thread still busy after %.1f s", timeout)
                return
        if self._pool is not None:
            self._pool.close()
        with self._lock:
            self._closed = True
        self._selector.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def check_environment(
        self, interpreters: Mapping[WorkerLanguage, str], working_directory: str
    ) -> list[str]:
        """Interpreters must be executable files and the working directory a folder here."""
        problems = []
        for language, executable in interpreters.items():
            resolved = executable if os.path.isabs(executable) else shutil.which(executable)
            if not resolved or not os.path.isfile(resolved) or not os.access(resolved, os.X_OK):
                problems.append(
                    f"the {language} interpreter {executable!r} is not an executable file"
                )
        if working_directory and not os.path.isdir(working_directory):
            problems.append(f"the working directory {working_directory!r} is not a folder")
        return problems

    # --- pre-forked workers (called by the worker pool) ----------------------------------------
    def _track(self, handle: _LocalHandle) -> None:
        """Have the I/O thread pump a launched attempt's streams (it has no ``popen``)."""
        with self._lock:
            self._incoming.append(handle)
            self._live[id(handle)] = handle
        self._wake()

    def _post_exit(self, handle: _LocalHandle, status: ExitStatus) -> None:
        """Record how a tracked attempt without ``popen`` ended (any thread); it is reported
        once its pipes are drained, like any other."""
        with self._lock:
            self._posted.append((handle, status))
        self._wake()

    # --- I/O thread -----------------------------------------------------------------------
    def _wake(self) -> None:
        """Interrupt the I/O thread's ``select``."""
        try:
            os.write(self._wake_write, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake-up is pending anyway) or closed (shut down)

    def _run(self) -> None:
        """The I/O thread: pump output, reap processes, report exits."""
        next_poll = 0.0
        while True:
            with self._lock:
                incoming, self._incoming = self._incoming, []
                posted, self._posted = self._posted, []
                stopping = self._stopping
            for handle in incoming:
                self._procs[id(handle)] = handle
                for stream in handle.streams:
                    self._selector.register(stream.fd, selectors.EVENT_READ, (handle, stream))
            for handle, status in posted:  # exits of pre-forked workers (see _post_exit)
                if handle.status is None and id(handle) in self._procs:
                    handle.status = status
                    handle.exit_deadline = time.monotonic() + self._exit_grace
                    self._exited[id(handle)] = handle
            if stopping and not self._procs:
                return
            timeout = self._poll_interval if self._procs else None
            if posted:
                timeout = 0  # report those exits now, not after the next poll interval
            for selected, _ in self._selector.select(timeout):
                if selected.data is None:
                    _drain(self._wake_read)
                    continue
                handle, stream = selected.data
                try:
                    self._pump(handle, stream)
                except Exception:  # e.g. a full disk: lose this output, not the thread
                    _log.exception("local executor: output of %s lost", handle.key.pathspec)
                    self._close_stream(handle, stream)
                if not any(s.is_open for s in handle.streams):
                    self._poll(handle)  # pipes closed: the process is most likely gone
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + self._poll_interval
                for handle in list(self._procs.values()):
                    self._poll(handle)
            self._report_finished(now)

    def _pump(self, handle: _LocalHandle, stream: _Stream) -> None:
        """Read what is available on one pipe."""
        try:
            chunk = os.read(stream.fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self._store(handle, stream, chunk)
        else:
            self._close_stream(handle, stream)

    def _store(self, handle: _LocalHandle, stream: _Stream, chunk: bytes) -> None:
        """Append output to the log file (up to the limit) and report complete lines."""
        if stream.truncated:
            return
        room = max(0, stream.limit - stream.written)
        kept = chunk[:room]
        if kept:
            _write_all(stream.log_file, kept)
            stream.written += len(kept)
            stream.partial += kept
            self._emit_lines(handle, stream)
        if len(chunk) > room:
            stream.truncated = True
            lead = b"\n" if stream.partial else b""  # end an unterminated line first
            self._flush_partial(handle, stream)
            marker = truncation_marker(stream.name, stream.limit)
            _write_all(stream.log_file, lead + marker.encode() + b"\n")
            self._emit(handle, stream, marker)

    def _emit_lines(self, handle: _LocalHandle, stream: _Stream) -> None:
        """Report the complete lines of the stream's buffer; keep the rest."""
        buffer = stream.partial
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            self._emit(handle, stream, _decode(buffer[start:end]))
            start = end + 1
        if start:
            del buffer[:start]
        while len(buffer) > _MAX_LINE_BYTES:
            self._emit(handle, stream, _decode(buffer[:_MAX_LINE_BYTES]))
            del buffer[:_MAX_LINE_BYTES]

    def _flush_partial(self, handle: _LocalHandle, stream: _Stream) -> None:
        """Report an unterminated last line."""
        if stream.partial:
            self._emit(handle, stream, _decode(stream.partial))
            stream.partial.clear()

    def _emit(self, handle: _LocalHandle, stream: _Stream, line: str) -> None:
        """Hand one line to the listener, never letting its failure stop the pump."""
        if self._listener is None:
            return
        try:
            self._listener.on_output(handle.key, stream.name, line)
        except Exception:  # a bad listener must not stop the pump for every other task
            _log.exception("local executor: output listener failed")

    def _close_stream(self, handle: _LocalHandle, stream: _Stream) -> None:
        """End one stream: unregister and close the pipe, flush, close the log file."""
        if not stream.is_open:
            return
        stream.is_open = False
        try:
            self._selector.unregister(stream.fd)
        except (KeyError, ValueError):
            pass
        try:
            self._flush_partial(handle, stream)
        finally:
            stream.pipe.close()
            stream.log_file.close()

    def _poll(self, handle: _LocalHandle) -> None:
        """Record the exit status of a process that has ended (non-blocking)."""
        if handle.status is not None or handle.popen is None:
            return
        returncode = handle.popen.poll()
        if returncode is not None:
            handle.status = ExitStatus.from_returncode(returncode)
            handle.exit_deadline = time.monotonic() + self._exit_grace
            self._exited[id(handle)] = handle

    def _report_finished(self, now: float) -> None:
        """Report the exits whose output is drained (or whose grace period ran out)."""
        for handle in list(self._exited.values()):
            open_streams = [s for s in handle.streams if s.is_open]
            if open_streams and now < handle.exit_deadline:
                continue
            for stream in open_streams:
                _log.warning(
                    "local executor: %s %s still open %.1f s after the worker exited "
                    "(a background process holds it); closing it",
                    handle.key.pathspec,
                    stream.name,
                    self._exit_grace,
                )
                self._close_stream(handle, stream)
            del self._exited[id(handle)]
            del self._procs[id(handle)]
            assert handle.status is not None  # set before it joined _exited
            self._finish(handle, handle.status)

    def _finish(self, handle: _LocalHandle, status: ExitStatus) -> None:
        """Delete the spec file and report the exit."""
        if handle.spec_path is not None:
            handle.spec_path.unlink(missing_ok=True)
        with self._lock:
            self._live.pop(id(handle), None)
        if self._listener is None:
            return
        try:
            self._listener.on_exit(handle.key, status)
        except Exception:  # keep serving the other tasks
            _log.exception("local executor: exit listener failed")


def truncation_marker(stream: LogStreamName, limit: int) -> str:
    """The line stored (and shown live) in place of a stream's output past ``limit`` bytes.

    Args:
        stream: ``"stdout"`` or ``"stderr"``.
        limit: The attempt's limit in bytes (``RunOptions.max_log_size_bytes``).
    """
    mib = 1024 * 1024
    size = f"{limit // mib} MB" if limit % mib == 0 else f"{limit} bytes"
    return (
        f"[polyflow] log truncated: {stream} exceeded {size} (--max-log-size); "
        "later output was dropped"
    )


def _make_pool(executor: LocalExecutor) -> WorkerPool | None:
    """The executor's pool of pre-forked Python workers, when this platform allows one."""
    from polyflow_core.executors.forkserver import WorkerPool, pools_enabled

    return WorkerPool(executor) if pools_enabled() else None


def _write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (the spec may carry a token)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def _write_all(file: IO[bytes], data: bytes) -> None:
    """Write every byte to an unbuffered file (a raw write may be partial)."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if written is None:  # only non-blocking files do this; log files are regular files
            raise OSError(f"could not write to {file.name}")
        view = view[written:]


def _drain(fd: int) -> None:
    """Empty the wake-up pipe."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _decode(raw: bytes | bytearray) -> str:
    """Decode one line of output (UTF-8, undecodable bytes replaced, ``\\r\\n`` tolerated)."""
    return bytes(raw).decode("utf-8", "replace").removesuffix("\r")
