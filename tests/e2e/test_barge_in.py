"""The caller talks over the agent: playback stops at once and the agent learns what was heard."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
from harness.audio import espeak_ulaw
from harness.stack import Stack

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession
from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller

REPLY = "Your order shipped yesterday and should arrive by Friday afternoon, weather permitting of course."
_ids = itertools.count()


def _alignment(text: str, duration_ms: int) -> dict[str, list]:
    """ElevenLabs-style character timing, spread evenly over the audio (the emulator's stand-in)."""
    step = duration_ms / len(text)
    return {
        "chars": list(text),
        "char_start_times_ms": [round(i * step) for i in range(len(text))],
        "char_durations_ms": [round(step)] * len(text),
    }


async def test_talking_over_the_agent_stops_it_fast_and_tells_it_what_was_heard(
    elevenlabs_stack: Stack, convai_emulator: ConvAIEmulator
) -> None:
    reply = espeak_ulaw(REPLY, voice="en-gb")
    # One continuous phrase: a pause between words may briefly resume the agent (by design, see
    # docs/barge-in.md; tested in tests/media), which this test is not about.
    interruption = espeak_ulaw("Hold on a second I need to ask you something about my bill")
    agent_id = f"barge-in-{next(_ids)}"
    sessions: asyncio.Queue[EmulatedSession] = asyncio.Queue()

    async def scenario(session: EmulatedSession) -> None:
        sessions.put_nowait(session)
        # The whole reply at once, faster than real time, as TTS does: media paces it.
        await session.send_audio(
            reply, chunk_ms=len(reply) // 8, alignment=_alignment(REPLY, len(reply) // 8)
        )

    convai_emulator.add_agent(
        agent_id, AgentScript(input_format="ulaw_8000", output_format="ulaw_8000", scenario=scenario)
    )
    config = CallerConfig(url=elevenlabs_stack.media_ws_url, custom_parameters={"agent_id": agent_id})
    async with TwilioCaller(config) as call:
        session = await asyncio.wait_for(sessions.get(), 10)
        await call.wait_heard(2.0, timeout=10)
        cut_in = len(call.heard_ulaw)  # the caller starts talking here (sample index)
        await call.speak(interruption)
        update = await session.wait_for_message("contextual_update", timeout=5)
        await call.wait_for_event("clear", timeout=1)
        heard = call.heard_spans()
        assert call.violations == []

    # The agent's audio stopped soon after the caller's first word (onset -> silence on the line).
    onset = cut_in + int(np.argmax(np.abs(np.frombuffer(interruption, np.uint8).astype(int) - 0xFF) > 8))
    stopped = max(b for a, b in heard if a < onset)
    assert (stopped - onset) / 8000 <= 0.150
    assert not any(a > onset for a, _ in heard), "agent audio leaked after the clear"
    # The agent was told how much of its reply the caller heard, in words.
    heard_words = update["text"]
    assert "heard only the first" in heard_words
    spoken = heard_words.split('"')[1]
    assert spoken
    assert REPLY.startswith(spoken)
    heard_reply_s = sum(min(b, onset) - a for a, b in heard if a < onset) / 8000
    words_s = len(spoken) / len(REPLY) * len(reply) / 8000  # the alignment spreads chars evenly
    assert abs(words_s - heard_reply_s) <= 0.3
