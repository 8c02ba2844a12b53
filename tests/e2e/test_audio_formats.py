"""Audio crosses the bridge at the right pitch and length for every agent format (ElevenLabs emulator).

The caller sends a 1 kHz tone; the agent must receive 1 kHz at the rate it announced. The agent sends
a 440 Hz tone; the caller must hear 440 Hz. A wrong sample rate anywhere shifts both pitch and length.
"""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest
from harness.audio import (
    active_region,
    dominant_frequency,
    pcm16_to_float,
    tone_pcm16,
    tone_ulaw,
    ulaw_to_float,
)
from harness.stack import Stack

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession, bytes_per_ms
from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller

CALLER_HZ, AGENT_HZ, SECONDS = 1000.0, 440.0, 1.0
_ids = itertools.count()


def _agent_tone(fmt: str) -> bytes:
    if fmt == "ulaw_8000":
        return tone_ulaw(AGENT_HZ, SECONDS)
    return tone_pcm16(AGENT_HZ, SECONDS, int(fmt.split("_")[1]))


def _as_float(data: bytes, fmt: str) -> tuple[np.ndarray, int]:
    if fmt == "ulaw_8000":
        return ulaw_to_float(data), 8000
    return pcm16_to_float(data), int(fmt.split("_")[1])


@pytest.mark.parametrize("fmt", ["pcm_16000", "pcm_24000", "ulaw_8000"])
async def test_tones_keep_their_pitch_and_length_through_the_bridge(
    elevenlabs_stack: Stack, convai_emulator: ConvAIEmulator, fmt: str
) -> None:
    agent_id = f"tones-{fmt}-{next(_ids)}"
    agent_audio = _agent_tone(fmt)
    sessions: asyncio.Queue[EmulatedSession] = asyncio.Queue()

    async def scenario(session: EmulatedSession) -> None:
        sessions.put_nowait(session)
        # Answer once the caller's tone (and a little silence after it) has arrived: a turn, not a
        # barge-in (speaking over the agent would rightly stop its audio).
        await session.wait_for_audio(int(bytes_per_ms(fmt) * 1600), timeout=10)
        await session.send_audio(agent_audio, chunk_ms=250)

    convai_emulator.add_agent(agent_id, AgentScript(input_format=fmt, output_format=fmt, scenario=scenario))
    caller_tone = tone_ulaw(CALLER_HZ, SECONDS)
    config = CallerConfig(url=elevenlabs_stack.media_ws_url, custom_parameters={"agent_id": agent_id})
    async with TwilioCaller(config) as call:
        session = await asyncio.wait_for(sessions.get(), 10)
        await call.speak(caller_tone)
        await call.wait_heard(SECONDS, timeout=10)
        await call.wait_agent_quiet(0.3, timeout=5)
        timeline = call.heard_ulaw
        # The audio as played, back to back: a playback underrun on a loaded machine (a measurement:
        # voicebridge-load's playback_gaps) must not count as a longer tone.
        heard = b"".join(timeline[a:b] for a, b in call.heard_spans())
        assert call.violations == []
    received = bytes(session.received_audio)

    # What the agent received: 1 kHz, one second long, at the rate it announced.
    x, rate = _as_float(received, fmt)
    a, b = active_region(x, rate)
    assert abs(dominant_frequency(x[a:b], rate) - CALLER_HZ) <= 0.01 * CALLER_HZ
    assert abs((b - a) / rate - SECONDS) <= 0.02 * SECONDS
    # What the caller heard: 440 Hz, one second long.
    y = ulaw_to_float(heard)
    a, b = active_region(y, 8000)
    assert abs(dominant_frequency(y[a:b], 8000) - AGENT_HZ) <= 0.01 * AGENT_HZ
    assert abs((b - a) / 8000 - SECONDS) <= 0.02 * SECONDS
    if fmt == "ulaw_8000":
        # Pass-through: the very bytes cross the bridge untouched, both ways.
        assert caller_tone in received
        assert agent_audio in heard


async def test_hanging_up_closes_the_elevenlabs_socket(
    elevenlabs_stack: Stack, convai_emulator: ConvAIEmulator
) -> None:
    agent_id = f"hangup-{next(_ids)}"
    sessions: asyncio.Queue[EmulatedSession] = asyncio.Queue()

    async def scenario(session: EmulatedSession) -> None:
        sessions.put_nowait(session)
        await session.send_audio(tone_ulaw(AGENT_HZ, 3.0), chunk_ms=250)

    convai_emulator.add_agent(
        agent_id, AgentScript(input_format="ulaw_8000", output_format="ulaw_8000", scenario=scenario)
    )
    config = CallerConfig(url=elevenlabs_stack.media_ws_url, custom_parameters={"agent_id": agent_id})
    async with TwilioCaller(config) as call:
        session = await asyncio.wait_for(sessions.get(), 10)
        await call.wait_heard(0.5, timeout=10)
        await call.hangup()
        code, _reason = await session.wait_closed(timeout=15)  # a failure detector, not a deadline
    assert session.closed_by_client
    assert code == 1000
