"""Codecs: which values are JSON, pickle-v5 framing with out-of-band buffers, digests."""

from __future__ import annotations

import enum
import hashlib
import json
import math
import pickle
import struct
from typing import Any

import numpy as np
import pytest
from polyflow._codecs import (
    JSON_ENCODING,
    JSON_MAX_BYTES,
    PICKLE_ENCODING,
    decode,
    digest,
    encode,
    value_digest,
)
from polyflow.exceptions import PolyflowError
from polyflow_core.datastore.base import digest_of
from polyflow_core.datastore.local import LocalBlobStore


def _blob(value: Any) -> bytes:
    return b"".join(bytes(b) for b in encode(value).buffers)


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**63),
        2**63 - 1,
        1.5,
        -0.0,
        "héllo ✓",
        [],
        {},
        [1, "a", None, [2.5, {"k": False}]],
        {"a": {"b": [1, 2, {"c": "d"}]}},
    ],
)
def test_json_values_round_trip_exactly(value: Any) -> None:
    encoded = encode(value)
    assert encoded.encoding == JSON_ENCODING
    back = decode(_blob(value), JSON_ENCODING)
    assert back == value and type(back) is type(value)
    assert encoded.size == len(_blob(value))


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        {1, 2},
        {1: "int key"},
        2**63,
        float("nan"),
        float("inf"),
        b"bytes",
        Color.RED,
        [1, (2, 3)],
        {"a": {1, 2}},
        "\ud800",  # a lone surrogate cannot be UTF-8
    ],
)
def test_non_json_values_are_pickled(value: Any) -> None:
    encoded = encode(value)
    assert encoded.encoding == PICKLE_ENCODING
    back = decode(_blob(value), PICKLE_ENCODING)
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(back)
    else:
        assert back == value and type(back) is type(value)


def test_json_size_limit() -> None:
    small = "x" * (JSON_MAX_BYTES - 2)
    assert encode(small).encoding == JSON_ENCODING  # quotes make it exactly 1 MiB
    assert encode(small + "x").encoding == PICKLE_ENCODING


def test_json_text_is_compact_utf8() -> None:
    assert _blob({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()
    assert json.loads(_blob({"b": 1, "a": 2})) == {"b": 1, "a": 2}


def test_cycles_and_deep_nesting_fall_back_to_pickle() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert encode(loop).encoding == PICKLE_ENCODING
    back = decode(_blob(loop), PICKLE_ENCODING)
    assert back[0] is back


def test_numpy_array_goes_out_of_band_without_copy() -> None:
    array = np.arange(1_000_000, dtype=np.float64)
    encoded = encode(array)
    assert encoded.encoding == PICKLE_ENCODING
    assert encoded.type_name == "numpy.ndarray"
    # The array's memory itself is one of the buffers (no copy).
    views = [b for b in encoded.buffers if isinstance(b, memoryview)]
    assert len(views) == 1
    assert np.shares_memory(np.frombuffer(views[0], dtype=np.float64), array)
    blob = b"".join(bytes(b) for b in encoded.buffers)
    assert len(blob) == encoded.size
    magic, count, stream_len = struct.unpack_from("<4sIQ", blob, 0)
    assert (magic, count) == (b"PFP5", 1)
    offset, length = struct.unpack_from("<QQ", blob, 16)
    assert offset % 64 == 0 and length == array.nbytes
    assert 32 + stream_len <= offset
    assert blob[offset : offset + length] == array.tobytes()
    back = decode(memoryview(blob).toreadonly(), PICKLE_ENCODING)
    assert np.array_equal(back, array)
    back[0] = 42.0  # decoded from read-only memory, still writable


def test_pickle_without_buffers_and_several_buffers() -> None:
    value = {"a": np.ones(3), "b": np.zeros((2, 2), dtype=np.int32), "c": [1, 2]}
    blob = _blob(value)
    assert struct.unpack_from("<4sI", blob, 0) == (b"PFP5", 2)
    back = decode(blob, PICKLE_ENCODING)
    assert np.array_equal(back["a"], value["a"]) and back["b"].dtype == np.int32
    plain = _blob((1, 2))
    assert struct.unpack_from("<4sIQ", plain, 0)[1] == 0
    stream_len = struct.unpack_from("<4sIQ", plain, 0)[2]
    assert len(plain) == 16 + stream_len
    assert pickle.loads(plain[16:]) == (1, 2)


def test_decode_errors() -> None:
    with pytest.raises(PolyflowError, match="'rds' cannot be read in Python"):
        decode(b"", "rds")
    with pytest.raises(PolyflowError, match="bad magic"):
        decode(b"XXXX" + bytes(12), PICKLE_ENCODING)
    with pytest.raises(PolyflowError, match="shorter than its header"):
        decode(b"PF", PICKLE_ENCODING)


def test_digest_matches_store_and_is_stable(tmp_path: Any) -> None:
    value = {"x": np.arange(10), "y": "text"}
    first, second = encode(value), encode(value)
    assert digest(first) == digest(second) == value_digest(value)
    blob = b"".join(bytes(b) for b in first.buffers)
    assert digest(first) == "sha256:" + hashlib.sha256(blob).hexdigest() == digest_of(blob)
    store = LocalBlobStore(tmp_path, fsync=False)
    info = store.put_bytes(first.buffers)
    assert info.digest == digest(first) and info.size == first.size
    assert np.array_equal(decode(store.get_view(info.digest), first.encoding)["x"], np.arange(10))
    assert value_digest([1, 2]) != value_digest([2, 1])
