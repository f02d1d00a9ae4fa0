"""R values to Python values and back, with rpy2 (used only inside converter processes).

The mapping (``docs/datastore.md``, "Converting between languages"):

=============================================  =============================================
R                                              Python
=============================================  =============================================
``NULL``                                       ``None``
length-one logical, integer, double, string    ``bool``, ``int``, ``float``, ``str``
vector of another length                       ``list`` of those
vector with names                              ``dict`` (name to item)
``NA`` (in a vector or a list)                 ``None``
unnamed list                                   ``list``
list with unique non-empty names               ``dict``
matrix or array (``dim``)                      ``numpy.ndarray`` (same shape)
``data.frame``                                 ``pandas.DataFrame``
factor                                         strings (a ``Categorical`` column in a frame)
``Date``, ``POSIXct``                          ``datetime.date``, ``datetime.datetime`` (UTC)
raw vector                                     ``bytes``
=============================================  =============================================

From Python: ``None`` is ``NULL``; ``bool``/``int``/``float``/``str`` are length-one vectors
(an ``int`` outside R's 32-bit range becomes a double); ``list`` and ``tuple`` are unnamed
lists; ``dict`` with string keys a named list; 1-d numpy arrays vectors, n-d arrays arrays;
pandas DataFrames data frames (missing values become ``NA``; a non-default index becomes row
names) and Series vectors; ``bytes`` a raw vector. In a numpy array NaN stays ``NaN``; in a
pandas column NaN is missing, hence ``NA``. Anything else raises :class:`UnsupportedValue`.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
from collections.abc import Sequence
from typing import Any

# rpy2's types export little; the module is used dynamically (and may be absent where mypy
# runs), so it is typed as Any.
ri: Any = importlib.import_module("rpy2.rinterface")

__all__ = [
    "UnsupportedValue",
    "py_to_r",
    "r_to_py",
    "r_type_name",
    "rds_dumps",
    "rds_loads",
    "start_r",
]

_INT32_MAX = 2**31 - 1
_R_HELPERS = """
list(
  serialize = function(x) serialize(x, NULL, version = 3L, xdr = TRUE),
  unserialize = function(b) unserialize(b),
  na_real = function(x) is.na(x) & !is.nan(x),
  type_name = function(x) class(x)[[1L]],
  auto_row_names = function(x) .row_names_info(x) < 0L,
  row_names = function(x) as.character(attr(x, "row.names")),
  as_data_frame = function(columns, row_names) {
    df <- structure(columns, class = "data.frame")
    attr(df, "row.names") <- if (is.null(row_names)) .set_row_names(
      if (length(columns)) length(columns[[1L]]) else 0L
    ) else row_names
    df
  }
)
"""


class UnsupportedValue(Exception):
    """The value has no counterpart in the other language."""

    def __init__(self, message: str, type_name: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name


_helpers: dict[str, Any] = {}


def _helper(name: str) -> Any:
    if not _helpers:
        ri.initr()
        parsed = ri.parse(_R_HELPERS)
        functions = ri.baseenv["eval"](parsed)
        for key, value in zip(functions.names, functions, strict=True):
            _helpers[key] = value
    return _helpers[name]


def start_r() -> None:
    """Start the embedded R (once); every function of this module calls it."""
    _helper("type_name")


def rds_loads(data: bytes) -> Any:
    """The R object of ``serialize()`` bytes."""
    return _helper("unserialize")(ri.ByteSexpVector(data))


def rds_dumps(obj: Any) -> bytes:
    """``serialize(obj, NULL, version = 3, xdr = TRUE)``."""
    return bytes(_helper("serialize")(obj))


def r_type_name(obj: Any) -> str:
    """``class(obj)[1]``."""
    return str(_helper("type_name")(obj)[0])


# --- R to Python ---------------------------------------------------------------------------


def _attr(obj: Any, name: str) -> Any | None:
    try:
        return obj.do_slot(name)
    except LookupError:
        return None


def _classes(obj: Any) -> list[str]:
    value = _attr(obj, "class")
    return [str(c) for c in value] if value is not None else []


def _items(obj: Any) -> list[Any]:
    """The elements of an atomic vector as Python scalars, NA as None."""
    kind = obj.typeof
    if kind == ri.RTYPES.REALSXP:
        na = list(_helper("na_real")(obj))
        return [None if missing else float(v) for v, missing in zip(obj, na, strict=True)]
    if kind == ri.RTYPES.INTSXP:
        return [None if v is ri.NA_Integer else int(v) for v in obj]
    if kind == ri.RTYPES.LGLSXP:
        return [None if v is ri.NA_Logical else bool(v) for v in obj]
    if kind == ri.RTYPES.STRSXP:
        return [None if v is ri.NA_Character else str(v) for v in obj]
    if kind == ri.RTYPES.CPLXSXP:
        return [complex(v) for v in obj]
    raise UnsupportedValue(f"R vectors of type {kind} have no Python counterpart")


def _factor_items(obj: Any) -> list[str | None]:
    levels = [str(v) for v in obj.do_slot("levels")]
    return [None if code is ri.NA_Integer else levels[int(code) - 1] for code in obj]


def _date_items(obj: Any, classes: list[str]) -> list[Any]:
    out: list[Any] = []
    for value in _items(obj):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out.append(None)
        elif "Date" in classes:
            out.append(dt.date(1970, 1, 1) + dt.timedelta(days=float(value)))
        else:
            out.append(dt.datetime.fromtimestamp(float(value), tz=dt.UTC))
    return out


def _atomic_items(obj: Any, classes: list[str], where: str) -> list[Any]:
    if "factor" in classes:
        return _factor_items(obj)
    if "Date" in classes or "POSIXct" in classes:
        return _date_items(obj, classes)
    known = {"AsIs", "noquote", "integer64"} & set(classes)
    if classes and not known:
        raise UnsupportedValue(
            f"{where}: an R object of class {classes[0]!r} has no Python counterpart",
            classes[0],
        )
    return _items(obj)


def _array(obj: Any, dims: list[int]) -> Any:
    import numpy as np

    kind = obj.typeof
    shape = tuple(dims)
    if kind == ri.RTYPES.REALSXP:
        flat = np.array(obj, dtype=np.float64)
        na = np.array(_helper("na_real")(obj), dtype=bool)
        flat[na] = np.nan
    elif kind == ri.RTYPES.INTSXP:
        items = _items(obj)
        if any(v is None for v in items):
            flat = np.array([np.nan if v is None else v for v in items], dtype=np.float64)
        else:
            flat = np.array(items, dtype=np.int32)
    elif kind == ri.RTYPES.LGLSXP:
        items = _items(obj)
        dtype: Any = object if any(v is None for v in items) else bool
        flat = np.array(items, dtype=dtype)
    elif kind == ri.RTYPES.STRSXP:
        flat = np.array(_items(obj), dtype=object)
    else:
        raise UnsupportedValue(f"R arrays of type {kind} have no Python counterpart")
    return flat.reshape(shape, order="F")


def _column(obj: Any, where: str) -> Any:
    """One data frame column as a pandas-ready array."""
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

    classes = _classes(obj)
    kind = obj.typeof
    if kind == ri.RTYPES.VECSXP:
        return np.array(
            [r_to_py(item, f"{where}[[{i + 1}]]") for i, item in enumerate(obj)], dtype=object
        )
    if "factor" in classes:
        levels = [str(v) for v in obj.do_slot("levels")]
        codes = [-1 if c is ri.NA_Integer else int(c) - 1 for c in obj]
        return pd.Categorical.from_codes(codes, categories=levels, ordered="ordered" in classes)
    if "Date" in classes or "POSIXct" in classes:
        values = _date_items(obj, classes)
        return pd.to_datetime(pd.Series(values, dtype=object), utc="POSIXct" in classes)
    items = _atomic_items(obj, classes, where)
    missing = any(v is None for v in items)
    if kind == ri.RTYPES.REALSXP:
        return np.array([np.nan if v is None else v for v in items], dtype=np.float64)
    if kind == ri.RTYPES.INTSXP:
        return pd.array(items, dtype="Int32") if missing else np.array(items, dtype=np.int32)
    if kind == ri.RTYPES.LGLSXP:
        return pd.array(items, dtype="boolean") if missing else np.array(items, dtype=bool)
    return np.array(items, dtype=object)


def _data_frame(obj: Any, where: str) -> Any:
    import pandas as pd

    names = [str(n) for n in (_attr(obj, "names") or [])]
    columns = {name: _column(col, f"{where}${name}") for name, col in zip(names, obj, strict=True)}
    frame = pd.DataFrame(columns)
    if not bool(_helper("auto_row_names")(obj)[0]):
        frame.index = pd.Index([str(v) for v in _helper("row_names")(obj)])
    return frame


def r_to_py(obj: Any, where: str = "value") -> Any:
    """The Python value of an R object (see the module docstring).

    Raises:
        UnsupportedValue: The object has no Python counterpart.
    """
    start_r()
    kind = obj.typeof
    if kind == ri.RTYPES.NILSXP:
        return None
    classes = _classes(obj)
    if kind == ri.RTYPES.VECSXP:
        if "data.frame" in classes:
            return _data_frame(obj, where)
        if classes:
            raise UnsupportedValue(
                f"{where}: an R object of class {classes[0]!r} has no Python counterpart",
                classes[0],
            )
        names = _attr(obj, "names")
        items = [r_to_py(item, f"{where}[[{i + 1}]]") for i, item in enumerate(obj)]
        if names is None:
            return items
        keys = [None if n is ri.NA_Character else str(n) for n in names]
        if any(not k for k in keys) or len(set(keys)) != len(keys):
            raise UnsupportedValue(
                f"{where}: a list whose names are partly empty or repeated has no Python "
                "counterpart (name every item once, or none)",
                "list",
            )
        return dict(zip(keys, items, strict=True))
    if kind == ri.RTYPES.RAWSXP:
        return bytes(obj)
    if kind not in (
        ri.RTYPES.LGLSXP,
        ri.RTYPES.INTSXP,
        ri.RTYPES.REALSXP,
        ri.RTYPES.STRSXP,
        ri.RTYPES.CPLXSXP,
    ):
        name = r_type_name(obj)
        raise UnsupportedValue(f"{where}: an R {name} has no Python counterpart", name)
    dims = _attr(obj, "dim")
    if dims is not None and "factor" not in classes:
        return _array(obj, [int(d) for d in dims])
    items = _atomic_items(obj, classes, where)
    names = _attr(obj, "names")
    if names is not None:
        return {str(k): v for k, v in zip(names, items, strict=True)}
    if len(items) == 1:
        return items[0]
    return items


# --- Python to R ---------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        return bool(value is pd.NA or value is pd.NaT)
    except ImportError:  # pragma: no cover - pandas is optional
        return False


def _scalar_vector(values: Sequence[Any], where: str, nan_is_na: bool) -> Any:
    """An R atomic vector of Python scalars (all of one kind, None for NA)."""
    present = [v for v in values if not _is_missing(v)]
    if nan_is_na:
        present = [v for v in present if not (isinstance(v, float) and math.isnan(v))]

    def na_or(v: Any, na: Any, cast: Any) -> Any:
        if _is_missing(v) or (nan_is_na and isinstance(v, float) and math.isnan(v)):
            return na
        return cast(v)

    if all(isinstance(v, bool) or type(v).__name__ == "bool_" for v in present):
        return ri.BoolSexpVector([na_or(v, ri.NA_Logical, bool) for v in values])
    if all(_is_int(v) for v in present):
        if all(-_INT32_MAX <= int(v) <= _INT32_MAX for v in present):
            return ri.IntSexpVector([na_or(v, ri.NA_Integer, int) for v in values])
        return ri.FloatSexpVector([na_or(v, ri.NA_Real, float) for v in values])
    if all(_is_int(v) or _is_float(v) for v in present):
        return ri.FloatSexpVector([na_or(v, ri.NA_Real, float) for v in values])
    if all(isinstance(v, str) for v in present):
        return ri.StrSexpVector([na_or(v, ri.NA_Character, str) for v in values])
    if all(isinstance(v, dt.datetime) for v in present):
        return _posixct([None if _is_missing(v) else v for v in values])
    if all(isinstance(v, dt.date) for v in present):
        return _dates([None if _is_missing(v) else v for v in values])
    kinds = sorted({type(v).__name__ for v in present})
    raise UnsupportedValue(
        f"{where}: a sequence of {', '.join(kinds)} values has no R vector counterpart", "list"
    )


def _is_int(value: Any) -> bool:
    import numbers

    return (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and (type(value).__name__ != "bool_")
    )


def _is_float(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Real) and not _is_int(value) and not isinstance(value, bool)


def _set_class(obj: Any, classes: list[str]) -> None:
    """Set the class attribute as ``class<-`` does (which also marks the object as one)."""
    obj.rclass = ri.StrSexpVector(classes)


def _posixct(values: Sequence[dt.datetime | None]) -> Any:
    vector = ri.FloatSexpVector(
        [
            ri.NA_Real if v is None else (v if v.tzinfo else v.replace(tzinfo=dt.UTC)).timestamp()
            for v in values
        ]
    )
    _set_class(vector, ["POSIXct", "POSIXt"])
    vector.do_slot_assign("tzone", ri.StrSexpVector(["UTC"]))
    return vector


def _dates(values: Sequence[dt.date | None]) -> Any:
    epoch = dt.date(1970, 1, 1)
    vector = ri.FloatSexpVector(
        [ri.NA_Real if v is None else float((v - epoch).days) for v in values]
    )
    _set_class(vector, ["Date"])
    return vector


def _ndarray(value: Any, where: str) -> Any:
    import numpy as np

    array = np.asarray(value)
    if array.ndim == 0:
        return py_to_r(array.item(), where)
    flat = array.reshape(-1, order="F")
    kind = array.dtype.kind
    if kind == "b":
        vector = ri.BoolSexpVector([bool(v) for v in flat])
    elif kind in "iu":
        if flat.size and (int(flat.max()) > _INT32_MAX or int(flat.min()) < -_INT32_MAX):
            vector = ri.FloatSexpVector(flat.astype(np.float64))
        else:
            vector = ri.IntSexpVector(flat.astype(np.int32))
    elif kind == "f":
        vector = ri.FloatSexpVector(flat.astype(np.float64))
    elif kind in "USO":
        vector = _scalar_vector([None if v is None else v for v in flat.tolist()], where, False)
    else:
        raise UnsupportedValue(
            f"{where}: numpy arrays of dtype {array.dtype} have no R counterpart", "numpy.ndarray"
        )
    if array.ndim > 1:
        vector.do_slot_assign("dim", ri.IntSexpVector(list(array.shape)))
    return vector


def _series(series: Any, where: str) -> Any:
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        codes = [ri.NA_Integer if c < 0 else int(c) + 1 for c in series.cat.codes]
        vector = ri.IntSexpVector(codes)
        vector.do_slot_assign("levels", ri.StrSexpVector([str(c) for c in dtype.categories]))
        classes = ["ordered", "factor"] if dtype.ordered else ["factor"]
        _set_class(vector, classes)
        return vector
    if pd.api.types.is_datetime64_any_dtype(dtype):
        stamps = [None if pd.isna(v) else v.to_pydatetime() for v in series]
        return _posixct(stamps)
    values = [None if _is_missing(v) else v for v in series.tolist()]
    if dtype.kind == "O" and any(isinstance(v, list | dict | tuple) for v in values):
        return ri.ListSexpVector([py_to_r(v, f"{where}[{i}]") for i, v in enumerate(values)])
    if dtype.kind == "f":
        return ri.FloatSexpVector([ri.NA_Real if v is None or math.isnan(v) else v for v in values])
    return _scalar_vector(values, where, nan_is_na=True)


def _data_frame_to_r(frame: Any, where: str) -> Any:
    import pandas as pd

    names = [str(c) for c in frame.columns]
    columns = ri.ListSexpVector(
        [_series(frame[c], f"{where}${n}") for c, n in zip(frame.columns, names, strict=True)]
    )
    columns.do_slot_assign("names", ri.StrSexpVector(names))
    index = frame.index
    default = isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
    row_names = ri.NULL if default else ri.StrSexpVector([str(v) for v in index])
    return _helper("as_data_frame")(columns, row_names)


def py_to_r(value: Any, where: str = "value") -> Any:
    """The R object of a Python value (see the module docstring).

    Raises:
        UnsupportedValue: The value has no R counterpart.
    """
    start_r()
    if value is None:
        return ri.NULL
    if isinstance(value, bool | int | float | str) or type(value).__module__ == "numpy":
        if type(value).__module__ == "numpy" and hasattr(value, "ndim") and value.ndim > 0:
            return _ndarray(value, where)
        if type(value).__module__ == "numpy" and hasattr(value, "item"):
            value = value.item()
        return _scalar_vector([value], where, nan_is_na=False)
    if isinstance(value, bytes | bytearray | memoryview):
        return ri.ByteSexpVector(bytes(value))
    if isinstance(value, dt.datetime):
        return _posixct([value])
    if isinstance(value, dt.date):
        return _dates([value])
    if isinstance(value, list | tuple):
        return ri.ListSexpVector([py_to_r(v, f"{where}[{i}]") for i, v in enumerate(value)])
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise UnsupportedValue(
                f"{where}: a dict with keys that are not strings has no R counterpart",
                "builtins.dict",
            )
        items = ri.ListSexpVector([py_to_r(v, f"{where}[{k!r}]") for k, v in value.items()])
        items.do_slot_assign("names", ri.StrSexpVector(list(value)))
        return items
    module = type(value).__module__.split(".")[0]
    if module == "pandas":
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            return _data_frame_to_r(value, where)
        if isinstance(value, pd.Series):
            vector = _series(value, where)
            index = value.index
            if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
                vector.do_slot_assign("names", ri.StrSexpVector([str(v) for v in index]))
            return vector
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    raise UnsupportedValue(f"{where}: a {name} has no R counterpart", name)
