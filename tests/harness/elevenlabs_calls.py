"""An ElevenLabs backend call against the ConvAI emulator: the start message, the call, reading its outbox.

Shared by the backend's tests (tests/agent/elevenlabs/test_backend*.py), split by subject.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from voicebridge.agent.backends.base import AgentSession, Outbox, SessionEndInfo
from voicebridge.agent.backends.elevenlabs import ElevenLabsBackend
from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession
from voicebridge.v1 import agent_pb2, common_pb2

Factory = Callable[..., ElevenLabsBackend]
ULAW = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)
PCM16 = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16000)


async def idle(session: EmulatedSession) -> None:
    """Scenario that leaves the driving to the test."""


def make_start(
    custom: dict[str, str] | None = None,
    input_formats: tuple[common_pb2.AudioFormat, ...] = (ULAW, PCM16),
    output_formats: tuple[common_pb2.AudioFormat, ...] = (ULAW, PCM16),
) -> agent_pb2.SessionStart:
    return agent_pb2.SessionStart(
        call=common_pb2.CallInfo(
            call_sid="CA00000000000000000000000000000001",
            stream_sid="MZ00000000000000000000000000000001",
            account_sid="AC00000000000000000000000000000001",
            from_number="+15550100",
            to_number="+15550199",
            direction=common_pb2.CALL_DIRECTION_INBOUND,
            custom_parameters=custom or {},
        ),
        input_formats=list(input_formats),
        output_formats=list(output_formats),
    )


async def next_message(
    outbox: Outbox, kind: str | Callable[[agent_pb2.ConverseResponse], bool], timeout: float = 5.0
) -> tuple[agent_pb2.ConverseResponse, list[agent_pb2.ConverseResponse]]:
    """Take messages until one matches; returns it and every message taken before it."""
    seen: list[agent_pb2.ConverseResponse] = []
    matches = (lambda m: m.WhichOneof("event") == kind) if isinstance(kind, str) else kind
    async with asyncio.timeout(timeout):
        while True:
            message = await outbox.get()
            if matches(message):
                return message, seen
            seen.append(message)


@dataclass
class Call:
    session: AgentSession
    remote: EmulatedSession
    outbox: Outbox
    run: asyncio.Task[SessionEndInfo]


@contextlib.asynccontextmanager
async def call(
    emu: ConvAIEmulator, backend: ElevenLabsBackend, outbox: Outbox | None = None, **start_kw: object
) -> AsyncIterator[Call]:
    session = await backend.open(make_start(**start_kw))  # type: ignore[arg-type]
    remote = await emu.wait_for_session()
    box = outbox or Outbox()
    run = asyncio.create_task(session.run(box))
    try:
        yield Call(session, remote, box, run)
    finally:
        await session.aclose(common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(run, 5)


def ulaw_agent(**kw: object) -> AgentScript:
    return AgentScript("ulaw_8000", "ulaw_8000", scenario=idle, **kw)  # type: ignore[arg-type]
