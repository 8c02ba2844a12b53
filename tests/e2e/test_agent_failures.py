"""When ElevenLabs fails for good, the caller hears why and the call ends cleanly (edge + media + agent,
emulator).

The behaviour chosen (docs/elevenlabs.md#resume, docs/failover.md): a conversation dropped mid-call
is continued in a new one (tests/e2e/test_resume_call.py); when that fails twice in a row the
caller hears the bundled apology, then the call ends with reason agent_error. A refusal at connect
(the workspace concurrency limit) plays the bundled busy prompt and ends with agent_busy. The agent
speaks μ-law 8 kHz here, so both prompts reach the caller byte for byte, and their length can be
checked exactly.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from harness.audio import tone_ulaw
from harness.heard import played_seconds, prompt, received_audio
from harness.polling import eventually
from harness.stack import Stack

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession
from voicebridge.sim.twilio_caller import RATE, CallerConfig, TwilioCaller

_ids = itertools.count()
GREETING = tone_ulaw(440.0, 0.5)
# How the emulator refuses: an error event then close 1002, or HTTP 429 at the upgrade.
REFUSALS = {"error_event": (1002, "http_exception"), "http_429": (429, "busy")}


def ends(stack: Stack, agent_reason: str) -> tuple[float, ...]:
    """Calls ended so far with this reason, as each service counts them (the reason travels with the
    hang-up from agent to media to edge)."""
    return (
        stack.metric("agent", "agent_session_ends_total", f'reason="{agent_reason}"'),
        stack.metric("media", "media_call_ends_total", f'reason="{agent_reason}"'),
        stack.metric("edge", "edge_call_ends_total", f'reason="{agent_reason}"'),
    )


async def one_more_end(stack: Stack, agent_reason: str, before: tuple[float, ...]) -> None:
    expected = tuple(n + 1 for n in before)
    await eventually(
        lambda: ends(stack, agent_reason) == expected, 5, f"one more {agent_reason} end everywhere"
    )


async def test_a_conversation_that_cannot_be_resumed_plays_the_apology_then_ends_the_call(
    elevenlabs_stack: Stack, convai_emulator: ConvAIEmulator
) -> None:
    agent_id = f"drop-{next(_ids)}"
    sessions: asyncio.Queue[EmulatedSession] = asyncio.Queue()
    drop = asyncio.Event()

    async def greet_then_crash(session: EmulatedSession) -> None:
        """Every conversation, the two that try to continue the call included, greets and crashes."""
        sessions.put_nowait(session)
        await session.send_audio(GREETING)
        await drop.wait()
        await session.fail(1011, "unknown_websocket_crash", "Internal server error")

    convai_emulator.add_agent(
        agent_id, AgentScript(input_format="ulaw_8000", output_format="ulaw_8000", scenario=greet_then_crash)
    )
    apology = prompt("apology")
    agent_errors = ends(elevenlabs_stack, "agent_error")
    failed = elevenlabs_stack.metric("agent", "agent_elevenlabs_resumes_total", 'outcome="failed"')
    config = CallerConfig(url=elevenlabs_stack.media_ws_url, custom_parameters={"agent_id": agent_id})
    async with TwilioCaller(config) as call:
        session = await asyncio.wait_for(sessions.get(), 10)
        await call.wait_heard(len(GREETING) / RATE, timeout=10)
        await call.wait_agent_quiet(0.2, timeout=5)
        dropped_at = len(call.heard_ulaw)  # the caller's timeline, in samples, when the agent drops
        drop.set()
        # The server ends the call once the apology has been played.
        await call.wait_closed(timeout=len(apology) / RATE + 10)
        assert call.closed_by == "server"
        assert call.violations == []

    assert await session.wait_closed() == (1011, "Internal server error")
    received = received_audio(call)
    assert received.find(apology) >= len(GREETING)  # pass-through: the very prompt, whole, after the greeting
    # Heard, not only sent: played after the drop for the prompt's length (up to a frame of padding).
    assert abs(played_seconds(call, dropped_at) - len(apology) / RATE) <= 0.04
    await one_more_end(elevenlabs_stack, "agent_error", agent_errors)
    # Two new conversations were tried; each dropped before the caller heard anything of it (their
    # greetings are never played: the apology is all that was heard after the drop).
    assert sessions.qsize() == 2
    assert (
        elevenlabs_stack.metric("agent", "agent_elevenlabs_resumes_total", 'outcome="failed"') == failed + 1
    )


@pytest.mark.parametrize("busy", ["error_event", "http_429"])
async def test_a_busy_agent_plays_the_busy_prompt_then_ends_the_call(
    elevenlabs_stack: Stack, convai_emulator: ConvAIEmulator, busy: str
) -> None:
    agent_id = f"busy-{busy}-{next(_ids)}"
    convai_emulator.add_agent(
        agent_id, AgentScript(input_format="ulaw_8000", output_format="ulaw_8000", busy=busy)
    )
    busy_prompt = prompt("busy")
    refusals = len(convai_emulator.rejected)
    agent_busy = ends(elevenlabs_stack, "agent_busy")
    config = CallerConfig(url=elevenlabs_stack.media_ws_url, custom_parameters={"agent_id": agent_id})
    async with TwilioCaller(config) as call:
        await call.wait_closed(timeout=len(busy_prompt) / RATE + 10)
        assert call.closed_by == "server"
        assert call.violations == []

    assert convai_emulator.rejected[refusals:] == [(agent_id, *REFUSALS[busy])]
    assert busy_prompt in received_audio(call)
    assert abs(played_seconds(call) - len(busy_prompt) / RATE) <= 0.04
    await one_more_end(elevenlabs_stack, "agent_busy", agent_busy)
