"""The daemon side of ``DatastoreService.ConvertBlob``: checks, a cache, converter processes.

:class:`ArtifactConverter` reads the blob's verified bytes from the store, has a converter
process turn them into an accepted encoding, stores the result by its digest and remembers
the conversion (in memory, bounded). The value itself is never decoded in the daemon: the
bytes go to :class:`ConverterPool`, whose processes run ``python -m polyflow_core.convert``.

Errors (``CoreError`` subclasses, mapped to the wire by the servicer):

- INVALID_ARGUMENT: a malformed digest, an unknown encoding, no accepted encoding;
- NOT_FOUND / DATA_LOSS: from the store;
- FAILED_PRECONDITION, reason ``CONVERSION_UNSUPPORTED``: the value has no counterpart;
- UNAVAILABLE, reason ``CONVERTER_UNAVAILABLE``: no converter process can run here (rpy2 or
  R missing), reason ``CONVERSION_TIMEOUT``: a conversion ran too long (its process is killed);
- INTERNAL, reason ``CONVERSION_FAILED``: the converter failed otherwise.
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from polyflow_core.convert.codecs import JSON_ENCODING, PICKLE_ENCODING, RDS_ENCODING
from polyflow_core.convert.protocol import ProtocolError, read_message, write_message
from polyflow_core.datastore.base import BlobStore, parse_digest
from polyflow_core.errors import CoreError, ErrorCode, FailedPreconditionError, InvalidArgumentError

__all__ = [
    "CONVERTER_PYTHON_VARIABLE",
    "KNOWN_ENCODINGS",
    "ArtifactConverter",
    "ConvertedBlob",
    "ConverterPool",
]

_log = logging.getLogger(__name__)

KNOWN_ENCODINGS = frozenset({JSON_ENCODING, PICKLE_ENCODING, RDS_ENCODING})
"""Encodings a conversion may start from or go to."""

CONVERTER_PYTHON_VARIABLE = "POLYFLOW_CONVERTER_PYTHON"
"""Environment variable of the daemon: the Python that runs converter processes (default: the
daemon's own interpreter). It needs polyflow_core and rpy2."""

_CACHE_SIZE = 10000


@dataclass(frozen=True)
class ConvertedBlob:
    """Where a converted value is stored."""

    digest: str
    """``sha256:<hex>`` of the converted bytes."""
    encoding: str
    """Their encoding."""
    size: int
    """Their size in bytes."""
    type_name: str
    """The value's type in the target language (empty when the blob was not converted)."""


class _Process:
    """One converter process and its pipes."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the daemon's log
            close_fds=True,
            start_new_session=True,
        )
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.stdin: IO[bytes] = self.popen.stdin
        self.stdout: IO[bytes] = self.popen.stdout

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        for pipe in (self.stdin, self.stdout):
            try:
                pipe.close()
            except OSError:
                pass


class ConverterPool:
    """Converter processes, started on demand, at most ``max_processes`` at once.

    Args:
        argv: The converter's command line; default ``[<python>, -m, polyflow_core.convert,
            --idle-timeout, <idle_seconds>]`` with :data:`CONVERTER_PYTHON_VARIABLE` or the
            daemon's interpreter.
        max_processes: Most conversions that run at once.
        idle_seconds: A converter exits after this long without a request.
        timeout: Seconds one conversion may take before its process is killed.
    """

    def __init__(
        self,
        argv: Sequence[str] | None = None,
        *,
        max_processes: int = 2,
        idle_seconds: float = 300.0,
        timeout: float = 300.0,
    ) -> None:
        python = os.environ.get(CONVERTER_PYTHON_VARIABLE) or sys.executable
        self._argv = list(argv) if argv is not None else [
            python, "-m", "polyflow_core.convert", "--idle-timeout", f"{idle_seconds:g}"
        ]  # fmt: skip
        self._timeout = timeout
        self._slots = threading.BoundedSemaphore(max_processes)
        self._lock = threading.Lock()
        self._idle: list[_Process] = []
        self._closed = False

    def _start(self) -> _Process:
        try:
            process = _Process(self._argv)
        except OSError as error:
            raise _unavailable(f"cannot start a converter ({self._argv[0]}): {error}") from None
        hello = self._read(process, self._timeout)
        if hello is None or not hello[0].get("ready"):
            process.kill()
            why = hello[0].get("message", "") if hello is not None else "it exited at start-up"
            raise _unavailable(
                "values cannot be converted between Python and R where the core runs "
                f"(the converter needs R and rpy2): {why}"
            )
        return process

    def _read(self, process: _Process, timeout: float) -> tuple[dict[str, object], bytes] | None:
        result: list[tuple[dict[str, object], bytes] | None] = []
        failure: list[BaseException] = []

        def reader() -> None:
            try:
                result.append(read_message(process.stdout))
            except (ProtocolError, OSError, ValueError) as error:
                failure.append(error)

        thread = threading.Thread(target=reader, name="polyflow-convert-read", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            process.kill()
            thread.join(5.0)
            raise CoreError(
                f"a conversion took longer than {timeout:g} s and was stopped",
                code=ErrorCode.UNAVAILABLE,
                reason="CONVERSION_TIMEOUT",
                metadata={"timeout_seconds": f"{timeout:g}"},
            )
        if failure:
            return None
        return result[0] if result else None

    def convert(self, data: bytes, source: str, accept: Sequence[str]) -> tuple[bytes, str, str]:
        """Convert the bytes of a value in a converter process.

        Returns:
            The converted bytes, their encoding and the value's type name.

        Raises:
            CoreError: See the module docstring.
        """
        with self._slots:
            process = self._take()
            ok = False
            try:
                try:
                    write_message(process.stdin, {"from": source, "accept": list(accept)}, data)
                except OSError as error:
                    raise _failed(f"the converter process went away: {error}") from None
                reply = self._read(process, self._timeout)
                if reply is None:
                    raise _failed("the converter process exited during a conversion")
                header, payload = reply
                ok = True
            finally:
                self._give_back(process, ok)
        if header.get("ok"):
            return payload, str(header["encoding"]), str(header.get("type_name", ""))
        message = str(header.get("message", "the conversion failed"))
        if header.get("kind") == "unsupported":
            raise FailedPreconditionError(
                message,
                reason="CONVERSION_UNSUPPORTED",
                metadata={"type_name": str(header.get("type_name", "")), "encoding": source},
            )
        raise _failed(message)

    def _take(self) -> _Process:
        with self._lock:
            if self._closed:
                raise _unavailable("the converter pool is closed")
            while self._idle:
                process = self._idle.pop()
                if process.alive():
                    return process
                process.kill()
        return self._start()

    def _give_back(self, process: _Process, ok: bool) -> None:
        with self._lock:
            if ok and process.alive() and not self._closed:
                self._idle.append(process)
                return
        process.kill()

    def close(self) -> None:
        """Stop every idle converter process."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for process in idle:
            process.kill()


