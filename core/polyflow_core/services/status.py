"""Errors on the wire: :class:`~polyflow_core.errors.CoreError` to ``google.rpc.Status``.

Every failed call ends with a canonical status code and a ``google.rpc.Status`` (in the
``grpc-status-details-bin`` trailer) whose details hold **exactly one** ``google.rpc.ErrorInfo``
(``domain`` :data:`ERROR_DOMAIN`, the error's UPPER_SNAKE ``reason``, its ``metadata``),
followed by any typed details from ``polyflow.api.errordetails.v1`` that the error maps to
(see :func:`register_details`).

Servicer methods wear :func:`unary_errors` or :func:`stream_errors`: a ``CoreError`` becomes
its status; any other exception is logged with its traceback and becomes ``INTERNAL`` (reason
``INTERNAL``), so one bad request never takes the daemon down. Bytes that are not a valid
request message never reach a servicer: :class:`RequestParsingInterceptor` answers them with
``INVALID_ARGUMENT`` (reason ``MALFORMED_REQUEST``).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import (  # type: ignore[import-untyped, unused-ignore]
    error_details_pb2,
    status_pb2,
)
from grpc_status import rpc_status
from polyflow.api.errordetails.v1 import message_pb2 as errordetails_pb2

from polyflow_core.errors import BlobCorruptedError, CoreError, ErrorCode, InvalidArgumentError

__all__ = [
    "ERROR_DOMAIN",
    "RequestParsingInterceptor",
    "abort",
    "register_details",
    "stream_errors",
    "to_grpc_code",
    "to_rpc_status",
    "unary_errors",
]

_log = logging.getLogger(__name__)

ERROR_DOMAIN = "polyflow.dev"
"""The ``ErrorInfo.domain`` of every error the core reports."""

_E = TypeVar("_E", bound=CoreError)
_Self = TypeVar("_Self")
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

_GRPC_CODES: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.DATA_LOSS: grpc.StatusCode.DATA_LOSS,
}

_detail_builders: dict[type[CoreError], Callable[[Any], Sequence[Message]]] = {}
_registry_lock = threading.Lock()


def register_details(error_type: type[_E], builder: Callable[[_E], Sequence[Message]]) -> None:
    """Attach typed details to an error class (and its subclasses) on the wire.

    Call it from the module that owns the error and the detail message, at start-up (for
    example the graph validation glue registers ``GraphValidationFailure``). The nearest
    registered class in the error's MRO wins.

    Args:
        error_type: A :class:`CoreError` subclass.
        builder: Makes the detail messages for one error.
    """
    with _registry_lock:
        _detail_builders[error_type] = builder


def _blob_mismatch_details(error: BlobCorruptedError) -> Sequence[Message]:
    return [
        errordetails_pb2.BlobDigestMismatch(
            expected_digest=error.expected_digest, found_digest=error.found_digest
        )
    ]


_detail_builders[BlobCorruptedError] = _blob_mismatch_details


def _typed_details(error: CoreError) -> Sequence[Message]:
    for cls in type(error).__mro__:
        builder = _detail_builders.get(cls)
        if builder is not None:
            return builder(error)
    return ()


def to_grpc_code(code: ErrorCode) -> grpc.StatusCode:
    """The gRPC status code of a core error code."""
    return _GRPC_CODES[code]


def to_rpc_status(error: CoreError, extra_details: Sequence[Message] = ()) -> status_pb2.Status:
    """The ``google.rpc.Status`` of an error: code, message, one ``ErrorInfo``, then typed
    details (registered ones, then ``extra_details``)."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=dict(error.metadata)
    )
    details = []
    for message in (info, *_typed_details(error), *extra_details):
        packed = any_pb2.Any()
        packed.Pack(message)
        details.append(packed)
    return status_pb2.Status(code=error.code.value, message=error.message, details=details)


def abort(
    context: grpc.ServicerContext, error: CoreError, extra_details: Sequence[Message] = ()
) -> NoReturn:
    """End the call with the status of ``error`` (raises, as ``context.abort`` does)."""
    context.abort_with_status(rpc_status.to_status(to_rpc_status(error, extra_details)))


