"""Several calls talking at once: each caller hears all of its own agent's reply, and nothing else.

What this asserts is behaviour, the same on a busy machine as on a quiet one: every byte the agent
sent reaches its own caller, in order, once, with no other call's audio. How evenly the frames arrive
under load (gaps in playback, frame spacing) is a measurement of the machine: `voicebridge-load`
reports it (`playback_gaps`, with `--slo-gaps` and `--slo-worst-gap-ms`; docs/performance.md).
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
SILENCE = b"\xff"
_ids = itertools.count()


def _agent(emulator: ConvAIEmulator, reply: bytes) -> str:
    async def scenario(session: EmulatedSession) -> None:
        await session.send_audio(reply, chunk_ms=250)

    agent_id = f"load-{next(_ids)}"
    emulator.add_agent(
        agent_id, AgentScript(input_format="ulaw_8000", output_format="ulaw_8000", scenario=scenario)
    )
    return agent_id


async def _heard(stack: Stack, agent_id: str) -> bytes:
    """The agent audio the caller played, gaps between pieces left out (μ-law passes through as is)."""
    config = CallerConfig(url=stack.media_ws_url, custom_parameters={"agent_id": agent_id})
    async with TwilioCaller(config) as call:
        await call.wait_heard(REPLY_S, timeout=30)
        heard = call.heard_ulaw
        spans = call.heard_spans()
        assert call.violations == []
    return b"".join(heard[a:b] for a, b in spans)


async def test_concurrent_calls_each_hear_their_own_agents_whole_reply(
    elevenlabs_stack: Stack, convai_emulator: ConvAIEmulator
) -> None:
    replies = [tone_ulaw(400 + 100 * i, REPLY_S) for i in range(CALLS)]  # every agent its own tone
    agents = [_agent(convai_emulator, reply) for reply in replies]
    heard = await asyncio.gather(*(_heard(elevenlabs_stack, agent_id) for agent_id in agents))
    for i, (reply, played) in enumerate(zip(replies, heard, strict=True)):
        # Silence (0xFF) around the reply is not the agent's; everything else is exactly the reply.
        assert played.strip(SILENCE) == reply.strip(SILENCE), f"call {i} did not hear its reply whole"
