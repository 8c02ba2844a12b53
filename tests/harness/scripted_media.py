"""A scripted media service for the edge's tests: every Call stream the edge opens is served in memory
by a `MediaSide` the test drives (what the edge sent, what to answer), with no server and no clock.
`die()` ends a stream the way a SIGKILLed media process does (UNAVAILABLE, no `end`); `reopen` is the
pool's, recorded, so a test sees which call the edge opened again."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc

from harness.inmemory_grpc import InMemoryCall
from voicebridge.v1 import common_pb2, media_pb2


@dataclass
class MediaSide:
    """One call as the media service sees it: what the edge sent, and what to answer."""

    requests: list[media_pb2.CallRequest] = field(default_factory=list)
    half_closed: asyncio.Event = field(default_factory=asyncio.Event)
    answers: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def kinds(self) -> list[str]:
        return [r.WhichOneof("event") for r in self.requests]

    def say(self, message: media_pb2.CallResponse) -> None:
        self.answers.put_nowait(message)

    def die(self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE, details: str = "closed") -> None:
        """The media process is gone: the stream fails as a broken connection does (UNAVAILABLE, or
        INTERNAL "Internal error from Core" now and then)."""
        self.answers.put_nowait(grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details))

    def end(self, reason: int = common_pb2.END_REASON_CALLER_HANGUP) -> None:
        self.answers.put_nowait(media_pb2.CallResponse(end=common_pb2.CallEnd(reason=reason)))
        self.answers.put_nowait(None)

    async def wait_for(self, kind: str, count: int = 1) -> media_pb2.CallRequest:
        async with asyncio.timeout(5):  # failure detector
            while self.kinds().count(kind) < count:
                self.changed.clear()
                await self.changed.wait()
        return [r for r in self.requests if r.WhichOneof("event") == kind][count - 1]


class _StuckableCall(InMemoryCall):
    """A stream whose writes hang once `stuck` is set, as writes to a peer that just died do: what the
    edge's writer holds then is still unsent when the failure is seen."""

    def __init__(self, handler: Any, stuck: asyncio.Event, hanging: asyncio.Event) -> None:
        super().__init__(handler)
        self._stuck, self._hanging = stuck, hanging

    def write_nowait(self, message: Any) -> bool:
        return False  # every write through the writer's task, where it can hang

    async def write(self, message: Any) -> None:
        if self._stuck.is_set():
            self._hanging.set()
            await asyncio.Event().wait()  # until the writer is abandoned (cancelled)
        await super().write(message)


class ScriptedMedia:
    """The `MuxClient.open()` the session uses, each call served by a test-driven handler."""

    def __init__(self) -> None:
        self.sides: list[MediaSide] = []
        self.rpcs: list[InMemoryCall] = []
        self.opened = asyncio.Event()
        self.reopened: list[InMemoryCall] = []  # the calls the edge opened again, in order
        self.stuck = asyncio.Event()  # set: writes to the first stream never complete (a dead peer)
        self.hanging = asyncio.Event()  # a write to it is hanging

    def open(self) -> InMemoryCall:
        first = not self.rpcs
        rpc = _StuckableCall(self._serve, self.stuck, self.hanging) if first else InMemoryCall(self._serve)
        self.rpcs.append(rpc)
        return rpc

    def reopen(self, previous: InMemoryCall) -> InMemoryCall:
        self.reopened.append(previous)
        return self.open()

    async def side(self, n: int) -> MediaSide:
        """The n-th stream's side (0: the first), once its CallStart has arrived."""
        async with asyncio.timeout(5):  # failure detector
            while len(self.sides) <= n:
                self.opened.clear()
                await self.opened.wait()
        await self.sides[n].wait_for("start")
        return self.sides[n]

    async def _serve(self, requests, context):
        side = MediaSide()
        self.sides.append(side)
        self.opened.set()

        async def consume() -> None:
            async for request in requests:
                side.requests.append(request)
                side.changed.set()
            side.half_closed.set()

        reader = asyncio.create_task(consume())
        try:
            while (answer := await side.answers.get()) is not None:
                if isinstance(answer, Exception):
                    raise answer
                yield answer
        finally:
            reader.cancel()