def _internal(exc: Exception, method: str) -> CoreError:
    """Log an unexpected exception and make the INTERNAL error that reports it."""
    _log.exception("unexpected error in %s", method)
    return CoreError(
        f"internal error in {method}: {type(exc).__name__}: {exc}",
        metadata={"method": method, "exception_type": type(exc).__name__},
    )


def _aborted(context: grpc.ServicerContext) -> bool:
    """Whether the servicer already ended the call itself (``context.abort`` raises a bare
    ``Exception`` after setting the code, which must pass through untouched)."""
    code = getattr(context, "code", None)  # grpc >= 1.38; absent from the type stubs
    try:
        return callable(code) and code() is not None
    except Exception:  # pragma: no cover - contexts whose code() fails
        return False


def unary_errors(
    method: Callable[[_Self, _Req, grpc.ServicerContext], _Resp],
) -> Callable[[_Self, _Req, grpc.ServicerContext], _Resp]:
    """Decorate a unary servicer method: errors become statuses (see the module doc)."""

    @functools.wraps(method)
    def wrapper(self: _Self, request: _Req, context: grpc.ServicerContext) -> _Resp:
        try:
            return method(self, request, context)
        except CoreError as exc:
            error = exc
        except Exception as exc:
            if _aborted(context):
                raise
            error = _internal(exc, method.__qualname__)
        abort(context, error)

    return wrapper


def stream_errors(
    method: Callable[[_Self, _Req, grpc.ServicerContext], Iterator[_Resp]],
) -> Callable[[_Self, _Req, grpc.ServicerContext], Iterator[_Resp]]:
    """Decorate a server-streaming servicer method (a generator): errors raised before or
    between messages become statuses (see the module doc)."""

    @functools.wraps(method)
    def wrapper(self: _Self, request: _Req, context: grpc.ServicerContext) -> Iterator[_Resp]:
        try:
            yield from method(self, request, context)
            return
        except CoreError as exc:
            error = exc
        except Exception as exc:
            if _aborted(context):
                raise
            error = _internal(exc, method.__qualname__)
        abort(context, error)

    return wrapper


class _Unparsed:
    """What a request deserializes to when its bytes are not a valid message."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class RequestParsingInterceptor(grpc.ServerInterceptor):
    """Answers a request whose bytes do not parse as its message with ``INVALID_ARGUMENT``
    (reason ``MALFORMED_REQUEST``, naming the method and the parser's complaint).

    Without it gRPC answers ``INTERNAL`` ("Exception deserializing request!"), which blames
    the core for the caller's bytes, and logs a traceback for each such request.
    Client-streaming methods are left as they are (the contract has none that R calls).
    """

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Parse requests leniently; reject the unparsable ones before the servicer."""
        handler = continuation(handler_call_details)
        parse = None if handler is None else handler.request_deserializer
        if handler is None or parse is None:
            return handler
        method = handler_call_details.method

        def lenient(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception as error:  # DecodeError, and whatever a parser may raise
                return _Unparsed(error)

        def check(request: Any, context: grpc.ServicerContext) -> None:
            if isinstance(request, _Unparsed):
                abort(
                    context,
                    InvalidArgumentError(
                        f"malformed request to {method}: {request.error}",
                        reason="MALFORMED_REQUEST",
                        metadata={"method": method},
                    ),
                )

        options: dict[str, Any] = {
            "request_deserializer": lenient,
            "response_serializer": handler.response_serializer,
        }
        unary = handler.unary_unary
        if unary is not None:

            def unary_call(request: Any, context: grpc.ServicerContext) -> Any:
                check(request, context)
                return unary(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_call, **options)
        streaming = handler.unary_stream
        if streaming is not None:

            def stream_call(request: Any, context: grpc.ServicerContext) -> Any:
                check(request, context)
                return streaming(request, context)

            return grpc.unary_stream_rpc_method_handler(stream_call, **options)
        return handler
