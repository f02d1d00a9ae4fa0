"""Pre-forked Python task workers: the template and zygote processes (``DESIGN.md`` §4).

Started by the daemon's local executor (``polyflow_core.executors.forkserver``) as
``<client python> -m polyflow._worker.zygote`` with ``POLYFLOW_ZYGOTE_FD`` naming a unix
socket it inherited. Two kinds of process run this code:

- the **template** imports the SDK (the worker, codecs, the artifact store, the TaskSpec
  messages), says ``ready``, and then only forks zygotes, one per run (and working directory
  and environment). It keeps no state of any run.
- a **zygote** (a forked template) takes the run's working directory and environment, imports
  the flow module when the first task arrives, and forks one child per task. The child starts
  a new session, points its stdout and stderr at the pipes the daemon sent, runs the task
  exactly as ``python -m polyflow._worker`` would (:func:`polyflow._worker.main.execute`), and
  hands its outcome back through a pipe to the zygote, which sends it to the daemon with the
  child's wait status when it has reaped it. No gRPC is involved: nothing here imports it, so
  nothing of it is initialised before a fork (grpcio is not fork-safe); a step that uses the
  client API opens its own channel in its own process.

Every task still runs in its own process: its crash, its globals and its memory stay its own
(a child dies with the zygote, via ``PR_SET_PDEATHSIG``). Two things differ from a fresh
interpreter and are handled: numpy's global random state is re-seeded in each child (Python's
``random`` re-seeds itself after a fork), and a flow module that starts Python threads when
imported (or imports gRPC while native threads run) makes the zygote fall back to starting
each task as a fresh interpreter, since forking such a process is unsafe.

The wire format is :mod:`polyflow_core.executors.zygote_protocol`.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import selectors
import signal
import socket
import struct
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from polyflow_core.executors.zygote_protocol import (
    ENV_SOCKET_FD,
    FrameReader,
    ProtocolError,
    send_frame,
)

from polyflow._worker.lifeline import die_with_parent, find_prctl

__all__ = ["REPORT_HEADER", "main"]

REPORT_HEADER = struct.Struct(">Q")
"""A child's report on its pipe: this length prefix, then the serialized ``TaskOutcome``."""

_STARTUP_PATH0 = None if sys.flags.safe_path or not sys.path else sys.path[0]


_PRELOAD = (
    "polyflow._codecs",
    "polyflow._worker.child",
    "polyflow._worker.main",
    "polyflow._worker.report",
    "polyflow._worker.spec",
    "polyflow._worker.store",
    "polyflow._worker.task",
    "polyflow_core.datastore.local",
)


def _preload() -> None:
    """Import what every task needs, so that children start with it in memory."""
    global _prctl
    for name in _PRELOAD:
        importlib.import_module(name)
    _prctl = find_prctl()


def _module_files() -> list[list[Any]]:
    """Source files of the imported modules with their modification times (the daemon
    retires the template when one of them changes)."""
    found = []
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        try:
            found.append([path, os.stat(path).st_mtime_ns])
        except OSError:
            continue
    return found


