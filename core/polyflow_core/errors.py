"""Errors raised by the core's domain code, stores and plugins.

Every error the core means to report to a caller is a :class:`CoreError`. It carries what the
wire needs (see ``services/status.py``, which turns it into a ``google.rpc.Status``) without
importing gRPC:

- ``code``: a canonical status (:class:`ErrorCode`), whose values are the ``google.rpc.Code``
  numbers;
- ``reason``: a machine-readable UPPER_SNAKE word, stable across releases (the ``ErrorInfo``
  reason);
- ``metadata``: every dynamic value (names, digests, sizes) as strings.

The tree::

    CoreError                      any code; INTERNAL by default
    ├── InvalidArgumentError       INVALID_ARGUMENT   (reason INVALID_ARGUMENT by default)
    ├── NotFoundError              NOT_FOUND          (reason NOT_FOUND)
    │   └── BlobNotFoundError      NOT_FOUND          (reason BLOB_NOT_FOUND; metadata digest)
    ├── AlreadyExistsError         ALREADY_EXISTS     (reason ALREADY_EXISTS)
    ├── FailedPreconditionError    FAILED_PRECONDITION (reason FAILED_PRECONDITION)
    └── BlobCorruptedError         DATA_LOSS          (reason BLOB_DIGEST_MISMATCH;
                                                       metadata expected_digest, found_digest)

Any code not covered by a subclass is raised as ``CoreError(msg, code=..., reason=...)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum

__all__ = [
    "AlreadyExistsError",
    "BlobCorruptedError",
    "BlobNotFoundError",
    "CoreError",
    "ErrorCode",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
]

_REASON_RE = re.compile(r"^[A-Z][A-Z0-9_]*[A-Z0-9]$")


class ErrorCode(Enum):
    """Canonical status codes the core uses; values are the ``google.rpc.Code`` numbers."""

    INVALID_ARGUMENT = 3
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15


class CoreError(Exception):
    """Root of the errors the core reports.

    Args:
        message: One sentence for people.
        code: The canonical status; the class default when omitted.
        reason: UPPER_SNAKE machine-readable reason; the class default when omitted.
        metadata: Dynamic values that go with the reason (all strings).

    Raises:
        ValueError: ``reason`` is not UPPER_SNAKE.
    """

    default_code: ErrorCode = ErrorCode.INTERNAL
    """Code used when the constructor is given none."""
    default_reason: str = "INTERNAL"
    """Reason used when the constructor is given none."""

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message: str = message
        """The human-readable message."""
        self.code: ErrorCode = code if code is not None else self.default_code
        """The canonical status."""
        self.reason: str = reason if reason is not None else self.default_reason
        """The UPPER_SNAKE reason."""
        if not _REASON_RE.match(self.reason):
            raise ValueError(f"error reason must be UPPER_SNAKE, got {self.reason!r}")
        self.metadata: dict[str, str] = dict(metadata or {})
        """Dynamic values, as strings."""

    def __str__(self) -> str:
        """The message."""
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle support that keeps code, reason, metadata and subclass fields."""
        return (_restore_error, (type(self), self.args, dict(self.__dict__)))

    def __repr__(self) -> str:
        """Class, code, reason and message."""
        return (
            f"{type(self).__name__}({self.message!r}, code={self.code.name}, "
            f"reason={self.reason!r}, metadata={self.metadata!r})"
        )


def _restore_error(
    cls: type[CoreError], args: tuple[object, ...], state: dict[str, object]
) -> CoreError:
    """Rebuild a pickled :class:`CoreError` without calling its constructor."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class InvalidArgumentError(CoreError):
    """The caller sent something malformed (a bad name, a negative size, a bad token)."""

    default_code = ErrorCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"


class NotFoundError(CoreError):
    """The object asked for does not exist."""

    default_code = ErrorCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExistsError(CoreError):
    """The object to create exists already."""

    default_code = ErrorCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPreconditionError(CoreError):
    """The system is not in a state where the operation can run (wrong offset, wrong state)."""

    default_code = ErrorCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class BlobNotFoundError(NotFoundError):
    """No blob is stored under the digest.

    Args:
        digest: The ``sha256:<hex>`` address asked for.
    """

    default_reason = "BLOB_NOT_FOUND"

    def __init__(self, digest: str) -> None:
        super().__init__(f"blob {digest} is not in the store", metadata={"digest": digest})
        self.digest: str = digest
        """The address asked for."""


class BlobCorruptedError(CoreError):
    """The stored bytes of a blob do not hash to its address (or cannot be decoded at all).

    Args:
        expected_digest: The address asked for.
        found_digest: The digest of the bytes found (of the raw file when it could not be
            decoded).
        detail: Optional extra explanation (e.g. "bad magic", "truncated zstd frame").
    """

    default_code = ErrorCode.DATA_LOSS
    default_reason = "BLOB_DIGEST_MISMATCH"

    def __init__(self, expected_digest: str, found_digest: str, detail: str = "") -> None:
        message = f"blob {expected_digest} is corrupted: its bytes hash to {found_digest}"
        if detail:
            message += f" ({detail})"
        super().__init__(
            message,
            metadata={"expected_digest": expected_digest, "found_digest": found_digest},
        )
        self.expected_digest: str = expected_digest
        """The address asked for."""
        self.found_digest: str = found_digest
        """The digest of what was found."""
