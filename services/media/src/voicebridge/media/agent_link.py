"""Media's end of one Converse stream to the agent service.

Writes go through one writer task: gRPC allows a single write in flight per stream, control
messages must not wait behind audio, and a slow agent must never block the caller's audio path. So
caller audio sits in a bounded queue that drops its oldest chunk when full (counted), while control
messages (voice activity, barge-in, DTMF, end) are never dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time

import grpc

from voicebridge.runtime.grpc_metrics import ClientStreamMetrics
from voicebridge.v1 import agent_pb2, agent_pb2_grpc

from .metrics import FRAMES_DROPPED

log = logging.getLogger(__name__)

_METRICS: ClientStreamMetrics | None = None


def _metrics() -> ClientStreamMetrics:
    global _METRICS
    if _METRICS is None:
        _METRICS = ClientStreamMetrics("/voicebridge.v1.AgentService/Converse")
    return _METRICS


class AgentLink:
    def __init__(self, stub: agent_pb2_grpc.AgentServiceStub, max_audio_chunks: int) -> None:
        self._call = stub.Converse(wait_for_ready=False)
        self._audio: collections.deque[agent_pb2.ConverseRequest] = collections.deque()
        self._max_audio = max(1, max_audio_chunks)
        self._control: collections.deque[agent_pb2.ConverseRequest] = collections.deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._begin = time.monotonic()
        self._m = _metrics()
        self._m.started.inc()
        self._writer = asyncio.create_task(self._write_loop(), name="agent-writer")
        self.write_error: grpc.aio.AioRpcError | None = None

    def send_control(self, message: agent_pb2.ConverseRequest) -> None:
        if not self._closing:
            self._control.append(message)
            self._wake.set()

    def send_audio(self, message: agent_pb2.ConverseRequest) -> None:
        if self._closing:
            return
        if len(self._audio) >= self._max_audio:
            self._audio.popleft()
            FRAMES_DROPPED.labels("agent_backpressure").inc()
        self._audio.append(message)
        self._wake.set()

    async def read(self) -> agent_pb2.ConverseResponse | None:
        """The next message from the agent, or None when the agent has ended the stream."""
        message = await self._call.read()
        if message is grpc.aio.EOF:
            return None
        self._m.received.inc()
        return message

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._control or self._audio:
                    message = self._control.popleft() if self._control else self._audio.popleft()
                    await self._call.write(message)
                    self._m.sent.inc()
                if self._closing:
                    await self._call.done_writing()
                    return
        except grpc.aio.AioRpcError as exc:
            self.write_error = exc
            log.debug("agent stream write failed: %s", exc.code().name)
        except asyncio.InvalidStateError:  # the RPC already finished
            pass

    async def close(self, final: agent_pb2.ConverseRequest | None = None, timeout_s: float = 1.0) -> None:
        """Send `final` (usually end), half-close, and release the RPC. Idempotent."""
        if not self._closing:
            if final is not None:
                self._control.append(final)
            self._closing = True
            self._wake.set()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._writer), timeout_s)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._writer
        if not self._call.done():
            self._call.cancel()
        try:
            code = await asyncio.wait_for(self._call.code(), 1.0)
        except (TimeoutError, asyncio.CancelledError, grpc.RpcError):
            code = grpc.StatusCode.UNKNOWN
        self._m.handled(code, time.monotonic() - self._begin)
