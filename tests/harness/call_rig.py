"""One CallSession on a virtual clock, between a feed of the edge's requests and the agent service's real
servicer on a scripted backend, over the production multiplexed stream in memory.

Shared by tests/media/test_call_session.py and test_call_agent_restart.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from harness.call_chain import media_settings
from harness.core_fakes import FRAME, ScriptedBackend, ScriptedSession
from harness.feeds import Feed
from harness.inmemory_grpc import InMemoryChannel, converse_client
from harness.virtual_clock import VirtualClock
from voicebridge.agent.converse import ConverseServicer
from voicebridge.media.call import CallSession
from voicebridge.sim.loadgen import speech_like
from voicebridge.v1 import common_pb2, media_pb2

CALL = common_pb2.CallInfo(call_sid="CA0001", stream_sid="MZ0001")


@dataclass
class Rig:
    clock: VirtualClock
    backend: ScriptedBackend
    converse: ConverseServicer
    agent_calls: object
    channel: InMemoryChannel
    edge: Feed = field(default_factory=Feed)
    out: list[media_pb2.CallResponse] = field(default_factory=list)
    echo_marks: bool = True

    async def emit(self, message: media_pb2.CallResponse) -> None:
        self.out.append(message)
        if self.echo_marks and message.audio.mark:
            self.edge.put(media_pb2.CallRequest(mark=media_pb2.MarkEcho(name=message.audio.mark)))

    def kinds(self) -> list[str]:
        return [m.WhichOneof("event") for m in self.out]

    def played_bytes(self) -> int:
        return sum(len(m.audio.payload) for m in self.out if m.WhichOneof("event") == "audio")

    async def until(self, condition, what: str, virtual_s: float = 30.0) -> None:
        end = self.clock.now() + virtual_s
        await self.clock.settle()
        while not condition():
            assert self.clock.now() < end, f"not true after {virtual_s} virtual seconds: {what}"
            await self.clock.advance(0.01)

    async def finish(self, task: asyncio.Task, virtual_s: float = 30.0):
        await self.until(task.done, "the call ends", virtual_s)
        return task.result()


@contextlib.asynccontextmanager
async def call_rig() -> AsyncIterator[Rig]:
    """A scripted agent service (its real servicer) reached over the multiplexed stream in memory."""
    backend = ScriptedBackend()
    converse = ConverseServicer(backend)
    channel = InMemoryChannel()
    agent_calls = converse_client(
        channel, converse.ConverseMany, converse.Converse, batch=converse.ConverseBatch
    )
    try:
        yield Rig(VirtualClock(), backend, converse, agent_calls, channel)
    finally:
        await agent_calls.aclose()
        await channel.aclose()


def start_call(rig: Rig, **env: str) -> asyncio.Task:
    session = CallSession(media_settings(**env), rig.agent_calls, rig.emit, rig.clock)
    rig.edge.put(media_pb2.CallRequest(start=media_pb2.CallStart(call=CALL)))
    return asyncio.create_task(session.run(rig.edge))


async def ready_call(rig: Rig, **env: str) -> tuple[asyncio.Task, ScriptedSession]:
    task = start_call(rig, **env)
    agent = await asyncio.wait_for(rig.backend.next_session(), 5)
    return task, agent


def speak(rig: Rig, ms: int, start_ms: int = 0) -> None:
    audio = speech_like(ms / 1000)
    for i, offset in enumerate(range(0, len(audio), FRAME)):
        rig.edge.put(
            media_pb2.CallRequest(
                audio=media_pb2.CallerAudio(
                    payload=audio[offset : offset + FRAME], timestamp_ms=start_ms + 20 * i
                )
            )
        )


def silence(rig: Rig, ms: int, start_ms: int) -> None:
    for i in range(ms // 20):
        rig.edge.put(
            media_pb2.CallRequest(
                audio=media_pb2.CallerAudio(payload=b"\xff" * FRAME, timestamp_ms=start_ms + 20 * i)
            )
        )


# -- turn flow ---------------------------------------------------------------------------------------
