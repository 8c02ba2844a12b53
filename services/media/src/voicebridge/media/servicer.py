"""The MediaService.Call servicer: one CallSession per stream, its output yielded back to the edge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from voicebridge.runtime.drain import Drain
from voicebridge.runtime.grpc_server import CLIENT_OPTIONS
from voicebridge.runtime.logs import call_context
from voicebridge.runtime.mux import media_servers
from voicebridge.runtime.replicas import Opener, connect_target
from voicebridge.v1 import agent_pb2, agent_pb2_grpc, common_pb2, media_pb2, media_pb2_grpc

from .agent_link import agent_calls
from .call import CallSession
from .clock import Clock
from .config import MediaSettings
from .metrics import CALL_ENDS, CALLS_ACTIVE

log = logging.getLogger(__name__)

_OUT_QUEUE = 256  # messages for the edge; the pacer keeps this nearly empty
AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
# A draining replica's answer to a new call: before anything else, it means "not here" (replicas.py).
_REFUSED = common_pb2.CallEnd(
    reason=common_pb2.END_REASON_SHUTDOWN, detail="draining: this media replica takes no new calls"
)


class MediaServicer(media_pb2_grpc.MediaServiceServicer):
    def __init__(
        self, settings: MediaSettings, agent: Opener | None = None, clock: Clock | None = None
    ) -> None:
        """`agent` (the calls to the agent service) and `clock` are for tests; by default long-lived
        channels to `settings.agent_target` (one address, or the replicas a name resolves to: see
        runtime/replicas.py), created inside the running loop, and the event loop's clock."""
        self._settings = settings
        self._clock = clock
        if agent is None:
            agent = connect_target(
                settings.agent_target,
                settings.tls,
                CLIENT_OPTIONS,
                lambda channel: agent_calls(
                    agent_pb2_grpc.AgentServiceStub(channel), settings.mux.enabled, settings.mux.interval_s
                ),
                AGENT_SERVICE,
                "agent",
                settings.resolve_interval_s,
            )
        self._agent = agent
        self._batch, self._many = media_servers(self.Call)
        self._drain = Drain("media")

    @property
    def calls_in_progress(self) -> int:
        return len(self._drain)

    async def drain(self, deadline_s: float = 0.0) -> None:
        """Service shutdown (runtime/drain.py): new calls are refused, calls in progress go on for up
        to `deadline_s`; those left hear the goodbye prompt and are hung up with END_REASON_SHUTDOWN."""
        await self._drain.run(
            deadline_s,
            lambda session: session.request_stop(
                common_pb2.END_REASON_SHUTDOWN, "media service drain deadline", goodbye=True
            ),
        )
        await self._agent.aclose()

    async def CallBatch(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[media_pb2.CallBatchRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[media_pb2.CallBatchResponse]:
        """Many calls on one stream, audio as columns (runtime/mux/): each served by `Call`."""
        async for batch in self._batch.serve(request_iterator, context):
            yield batch

    async def CallMany(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[media_pb2.CallManyRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[media_pb2.CallManyResponse]:
        """Many calls on one stream (runtime/mux/): each served by `Call`, as if on its own stream."""
        async for batch in self._many.serve(request_iterator, context):
            yield batch

    async def Call(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[media_pb2.CallRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[media_pb2.CallResponse]:
        if self._drain.draining:  # the edge places the call on another replica (runtime/replicas.py)
            yield media_pb2.CallResponse(end=_REFUSED)
            return
        out: asyncio.Queue[media_pb2.CallResponse | None] = asyncio.Queue(maxsize=_OUT_QUEUE)
        session = CallSession(self._settings, self._agent, out.put, self._clock)
        self._drain.add(session)
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
            self._drain.discard(session)
