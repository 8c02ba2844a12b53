"""The elevenlabs backend against the ConvAI emulator: how a conversation ends (close codes to end reasons,
the apology, aclose)."""

from __future__ import annotations

import asyncio

import pytest
from harness.elevenlabs_calls import (
    PCM16,
    Factory,
    call,
    idle,
    make_start,
    next_message,
    ulaw_agent,
)

from voicebridge.agent.backends.base import Outbox
from voicebridge.agent.prompts import load_prompt
from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator
from voicebridge.v1 import common_pb2

# --- endings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_type", "reason", "apology"),
    [
        (1000, None, common_pb2.END_REASON_AGENT_ENDED, False),
        (1000, "max_duration_exceeded", common_pb2.END_REASON_AGENT_ENDED, False),
        (1002, "llm_timeout", common_pb2.END_REASON_AGENT_ERROR, True),
        (1011, "unknown_websocket_crash", common_pb2.END_REASON_AGENT_ERROR, True),
        (1008, "missing_dynamic_variable", common_pb2.END_REASON_PROTOCOL_ERROR, True),
    ],
)
async def test_close_codes_map_to_end_reasons(
    emu: ConvAIEmulator, make_backend: Factory, code: int, error_type: str | None, reason: int, apology: bool
) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    async with call(emu, make_backend(resume=False)) as c:  # resumed: tests/agent/elevenlabs/test_resume.py
        await c.remote.send_audio(b"\x11" * 160)
        if error_type:
            await c.remote.fail(code, error_type, f"{error_type} happened")
        else:
            await c.remote.close(code, "bye")
        end = await asyncio.wait_for(c.run, 5)
    assert end.reason == reason
    assert end.extra["close_code"] == str(code)
    if error_type:
        assert error_type in end.detail
        assert end.extra["error_type"] == error_type
    audio = []
    while not c.outbox._queue.empty():
        message = await c.outbox.get()
        audio.append(message.audio.data)
    expected = [b"\x11" * 160] + (
        [load_prompt("apology", common_pb2.AUDIO_ENCODING_MULAW, 8000)] if apology else []
    )
    assert audio == expected


async def test_apology_is_rendered_in_the_negotiated_pcm_format(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    emu.add_agent("agent_x", AgentScript("pcm_16000", "pcm_16000", scenario=idle))
    async with call(emu, make_backend(resume=False)) as c:
        await c.remote.close(1011, "internal")
        end = await asyncio.wait_for(c.run, 5)
        apology, _ = await next_message(c.outbox, "audio")
    assert end.reason == common_pb2.END_REASON_AGENT_ERROR
    assert apology.audio.format == PCM16
    assert apology.audio.data == load_prompt("apology", common_pb2.AUDIO_ENCODING_PCM_S16LE, 16000)


async def test_aclose_closes_with_1000_and_is_idempotent(emu: ConvAIEmulator, make_backend: Factory) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    session = await make_backend().open(make_start())
    remote = await emu.wait_for_session()
    run = asyncio.create_task(session.run(Outbox()))
    end = common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP, detail="caller hung up")
    await session.aclose(end)
    await session.aclose(end)
    info = await asyncio.wait_for(run, 5)
    assert await remote.wait_closed() == (1000, "call ended")
    assert remote.closed_by_client
    assert info.reason == common_pb2.END_REASON_CALLER_HANGUP
