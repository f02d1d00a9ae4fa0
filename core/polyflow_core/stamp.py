"""The change stamp: a number the daemon changes after every metadata commit, which local
clients read to know whether what they read before is still current.

The stamp is 8 bytes (little-endian unsigned) at the start of ``<root>/metadata.stamp``,
next to ``metadata.db``. The metadata store (:mod:`polyflow_core.metadata.sqlite`) writes a
fresh random value when it opens and adds one after each commit, *after* the commit, through
a shared memory mapping. A client on the same machine maps the file read-only: when the stamp
equals the one it saw before sending a read, nothing was committed since, and the answer it
got then is still the answer (``polyflow._transport`` caches metadata reads that way).

A torn or stale read of the stamp can only make a client read again, never keep an answer
that is no longer true: values are compared for equality, and a new daemon starts from a
random value. Only the standard library is used, so the SDK can import this module.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import struct
from pathlib import Path

__all__ = ["STAMP_FILE", "StampReader", "StampWriter", "stamp_path_for"]

STAMP_FILE = "metadata.stamp"
"""The stamp's file name, in the root next to ``metadata.db``."""

_VALUE = struct.Struct("<Q")


def stamp_path_for(db_path: Path) -> Path:
    """The stamp file of a metadata database."""
    return db_path.with_name(STAMP_FILE)


class StampWriter:
    """The metadata store's side: owns the stamp and bumps it.

    Args:
        path: The stamp file (created when absent).
    """

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < _VALUE.size:
                os.ftruncate(fd, _VALUE.size)
            self._map: mmap.mmap | None = mmap.mmap(fd, _VALUE.size)
        finally:
            os.close(fd)
        self._value = int.from_bytes(secrets.token_bytes(8), "little") >> 1
        self._write()

    def _write(self) -> None:
        if self._map is not None:
            _VALUE.pack_into(self._map, 0, self._value)

    def bump(self) -> None:
        """Record that a commit happened (call after it)."""
        self._value = (self._value + 1) & 0xFFFF_FFFF_FFFF_FFFF
        self._write()

    def close(self) -> None:
        """Bump one last time (a client cache never outlives its daemon), then unmap."""
        if self._map is not None:
            self.bump()
            self._map.close()
            self._map = None


class StampReader:
    """A client's side: reads the current stamp of a root, cheaply (a mapped page, and one
    ``stat`` to notice a replaced file).

    Args:
        path: The stamp file.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._map: mmap.mmap | None = None
        self._identity: tuple[int, int] | None = None

    def read(self) -> int | None:
        """The current stamp, or None when there is none (no daemon wrote one, or the
        file cannot be read): then nothing may be cached."""
        try:
            info = os.stat(self._path)
        except OSError:
            return None
        identity = (info.st_dev, info.st_ino)
        if identity != self._identity or self._map is None:
            self._remap(identity)
        if self._map is None:
            return None
        (value,) = _VALUE.unpack_from(self._map, 0)
        return int(value)

    def _remap(self, identity: tuple[int, int]) -> None:
        self.close()
        try:
            fd = os.open(self._path, os.O_RDONLY)
        except OSError:
            return
        try:
            if os.fstat(fd).st_size >= _VALUE.size:
                self._map = mmap.mmap(fd, _VALUE.size, access=mmap.ACCESS_READ)
                self._identity = identity
        except OSError:
            self._map = None
        finally:
            os.close(fd)

    def close(self) -> None:
        """Unmap the file."""
        if self._map is not None:
            with contextlib.suppress(BufferError):
                self._map.close()
        self._map = None
        self._identity = None