def _noop(signum: int, frame: object) -> None:
    del signum, frame


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class _Loop:
    """A process that serves one control socket and reaps its children."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader(sock)
        self.selector = selectors.DefaultSelector()
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)
        signal.signal(signal.SIGCHLD, _noop)
        signal.set_wakeup_fd(self.wake_write, warn_on_full_buffer=False)
        self.selector.register(self.sock, selectors.EVENT_READ, "control")
        self.selector.register(self.wake_read, selectors.EVENT_READ, "wake")

    def release(self) -> None:
        """Drop this loop's descriptors (in a forked child, which keeps none of them)."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.reader.close_pending()
        self.selector.close()
        for fd in (self.wake_read, self.wake_write):
            _close(fd)
        self.sock.close()

    def send(self, header: Mapping[str, Any], body: bytes = b"") -> None:
        send_frame(self.sock, header, body)

    def serve(self) -> None:
        """Handle frames and child exits until the daemon closes the socket; do
        :meth:`idle` work while nothing else is waiting."""
        busy = True
        while True:
            events = self.selector.select(0 if busy else None)
            if not events and busy:
                busy = self.idle()
                continue
            for key, _ in events:
                if key.data == "wake":
                    try:
                        while os.read(self.wake_read, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    self.reap()
                elif key.data == "control":
                    try:
                        alive = self.reader.fill()
                    except BlockingIOError:
                        continue
                    except (ConnectionResetError, ProtocolError):
                        alive = False
                    for header, body, fds in self.reader.frames():
                        self.handle(header, body, fds)
                    if not alive:
                        self.stop()
                        return
                else:
                    self.readable(key.data)

    def idle(self) -> bool:
        """Work to do while nothing waits; True while there is more of it."""
        return False

    def handle(self, header: dict[str, Any], body: bytes, fds: list[int]) -> None:
        """One frame from the daemon."""
        for fd in fds:
            _close(fd)

    def readable(self, data: Any) -> None:
        """Another registered descriptor is readable."""

    def reap(self) -> None:
        """Collect exited children."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.exited(pid, status)

    def exited(self, pid: int, status: int) -> None:
        """A child was reaped."""

    def stop(self) -> None:
        """The daemon closed the socket."""


# --- the template ---------------------------------------------------------------------------
class _Template(_Loop):
    """Forks zygotes; warms the worker's code up while idle (:mod:`polyflow._worker.warmup`)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        from polyflow._worker.warmup import WarmUp

        self.warm: WarmUp | None = WarmUp()

    def idle(self) -> bool:
        if self.warm is not None and self.warm.step():
            return True
        self.warm = None
        gc.freeze()  # what the warm-up left in memory stays shared, untouched, in children
        return False

    def handle(self, header: dict[str, Any], body: bytes, fds: list[int]) -> None:
        if header.get("op") != "zygote" or len(fds) != 1:
            super().handle(header, body, fds)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError:
            _close(fds[0])  # the daemon sees the zygote's socket close
            return
        if pid == 0:
            code = 0
            try:
                self.release()
                self.warm = None  # the template finishes (and cleans) it; a zygote drops it
                _Zygote.become(socket.socket(fileno=fds[0]), header)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        _close(fds[0])


# --- the zygote -----------------------------------------------------------------------------
@dataclass(eq=False)
class _Task:
    """A child the zygote started."""

    task_id: str
    pid: int
    report_fd: int = -1
    report: bytearray = field(default_factory=bytearray)
    spec_file: str = ""


class _Zygote(_Loop):
    """Forks one child per task of one run."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.pid = os.getpid()
        self.tasks: dict[int, _Task] = {}  # by pid
        self.loaded = False
        self.spawn = False  # start fresh interpreters instead of forking
        self.null = os.open(os.devnull, os.O_RDONLY)  # every child's stdin

    @classmethod
    def become(cls, sock: socket.socket, header: dict[str, Any]) -> None:
        """Turn this forked template into the zygote of a run, and serve."""
        env = header.get("env")
        if isinstance(env, dict):
            os.environ.clear()
            os.environ.update({str(k): str(v) for k, v in env.items()})
        cwd = header.get("cwd")
        if isinstance(cwd, str) and cwd:
            try:
                os.chdir(cwd)
            except OSError:
                pass  # the task reports it (its code runs with a different folder)
            if _STARTUP_PATH0 is not None and sys.path and sys.path[0] == _STARTUP_PATH0:
                sys.path[0] = cwd  # as for ``python -m`` started in that folder
        cls(sock).serve()

    # --- frames -------------------------------------------------------------------------
    def handle(self, header: dict[str, Any], body: bytes, fds: list[int]) -> None:
        op = header.get("op")
        if op == "task" and len(fds) == 2:
            self.start_task(str(header.get("id", "")), body, fds[0], fds[1])
        elif op == "kill":
            self.kill(str(header.get("id", "")), int(header.get("signal", signal.SIGKILL)))
        else:
            super().handle(header, body, fds)

    def start_task(self, task_id: str, spec: bytes, out_fd: int, err_fd: int) -> None:
        try:
            if not self.loaded:
                self.load(spec)
            task = self.spawn_task(task_id, spec, out_fd, err_fd) if self.spawn else None
            if task is None:
                task = self.fork_task(task_id, spec, out_fd, err_fd)
        except OSError as error:
            self.send({"op": "exited", "id": task_id, "error": f"{type(error).__name__}: {error}"})
            return
        finally:
            _close(out_fd)
            _close(err_fd)
        self.tasks[task.pid] = task

    def load(self, spec: bytes) -> None:
        """Import the run's flow module (once), so children start with it in memory.

        An error is left for the children to meet again and report as their own, exactly as
        a fresh worker would.
        """
        self.loaded = True
        try:
            from polyflow._authoring.artifacts import foreach_item
            from polyflow._worker.child import remember_graph
            from polyflow._worker.main import prepare
            from polyflow._worker.store import open_store

            data = remember_graph(spec)
            open_store(data.store_kind, data.store_root, data.store_options)
            for sample in ([0], (0,), range(1), "0", {"0": 0}, {0}):
                foreach_item(sample, 0)  # fills the ABC caches every child would fill
            prepare(data.code_path, data.graph.entrypoint or data.flow_name)
        except BaseException:
            pass
        sys.stdout.flush()
        sys.stderr.flush()
        self.spawn = _unsafe_to_fork()
        gc.freeze()  # children then leave the imported objects' pages shared

    def fork_task(self, task_id: str, spec: bytes, out_fd: int, err_fd: int) -> _Task:
        report_read, report_write = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            _close(report_read)
            _close(report_write)
            raise
        if pid == 0:
            code = 1
            try:
                self.enter_child(out_fd, err_fd, keep=report_write)
                code = _run_child(spec, report_write)
            finally:
                os._exit(code)
        _close(report_write)
        os.set_blocking(report_read, False)
        task = _Task(task_id, pid, report_read)
        self.selector.register(report_read, selectors.EVENT_READ, task)
        return task

    def enter_child(self, out_fd: int, err_fd: int, keep: int) -> None:
        """In a new child: its own session, its own output, none of the zygote's fds."""
        os.setsid()
        die_with_parent(_prctl)  # resolved once, in the template
        if os.getppid() != self.pid:  # the zygote died before prctl took effect
            os._exit(1)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.dup2(self.null, 0)
        for fd in (out_fd, err_fd, self.null, *self.reader.pending_fds):
            _close(fd)
        for task in self.tasks.values():
            if task.report_fd >= 0:
                _close(task.report_fd)
        self.release()
        del keep
        numpy_random = sys.modules.get("numpy.random")
        if numpy_random is not None:
            numpy_random.seed()  # a fresh interpreter would seed the global state anew

    def spawn_task(self, task_id: str, spec: bytes, out_fd: int, err_fd: int) -> _Task:
        """Start the task as ``python -m polyflow._worker`` (it reports over gRPC itself)."""
        handle, path = tempfile.mkstemp(prefix="polyflow-task-", suffix=".pb")
        try:
            os.write(handle, spec)
        finally:
            os.close(handle)
        env = dict(os.environ)
        env["POLYFLOW_TASK_SPEC"] = path
        env["PYTHONUNBUFFERED"] = "1"
        try:
            pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-m", "polyflow._worker"],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, self.null, 0),
                    (os.POSIX_SPAWN_DUP2, out_fd, 1),
                    (os.POSIX_SPAWN_DUP2, err_fd, 2),
                ],
                setsid=True,
            )
        except OSError:
            os.unlink(path)
            raise
        return _Task(task_id, pid, spec_file=path)

    def kill(self, task_id: str, signum: int) -> None:
        for task in self.tasks.values():
            if task.task_id == task_id:
                _signal_group(task.pid, signum)

    # --- children -------------------------------------------------------------------------
    def readable(self, data: Any) -> None:
        if isinstance(data, _Task):
            self.read_report(data)

    def read_report(self, task: _Task) -> None:
        """Read what a child wrote of its report (non-blocking)."""
        if task.report_fd < 0:
            return
        while True:
            try:
                chunk = os.read(task.report_fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.selector.unregister(task.report_fd)
                _close(task.report_fd)
                task.report_fd = -1
                return
            task.report += chunk

    def exited(self, pid: int, status: int) -> None:
        task = self.tasks.pop(pid, None)
        if task is None:
            return
        self.read_report(task)  # everything the child wrote is in the pipe by now
        if task.report_fd >= 0:
            self.selector.unregister(task.report_fd)
            _close(task.report_fd)
        if task.spec_file:
            try:
                os.unlink(task.spec_file)
            except OSError:
                pass
        body = b""
        report = task.report
        if len(report) >= REPORT_HEADER.size:
            (length,) = REPORT_HEADER.unpack_from(report, 0)
            if len(report) == REPORT_HEADER.size + length:
                body = bytes(report[REPORT_HEADER.size :])
        self.send({"op": "exited", "id": task.task_id, "status": status}, body)

    def stop(self) -> None:
        """The daemon is gone or done with this run: end every task still running."""
        for task in list(self.tasks.values()):
            _signal_group(task.pid, signal.SIGKILL)
        for pid in list(self.tasks):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            task = self.tasks.pop(pid)
            if task.spec_file:
                try:
                    os.unlink(task.spec_file)
                except OSError:
                    pass


# --- a child --------------------------------------------------------------------------------
def _run_child(spec: bytes, report_fd: int) -> int:
    """Run one task in a forked child, hand its outcome to the zygote, and return the exit
    code (as :func:`polyflow._worker.main.main` would exit)."""
    from polyflow._worker.child import run_task_spec
    from polyflow._worker.main import EXIT_FAILED

    code, payload = run_task_spec(spec)
    if payload is not None:
        try:
            _write_all(report_fd, REPORT_HEADER.pack(len(payload)) + payload)
            os.close(report_fd)
        except OSError as exc:
            sys.stderr.write(f"polyflow worker: cannot report the task: {exc}\n")
            code = EXIT_FAILED
    return _finish(code)


def _finish(code: int) -> int:
    """What an interpreter does when it exits: wait for non-daemon threads, run the
    ``atexit`` functions, flush the standard streams."""
    shutdown: Callable[[], None] | None = getattr(threading, "_shutdown", None)
    for step in (shutdown, atexit._run_exitfuncs):
        if step is None:
            continue
        try:
            step()
        except BaseException:
            traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    return code


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_prctl: Callable[..., int] | None = None


def _signal_group(pid: int, signum: int) -> None:
    """Signal a child's process group (its own session), or the child alone if it has not
    made its group yet. The zygote has not reaped ``pid``, so it cannot be a reused id."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    except PermissionError:
        pass


def _thread_count() -> int:
    """Threads of this process, native ones included (Linux); 1 where unknown."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _unsafe_to_fork() -> bool:
    """Whether the flow module left this process unfit to fork: it started Python threads
    (one may hold a lock the children would inherit locked), or there are native threads and
    one of them may belong to a library that breaks in a forked child: gRPC (not fork-safe)
    or GNU OpenMP (``libgomp``: a child's first parallel region waits for the parent's
    thread team, which it does not have). Other native threads are pools that handle forks
    themselves: numpy's OpenBLAS starts one when imported and stops it before a fork
    (``pthread_atfork``)."""
    if threading.active_count() > 1:
        return True
    if _thread_count() == 1:
        return False
    return "grpc" in sys.modules or _FORK_UNSAFE_LIBRARY in _mapped_files()


_FORK_UNSAFE_LIBRARY = b"/libgomp"


def _mapped_files() -> bytes:
    """This process's memory map (Linux), to see which shared libraries are loaded."""
    try:
        with open("/proc/self/maps", "rb") as maps:
            return maps.read()
    except OSError:
        return b""


def main() -> NoReturn:
    """Run a template process (see the module docstring)."""
    raw = os.environ.pop(ENV_SOCKET_FD, "")
    if not raw.isdigit():
        sys.stderr.write(f"polyflow zygote: {ENV_SOCKET_FD} is not set\n")
        os._exit(2)
    sock = socket.socket(fileno=int(raw))
    sock.set_inheritable(False)
    try:
        _preload()
    except BaseException:
        try:
            send_frame(sock, {"op": "failed", "error": traceback.format_exc()})
        finally:
            os._exit(1)
    gc.freeze()
    send_frame(sock, {"op": "ready", "pid": os.getpid(), "modules": _module_files()})
    _Template(sock).serve()
    os._exit(0)


if __name__ == "__main__":
    main()
