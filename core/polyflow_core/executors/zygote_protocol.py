"""The wire format between the daemon and its pre-forked Python worker processes.

The daemon (:mod:`polyflow_core.executors.forkserver`) and the zygote processes
(:mod:`polyflow._worker.zygote`, running in the user's interpreter) talk over a unix stream
socket pair. Like the blob store, this module is shared by both sides and imports only the
standard library: no gRPC, no protobuf, no daemon code (see ``docs/architecture.md``).

A frame is::

    uint32 big-endian   length of the header (UTF-8 JSON object)
    uint32 big-endian   length of the body (opaque bytes)
    header, then body

File descriptors travel with a frame as ``SCM_RIGHTS`` ancillary data attached to its first
byte; the header's ``"nfds"`` says how many belong to it. The reader keeps received
descriptors in arrival order, so a frame takes its own even when the kernel delivers the
descriptors of several frames in one read.

Messages (``"op"`` of the header):

daemon -> template: ``zygote`` {cwd, env} + 1 fd (the new zygote's socket): fork a zygote.
template -> daemon: ``ready`` {pid, modules: [[path, mtime_ns], ...]} once it imported the SDK;
``failed`` {error} when it could not.

daemon -> zygote: ``task`` {id} + body (serialized ``TaskSpec``) + 2 fds (stdout, stderr):
fork a child for the task; ``kill`` {id, signal}: signal the task's process group.
zygote -> daemon: ``exited`` {id, status} + body (the child's serialized ``TaskOutcome``,
empty when it reported none), where ``status`` is the raw wait status; or ``exited``
{id, error} when no process could be started.

Closing the daemon's end of a socket tells the process to stop (a zygote first kills the
tasks still running).
"""

from __future__ import annotations

import array
import json
import os
import socket
import struct
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "ENV_SOCKET_FD",
    "MAX_FDS_PER_READ",
    "FrameReader",
    "ProtocolError",
    "send_frame",
]

ENV_SOCKET_FD = "POLYFLOW_ZYGOTE_FD"
"""Environment variable naming the inherited socket descriptor of a template process."""

MAX_FDS_PER_READ = 256
"""Most descriptors one read can receive (more would be a protocol error)."""

_HEAD = struct.Struct(">II")
_READ_SIZE = 1 << 18


class ProtocolError(Exception):
    """A malformed frame, or descriptors lost in transit."""


def send_frame(
    sock: socket.socket,
    header: Mapping[str, Any],
    body: bytes = b"",
    fds: Sequence[int] = (),
) -> None:
    """Send one frame (blocking), with ``fds`` attached to its first byte.

    Raises:
        OSError: The peer is gone (``BrokenPipeError``, ``ConnectionResetError``...).
    """
    head = dict(header)
    if fds:
        head["nfds"] = len(fds)
    text = json.dumps(head, separators=(",", ":")).encode()
    data = _HEAD.pack(len(text), len(body)) + text + body
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        sent = sock.sendmsg([data], ancillary)
    else:
        sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


class FrameReader:
    """Reassembles frames (and their descriptors) from a stream socket.

    Call :meth:`fill` when the socket is readable (or to block until it is), then iterate
    :meth:`frames`. Received descriptors are close-on-exec; a frame's descriptors become the
    caller's to close.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._fds: deque[int] = deque()
        self._anc_size = socket.CMSG_SPACE(MAX_FDS_PER_READ * array.array("i").itemsize)

    def fill(self) -> bool:
        """Read what is available (blocking if the socket is). False at end of stream.

        Raises:
            ProtocolError: Descriptors were truncated.
            OSError: The read failed (``BlockingIOError`` when nothing is available).
        """
        data, ancillary, flags, _ = self._sock.recvmsg(
            _READ_SIZE, self._anc_size, getattr(socket, "MSG_CMSG_CLOEXEC", 0)
        )
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                self._fds.extend(fds)
        if flags & getattr(socket, "MSG_CTRUNC", 0):
            raise ProtocolError("file descriptors were lost in transit (MSG_CTRUNC)")
        if not data:
            return False
        self._buffer += data
        return True

    def frames(self) -> Iterator[tuple[dict[str, Any], bytes, list[int]]]:
        """The complete frames received so far: (header, body, descriptors).

        Raises:
            ProtocolError: A malformed header, or a frame claiming descriptors not received.
        """
        while len(self._buffer) >= _HEAD.size:
            head_len, body_len = _HEAD.unpack_from(self._buffer, 0)
            end = _HEAD.size + head_len + body_len
            if len(self._buffer) < end:
                return
            try:
                header = json.loads(bytes(self._buffer[_HEAD.size : _HEAD.size + head_len]))
            except ValueError as error:
                raise ProtocolError(f"malformed frame header: {error}") from None
            if not isinstance(header, dict):
                raise ProtocolError("a frame header is not a JSON object")
            body = bytes(self._buffer[_HEAD.size + head_len : end])
            del self._buffer[:end]
            count = int(header.get("nfds", 0))
            if count > len(self._fds):
                raise ProtocolError(f"a frame claims {count} descriptors; {len(self._fds)} came")
            yield header, body, [self._fds.popleft() for _ in range(count)]

    def close_pending(self) -> None:
        """Close descriptors received but not claimed by a frame."""
        while self._fds:
            try:
                os.close(self._fds.popleft())
            except OSError:
                pass

    @property
    def pending_fds(self) -> list[int]:
        """Descriptors received but not yet claimed (a forked child closes them)."""
        return list(self._fds)
