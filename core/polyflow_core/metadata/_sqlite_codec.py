"""Conversions of the SQLite metadata store: stored times and ids, page sizes and page tokens,
the JSON of exception and foreach-frame columns, and the errors the store raises for absent
runs and tasks. Only the ``polyflow_core.metadata.sqlite`` modules use this module; nothing in
it touches a database.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import time
from collections.abc import Sequence
from typing import Any

from polyflow_core.errors import InvalidArgumentError, NotFoundError
from polyflow_core.metadata.base import ExceptionRecord, ForeachFrameRecord

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "TASK_COLUMNS",
    "TASK_LEVEL",
    "check_attempt",
    "check_key",
    "decode_token",
    "effective_page_size",
    "encode_token",
    "exception_from",
    "exception_json",
    "frames_from",
    "frames_json",
    "int_id",
    "now_us",
    "run_not_found",
    "task_not_found",
    "to_dt",
    "to_dt_opt",
]

DEFAULT_PAGE_SIZE = 100
"""Page size used when a listing is given 0."""
MAX_PAGE_SIZE = 1000
"""Larger page sizes are reduced to this."""

TASK_LEVEL = -1  # the `attempt` of task-level rows in the metadata table
TASK_COLUMNS = (
    "run_id, task_id, flow_id, step_name, create_time, foreach_stack, input_tasks, origin_task"
)
"""The columns of a task row, as written by ``create_task`` and read back as records."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def now_us() -> int:
    """Now, in microseconds since the epoch."""
    return time.time_ns() // 1000


def to_dt(micros: int) -> dt.datetime:
    """Stored time to an aware UTC datetime."""
    return _EPOCH + dt.timedelta(microseconds=micros)


def to_dt_opt(micros: int | None) -> dt.datetime | None:
    """Like :func:`to_dt`, keeping None."""
    return None if micros is None else to_dt(micros)


def int_id(value: str) -> int | None:
    """A decimal id as an int; None for anything else (which then matches nothing)."""
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def effective_page_size(page_size: int) -> int:
    """Apply the default and the maximum.

    Raises:
        InvalidArgumentError: Negative page size.
    """
    if page_size < 0:
        raise InvalidArgumentError(
            f"page_size must be >= 0, got {page_size}",
            reason="INVALID_PAGE_SIZE",
            metadata={"page_size": str(page_size)},
        )
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    return min(page_size, MAX_PAGE_SIZE)


def encode_token(listing: str, scope: object, key: object) -> str:
    """An opaque token for the page after ``key`` of ``listing`` within ``scope``."""
    raw = json.dumps({"l": listing, "s": scope, "k": key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, listing: str, scope: object) -> Any:
    """The cursor in ``token``, or None for an empty token.

    Raises:
        InvalidArgumentError: The token is malformed or belongs to another listing (reason
            ``INVALID_PAGE_TOKEN``).
    """
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        cursor = json.loads(raw)
        if (
            isinstance(cursor, dict)
            and cursor.get("l") == listing
            and cursor.get("s") == json.loads(json.dumps(scope))
            and "k" in cursor
        ):
            return cursor["k"]
    except (binascii.Error, ValueError, UnicodeDecodeError):
        pass
    raise InvalidArgumentError(
        "page_token is malformed or was issued for another listing",
        reason="INVALID_PAGE_TOKEN",
        metadata={"page_token": token[:100]},
    )


def check_key(key: Any, kind: type) -> Any:
    """Check a decoded cursor key's type."""
    if not isinstance(key, kind) or isinstance(key, bool):
        raise InvalidArgumentError(
            "page_token is malformed", reason="INVALID_PAGE_TOKEN", metadata={}
        )
    return key


def exception_json(exception: ExceptionRecord | None) -> str | None:
    if exception is None:
        return None
    return json.dumps(
        {"type": exception.type, "message": exception.message, "traceback": exception.traceback}
    )


def exception_from(text: str | None) -> ExceptionRecord | None:
    if text is None:
        return None
    data = json.loads(text)
    return ExceptionRecord(type=data["type"], message=data["message"], traceback=data["traceback"])


def frames_json(frames: Sequence[ForeachFrameRecord]) -> str:
    return json.dumps([[f.step, f.var, f.index, f.num_splits, f.value_repr] for f in frames])


def frames_from(text: str) -> tuple[ForeachFrameRecord, ...]:
    return tuple(
        ForeachFrameRecord(step=s, var=v, index=i, num_splits=n, value_repr=r)
        for s, v, i, n, r in json.loads(text)
    )


def run_not_found(flow_id: str, run_id: str) -> NotFoundError:
    return NotFoundError(
        f"run {flow_id}/{run_id} does not exist", metadata={"flow_id": flow_id, "run_id": run_id}
    )


def task_not_found(flow_id: str, run_id: str, task_id: str) -> NotFoundError:
    return NotFoundError(
        f"task {flow_id}/{run_id}/*/{task_id} does not exist",
        metadata={"flow_id": flow_id, "run_id": run_id, "task_id": task_id},
    )


def check_attempt(attempt: int) -> None:
    if attempt < 0:
        raise InvalidArgumentError(
            f"attempt must be >= 0, got {attempt}", metadata={"attempt": str(attempt)}
        )
