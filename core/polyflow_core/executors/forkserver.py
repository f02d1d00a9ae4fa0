"""Pre-forked Python workers for the local executor (``DESIGN.md`` §4).

Starting a fresh interpreter per task costs about 0.1 s of CPU before any user code runs.
Instead, :class:`WorkerPool` keeps, per client interpreter (and the environment variables that
shape its imports), a **template** process: ``<python> -m polyflow._worker.zygote``, which has
imported the SDK. For each run (and working directory and environment) the template forks a
**zygote**, which imports the flow module on the run's first task and then forks one child per
task. The processes and what runs in them are described in :mod:`polyflow._worker.zygote`;
the wire format in :mod:`polyflow_core.executors.zygote_protocol`.

What stays exactly as with a spawned worker:

- the task's stdout and stderr are two pipes created here, read by the local executor's log
  pump like any worker's (their write ends travel to the zygote as ``SCM_RIGHTS``);
- the task runs in its own process and session; a kill signals its process group (through
  the zygote, which has not reaped the child yet, so the id cannot have been reused);
- the exit status (code, or the killing signal) is the child's own wait status, reaped by the
  zygote and passed on; the executor reports it once the pipes are drained.

What differs: the child does not call ``CompleteTask`` over gRPC (initialising gRPC costs
about 7 ms of CPU per process). It hands its ``TaskOutcome`` to the zygote through a pipe;
the zygote sends it with the exit status, and this module gives it to the listener
(``ExecutorListener.on_report``) before the exit, as ``CompleteTask`` would have.

When a template cannot start (an interpreter without the SDK, say), the request is not
eligible (an R step, ``POLYFLOW_WORKER_MODULE``, ``POLYFLOW_FORK_WORKERS=0`` in the worker
environment, not Linux), :meth:`WorkerPool.launch` returns None and the executor spawns a
worker as before. A zygote ends after ``idle_seconds`` without tasks; a template when the
daemon stops, or when a module it imported changed on disk (the next run gets a new one).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from polyflow_core.executors.base import (
    WORKER_MODULE_VARIABLE,
    ExitStatus,
    LaunchError,
    LaunchRequest,
)
from polyflow_core.executors.zygote_protocol import (
    ENV_SOCKET_FD,
    FrameReader,
    ProtocolError,
    send_frame,
)

if TYPE_CHECKING:
    from polyflow_core.executors.local import LocalExecutor, _LocalHandle

__all__ = ["FORK_WORKERS_VARIABLE", "WorkerPool", "template_key"]

_log = logging.getLogger(__name__)

FORK_WORKERS_VARIABLE = "POLYFLOW_FORK_WORKERS"
"""Set to ``0`` in the worker environment (the client's) to spawn a fresh interpreter per task;
in the daemon's environment, to never start worker pools."""

_TEMPLATE_MODULE = "polyflow._worker.zygote"
_KEY_PREFIXES = ("PYTHON", "LD_", "PROTOCOL_BUFFERS_")
_KEY_NAMES = frozenset({"HOME"})

TemplateKey = tuple[str, tuple[tuple[str, str], ...]]


def template_key(interpreter: str, environment: Mapping[str, str]) -> TemplateKey:
    """What must match for a template to serve a request: the interpreter and the variables
    that change what it imports (``PYTHON*``, ``LD_*``, ``PROTOCOL_BUFFERS_*``, ``HOME``)."""
    shaping = tuple(
        sorted(
            (name, value)
            for name, value in environment.items()
            if name.startswith(_KEY_PREFIXES) or name in _KEY_NAMES
        )
    )
    return interpreter, shaping


def pools_enabled() -> bool:
    """Whether this daemon may use worker pools at all."""
    return (
        sys.platform.startswith("linux")
        and hasattr(socket, "SCM_RIGHTS")
        and os.environ.get(FORK_WORKERS_VARIABLE, "1") != "0"
    )


@dataclass(eq=False)
class _Template:
    """A template process."""

    key: TemplateKey
    proc: subprocess.Popen[bytes]
    sock: socket.socket
    reader: FrameReader
    ready: threading.Event = field(default_factory=threading.Event)
    failed: str = ""
    modules: list[tuple[str, int]] = field(default_factory=list)
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def stale(self) -> bool:
        """Whether a module it imported changed on disk since."""
        for path, mtime in self.modules:
            try:
                if os.stat(path).st_mtime_ns != mtime:
                    return True
            except OSError:
                return True
        return False


@dataclass(eq=False)
class _Zygote:
    """A zygote process (the template's child; this side holds its socket)."""

    key: tuple[Any, ...]
    sock: socket.socket
    reader: FrameReader
    tasks: dict[str, _LocalHandle] = field(default_factory=dict)
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    idle_since: float = field(default_factory=time.monotonic)
    closed: bool = False

    def send(self, header: Mapping[str, Any], body: bytes = b"", fds: tuple[int, ...] = ()) -> None:
        with self.send_lock:
            if self.closed:
                raise BrokenPipeError("the zygote is closed")
            send_frame(self.sock, header, body, fds)


class WorkerPool:
    """Templates and zygotes of one local executor, and the thread reading their sockets.

    Args:
        executor: The executor whose log pump reads the tasks' output.
        idle_seconds: A zygote with no task for this long ends.
        start_timeout: Seconds to wait for a new template to import the SDK.
    """

    def __init__(
        self,
        executor: LocalExecutor,
        *,
        idle_seconds: float = 10.0,
        start_timeout: float = 30.0,
    ) -> None:
        self._executor = executor
        self._idle_seconds = idle_seconds
        self._start_timeout = start_timeout
        self._lock = threading.Lock()
        self._templates: dict[TemplateKey, _Template] = {}
        self._refused: set[TemplateKey] = set()
        self._zygotes: dict[tuple[Any, ...], _Zygote] = {}
        self._owner: dict[int, tuple[_Zygote, str]] = {}  # id(handle) -> (zygote, task id)
        self._retired: list[subprocess.Popen[bytes]] = []
        self._ids = itertools.count(1)
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="polyflow-worker-pool")
        self._thread.daemon = True

    # --- life cycle -------------------------------------------------------------------------
    def start(self, interpreter: str = "", environment: Mapping[str, str] | None = None) -> None:
        """Start the reading thread and, when given, a template for ``interpreter`` (the
        daemon's own by default is what its first client most likely uses)."""
        self._thread.start()
        if interpreter:
            env = dict(os.environ if environment is None else environment)
            key = template_key(interpreter, env)
            with self._lock:
                if key not in self._templates:
                    with contextlib.suppress(OSError):
                        self._templates[key] = self._spawn_template(key, interpreter, env)

    def close(self, timeout: float = 5.0) -> None:
        """End every zygote and template and the thread (their tasks were killed before)."""
        with self._lock:
            self._stopping = True
            zygotes = list(self._zygotes.values())
            templates = list(self._templates.values())
            self._zygotes.clear()
            self._templates.clear()
        for zygote in zygotes:
            self._close_zygote(zygote)
        for template in templates:
            self._close_template(template)
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        with self._lock:
            retired, self._retired = self._retired, []
        for proc in retired:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(Exception):
            self._selector.close()
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    # --- launching --------------------------------------------------------------------------
    def eligible(self, request: LaunchRequest) -> bool:
        """Whether a request can run in a pre-forked worker."""
        env = request.environment
        return (
            request.language == "python"
            and not env.get(WORKER_MODULE_VARIABLE)
            and env.get(FORK_WORKERS_VARIABLE, "1") != "0"
            and not self._stopping
        )

    def launch(self, request: LaunchRequest) -> _LocalHandle | None:
        """Start an attempt in a zygote; None when it must be spawned instead.

        Raises:
            LaunchError: The log files cannot be opened (a spawn would fail the same way).
        """
        from polyflow_core.executors.local import _LocalHandle, _Stream

        if not self.eligible(request):
            return None
        key = request.key
        pipes: list[int] = []
        try:
            out_read, out_write = os.pipe()
            pipes += [out_read, out_write]
            err_read, err_write = os.pipe()
            pipes += [err_read, err_write]
        except OSError as error:
            for fd in pipes:
                os.close(fd)
            raise LaunchError(
                f"could not start the worker: {error.strerror or error}",
                metadata={"pathspec": key.pathspec},
            ) from error
        handle = _LocalHandle(key=key)
        limit = request.max_log_size_bytes
        out_pipe = open(out_read, "rb", buffering=0)
        err_pipe = open(err_read, "rb", buffering=0)
        handle.streams = [
            _Stream("stdout", out_pipe, _lazy_log(request.stdout_path), limit),
            _Stream("stderr", err_pipe, _lazy_log(request.stderr_path), limit),
        ]
        for stream in handle.streams:
            os.set_blocking(stream.fd, False)
        task_id = str(next(self._ids))
        zygote = self._zygote_for(request, task_id, handle)
        if zygote is None:
            for stream in handle.streams:
                stream.pipe.close()
            os.close(out_write)
            os.close(err_write)
            return None
        self._executor._track(handle)
        try:
            zygote.send({"op": "task", "id": task_id}, request.task_spec, (out_write, err_write))
        except OSError as error:
            self._forget(handle)
            self._executor._post_exit(
                handle, ExitStatus(detail=f"could not hand the task to its worker pool: {error}")
            )
        finally:
            os.close(out_write)
            os.close(err_write)
        return handle

    def owns(self, handle: object) -> bool:
        """Whether a handle is one of this pool's attempts."""
        with self._lock:
            return id(handle) in self._owner

    def kill(self, handle: object) -> None:
        """SIGKILL an attempt's process group (through its zygote)."""
        with self._lock:
            found = self._owner.get(id(handle))
        if found is None:
            return
        zygote, task_id = found
        with contextlib.suppress(OSError):
            zygote.send({"op": "kill", "id": task_id, "signal": 9})

    def _zygote_for(
        self, request: LaunchRequest, task_id: str, handle: _LocalHandle
    ) -> _Zygote | None:
        """The run's zygote (forked from a ready template when it does not exist yet), with
        the task registered in it under the same lock that finds it, so that the idle sweep
        cannot close it in between. None when no template can serve the request."""
        env = dict(request.environment)
        env["PYTHONUNBUFFERED"] = "1"
        key = request.key
        zkey = (
            request.interpreter,
            key.flow,
            key.run,
            request.working_directory,
            hash(frozenset(env.items())),
        )
        with self._lock:
            zygote = self._zygotes.get(zkey)
            if zygote is not None and not zygote.closed:
                self._register(zygote, task_id, handle)
                return zygote
        template = self._template_for(request.interpreter, env)
        if template is None:
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with template.send_lock:
                send_frame(
                    template.sock,
                    {"op": "zygote", "cwd": request.working_directory, "env": env},
                    b"",
                    (theirs.fileno(),),
                )
        except OSError:
            ours.close()
            self._retire_template(template)
            return None
        finally:
            theirs.close()
        ours.setblocking(True)
        zygote = _Zygote(zkey, ours, FrameReader(ours))
        with self._lock:
            if self._stopping:
                ours.close()
                return None
            self._zygotes[zkey] = zygote
            self._selector.register(ours, selectors.EVENT_READ, zygote)
            self._register(zygote, task_id, handle)
        self._wake()
        return zygote

    def _register(self, zygote: _Zygote, task_id: str, handle: _LocalHandle) -> None:
        """Record a task as the zygote's (called with the lock held)."""
        zygote.tasks[task_id] = handle
        self._owner[id(handle)] = (zygote, task_id)

    def _template_for(self, interpreter: str, env: Mapping[str, str]) -> _Template | None:
        """A ready, current template for the interpreter (started and waited for if need be);
        None when none can start."""
        key = template_key(interpreter, env)
        for _ in range(2):
            with self._lock:
                if key in self._refused or self._stopping:
                    return None
                template = self._templates.get(key)
                if template is None or template.closed:
                    try:
                        template = self._spawn_template(key, interpreter, env)
                    except OSError as error:
                        _log.warning("worker pool: cannot start %s: %s", interpreter, error)
                        self._refused.add(key)
                        return None
                    self._templates[key] = template
            if not template.ready.wait(self._start_timeout) or template.failed:
                _log.warning(
                    "worker pool: the template for %s did not start; spawning workers instead%s",
                    interpreter,
                    f":\n{template.failed}" if template.failed else "",
                )
                with self._lock:
                    self._refused.add(key)
                self._retire_template(template)
                return None
            if not template.stale():
                return template
            _log.info("worker pool: modules changed on disk; starting a new template")
            self._retire_template(template)
        return None

    def _spawn_template(
        self, key: TemplateKey, interpreter: str, env: Mapping[str, str]
    ) -> _Template:
        """Start a template process (called with the lock held)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        environment = dict(env)
        environment[ENV_SOCKET_FD] = str(theirs.fileno())
        environment["PYTHONUNBUFFERED"] = "1"
        try:
            proc = subprocess.Popen(
                [interpreter, "-m", _TEMPLATE_MODULE],
                env=environment,
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                close_fds=True,
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        template = _Template(key, proc, ours, FrameReader(ours))
        self._selector.register(ours, selectors.EVENT_READ, template)
        self._wake()
        return template

    # --- the reading thread -------------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_write, b"x")

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping and not self._zygotes:
                    break
            try:
                events = self._selector.select(1.0)
            except (OSError, ValueError):  # closed under us while stopping
                break
            for selected, _ in events:
                owner = selected.data
                if owner is None:
                    with contextlib.suppress(BlockingIOError, OSError):
                        while os.read(self._wake_read, 4096):
                            pass
                elif isinstance(owner, _Zygote):
                    self._read_zygote(owner)
                else:
                    self._read_template(owner)
            self._tick()

    def _read_template(self, template: _Template) -> None:
        alive = _fill(template.reader)
        try:
            for header, _, fds in template.reader.frames():
                for fd in fds:
                    os.close(fd)
                if header.get("op") == "ready":
                    template.modules = [(str(p), int(m)) for p, m in header.get("modules", [])]
                    template.ready.set()
                elif header.get("op") == "failed":
                    template.failed = str(header.get("error", "unknown error"))
                    template.ready.set()
        except ProtocolError:
            alive = False
        if not alive:
            if not template.ready.is_set():
                template.failed = template.failed or "the template process exited"
                template.ready.set()
            self._retire_template(template)

    def _read_zygote(self, zygote: _Zygote) -> None:
        alive = _fill(zygote.reader)
        try:
            for header, body, fds in zygote.reader.frames():
                for fd in fds:
                    os.close(fd)
                if header.get("op") == "exited":
                    self._on_exited(zygote, header, body)
        except ProtocolError:
            _log.exception("worker pool: bad frame from a zygote")
            alive = False
        if not alive:
            self._close_zygote(zygote)
            with self._lock:
                if self._zygotes.get(zygote.key) is zygote:
                    del self._zygotes[zygote.key]
                orphans = list(zygote.tasks.values())
                zygote.tasks.clear()
                for handle in orphans:
                    self._owner.pop(id(handle), None)
            for handle in orphans:
                self._executor._post_exit(
                    handle, ExitStatus(detail="its worker pool process ended before it did")
                )

    def _on_exited(self, zygote: _Zygote, header: Mapping[str, Any], body: bytes) -> None:
        task_id = str(header.get("id", ""))
        with self._lock:
            handle = zygote.tasks.pop(task_id, None)
            if handle is None:
                return
            self._owner.pop(id(handle), None)
            if not zygote.tasks:
                zygote.idle_since = time.monotonic()
        if body:
            self._report(handle, body)
        if "status" in header:
            code = os.waitstatus_to_exitcode(int(header["status"]))
            status = ExitStatus.from_returncode(code)
        else:
            status = ExitStatus(detail=f"could not start the worker: {header.get('error', '')}")
        self._executor._post_exit(handle, status)

    def _report(self, handle: _LocalHandle, body: bytes) -> None:
        """Give a child's outcome to the listener, as its ``CompleteTask`` call would."""
        listener = self._executor._listener
        on_report = getattr(listener, "on_report", None)
        if on_report is None:
            return
        try:
            from polyflow.api.runtime.v1 import message_pb2

            from polyflow_core.services.taskspec import outcome_from_proto

            outcome = outcome_from_proto(message_pb2.TaskOutcome.FromString(body))
            on_report(handle.key, outcome)
        except Exception:
            _log.exception("worker pool: the report of %s was lost", handle.key.pathspec)

    def _tick(self) -> None:
        """End idle zygotes; reap retired templates."""
        now = time.monotonic()
        idle: list[_Zygote] = []
        with self._lock:
            for zkey, zygote in list(self._zygotes.items()):
                if not zygote.tasks and now - zygote.idle_since > self._idle_seconds:
                    del self._zygotes[zkey]
                    idle.append(zygote)
        for zygote in idle:
            self._close_zygote(zygote)
        with self._lock:
            self._retired = [proc for proc in self._retired if proc.poll() is None]

    # --- closing ----------------------------------------------------------------------------
    def _forget(self, handle: _LocalHandle) -> None:
        with self._lock:
            found = self._owner.pop(id(handle), None)
            if found is not None:
                found[0].tasks.pop(found[1], None)

    def _close_zygote(self, zygote: _Zygote) -> None:
        with zygote.send_lock:
            if zygote.closed:
                return
            zygote.closed = True
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(zygote.sock)
        zygote.reader.close_pending()
        zygote.sock.close()  # the zygote sees end-of-stream and ends

    def _close_template(self, template: _Template) -> None:
        with template.send_lock:
            if template.closed:
                return
            template.closed = True
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(template.sock)
        template.reader.close_pending()
        template.sock.close()
        template.ready.set()
        with self._lock:
            self._retired.append(template.proc)

    def _retire_template(self, template: _Template) -> None:
        with self._lock:
            if self._templates.get(template.key) is template:
                del self._templates[template.key]
        self._close_template(template)


class _LazyLogFile:
    """An attempt's log file, created on the first write: most tasks of a wide foreach print
    nothing, and a log file that does not exist reads as empty (``ReadTaskLog``)."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self._path = path
        self._file: IO[bytes] | None = None

    def write(self, data: bytes | memoryview) -> int | None:
        if self._file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._path, "ab", buffering=0)  # unbuffered, as the executor's
        return self._file.write(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _lazy_log(path: Path) -> IO[bytes]:
    return cast("IO[bytes]", _LazyLogFile(path))


def _fill(reader: FrameReader) -> bool:
    """Read from a pool socket; False at its end."""
    try:
        return reader.fill()
    except BlockingIOError:
        return True
    except (OSError, ProtocolError):
        return False
