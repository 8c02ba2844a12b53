"""Standard gRPC metrics (go-grpc-prometheus names) for grpc.aio, which py-grpc-prometheus cannot do.

Server side: `MetricsInterceptor`, counting streams and messages per method.
Client side: `ClientStreamMetrics`, used by the stream wrappers that open bidi calls.
On a bidi stream the handling time is the whole call's length, so its buckets run to an hour.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from .loop_metrics import Counter, Histogram

_LABELS = ["grpc_type", "grpc_service", "grpc_method"]
_STREAM_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

SERVER_STARTED = Counter("grpc_server_started", "RPCs started on the server", _LABELS)
SERVER_HANDLED = Counter("grpc_server_handled", "RPCs completed on the server", [*_LABELS, "grpc_code"])
SERVER_RECEIVED = Counter("grpc_server_msg_received", "Stream messages received by the server", _LABELS)
SERVER_SENT = Counter("grpc_server_msg_sent", "Stream messages sent by the server", _LABELS)
SERVER_HANDLING = Histogram(
    "grpc_server_handling_seconds", "Lifetime of RPCs on the server", _LABELS, buckets=_STREAM_BUCKETS
)
CLIENT_STARTED = Counter("grpc_client_started", "RPCs started by the client", _LABELS)
CLIENT_HANDLED = Counter("grpc_client_handled", "RPCs completed by the client", [*_LABELS, "grpc_code"])
CLIENT_RECEIVED = Counter("grpc_client_msg_received", "Stream messages received by the client", _LABELS)
CLIENT_SENT = Counter("grpc_client_msg_sent", "Stream messages sent by the client", _LABELS)
CLIENT_HANDLING = Histogram(
    "grpc_client_handling_seconds", "Lifetime of RPCs on the client", _LABELS, buckets=_STREAM_BUCKETS
)


def _split(full_method: str) -> tuple[str, str]:
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts bidi-stream and unary RPCs; other handler kinds pass through uncounted."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, method = _split(handler_call_details.method)
        if handler.stream_stream is not None:
            labels = ("bidi_stream", service, method)
            return grpc.stream_stream_rpc_method_handler(
                _wrap_bidi(handler.stream_stream, labels),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_unary is not None:
            labels = ("unary", service, method)
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, labels),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _code_name(context: grpc.aio.ServicerContext, default: str) -> str:
    code = context.code()
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return code.name
    return str(code)


def _wrap_bidi(behavior: Callable[..., AsyncIterator[Any]], labels: tuple[str, str, str]):
    started, handled_base = SERVER_STARTED.labels(*labels), labels
    received, sent, handling = (
        SERVER_RECEIVED.labels(*labels),
        SERVER_SENT.labels(*labels),
        SERVER_HANDLING.labels(*labels),
    )

    async def counted(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            received.inc()
            yield request

    async def wrapped(request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext):
        started.inc()
        loop = asyncio.get_running_loop()
        begin = loop.time()
        default = "OK"
        try:
            async for response in behavior(counted(request_iterator), context):
                sent.inc()
                yield response
        except asyncio.CancelledError:
            default = "CANCELLED"
            raise
        except Exception:
            default = "UNKNOWN"
            raise
        finally:
            handling.observe(loop.time() - begin)
            SERVER_HANDLED.labels(*handled_base, _code_name(context, default)).inc()

    return wrapped


def _wrap_unary(behavior: Callable[..., Awaitable[Any]], labels: tuple[str, str, str]):
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        SERVER_STARTED.labels(*labels).inc()
        default = "OK"
        try:
            return await behavior(request, context)
        except asyncio.CancelledError:
            default = "CANCELLED"
            raise
        except Exception:
            default = "UNKNOWN"
            raise
        finally:
            SERVER_HANDLED.labels(*labels, _code_name(context, default)).inc()

    return wrapped


class ClientStreamMetrics:
    """Client-side counters for one bidi method; children are resolved once, not per message."""

    @staticmethod
    @functools.cache
    def for_method(full_method: str) -> ClientStreamMetrics:
        """One shared instance per method (label children resolved once per process)."""
        return ClientStreamMetrics(full_method)

    def __init__(self, full_method: str) -> None:
        service, method = _split(full_method)
        labels = ("bidi_stream", service, method)
        self._labels = labels
        self.started = CLIENT_STARTED.labels(*labels)
        self.sent = CLIENT_SENT.labels(*labels)
        self.received = CLIENT_RECEIVED.labels(*labels)
        self.handling = CLIENT_HANDLING.labels(*labels)

    def handled(self, code: grpc.StatusCode | str, duration_s: float) -> None:
        name = code.name if isinstance(code, grpc.StatusCode) else code
        CLIENT_HANDLED.labels(*self._labels, name).inc()
        self.handling.observe(duration_s)


class ServerStreamMetrics:
    """Server-side counters for one bidi method, for calls served without their own RPC (runtime/mux/)."""

    @staticmethod
    @functools.cache
    def for_method(full_method: str) -> ServerStreamMetrics:
        return ServerStreamMetrics(full_method)

    def __init__(self, full_method: str) -> None:
        service, method = _split(full_method)
        labels = ("bidi_stream", service, method)
        self._labels = labels
        self.started = SERVER_STARTED.labels(*labels)
        self.sent = SERVER_SENT.labels(*labels)
        self.received = SERVER_RECEIVED.labels(*labels)
        self.handling = SERVER_HANDLING.labels(*labels)

    def handled(self, code: grpc.StatusCode, duration_s: float) -> None:
        SERVER_HANDLED.labels(*self._labels, code.name).inc()
        self.handling.observe(duration_s)
