"""The MediaService.Call servicer: one CallSession per stream, its output yielded back to the edge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from voicebridge.runtime.grpc_server import CLIENT_OPTIONS
from voicebridge.runtime.logs import call_context
from voicebridge.runtime.mux import MuxClient, MuxServer
from voicebridge.v1 import agent_pb2_grpc, common_pb2, media_pb2, media_pb2_grpc

from .agent_link import agent_calls
from .call import CallSession
from .clock import Clock
from .config import MediaSettings
from .metrics import CALL_ENDS, CALLS_ACTIVE

log = logging.getLogger(__name__)

_OUT_QUEUE = 256  # messages for the edge; the pacer keeps this nearly empty


class MediaServicer(media_pb2_grpc.MediaServiceServicer):
    def __init__(
        self, settings: MediaSettings, agent: MuxClient | None = None, clock: Clock | None = None
    ) -> None:
        """`agent` (the calls to the agent service) and `clock` are for tests; by default a channel to
        `settings.agent_target` and the event loop's clock."""
        self._settings = settings
        self._clock = clock
        # One long-lived channel to the agent service per process (created inside the running loop).
        self._channel: grpc.aio.Channel | None = None
        if agent is None:
            self._channel = settings.tls.aio_channel(settings.agent_target, CLIENT_OPTIONS)
            agent = agent_calls(
                agent_pb2_grpc.AgentServiceStub(self._channel), settings.mux.enabled, settings.mux.interval_s
            )
        self._agent = agent
        self._many = MuxServer(
            self.Call,
            media_pb2.CallManyResponse,
            media_pb2.CallManyResponseItem,
            "/voicebridge.v1.MediaService/Call",
        )
        self._sessions: set[CallSession] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def calls_in_progress(self) -> int:
        return len(self._sessions)

    async def drain(self) -> None:
        """Service shutdown: end every call in progress with a reason, and wait for them."""
        for session in list(self._sessions):
            session.request_stop(common_pb2.END_REASON_SHUTDOWN, "media service shutting down")
        await self._idle.wait()
        await self._agent.aclose()
        if self._channel is not None:
            await self._channel.close()

    async def CallMany(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[media_pb2.CallManyRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[media_pb2.CallManyResponse]:
        """Many calls on one stream (runtime/mux/): each served by `Call`, as if on its own stream."""
        async for batch in self._many.serve(request_iterator, context):
            yield batch

    async def Call(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[media_pb2.CallRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[media_pb2.CallResponse]:
        out: asyncio.Queue[media_pb2.CallResponse | None] = asyncio.Queue(maxsize=_OUT_QUEUE)
        session = CallSession(self._settings, self._agent, out.put, self._clock)
        self._sessions.add(session)
        self._idle.clear()
        CALLS_ACTIVE.inc()
        end = common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP)

        async def run() -> None:
            nonlocal end
            try:
                end = await session.run(request_iterator)
            finally:
                await out.put(None)

        task = asyncio.create_task(run(), name="media-call")
        try:
            while (message := await out.get()) is not None:
                yield message
            with call_context(session.call_sid):
                yield media_pb2.CallResponse(end=end)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            CALL_ENDS.labels(common_pb2.EndReason.Name(end.reason).removeprefix("END_REASON_").lower()).inc()
            CALLS_ACTIVE.dec()
            self._sessions.discard(session)
            if not self._sessions:
                self._idle.set()
