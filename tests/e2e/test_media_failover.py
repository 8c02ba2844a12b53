"""A media process dies (SIGKILL) mid-reply and the call goes on on the other media replica (issue 15).

A replica stack (sim/replica_stack.py): one edge, two media replicas behind one name, one agent with
the `elevenlabs` backend on the ConvAI emulator. The agent's audio is stamped (sim/stamped_audio.py),
so what the simulated caller received can be aligned byte by byte with what the emulator sent. The
media replica carrying the call is killed while the caller hears a long reply; the edge opens the call
on the other one with `CallStart.reattach{sent}`, the new media takes over the conversation the agent
service held, and the agent's audio goes on right after what the edge had forwarded. Asserted: the
call goes on (the caller speaks again and is answered), the emulator saw one conversation (no second
greeting, no continuation), every byte of the greeting, the reply and the answer reached the caller
exactly once, and afterwards nothing is left: no call, session or held conversation in any service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.heard import received_audio
from harness.resumed_call import VOICE

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession, Utterances
from voicebridge.sim.loadgen import scrape_sum, scrape_value
from voicebridge.sim.replica_stack import ReplicaStack
from voicebridge.sim.stamped_audio import Replies, stamped
from voicebridge.sim.twilio_caller import RATE, CallerConfig, TwilioCaller

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

AGENT_ID = "media-failover"
GREETING = stamped(100, 4000)  # 0.5 s
REPLY = stamped(101, 24000)  # 3 s: long enough to kill media while it plays
ANSWER = stamped(102, 3200)
REPLIES = Replies({"greeting": GREETING, "reply": REPLY, "answer": ANSWER})
IDLE = {
    "edge": ("edge_calls_active", "voicebridge_replica_calls_active"),
    "media": ("media_calls_active", "voicebridge_replica_calls_active"),
    "agent": ("agent_sessions_active", "agent_conversations_held"),
}


@dataclass
class LongReply:
    """Greets, answers the first utterance with REPLY and the second with ANSWER; counts conversations."""

    conversations: int = 0

    async def __call__(self, session: EmulatedSession) -> None:
        self.conversations += 1
        utterances = Utterances(session)
        await self._say(session, "Hello.", GREETING)
        for text, audio in (("Let me explain at length.", REPLY), ("Anything else?", ANSWER)):
            await utterances.next()
            transcript = {"user_transcript": "A question."}
            await session.send_event({"type": "user_transcript", "user_transcription_event": transcript})
            await self._say(session, text, audio)
        await session.wait_closed(timeout=60)

    async def _say(self, session: EmulatedSession, text: str, audio: bytes) -> None:
        event_id = session.next_event_id()
        response = {"agent_response": text, "event_id": event_id}
        await session.send_event({"type": "agent_response", "agent_response_event": response})
        await session.send_audio(audio, event_id=event_id)


@pytest.fixture
async def stack(tmp_path: Path, convai_emulator: ConvAIEmulator) -> AsyncIterator[ReplicaStack]:
    agent_env = {
        "AGENT_BACKEND": "elevenlabs",
        "ELEVENLABS_AGENT_ID": AGENT_ID,
        "ELEVENLABS_BASE_URL": convai_emulator.base_url,
    }
    built = ReplicaStack(tmp_path, {"agent": agent_env})
    try:
        for service in ("agent", "media", "media", "edge"):
            await asyncio.to_thread(built.start, service)
        yield built
    finally:
        await asyncio.to_thread(built.stop)


async def idle_figures(stack: ReplicaStack) -> dict[str, float | None]:
    """Every running replica's idle gauges, polled until all read 0 (failure detector: 20 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        values = {
            f"{r.name} {gauge}": await asyncio.to_thread(scrape_value, r.metrics_url, gauge)
            for service, gauges in IDLE.items()
            for r in stack.running(service)
            for gauge in gauges
        }
        if all(not v for v in values.values()) or loop.time() > deadline:
            return values
        await asyncio.sleep(0.2)


async def test_media_killed_mid_reply_the_call_goes_on_on_the_other_media_heard_once_each(
    stack: ReplicaStack, convai_emulator: ConvAIEmulator
) -> None:
    agent = LongReply()
    convai_emulator.add_agent(AGENT_ID, AgentScript("ulaw_8000", "ulaw_8000", scenario=agent))
    [edge] = stack.running("edge")
    async with TwilioCaller(CallerConfig(url=edge.ws_url)) as call:
        await call.wait_heard(len(GREETING) / RATE, timeout=15)
        await call.wait_agent_quiet(0.3, timeout=10)
        await call.speak(VOICE)
        await call.wait_heard((len(GREETING) + len(REPLY) // 3) / RATE, timeout=15)  # mid-reply
        carrying = [
            r
            for r in stack.running("media")
            if (await asyncio.to_thread(scrape_value, r.metrics_url, "media_calls_active")) == 1
        ]
        assert len(carrying) == 1
        carrying[0].kill()  # SIGKILL: no goodbye to the edge, none to the agent
        stack.unlist(carrying[0])
        await call.wait_heard((len(GREETING) + len(REPLY)) / RATE, timeout=15)  # the rest of it
        await call.wait_agent_quiet(0.3, timeout=10)
        await call.speak(VOICE)
        await call.wait_heard((len(GREETING) + len(REPLY) + len(ANSWER)) / RATE, timeout=15)
        await call.wait_agent_quiet(0.3, timeout=10)
        assert not call.closed  # the call went on
        await call.hangup()
        await call.wait_closed(timeout=10)

    assert agent.conversations == 1  # the same conversation went on: no second greeting, no resume
    # What reached the caller, and what the caller's playout played (its recording): each byte once.
    for what, audio_in in (("received", received_audio(call)), ("played", call.heard_ulaw)):
        heard = REPLIES.align(audio_in)
        for name, audio in (("greeting", GREETING), ("reply", REPLY), ("answer", ANSWER)):
            assert heard.distinct_bytes(name) == len(audio), f"{what} {name}: audio skipped"
            assert heard.times_heard(name) == 1, f"{what} {name}: audio heard twice"
        assert heard.repeated_bytes() == 0
    reattached = await asyncio.to_thread(
        scrape_sum, edge.metrics_url, "edge_media_reattach_total", 'outcome="reattached"'
    )
    assert reattached == 1
    left = await idle_figures(stack)
    assert all(not v for v in left.values()), left
    assert convai_emulator.open_conversations == 0
