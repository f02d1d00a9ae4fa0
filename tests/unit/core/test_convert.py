"""The converter (``polyflow_core.convert``): byte formats, the pipe protocol, the daemon-side
service with its cache and errors, the R <-> Python value mapping (with rpy2), and a real
converter process."""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from polyflow import _codecs
from polyflow_core.convert import codecs, protocol
from polyflow_core.convert.service import ArtifactConverter, ConverterPool
from polyflow_core.datastore.local import LocalBlobStore
from polyflow_core.errors import CoreError, ErrorCode, InvalidArgumentError

# --- codecs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, True, 3, 2.5, "h\u00e9", [1, "a", None], {"a": {"b": [1.5]}}, [], {}],
)
def test_json_matches_the_sdk(value: Any) -> None:
    """The core's JSON bytes are the SDK's, so both give one digest."""
    encoded = codecs.encode_json(value)
    assert encoded is not None
    sdk = _codecs.encode(value)
    assert sdk.encoding == "json"
    assert b"".join(bytes(b) for b in sdk.buffers) == encoded
    assert codecs.decode_json(encoded) == value


@pytest.mark.parametrize("value", [float("nan"), (1, 2), {1: "a"}, 2**70, {"a"}])
def test_json_refuses_inexact_values(value: Any) -> None:
    """Values that would not come back exactly are not JSON."""
    assert codecs.encode_json(value) is None


def test_pickle_frames_are_read_by_both_sides() -> None:
    """A frame written here decodes in the SDK and the reverse, out-of-band buffers included."""
    np = pytest.importorskip("numpy")
    value = {"array": np.arange(1000, dtype=np.float64).reshape(10, 100), "n": [1, 2]}
    mine = codecs.encode_pickle(value)
    theirs = _codecs.decode(mine, "pickle-v5")
    assert np.array_equal(theirs["array"], value["array"]) and theirs["n"] == [1, 2]
    sdk = b"".join(bytes(b) for b in _codecs.encode(value).buffers)
    assert mine == sdk
    back = codecs.decode_pickle(sdk)
    assert np.array_equal(back["array"], value["array"])
    with pytest.raises(ValueError, match="bad magic"):
        codecs.decode_pickle(b"XXXX" + bytes(12))


def test_type_names() -> None:
    """Type names are qualified like the SDK's."""
    assert codecs.type_name_of({}) == "builtins.dict"


# --- protocol --------------------------------------------------------------------------------


def test_protocol_round_trip_and_end_of_stream() -> None:
    """Messages are a JSON header and a payload; a closed pipe reads as None."""
    buffer = io.BytesIO()
    protocol.write_message(buffer, {"from": "rds", "accept": ["json"]}, b"\x00\x01")
    protocol.write_message(buffer, {"ok": True})
    buffer.seek(0)
    assert protocol.read_message(buffer) == ({"from": "rds", "accept": ["json"]}, b"\x00\x01")
    assert protocol.read_message(buffer) == ({"ok": True}, b"")
    assert protocol.read_message(buffer) is None
    truncated = io.BytesIO(buffer.getvalue()[:7])
    with pytest.raises(protocol.ProtocolError):
        protocol.read_message(truncated)


# --- the service, with a fake pool -------------------------------------------------------------


class FakePool(ConverterPool):
    """Converts by prefixing the bytes; counts calls."""

    def __init__(self, result: tuple[bytes, str, str] | CoreError) -> None:
        self.result = result
        self.calls: list[tuple[bytes, str, tuple[str, ...]]] = []

    def convert(self, data: bytes, source: str, accept: Sequence[str]) -> tuple[bytes, str, str]:
        self.calls.append((data, source, tuple(accept)))
        if isinstance(self.result, CoreError):
            raise self.result
        return self.result

    def close(self) -> None:
        pass


