"""The daemon's wiring: configuration, plugins, the gRPC server, and its life cycle.

One daemon serves one root (a ``.polyflow`` folder, see ``docs/architecture.md``):

1. it takes an exclusive ``flock`` on ``daemon.lock``; when another daemon holds it, this one
   says so and exits 0 (two clients racing to start a daemon are both satisfied);
2. it writes ``daemon.pid``, creates the socket's folder (0700), removes a stale socket, and
   listens on ``unix:<socket>`` (0600) unless another address is configured;
3. it fails the runs an earlier daemon left unfinished, then serves;
4. it stops on SIGTERM/SIGINT, or after ``idle_timeout`` seconds with no active run and no
   RPC: unfinished runs are marked FAILED ("daemon stopped"), their workers killed, the
   socket and pid file removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from polyflow.api.datastore.v1 import service_pb2_grpc as datastore_grpc
from polyflow.api.metadata.v1 import service_pb2_grpc as metadata_grpc
from polyflow.api.runtime.v1 import service_pb2_grpc as runtime_grpc

from polyflow_core._version import __version__
from polyflow_core.datastore.base import BlobStore
from polyflow_core.datastore.local import LocalBlobStore, UploadSessions
from polyflow_core.domain.events import EventHub
from polyflow_core.domain.execution import default_user
from polyflow_core.domain.scheduler import Scheduler
from polyflow_core.executors.base import Executor
from polyflow_core.metadata.base import MetadataStore
from polyflow_core.paths import RootLayout, core_address
from polyflow_core.plugins import Registry, datastores, executors, metadata_stores
from polyflow_core.services.datastore import DatastoreServicer
from polyflow_core.services.metadata import MetadataServicer
from polyflow_core.services.runtime import RuntimeServicer, ServerInfo
from polyflow_core.services.status import RequestParsingInterceptor
from polyflow_core.services.taskspec import encode_task_spec

__all__ = [
    "IDLE_TIMEOUT_VARIABLE",
    "ActivityInterceptor",
    "Daemon",
    "ServerConfig",
    "core_version",
    "serve",
]

_log = logging.getLogger(__name__)

IDLE_TIMEOUT_VARIABLE = "POLYFLOW_DAEMON_IDLE_TIMEOUT"
"""Environment variable: seconds of idleness after which the daemon exits."""

_RESERVED_THREADS = 8
"""RPC threads that ``WatchRun`` streams may not take: workers' ``CompleteTask`` calls must
always find a thread, or runs (and so the streams waiting for them) would never end."""

STOP_MESSAGE = "daemon stopped"
"""Failure message of runs that were going when the daemon was stopped."""


@dataclass(frozen=True)
class ServerConfig:
    """How the daemon runs."""

    root: Path
    """The ``.polyflow`` folder whose state the daemon serves."""
    address: str = ""
    """The gRPC address; empty means the root's unix socket (``unix:<path>``)."""
    idle_timeout: float = 600.0
    """Seconds with no active run and no RPC after which the daemon exits (0: never)."""
    max_message_bytes: int = 16 * 1024 * 1024
    """Largest gRPC message received or sent."""
    threads: int = 32
    """Threads serving RPCs (a ``WatchRun`` stream holds one while it lasts)."""
    executor: str = "local"
    """Executor plugin name (``polyflow.executors``)."""
    metadata: str = "sqlite"
    """Metadata store plugin name (``polyflow.metadata``)."""
    datastore: str = "local"
    """Blob store plugin name (``polyflow.datastores``)."""

    @classmethod
    def from_environment(
        cls, root: Path, *, address: str = "", idle_timeout: float | None = None
    ) -> ServerConfig:
        """A configuration whose idle timeout defaults to ``$POLYFLOW_DAEMON_IDLE_TIMEOUT``.

        Raises:
            ValueError: The variable is not a number.
        """
        if idle_timeout is None:
            raw = os.environ.get(IDLE_TIMEOUT_VARIABLE, "").strip()
            idle_timeout = float(raw) if raw else cls.idle_timeout
        return cls(root=Path(root), address=address, idle_timeout=idle_timeout)


