"""The converter process: ``python -m polyflow_core.convert [--idle-timeout SECONDS]``.

Started by the daemon (:mod:`polyflow_core.convert.service`), with the rights of the daemon's
user, never inside the daemon. It reads requests on stdin and answers on stdout
(:mod:`polyflow_core.convert.protocol`) until stdin closes or it has been idle for
``--idle-timeout`` seconds. Decoding ``pickle-v5`` and ``rds`` happens only here.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import traceback
from typing import IO, Any

from polyflow_core.convert.codecs import (
    JSON_ENCODING,
    PICKLE_ENCODING,
    RDS_ENCODING,
    decode_json,
    decode_pickle,
    encode_json,
    encode_pickle,
    type_name_of,
)
from polyflow_core.convert.protocol import read_message, write_message

__all__ = ["convert", "main"]


class _Unsupported(Exception):
    def __init__(self, message: str, type_name: str) -> None:
        super().__init__(message)
        self.type_name = type_name


def convert(data: bytes, source: str, accept: list[str]) -> tuple[bytes, str, str]:
    """Convert encoded bytes to the first encoding of ``accept`` the value can take.

    Returns:
        The new bytes, their encoding and the value's type name in the target language.

    Raises:
        _Unsupported: No accepted encoding can hold the value.
        ValueError: An unknown encoding or malformed bytes.
    """
    from polyflow_core.convert import values

    r_value: Any = None
    py_value: Any = None
    have_r = have_py = False
    if source == RDS_ENCODING:
        r_value, have_r = values.rds_loads(data), True
        source_type = values.r_type_name(r_value)
    elif source == PICKLE_ENCODING:
        py_value, have_py = decode_pickle(data), True
        source_type = type_name_of(py_value)
    elif source == JSON_ENCODING:
        py_value, have_py = decode_json(data), True
        source_type = type_name_of(py_value)
    else:
        raise ValueError(f"unknown encoding {source!r}")
    reasons: list[str] = []
    for target in accept:
        try:
            if target == RDS_ENCODING:
                if not have_r:
                    r_value, have_r = values.py_to_r(py_value), True
                return values.rds_dumps(r_value), RDS_ENCODING, values.r_type_name(r_value)
            if target in (JSON_ENCODING, PICKLE_ENCODING):
                if not have_py:
                    py_value, have_py = values.r_to_py(r_value), True
                if target == JSON_ENCODING:
                    encoded = encode_json(py_value)
                    if encoded is None:
                        reasons.append("the value does not come back exactly from JSON")
                        continue
                    return encoded, JSON_ENCODING, type_name_of(py_value)
                return encode_pickle(py_value), PICKLE_ENCODING, type_name_of(py_value)
            reasons.append(f"unknown encoding {target!r}")
        except values.UnsupportedValue as error:
            raise _Unsupported(str(error), error.type_name or source_type) from None
    raise _Unsupported(
        f"a {source_type} cannot be encoded as {' or '.join(accept)}: {'; '.join(reasons)}",
        source_type,
    )


def _serve(stdin: IO[bytes], stdout: IO[bytes], idle_timeout: float) -> int:
    while True:
        if idle_timeout > 0:
            ready, _, _ = select.select([stdin], [], [], idle_timeout)
            if not ready:
                return 0
        message = read_message(stdin)
        if message is None:
            return 0
        header, payload = message
        try:
            data, encoding, type_name = convert(
                payload, str(header.get("from", "")), [str(a) for a in header.get("accept", [])]
            )
        except _Unsupported as error:
            write_message(
                stdout,
                {
                    "ok": False,
                    "kind": "unsupported",
                    "message": str(error),
                    "type_name": error.type_name,
                },
            )
            continue
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            write_message(
                stdout,
                {"ok": False, "kind": "failed", "message": f"{type(error).__name__}: {error}"},
            )
            continue
        write_message(stdout, {"ok": True, "encoding": encoding, "type_name": type_name}, data)


def main(argv: list[str] | None = None) -> int:
    """Announce readiness (or why conversions are impossible here), then serve requests."""
    parser = argparse.ArgumentParser(prog="python -m polyflow_core.convert")
    parser.add_argument("--idle-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    # R and rpy2 may print to stdout; keep the protocol's pipe for messages only.
    sys.stdout = sys.stderr
    protocol_fd = os.dup(stdout.fileno())
    os.dup2(sys.stderr.fileno(), stdout.fileno())
    out = os.fdopen(protocol_fd, "wb")
    try:
        from polyflow_core.convert import values

        values.r_type_name(values.py_to_r(None))  # starts R
    except Exception as error:
        write_message(out, {"ready": False, "message": f"{type(error).__name__}: {error}"})
        return 1
    write_message(out, {"ready": True})
    return _serve(stdin, out, args.idle_timeout)


if __name__ == "__main__":
    sys.exit(main())
