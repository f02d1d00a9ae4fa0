"""Artifact codecs: how a Python value becomes the bytes stored for an artifact, and back.

Two encodings (framing in ``docs/datastore.md``):

- ``"json"``: UTF-8 JSON, chosen for values that come back *exactly* from JSON (None, bool,
  64-bit int, finite float, str, and lists and str-keyed dicts of those) when the text is at
  most 1 MiB. Every language reads it.
- ``"pickle-v5"``: a small header, a pickle protocol 5 stream and its out-of-band buffers
  (``pickle.PickleBuffer``), so the memory of large arrays is handed to the store without a
  copy. Everything else.

An :class:`Encoded` value is a list of buffers whose concatenation is the blob; the store
hashes and writes them in order (``polyflow_core.datastore``), and :func:`digest` gives the
same address the store would.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
from dataclasses import dataclass
from typing import Any, TypeAlias

from polyflow.exceptions import PolyflowError

__all__ = [
    "JSON_ENCODING",
    "JSON_MAX_BYTES",
    "PICKLE_ENCODING",
    "Buffer",
    "Encoded",
    "decode",
    "digest",
    "encode",
    "type_name_of",
    "value_digest",
]

JSON_ENCODING = "json"
"""UTF-8 JSON."""
PICKLE_ENCODING = "pickle-v5"
"""Framed pickle protocol 5 with out-of-band buffers."""
JSON_MAX_BYTES = 1 << 20
"""Largest JSON text chosen over pickle (1 MiB)."""

Buffer: TypeAlias = bytes | memoryview
"""One piece of an encoded blob."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_DEPTH = 100
# A JSON list or object of more items than this is over JSON_MAX_BYTES (two bytes per item
# at least), so it is not walked.
_MAX_ITEMS = JSON_MAX_BYTES // 2

_MAGIC = b"PFP5"
_HEAD = struct.Struct("<4sIQ")  # magic, number of buffers, length of the pickle stream
_ENTRY = struct.Struct("<QQ")  # offset from the frame's start, length
_ALIGN = 64


@dataclass(frozen=True)
class Encoded:
    """An encoded value: the blob is the concatenation of :attr:`buffers`."""

    buffers: list[Buffer]
    """The pieces of the blob, in order (views into the value's memory, no copies)."""
    encoding: str
    """``"json"`` or ``"pickle-v5"``."""
    type_name: str
    """The value's type, e.g. ``"builtins.dict"``."""
    size: int
    """Total number of bytes."""


def type_name_of(value: object) -> str:
    """The qualified name of the value's type, e.g. ``"numpy.ndarray"``."""
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def _json_exact(value: object, depth: int) -> bool:
    """Whether ``value`` comes back equal, with the same types, from JSON."""
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


def _encode_json(value: object) -> bytes | None:
    if not _json_exact(value, 0):
        return None
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        data = text.encode("utf-8")  # lone surrogates fail here
    except (ValueError, RecursionError):
        return None
    return data if len(data) <= JSON_MAX_BYTES else None


def _pad(offset: int) -> int:
    return -offset % _ALIGN


def _encode_pickle(value: object) -> tuple[list[Buffer], int]:
    raws: list[memoryview] = []

    def keep(buffer: pickle.PickleBuffer) -> None:
        raws.append(buffer.raw())

    stream = pickle.dumps(value, protocol=5, buffer_callback=keep)
    header_size = _HEAD.size + _ENTRY.size * len(raws)
    offset = header_size + len(stream)
    table: list[tuple[int, int]] = []
    body: list[Buffer] = [stream]
    for raw in raws:
        padding = _pad(offset)
        if padding:
            body.append(bytes(padding))
            offset += padding
        table.append((offset, raw.nbytes))
        body.append(raw)
        offset += raw.nbytes
    header = bytearray(_HEAD.pack(_MAGIC, len(raws), len(stream)))
    for entry in table:
        header += _ENTRY.pack(*entry)
    return [bytes(header), *body], offset


def encode(value: object) -> Encoded:
    """Encode a value for the store.

    Args:
        value: Any picklable value.

    Returns:
        The buffers, the encoding chosen, the type name and the size.

    Raises:
        pickle.PicklingError, TypeError, AttributeError: The value cannot be pickled.
    """
    data = _encode_json(value)
    if data is not None:
        return Encoded([data], JSON_ENCODING, type_name_of(value), len(data))
    buffers, size = _encode_pickle(value)
    return Encoded(buffers, PICKLE_ENCODING, type_name_of(value), size)


def _decode_pickle(data: bytes | memoryview) -> Any:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if view.nbytes < _HEAD.size:
        raise PolyflowError("malformed pickle-v5 artifact: shorter than its header")
    magic, count, stream_len = _HEAD.unpack_from(view, 0)
    if magic != _MAGIC:
        raise PolyflowError(f"malformed pickle-v5 artifact: bad magic {bytes(magic)!r}")
    start = _HEAD.size + _ENTRY.size * count
    if start + stream_len > view.nbytes:
        raise PolyflowError("malformed pickle-v5 artifact: truncated")
    buffers: list[memoryview | bytearray] = []
    for i in range(count):
        offset, length = _ENTRY.unpack_from(view, _HEAD.size + _ENTRY.size * i)
        if offset + length > view.nbytes:
            raise PolyflowError("malformed pickle-v5 artifact: a buffer runs past the end")
        piece = view[offset : offset + length]
        # Values built on read-only memory (numpy arrays) would be read-only: copy once.
        buffers.append(bytearray(piece) if view.readonly else piece)
    return pickle.loads(view[start : start + stream_len], buffers=buffers)


def decode(data: bytes | memoryview, encoding: str) -> Any:
    """Decode the stored bytes of an artifact.

    Args:
        data: The blob.
        encoding: Its encoding.

    Returns:
        The value. Arrays decoded from read-only memory are backed by a private copy, so
        they are writable.

    Raises:
        PolyflowError: An encoding Python cannot read, or a malformed blob.
    """
    if encoding == JSON_ENCODING:
        return json.loads(str(data, "utf-8"))
    if encoding == PICKLE_ENCODING:
        return _decode_pickle(data)
    raise PolyflowError(f"artifacts encoded as {encoding!r} cannot be read in Python")


def digest(encoded: Encoded) -> str:
    """The store address of an encoded value: ``sha256:<hex>`` of its concatenated buffers."""
    from polyflow_core.datastore.base import digest_of

    return digest_of(encoded.buffers)


def value_digest(value: object) -> str:
    """The store address :func:`encode` would give ``value``."""
    return digest(encode(value))
