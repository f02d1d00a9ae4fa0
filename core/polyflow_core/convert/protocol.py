"""Messages between the daemon and a converter process, on the process's stdin and stdout.

Each message is a JSON header and a binary payload::

    uint32 big-endian  length of the header
    header             UTF-8 JSON object
    uint64 big-endian  length of the payload
    payload            bytes

- At start-up the converter sends ``{"ready": true}``, or ``{"ready": false, "message": ...}``
  when it cannot convert at all (rpy2 or R missing), then exits.
- A request is ``{"from": <encoding>, "accept": [<encoding>, ...]}`` with the encoded value as
  payload.
- A reply is ``{"ok": true, "encoding": ..., "type_name": ...}`` with the converted bytes, or
  ``{"ok": false, "kind": "unsupported" | "failed", "message": ..., "type_name": ...}`` with an
  empty payload.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any

__all__ = ["ProtocolError", "read_message", "write_message"]

_HEADER_LEN = struct.Struct(">I")
_PAYLOAD_LEN = struct.Struct(">Q")
_MAX_HEADER = 1 << 20


class ProtocolError(Exception):
    """The other side closed the pipe or sent something malformed."""


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise ProtocolError("the pipe closed in the middle of a message")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def write_message(stream: IO[bytes], header: dict[str, Any], payload: bytes = b"") -> None:
    """Write one message and flush."""
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    stream.write(_HEADER_LEN.pack(len(encoded)))
    stream.write(encoded)
    stream.write(_PAYLOAD_LEN.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def read_message(stream: IO[bytes]) -> tuple[dict[str, Any], bytes] | None:
    """Read one message; None at a clean end of stream (before a message starts).

    Raises:
        ProtocolError: A truncated or malformed message.
    """
    first = stream.read(_HEADER_LEN.size)
    if not first:
        return None
    if len(first) < _HEADER_LEN.size:
        first += _read_exact(stream, _HEADER_LEN.size - len(first))
    (size,) = _HEADER_LEN.unpack(first)
    if size > _MAX_HEADER:
        raise ProtocolError(f"a message header of {size} bytes is too large")
    try:
        header = json.loads(_read_exact(stream, size).decode("utf-8"))
    except ValueError as error:
        raise ProtocolError(f"a message header is not JSON: {error}") from None
    if not isinstance(header, dict):
        raise ProtocolError("a message header is not a JSON object")
    (length,) = _PAYLOAD_LEN.unpack(_read_exact(stream, _PAYLOAD_LEN.size))
    return header, _read_exact(stream, length)