def test_conversions_are_stored_and_remembered(tmp_path: Path) -> None:
    """The converted bytes are stored by their digest; asking again uses the cache."""
    store = LocalBlobStore(tmp_path / "store")
    source = store.put_bytes(b"rds bytes")
    pool = FakePool((b"[1,2]", "json", "builtins.list"))
    converter = ArtifactConverter(store, pool)
    first = converter.convert(source.digest, "rds", ["json", "pickle-v5"])
    assert first.encoding == "json" and first.type_name == "builtins.list"
    assert store.get_bytes(first.digest) == b"[1,2]"
    assert pool.calls == [(b"rds bytes", "rds", ("json", "pickle-v5"))]
    assert converter.convert(source.digest, "rds", ["json", "pickle-v5"]) == first
    assert len(pool.calls) == 1
    same = converter.convert(source.digest, "rds", ["rds"])
    assert (same.digest, same.encoding, same.size) == (source.digest, "rds", source.size)


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    """Unknown encodings, no accepted encoding and absent blobs fail before any conversion."""
    store = LocalBlobStore(tmp_path / "store")
    digest = store.put_bytes(b"x").digest
    converter = ArtifactConverter(store, FakePool((b"", "json", "")))
    with pytest.raises(InvalidArgumentError, match="unknown encoding 'feather'"):
        converter.convert(digest, "feather", ["rds"])
    with pytest.raises(InvalidArgumentError) as caught:
        converter.convert(digest, "rds", [])
    assert caught.value.reason == "NO_ACCEPTED_ENCODING"
    with pytest.raises(CoreError) as missing:
        converter.convert("sha256:" + "0" * 64, "rds", ["json"])
    assert missing.value.code is ErrorCode.NOT_FOUND


def test_pool_errors_reach_the_caller(tmp_path: Path) -> None:
    """An unsupported value is FAILED_PRECONDITION with its reason."""
    store = LocalBlobStore(tmp_path / "store")
    digest = store.put_bytes(b"x").digest
    error = CoreError("no", code=ErrorCode.FAILED_PRECONDITION, reason="CONVERSION_UNSUPPORTED")
    with pytest.raises(CoreError) as caught:
        ArtifactConverter(store, FakePool(error)).convert(digest, "rds", ["json"])
    assert caught.value.reason == "CONVERSION_UNSUPPORTED"


def test_a_converter_that_cannot_start_is_unavailable() -> None:
    """Without R or rpy2 (here: a command that is not a converter) conversions are UNAVAILABLE."""
    pool = ConverterPool([sys.executable, "-c", "import sys; sys.exit(0)"], timeout=10)
    with pytest.raises(CoreError) as caught:
        pool.convert(b"x", "rds", ["json"])
    assert caught.value.code is ErrorCode.UNAVAILABLE
    assert caught.value.reason == "CONVERTER_UNAVAILABLE"
    pool.close()


# --- values, with rpy2 -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def values() -> Any:
    """The rpy2 mapping (skipped without rpy2 and R)."""
    pytest.importorskip("rpy2")
    from polyflow_core.convert import values as module

    module.start_r()
    return module


def r_eval(values: Any, source: str) -> Any:
    ri = values.ri
    return ri.baseenv["eval"](ri.parse(source))


def r_deparse(values: Any, obj: Any) -> str:
    return "".join(values.ri.baseenv["deparse"](obj))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("NULL", None),
        ("TRUE", True),
        ("3L", 3),
        ("2.5", 2.5),
        ("'a'", "a"),
        ("c(1L, NA)", [1, None]),
        ("c(a = 1, b = 2)", {"a": 1.0, "b": 2.0}),
        ("list(1, 'x', NULL)", [1.0, "x", None]),
        ("list(a = list(b = TRUE))", {"a": {"b": True}}),
        ("factor(c('u', 'v', NA))", ["u", "v", None]),
        ("as.raw(c(1, 255))", b"\x01\xff"),
        ("c(NA_character_, 'z')", [None, "z"]),
    ],
)
def test_r_values_become_python_values(values: Any, source: str, expected: Any) -> None:
    """The mapping table of docs/datastore.md, R to Python."""
    assert values.r_to_py(r_eval(values, source)) == expected