def _unavailable(message: str) -> CoreError:
    return CoreError(message, code=ErrorCode.UNAVAILABLE, reason="CONVERTER_UNAVAILABLE")


def _failed(message: str) -> CoreError:
    return CoreError(message, code=ErrorCode.INTERNAL, reason="CONVERSION_FAILED")


class ArtifactConverter:
    """Converts stored values between encodings and remembers the results.

    Args:
        store: The blob store.
        pool: The converter processes (one is made when omitted).
    """

    def __init__(self, store: BlobStore, pool: ConverterPool | None = None) -> None:
        self._store = store
        self._pool = pool or ConverterPool()
        self._cache: collections.OrderedDict[tuple[str, str, tuple[str, ...]], ConvertedBlob] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def convert(self, digest: str, encoding: str, accept: Sequence[str]) -> ConvertedBlob:
        """The blob of the value ``digest`` in the first accepted encoding it can take.

        Raises:
            CoreError: See the module docstring.
        """
        parse_digest(digest)
        wanted = tuple(dict.fromkeys(accept))
        if not wanted:
            raise InvalidArgumentError(
                "accept_encodings names no encoding", reason="NO_ACCEPTED_ENCODING"
            )
        for name in (encoding, *wanted):
            if name not in KNOWN_ENCODINGS:
                raise InvalidArgumentError(
                    f"unknown encoding {name!r} (known: {', '.join(sorted(KNOWN_ENCODINGS))})",
                    reason="UNKNOWN_ENCODING",
                    metadata={"encoding": name},
                )
        if encoding in wanted:
            return ConvertedBlob(digest, encoding, self._store.size(digest), "")
        key = (digest, encoding, wanted)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is not None and self._store.has(hit.digest):
            return hit
        data = self._store.get_bytes(digest)
        converted, target, type_name = self._pool.convert(data, encoding, wanted)
        info = self._store.put_bytes(converted)
        result = ConvertedBlob(info.digest, target, info.size, type_name)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        _log.info("converted %s from %s to %s (%s)", digest, encoding, target, type_name)
        return result

    def close(self) -> None:
        """Stop the converter processes."""
        self._pool.close()
