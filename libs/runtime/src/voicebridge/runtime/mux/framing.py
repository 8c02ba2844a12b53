"""What both ends of a multiplexed stream agree on: the signals and statuses inside a batch, and the
metrics both ends count batches with."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from voicebridge.v1 import common_pb2

from ..loop_metrics import Counter, Histogram

_ITEM_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)
BATCH_ITEMS = Histogram(
    "voicebridge_mux_batch_items",
    "Call messages carried per gRPC message on multiplexed streams",
    ["grpc_method", "side", "direction"],
    buckets=_ITEM_BUCKETS,
)
CALLS_OVERRUN = Counter(
    "voicebridge_mux_calls_overrun_total",
    "Multiplexed calls ended because their messages piled up unread",
    ["grpc_method"],
)

HALF_CLOSE = common_pb2.STREAM_SIGNAL_HALF_CLOSE
CANCEL = common_pb2.STREAM_SIGNAL_CANCEL
_CODES = {code.value[0]: code for code in grpc.StatusCode}

Handler = Callable[[AsyncIterator[Any], grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]
"""A per-call servicer method: the call's requests in, its responses out."""


def status_message(code: grpc.StatusCode, details: str) -> common_pb2.StreamStatus:
    """How a call's end travels inside a batch."""
    return common_pb2.StreamStatus(code=code.value[0], message=details)


def status_code(status: common_pb2.StreamStatus) -> grpc.StatusCode:
    """The gRPC code a call ended with, from its status item (UNKNOWN for a code we do not know)."""
    return _CODES.get(status.code, grpc.StatusCode.UNKNOWN)


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    """The error a per-call grpc.aio call raises on reading after a non-OK end."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)