def test_na_and_nan_stay_apart(values: Any) -> None:
    """A double NA is None; a NaN stays nan."""
    found = values.r_to_py(r_eval(values, "c(NA, NaN, 1)"))
    assert found[0] is None and math.isnan(found[1]) and found[2] == 1.0


def test_matrices_and_frames(values: Any) -> None:
    """Matrices are numpy arrays of the same shape; data frames pandas frames."""
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    matrix = values.r_to_py(r_eval(values, "matrix(1:6, nrow = 2)"))
    assert matrix.shape == (2, 3) and matrix[1, 2] == 6 and matrix.dtype == np.int32
    frame = values.r_to_py(
        r_eval(values, "data.frame(a = c(1.5, NA), n = c(1L, NA), row.names = c('x', 'y'))")
    )
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.index) == ["x", "y"]
    assert math.isnan(frame["a"].iloc[1]) and frame["n"].isna().tolist() == [False, True]


def test_python_values_become_r_values(values: Any) -> None:
    """The mapping table of docs/datastore.md, Python to R."""
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    assert r_deparse(values, values.py_to_r({"a": [1, 2.5, None], "b": True})) == (
        "list(a = list(1L, 2.5, NULL), b = TRUE)"
    )
    assert r_deparse(values, values.py_to_r(2**40)) == "1099511627776"
    assert r_deparse(values, values.py_to_r(np.array([1.0, np.nan]))) == "c(1, NaN)"
    array = values.py_to_r(np.arange(6).reshape(2, 3))
    assert r_deparse(values, array) == "structure(c(0L, 3L, 1L, 4L, 2L, 5L), dim = 2:3)"
    frame = values.py_to_r(pd.DataFrame({"p": [1.0, np.nan], "q": ["a", None]}))
    assert "p = c(1, NA)" in r_deparse(values, frame)
    assert 'q = c("a", NA)' in r_deparse(values, frame)
    assert values.r_type_name(frame) == "data.frame"


def test_values_without_counterpart(values: Any) -> None:
    """Model objects, environments and sets are refused, naming their type."""
    with pytest.raises(values.UnsupportedValue, match="'lm'") as caught:
        values.r_to_py(r_eval(values, "lm(y ~ x, data.frame(x = 1:3, y = c(1, 2, 4)))"))
    assert caught.value.type_name == "lm"
    with pytest.raises(values.UnsupportedValue):
        values.r_to_py(r_eval(values, "new.env()"))
    with pytest.raises(values.UnsupportedValue, match=r"builtins\.set"):
        values.py_to_r({1, 2})


def test_a_real_converter_process(tmp_path: Path, values: Any) -> None:
    """``python -m polyflow_core.convert`` converts rds to JSON or pickle and back."""
    pool = ConverterPool(timeout=120)
    try:
        rds = values.rds_dumps(r_eval(values, "list(a = c(x = 1.5), b = 'z')"))
        data, encoding, type_name = pool.convert(rds, "rds", ["json", "pickle-v5"])
        assert (encoding, type_name) == ("json", "builtins.dict")
        assert codecs.decode_json(data) == {"a": {"x": 1.5}, "b": "z"}
        tuple_pickle = codecs.encode_pickle((1, 2))
        data, encoding, type_name = pool.convert(tuple_pickle, "pickle-v5", ["json", "pickle-v5"])
        assert (encoding, codecs.decode_pickle(data)) == ("pickle-v5", (1, 2))
        back, encoding, type_name = pool.convert(tuple_pickle, "pickle-v5", ["rds"])
        assert (encoding, type_name) == ("rds", "list")
        assert r_deparse(values, values.rds_loads(back)) == "list(1L, 2L)"
        with pytest.raises(CoreError) as caught:
            pool.convert(codecs.encode_pickle({1, 2}), "pickle-v5", ["rds"])
        assert caught.value.reason == "CONVERSION_UNSUPPORTED"
        assert caught.value.metadata["type_name"] == "builtins.set"
    finally:
        pool.close()
