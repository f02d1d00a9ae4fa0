"""The ``json`` and ``pickle-v5`` encodings of ``docs/datastore.md``, for converter processes.

The SDK has the same codecs (``polyflow._codecs``); the core may not import the SDK, so the
byte formats are written again here, and ``tests/unit/core/test_convert_codecs.py`` checks
that both sides read what the other writes.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
from typing import Any

__all__ = [
    "JSON_ENCODING",
    "JSON_MAX_BYTES",
    "PICKLE_ENCODING",
    "RDS_ENCODING",
    "decode_json",
    "decode_pickle",
    "encode_json",
    "encode_pickle",
    "type_name_of",
]

JSON_ENCODING = "json"
"""UTF-8 JSON."""
PICKLE_ENCODING = "pickle-v5"
"""Framed pickle protocol 5 with out-of-band buffers."""
RDS_ENCODING = "rds"
"""R ``serialize()`` output, version 3."""
JSON_MAX_BYTES = 1 << 20
"""Largest JSON text chosen over pickle (1 MiB)."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_DEPTH = 100
_MAX_ITEMS = JSON_MAX_BYTES // 2
_MAGIC = b"PFP5"
_HEAD = struct.Struct("<4sIQ")
_ENTRY = struct.Struct("<QQ")
_ALIGN = 64


def type_name_of(value: object) -> str:
    """The qualified name of the value's type, e.g. ``"builtins.dict"``."""
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def _json_exact(value: object, depth: int) -> bool:
    kind = type(value)
    if value is None or kind is bool:
        return True
    if kind is str:
        return len(value) <= JSON_MAX_BYTES  # type: ignore[arg-type]
    if kind is int:
        return _INT64_MIN <= value <= _INT64_MAX  # type: ignore[operator]
    if kind is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    if depth >= _MAX_DEPTH:
        return False
    if kind is list:
        items: list[object] = value  # type: ignore[assignment]
        return len(items) <= _MAX_ITEMS and all(_json_exact(v, depth + 1) for v in items)
    if kind is dict:
        mapping: dict[object, object] = value  # type: ignore[assignment]
        return len(mapping) <= _MAX_ITEMS and all(
            type(k) is str and _json_exact(v, depth + 1) for k, v in mapping.items()
        )
    return False


def encode_json(value: object) -> bytes | None:
    """The JSON bytes of a value that comes back exactly from JSON, else None."""
    if not _json_exact(value, 0):
        return None
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        data = text.encode("utf-8")
    except (ValueError, RecursionError):
        return None
    return data if len(data) <= JSON_MAX_BYTES else None


def decode_json(data: bytes) -> Any:
    """The value of JSON bytes."""
    return json.loads(data.decode("utf-8"))


def encode_pickle(value: object) -> bytes:
    """A ``pickle-v5`` frame of the value (its buffers out of band, 64-byte aligned).

    Raises:
        pickle.PicklingError, TypeError, AttributeError: The value cannot be pickled.
    """
    raws: list[memoryview] = []

    def keep(buffer: pickle.PickleBuffer) -> None:
        raws.append(buffer.raw())

    stream = pickle.dumps(value, protocol=5, buffer_callback=keep)
    offset = _HEAD.size + _ENTRY.size * len(raws) + len(stream)
    table: list[tuple[int, int]] = []
    body: list[bytes | memoryview] = [stream]
    for raw in raws:
        padding = -offset % _ALIGN
        if padding:
            body.append(bytes(padding))
            offset += padding
        table.append((offset, raw.nbytes))
        body.append(raw)
        offset += raw.nbytes
    header = bytearray(_HEAD.pack(_MAGIC, len(raws), len(stream)))
    for entry in table:
        header += _ENTRY.pack(*entry)
    return b"".join([bytes(header), *body])


def decode_pickle(data: bytes) -> Any:
    """The value of a ``pickle-v5`` frame.

    Raises:
        ValueError: A malformed frame.
    """
    view = memoryview(data)
    if view.nbytes < _HEAD.size:
        raise ValueError("malformed pickle-v5 blob: shorter than its header")
    magic, count, stream_len = _HEAD.unpack_from(view, 0)
    if magic != _MAGIC:
        raise ValueError(f"malformed pickle-v5 blob: bad magic {bytes(magic)!r}")
    start = _HEAD.size + _ENTRY.size * count
    if start + stream_len > view.nbytes:
        raise ValueError("malformed pickle-v5 blob: truncated")
    buffers: list[bytearray] = []
    for i in range(count):
        offset, length = _ENTRY.unpack_from(view, _HEAD.size + _ENTRY.size * i)
        if offset + length > view.nbytes:
            raise ValueError("malformed pickle-v5 blob: a buffer runs past the end")
        buffers.append(bytearray(view[offset : offset + length]))
    return pickle.loads(view[start : start + stream_len], buffers=buffers)