def core_version() -> str:
    """The installed Polyflow version."""
    return __version__


class ActivityInterceptor(grpc.ServerInterceptor):
    """Counts RPCs, so the daemon knows when it has been idle: the time the last one
    started and how many are in progress (a stream counts until it ends)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last = clock()

    def idle_for(self) -> float:
        """Seconds since the last RPC started; 0 while one is in progress."""
        with self._lock:
            return 0.0 if self._in_flight else self._clock() - self._last

    def _begin(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._last = self._clock()

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._last = self._clock()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap the method's handler so that its start and end are counted."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        options: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary), **options)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream), **options
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary), **options
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(handler.stream_stream), **options
            )
        return handler

    def _unary(self, behaviour: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def counted(request: Any, context: Any) -> Any:
            self._begin()
            try:
                return behaviour(request, context)
            finally:
                self._end()

        return counted

    def _stream(
        self, behaviour: Callable[[Any, Any], Iterator[Any]]
    ) -> Callable[[Any, Any], Iterator[Any]]:
        def counted(request: Any, context: Any) -> Iterator[Any]:
            self._begin()
            try:
                yield from behaviour(request, context)
            finally:
                self._end()

        return counted


class Daemon:
    """One daemon serving one root.

    Args:
        config: How to run.
        executor_registry: Executor plugins (tests inject their own).
        metadata_registry: Metadata store plugins.
        datastore_registry: Blob store plugins.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        executor_registry: Registry[Executor] | None = None,
        metadata_registry: Registry[MetadataStore] | None = None,
        datastore_registry: Registry[BlobStore] | None = None,
    ) -> None:
        self.config = dataclasses.replace(config, root=Path(config.root))
        self.layout = RootLayout(self.config.root)
        self._executors = executor_registry or executors()
        self._metadata_stores = metadata_registry or metadata_stores()
        self._datastores = datastore_registry or datastores()
        self._stop = threading.Event()
        self._stop_reason = ""
        self._closers: list[Callable[[], None]] = []

    def request_stop(self, reason: str) -> None:
        """Ask :meth:`serve` to stop (thread- and signal-safe)."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    def serve(self, *, install_signal_handlers: bool = True) -> int:
        """Serve until stopped; returns the process exit code."""
        layout = self.layout
        layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_fd = os.open(layout.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"a daemon already serves {layout.root}", file=sys.stderr)
                return 0
            return self._serve_locked(install_signal_handlers)
        finally:
            os.close(lock_fd)  # releases the flock

    def _serve_locked(self, install_signal_handlers: bool) -> int:
        """Serve while holding the root's lock. Whatever was set up is torn down in reverse
        order, even when a later step fails."""
        layout = self.layout
        config = self.config
        if install_signal_handlers:  # before anything that a signal must not cut short
            self._install_signal_handlers()
        with contextlib.ExitStack() as cleanup:
            _write_pid(layout.pid_path)
            cleanup.callback(_remove_pid, layout.pid_path)
            socket_path: Path | None = None
            address = config.address
            if not address:
                layout.ensure_socket_dir()
                socket_path = layout.socket_path
                # A socket left by a daemon that died: we hold the lock, so nobody serves it.
                socket_path.unlink(missing_ok=True)
                cleanup.callback(socket_path.unlink, missing_ok=True)
                address = core_address(layout)
            metadata = self._metadata_stores.create(config.metadata, layout.db_path)
            cleanup.callback(metadata.close)
            blobs = self._datastores.create(config.datastore, layout.store_root)
            discarded = blobs.discard_abandoned_writes()
            if discarded:
                _log.info("discarded %d file(s) left by writers that died mid-write", discarded)
            executor = self._executors.create(config.executor, layout)
            events = EventHub()
            scheduler = Scheduler(
                metadata=metadata,
                blobs=blobs,
                executor=executor,
                events=events,
                layout=layout,
                core_address=address,
                encode_task_spec=encode_task_spec,
            )
            activity = ActivityInterceptor()
            server = self._grpc_server(
                activity, scheduler, metadata, blobs, executor, events, address
            )
            # Stop taking calls last: watchers get their runs' RunFinished events first.
            cleanup.callback(self._close_services)
            cleanup.callback(lambda: server.stop(grace=2.0).wait(5.0))
            cleanup.callback(scheduler.stop, STOP_MESSAGE)
            scheduler.start()
            with _private_umask():
                port = server.add_insecure_port(address)
            if port == 0:
                raise OSError(f"cannot listen on {address}")
            if socket_path is not None:
                socket_path.chmod(0o600)
            server.start()
            _log.info("polyflow core %s serving %s on %s", core_version(), layout.root, address)
            self._wait(scheduler, activity)
            _log.info("stopping: %s", self._stop_reason)
        return 0

    def _grpc_server(
        self,
        activity: ActivityInterceptor,
        scheduler: Scheduler,
        metadata: MetadataStore,
        blobs: BlobStore,
        executor: Executor,
        events: EventHub,
        address: str,
    ) -> grpc.Server:
        """The gRPC server with the three services (not started, not bound)."""
        config = self.config
        layout = self.layout
        server = grpc.server(
            ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="polyflow-rpc"),
            interceptors=[activity, RequestParsingInterceptor()],
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
            ],
        )
        info = ServerInfo(
            version=core_version(),
            address=address,
            root=str(layout.root),
            metadata=f"{config.metadata}:{layout.db_path}",
            store=blobs.location(),
            pid=os.getpid(),
            user=default_user(),
        )
        runtime_grpc.add_RuntimeServiceServicer_to_server(
            RuntimeServicer(
                scheduler=scheduler,
                metadata=metadata,
                events=events,
                executor=executor,
                info=info,
                max_watchers=max(1, config.threads - _RESERVED_THREADS),
            ),
            server,
        )
        metadata_grpc.add_MetadataServiceServicer_to_server(
            MetadataServicer(metadata, layout, tag_writer=scheduler), server
        )
        uploads_folder = None if isinstance(blobs, LocalBlobStore) else layout.root / "uploads"
        datastore = DatastoreServicer(blobs, UploadSessions(blobs, uploads_folder))
        self._closers.append(datastore.close)
        datastore_grpc.add_DatastoreServiceServicer_to_server(datastore, server)
        return server

    def _close_services(self) -> None:
        """Release what the servicers hold (converter processes)."""
        for close in self._closers:
            close()

    def _wait(self, scheduler: Scheduler, activity: ActivityInterceptor) -> None:
        """Block until asked to stop, or idle for ``idle_timeout`` seconds."""
        timeout = self.config.idle_timeout
        while not self._stop.wait(1.0 if timeout <= 0 else min(1.0, timeout / 4)):
            if scheduler.halted:
                self.request_stop(f"the scheduler halted: {scheduler.halted}")
                continue
            if timeout <= 0 or scheduler.active_run_count():
                continue
            if activity.idle_for() >= timeout:
                self.request_stop(f"idle for {timeout:g} s")

    def _install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the daemon gracefully."""

        def handle(signum: int, frame: FrameType | None) -> None:
            del frame
            self.request_stop(f"received {signal.Signals(signum).name}")

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    """Create files (the socket) owner-only from the start, not chmod-ed after binding."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _write_pid(path: Path) -> None:
    """Write the pid file atomically."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(f"{os.getpid()}\n")
    os.replace(temporary, path)


def _remove_pid(path: Path) -> None:
    """Remove the pid file if it is still ours."""
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()


def serve(config: ServerConfig) -> int:
    """Run a daemon with the built-in plugin registries; returns the exit code."""
    return Daemon(config).serve()
