"""Reading values another language wrote: ask the core to convert them first.

Python decodes ``json`` and ``pickle-v5`` itself. A value in any other encoding (R's
``rds``) is converted by the core (``DatastoreService.ConvertBlob``, run in a converter
process, never in this one) into JSON when the value comes back exactly from it, else into a
pickle; the result is a new blob, read like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polyflow._transport import CoreClient

__all__ = [
    "PYTHON_ACCEPTS",
    "PYTHON_ENCODINGS",
    "Converter",
    "converted_digest",
    "core_converter",
    "readable",
]

PYTHON_ENCODINGS = frozenset({"json", "pickle-v5"})
"""Encodings Python decodes itself."""
PYTHON_ACCEPTS = ("json", "pickle-v5")
"""What Python asks the core for, most wanted first."""

Converter = Callable[[str, str], tuple[str, str]]
"""Converts ``(digest, encoding)`` into the digest and encoding of a Python-readable blob."""


def core_converter(client: Callable[[], CoreClient]) -> Converter:
    """A converter that asks the core ``client()`` returns (created only when needed).

    Raises (when called):
        PolyflowError: The core cannot convert the value (the message says why).
    """

    def convert(digest: str, encoding: str) -> tuple[str, str]:
        ref = client().convert_blob(digest, encoding, PYTHON_ACCEPTS)
        return ref.digest, ref.encoding

    return convert


_converted: dict[tuple[str, str], tuple[str, str]] = {}
"""Conversions this process made: (digest, encoding) to the Python-readable blob."""


def readable(digest: str, encoding: str, convert: Converter | None) -> tuple[str, str]:
    """The blob to read for a value: itself, or its conversion when Python cannot decode it.

    Without a converter, the value is returned as is (decoding then reports the encoding).
    Conversions are remembered for the life of the process (see :func:`converted_digest`).
    """
    if encoding in PYTHON_ENCODINGS or convert is None:
        return digest, encoding
    key = (digest, encoding)
    found = _converted.get(key)
    if found is None:
        found = convert(digest, encoding)
        _converted[key] = found
    return found


def converted_digest(digest: str, encoding: str) -> str | None:
    """The digest of the Python-readable blob this process read for a value, if any.

    A worker uses it to tell that a value it loaded from another language's encoding is
    unchanged: re-encoding it gives that blob again, not the original one.
    """
    found = _converted.get((digest, encoding))
    return found[0] if found is not None else None
