"""A real agent process (elevenlabs backend) against the ConvAI emulator: the ElevenLabs conversation
outlives a broken Converse stream, a stream that attaches gets the exact continuation and the call
goes on live, a stranger who knows the call sid but not its secret is refused while the conversation
stays held for its owner, and a hold nobody claims closes the emulator's conversation.

Media is played by the generated stubs. μ-law 8 kHz both ways, passed through untouched, so the
agent's audio is compared byte for byte with what the emulator sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from harness.polling import eventually
from harness.processes import BIN, ServiceProcess, free_port, grpc_ready
from harness.stack import scrape_metric

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession
from voicebridge.sim.loadgen import speech_like
from voicebridge.v1 import agent_pb2, agent_pb2_grpc, common_pb2

pytestmark = pytest.mark.e2e

ULAW = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)
SECRET = b"\x5a" * 32
REPLY_A = speech_like(1.5)[:12000]  # what the agent says first: 1.5 s, no two offsets alike
REPLY_B = speech_like(0.8)[::-1][:6400]  # its answer after the caller spoke on the new stream


class Agent:
    def __init__(self, tmp: Path, grace_s: float) -> None:
        self.emulator = ConvAIEmulator()
        self.port, self.metrics_port = free_port(), free_port()
        self.tmp, self.grace_s = tmp, grace_s
        self.sessions: list[EmulatedSession] = []

    async def start(self) -> None:
        await self.emulator.start()

        async def speak_then_answer(session: EmulatedSession) -> None:
            self.sessions.append(session)
            await session.send_audio(REPLY_A, chunk_ms=100)
            await session.wait_for_audio(1600, timeout=60)  # the caller, on whichever stream
            await session.send_audio(REPLY_B, chunk_ms=100)
            await session.wait_closed(timeout=120)

        self.emulator.add_agent("hold", AgentScript("ulaw_8000", "ulaw_8000", scenario=speak_then_answer))
        self.proc = ServiceProcess(
            "agent",
            [str(BIN / "voicebridge-agent")],
            {
                "AGENT_LISTEN": f"127.0.0.1:{self.port}",
                "AGENT_METRICS_PORT": str(self.metrics_port),
                "AGENT_BACKEND": "elevenlabs",
                "ELEVENLABS_AGENT_ID": "hold",
                "ELEVENLABS_BASE_URL": self.emulator.base_url,
                "AGENT_HOLD_GRACE_S": str(self.grace_s),
                "LOG_LEVEL": "INFO",
            },
            self.tmp / "agent.log",
        )
        self.proc.start()
        await asyncio.to_thread(self.proc.wait_until, grpc_ready(f"127.0.0.1:{self.port}"))
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = agent_pb2_grpc.AgentServiceStub(self.channel)

    async def stop(self) -> None:
        await self.channel.close()
        await asyncio.to_thread(self.proc.stop)
        await self.emulator.stop()

    def metric(self, name: str, labels: str = "") -> float:
        return scrape_metric(f"http://127.0.0.1:{self.metrics_port}/metrics", name, labels)


async def _agent(tmp: Path, grace_s: float) -> AsyncIterator[Agent]:
    agent = Agent(tmp, grace_s)
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()


@pytest.fixture
async def holding_agent(tmp_path: Path) -> AsyncIterator[Agent]:
    async for agent in _agent(tmp_path, grace_s=120.0):  # never expires during the test
        yield agent


@pytest.fixture
async def hasty_agent(tmp_path: Path) -> AsyncIterator[Agent]:
    async for agent in _agent(tmp_path, grace_s=0.5):
        yield agent


def _start(
    attach: agent_pb2.SessionAttach | None = None, secret: bytes = SECRET
) -> agent_pb2.ConverseRequest:
    start = agent_pb2.SessionStart(
        call=common_pb2.CallInfo(call_sid="CAhold0001"),
        input_formats=[ULAW],
        output_formats=[ULAW],
        call_secret=secret,
    )
    if attach is not None:
        start.attach.CopyFrom(attach)
    return agent_pb2.ConverseRequest(start=start)


async def _read_audio(call: grpc.aio.StreamStreamCall, nbytes: int) -> list[agent_pb2.AudioChunk]:
    chunks: list[agent_pb2.AudioChunk] = []
    async with asyncio.timeout(30):  # failure detector
        while sum(len(c.data) for c in chunks) < nbytes:
            message = await call.read()
            assert message is not grpc.aio.EOF, "the agent ended the stream"
            if message.WhichOneof("event") == "audio":
                chunks.append(message.audio)
    return chunks


async def test_the_conversation_survives_a_broken_stream_and_goes_on_where_it_stopped(
    holding_agent: Agent,
) -> None:
    agent = holding_agent
    first = agent.stub.Converse()
    await first.write(_start())
    assert (await first.read()).WhichOneof("event") == "ready"
    got = await _read_audio(first, 2400)
    reply_a = got[0].response_id
    first.cancel()  # media died
    await eventually(lambda: agent.metric("agent_conversations_held") == 1, 20, "held")
    (conversation,) = agent.sessions
    assert not conversation.closed  # ElevenLabs' conversation runs on

    resume = common_pb2.PlaybackPosition(response_id=reply_a, offset_us=1000 * 125)
    second = agent.stub.Converse()
    await second.write(_start(agent_pb2.SessionAttach(resume_from=resume)))
    ready = await second.read()
    assert ready.ready.attached
    rest = await _read_audio(second, len(REPLY_A) - 1000)
    assert b"".join(c.data for c in rest) == REPLY_A[1000:]  # exactly the rest, once
    # Live again: the caller speaks on the new stream, the same conversation answers.
    for offset in range(0, 3200, 160):
        audio = agent_pb2.AudioChunk(data=b"\x10\x90" * 80, format=ULAW, timestamp_ms=offset // 8)
        await second.write(agent_pb2.ConverseRequest(audio=audio))
    answer = await _read_audio(second, len(REPLY_B))
    assert b"".join(c.data for c in answer) == REPLY_B
    assert len(agent.sessions) == 1
    await second.write(
        agent_pb2.ConverseRequest(end=common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))
    )
    await conversation.wait_closed(timeout=20)
    assert agent.metric("agent_attach_total", 'outcome="attached"') == 1
    await eventually(lambda: agent.metric("agent_sessions_active") == 0, 20, "the session ended")


async def test_a_hold_nobody_claims_closes_the_elevenlabs_conversation(hasty_agent: Agent) -> None:
    agent = hasty_agent
    first = agent.stub.Converse()
    await first.write(_start())
    assert (await first.read()).WhichOneof("event") == "ready"
    await _read_audio(first, 800)
    first.cancel()
    (conversation,) = agent.sessions
    await conversation.wait_closed(timeout=30)  # the grace expired: closed as at a call's end
    assert conversation.close_code == 1000
    await eventually(lambda: agent.metric("agent_attach_total", 'outcome="expired"') == 1, 20, "expired")
    assert agent.metric("agent_conversations_held") == 0
    assert agent.metric("agent_sessions_active") == 0
    late = agent.stub.Converse()
    await late.write(_start(agent_pb2.SessionAttach()))
    assert (await late.read()).error.code == common_pb2.ERROR_CODE_NOT_FOUND


async def test_a_stranger_without_the_calls_secret_cannot_take_the_held_conversation(
    holding_agent: Agent,
) -> None:
    agent = holding_agent
    first = agent.stub.Converse()
    await first.write(_start())
    assert (await first.read()).WhichOneof("event") == "ready"
    got = await _read_audio(first, 1600)
    first.cancel()
    await eventually(lambda: agent.metric("agent_conversations_held") == 1, 20, "held")
    (conversation,) = agent.sessions

    stranger = agent.stub.Converse()  # knows the call sid, guesses the secret
    await stranger.write(_start(agent_pb2.SessionAttach(), secret=b"\x00" * 32))
    refusal = await stranger.read()
    assert refusal.error.code == common_pb2.ERROR_CODE_PERMISSION_DENIED
    async with asyncio.timeout(30):  # failure detector
        while (message := await stranger.read()) is not grpc.aio.EOF:
            assert message.WhichOneof("event") in ("error", "end"), "the stranger was sent the call"
    assert agent.metric("agent_attach_total", 'outcome="denied"') == 1
    assert agent.metric("agent_conversations_held") == 1  # still held, for its owner
    assert not conversation.closed

    resume = common_pb2.PlaybackPosition(response_id=got[0].response_id, offset_us=1000 * 200)
    owner = agent.stub.Converse()
    await owner.write(_start(agent_pb2.SessionAttach(resume_from=resume)))
    assert (await owner.read()).ready.attached
    rest = await _read_audio(owner, len(REPLY_A) - 1600)
    assert b"".join(c.data for c in rest) == REPLY_A[1600:]
    assert len(agent.sessions) == 1  # the same ElevenLabs conversation, not a new one
    await owner.write(
        agent_pb2.ConverseRequest(end=common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))
    )
    await conversation.wait_closed(timeout=20)
