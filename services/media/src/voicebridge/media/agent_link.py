"""Media's end of one Converse stream to the agent service.

Writes go through a `PriorityStreamWriter`: control messages (voice activity, barge-in, DTMF, end)
are never dropped and never wait behind audio; caller audio waits in a bounded queue that drops its
oldest chunk when the agent is slow, so the caller's audio path never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc

from voicebridge.runtime.grpc_metrics import ClientStreamMetrics
from voicebridge.runtime.mux import MuxClient, agent_client
from voicebridge.runtime.replicas import Opener
from voicebridge.runtime.stream_writer import PriorityStreamWriter
from voicebridge.v1 import agent_pb2, agent_pb2_grpc

from .metrics import FRAMES_DROPPED

CONVERSE = "/voicebridge.v1.AgentService/Converse"
END_TIMEOUT_S = 10.0  # the agent closes its backend session (up to 2 s for ElevenLabs) first


def agent_calls(stub: agent_pb2_grpc.AgentServiceStub, enabled: bool, interval_s: float) -> MuxClient:
    """Media's calls to the agent: all on one ConverseBatch (else ConverseMany) stream, or
    (unsupported, or off) one each."""
    return agent_client(stub, interval_s=interval_s, enabled=enabled)


class AgentLink:
    def __init__(self, calls: Opener, max_audio_chunks: int) -> None:
        self._call = calls.open()
        self._begin = time.monotonic()
        self._m = ClientStreamMetrics.for_method(CONVERSE)
        self._m.started.inc()
        dropped = FRAMES_DROPPED.labels("agent_backpressure")
        self._writer = PriorityStreamWriter(self._call, max_audio_chunks, self._m.sent.inc, dropped.inc)

    def send_control(self, message: agent_pb2.ConverseRequest) -> None:
        self._writer.control(message)

    def send_audio(self, message: agent_pb2.ConverseRequest) -> None:
        self._writer.audio(message)

    async def read(self) -> agent_pb2.ConverseResponse | None:
        """The next message from the agent, or None when the agent has ended the stream."""
        message = await self._call.read()
        if message is grpc.aio.EOF:
            return None
        self._m.received.inc()
        return message

    async def close(self, final: agent_pb2.ConverseRequest | None = None) -> None:
        """Send `final` (usually end), half-close, read the agent's stream to its end, release the RPC.

        Idempotent. The agent answers an end by closing its backend session and then its stream;
        cancelling the RPC before that would race the end message (on a shared stream, a cancel that
        lands with it ends the agent's handler before it has read it). The timeout only detects an
        agent that never answers."""
        await self._writer.close(final)
        if not self._call.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, grpc.RpcError):
                await asyncio.wait_for(self._read_to_end(), END_TIMEOUT_S)
        if not self._call.done():
            self._call.cancel()
        try:
            code = await asyncio.wait_for(self._call.code(), 1.0)
        except (TimeoutError, asyncio.CancelledError, grpc.RpcError):
            code = grpc.StatusCode.UNKNOWN
        self._m.handled(code, time.monotonic() - self._begin)

    async def _read_to_end(self) -> None:
        while await self._call.read() is not grpc.aio.EOF:
            pass  # the call is over: what the agent still sends has no one to play to
