"""ElevenLabs closes with an error mid-call, and the call goes on (issue 15: edge + media + agent, emulator).

The agent service opens a new conversation and gives it the call so far (docs/elevenlabs.md#resume);
the emulator's DropsMidCall scenario drops the first conversation half way through a reply with 1011
and records the context each continuing conversation receives. The caller hears the greeting once, the
half reply, then the new conversation answering their next words: no second greeting, no apology. The
agent speaks μ-law 8 kHz, so what the caller receives can be compared byte for byte. The fallback (two
attempts that do not take → the apology and the end of the call) is tests/e2e/test_agent_failures.py.
"""

from __future__ import annotations

import asyncio
import itertools

from harness.audio import tone_ulaw
from harness.heard import prompt, received_audio
from harness.resumed_call import VOICE, answered_then_hang_up, assert_heard_once_each, hear
from harness.stack import Stack

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, DropsMidCall
from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller

_ids = itertools.count()
GREETING = tone_ulaw(440.0, 0.5)
REPLY = tone_ulaw(660.0, 1.0)  # half of it is sent before the drop: 0.5 s, a whole number of frames
CONTINUED = tone_ulaw(550.0, 0.4)


async def test_an_error_close_mid_call_is_resumed_and_the_call_goes_on(
    elevenlabs_stack: Stack, convai_emulator: ConvAIEmulator
) -> None:
    agent_id = f"resume-{next(_ids)}"
    agent = DropsMidCall(greeting=GREETING, reply=REPLY, continued=CONTINUED)
    convai_emulator.add_agent(agent_id, AgentScript("ulaw_8000", "ulaw_8000", scenario=agent))
    resumed = elevenlabs_stack.metric("agent", "agent_elevenlabs_resumes_total", 'outcome="resumed"')
    half = REPLY[: len(REPLY) // 2]
    config = CallerConfig(url=elevenlabs_stack.media_ws_url, custom_parameters={"agent_id": agent_id})
    async with TwilioCaller(config) as call:
        await hear(call, len(GREETING))
        await call.speak(VOICE)  # answered by half a reply, then 1011
        await asyncio.wait_for(agent.context_arrived.wait(), 15)
        await hear(call, len(GREETING) + len(half), quiet_s=0.3)
        await answered_then_hang_up(call, len(GREETING) + len(half) + len(CONTINUED))

    assert_heard_once_each(call, GREETING, half, CONTINUED)  # the new greeting never reached the caller
    assert prompt("apology") not in received_audio(call)
    assert len(agent.conversations) == 2
    context = agent.contexts[0]
    heard = agent.heard_reply_text("ulaw_8000").strip()
    assert context.resumed
    update = context.contextual_updates[0]
    assert f"Caller: {agent.caller_text}" in update  # the transcript reached the new conversation
    assert f"You: {agent.greeting_text}" in update
    assert f"the caller heard only): {heard}" in update  # and what the caller last heard, only that
    assert agent.reply_text not in update
    assert f"Caller: {agent.caller_text}" in str(context.dynamic_variables["conversation_so_far"])
    assert (
        elevenlabs_stack.metric("agent", "agent_elevenlabs_resumes_total", 'outcome="resumed"') == resumed + 1
    )
