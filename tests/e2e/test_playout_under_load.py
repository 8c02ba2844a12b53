"""On a real clock: with several calls talking at once, each caller hears its agent without gaps.

A gap is a hole in what the caller hears: its playout buffer ran dry. Frames arrive up to the pacer's
lead (60 ms) ahead of when they play, so a stall shorter than the lead anywhere on the path (a
garbage-collector pause in a service or in this test process: all calls then show it at the same
frame) is not heard; one longer than the lead would be.
"""

from __future__ import annotations

import asyncio
import itertools

from harness.audio import tone_ulaw
from harness.stack import Stack

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession
from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller

CALLS = 8
REPLY_S = 3.0
LEAD_S = 0.060  # PLAYOUT_LEAD_MS's default
_ids = itertools.count()


async def _one_call(stack: Stack, agent_id: str) -> list[float]:
    config = CallerConfig(url=stack.media_ws_url, custom_parameters={"agent_id": agent_id})
    async with TwilioCaller(config) as call:
        await call.wait_heard(REPLY_S, timeout=15)
        times = [t for t, m in call.received if isinstance(m, dict) and m.get("event") == "media"]
        spans = call.heard_spans()
        assert call.violations == []
    assert len(spans) == 1, f"the reply was heard in {len(spans)} pieces: playback ran dry"
    return [b - a for a, b in itertools.pairwise(times)]


async def test_concurrent_calls_hear_their_agents_without_gaps(
    elevenlabs_stack: Stack, convai_emulator: ConvAIEmulator
) -> None:
    async def scenario(session: EmulatedSession) -> None:
        await session.send_audio(tone_ulaw(440, REPLY_S), chunk_ms=250)

    agent_id = f"load-{next(_ids)}"
    convai_emulator.add_agent(
        agent_id, AgentScript(input_format="ulaw_8000", output_format="ulaw_8000", scenario=scenario)
    )
    gaps = await asyncio.gather(*(_one_call(elevenlabs_stack, agent_id) for _ in range(CALLS)))
    # Every reply was heard in one piece (_one_call), and no frame came later after the one before
    # than the lead that keeps the caller's buffer from running dry.
    worst = max(max(g[4:]) for g in gaps)  # after the lead burst that opens the reply
    assert worst <= LEAD_S, f"a frame arrived {worst * 1000:.0f} ms after the previous one"
