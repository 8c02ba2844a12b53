"""Regression: an `interruption` read right after the audio it cancels must not crash the session.

The reader pushes the audio (waking run()) and then, before run() resumes, drops it again for the
interruption; run() used to pop from the now empty queue (IndexError), which ended the call as an
agent error. Both frames are sent back to back so the reader handles them in one go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from voicebridge.agent.backends.base import Outbox
from voicebridge.agent.backends.elevenlabs import ElevenLabsBackend
from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession
from voicebridge.v1 import agent_pb2, common_pb2

ULAW = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)


async def idle(session: EmulatedSession) -> None:
    """The test drives the agent's side."""


@pytest.mark.parametrize("numbering", ["per_reply", "per_chunk"])
async def test_audio_then_its_interruption_in_one_read_keeps_the_session_running(
    emu: ConvAIEmulator, make_backend: Callable[..., ElevenLabsBackend], numbering: str
) -> None:
    emu.add_agent("agent_x", AgentScript("ulaw_8000", "ulaw_8000", scenario=idle, event_ids=numbering))
    start = agent_pb2.SessionStart(
        call=common_pb2.CallInfo(call_sid="CA1"), input_formats=[ULAW], output_formats=[ULAW]
    )
    session = await make_backend().open(start)
    remote = await emu.wait_for_session()
    outbox = Outbox()
    run = asyncio.create_task(session.run(outbox))
    try:
        for _ in range(20):
            last = await remote.send_audio(b"\x7f" * 480, chunk_ms=20)  # a reply of three chunks
            await remote.send_event({"type": "interruption", "interruption_event": {"event_id": last}})
            await remote.ping()
            assert not run.done(), run
        await remote.send_audio(b"\x55" * 160)
        while (message := await asyncio.wait_for(outbox.get(), 5)).WhichOneof("event") != "audio":
            assert message.WhichOneof("event") == "interruption"
        assert message.audio.data == b"\x55" * 160
    finally:
        await session.aclose(common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))
    info = await asyncio.wait_for(run, 5)
    assert info.reason == common_pb2.END_REASON_CALLER_HANGUP
