"""Media's side of a call that moves to another stream: Detach when the edge's stream breaks, positions
on every PlayAudio, and a CallStart with reattach taking over the agent's held conversation.

Two CallSessions in sequence (the media replica that lost the call, the one that takes it over)
against the agent service's real servicer on a scripted backend, over the production multiplexed
stream in memory, on a virtual clock (the pacer and the agent's grace period alike). The agent audio
is μ-law 8 kHz, passed through untouched, so what the caller gets is compared byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from harness.call_chain import media_settings
from harness.call_rig import CALL, Rig
from harness.core_fakes import FRAME, ULAW_8K, ScriptedBackend, ScriptedSession
from harness.inmemory_grpc import InMemoryChannel, converse_client
from harness.virtual_clock import VirtualClock

from voicebridge.agent.converse import ConverseServicer
from voicebridge.agent.holds import HoldSettings
from voicebridge.media.call import CallSession
from voicebridge.media.metrics import REATTACHES
from voicebridge.sim.loadgen import speech_like
from voicebridge.v1 import agent_pb2, common_pb2, media_pb2

SECRET = b"\x07" * 32
REPLY = speech_like(2.0)[: 2000 * 8]  # 2 s of speech-like μ-law: no two offsets look alike


@contextlib.asynccontextmanager
async def agent_rig() -> AsyncIterator[Rig]:
    clock = VirtualClock()
    backend = ScriptedBackend()
    converse = ConverseServicer(backend, hold=HoldSettings(grace_s=15.0), clock=clock)
    channel = InMemoryChannel()
    agent_calls = converse_client(channel, converse.ConverseMany, converse.Converse)
    try:
        yield Rig(clock, backend, converse, agent_calls, channel)
    finally:
        await converse.holds.close_all()
        await agent_calls.aclose()
        await channel.aclose()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with agent_rig() as built:
        yield built


def another_media(rig: Rig) -> Rig:
    """A second media replica's view: same agent service and clock, its own edge stream."""
    return Rig(rig.clock, rig.backend, rig.converse, rig.agent_calls, rig.channel)


def start(rig: Rig, reattach: media_pb2.CallReattach | None = None, secret: bytes = SECRET) -> asyncio.Task:
    session = CallSession(media_settings(), rig.agent_calls, rig.emit, rig.clock)
    call_start = media_pb2.CallStart(call=CALL, call_secret=secret)
    if reattach is not None:
        call_start.reattach.CopyFrom(reattach)
    rig.edge.put(media_pb2.CallRequest(start=call_start))
    return asyncio.create_task(session.run(rig.edge))


def say(agent: ScriptedSession, data: bytes, response_id: int) -> None:
    """One reply of exactly these bytes, in 20 ms chunks (the scripted agent's own `say` repeats a
    two-byte pattern, which would hide an offset error)."""
    for offset in range(0, len(data), FRAME):
        chunk = agent_pb2.AudioChunk(
            data=data[offset : offset + FRAME], format=ULAW_8K, response_id=response_id
        )
        agent._next.put_nowait(agent_pb2.ConverseResponse(audio=chunk))


def played(rig: Rig) -> list[media_pb2.PlayAudio]:
    return [m.audio for m in rig.out if m.WhichOneof("event") == "audio"]


async def _mid_reply(rig: Rig) -> tuple[asyncio.Task, ScriptedSession]:
    task = start(rig)
    agent = await asyncio.wait_for(rig.backend.next_session(), 5)
    say(agent, REPLY, response_id=1)
    await rig.until(lambda: sum(len(p.payload) for p in played(rig)) >= 6000, "the reply is playing")
    return task, agent


async def test_every_play_audio_of_agent_audio_says_where_the_reply_stands(rig) -> None:
    task, _ = await _mid_reply(rig)
    await rig.until(lambda: sum(len(p.payload) for p in played(rig)) == len(REPLY), "the whole reply")
    total = 0
    for play in played(rig):
        total += len(play.payload)
        assert play.position.response_id == 1
        assert play.position.offset_us == total * 125  # the end of this payload, in the reply
    rig.edge.put(media_pb2.CallRequest(stop=common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP)))
    await rig.finish(task)


async def test_a_stop_from_the_edge_ends_the_agent_conversation_not_held(rig) -> None:
    task, agent = await _mid_reply(rig)
    rig.edge.put(media_pb2.CallRequest(stop=common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP)))
    await rig.finish(task)
    await rig.until(lambda: agent.closed, "the agent closed its session")
    assert agent.closed_with.reason == common_pb2.END_REASON_CALLER_HANGUP
    assert len(rig.converse.holds) == 0


async def test_the_edge_stream_breaking_detaches_and_a_reattach_continues_exactly(rig) -> None:
    """Media 1 loses the edge's stream mid-reply (no stop): it sends Detach, the agent holds. Media 2
    gets the call with reattach.sent = media 1's last position: the caller gets the rest, exactly."""
    before = REATTACHES.labels("attached").value
    first, agent = await _mid_reply(rig)
    rig.edge.close()  # the edge died: its stream ends without stop
    await rig.finish(first)
    await rig.until(lambda: len(rig.converse.holds) == 1, "the agent holds the conversation")
    assert not agent.closed
    sent = played(rig)[-1].position
    heard_before = b"".join(p.payload for p in played(rig))
    assert sent.offset_us == len(heard_before) * 125

    media2 = another_media(rig)
    second = start(media2, media_pb2.CallReattach(sent=sent))
    await media2.until(
        lambda: len(heard_before) + sum(len(p.payload) for p in played(media2)) >= len(REPLY),
        "the rest of the reply",
    )
    assert heard_before + b"".join(p.payload for p in played(media2)) == REPLY
    assert [p.position.offset_us for p in played(media2)][-1] == len(REPLY) * 125
    assert len(rig.backend.sessions) == 1  # the same conversation, no greeting again
    assert REATTACHES.labels("attached").value == before + 1
    # The call goes on live on media 2: caller audio now reaches the same agent session.
    media2.edge.put(media_pb2.CallRequest(dtmf=common_pb2.DtmfDigit(digit="5")))
    await media2.until(lambda: "dtmf" in agent.received_kinds(), "the caller's key reaches the agent")
    media2.edge.put(
        media_pb2.CallRequest(stop=common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))
    )
    await media2.finish(second)
    await media2.until(lambda: agent.closed, "the agent closed its session")


async def test_a_reattach_without_sent_resumes_where_the_caller_had_heard(rig) -> None:
    """A new edge does not know what was sent: the agent resumes at Detach.heard, media 1's position
    at the last mark Twilio echoed (here every mark is echoed as it is sent)."""
    first, _ = await _mid_reply(rig)
    rig.edge.close()
    await rig.finish(first)
    await rig.until(lambda: len(rig.converse.holds) == 1, "held")
    marked = [p for p in played(rig) if p.mark]
    heard = marked[-1].position.offset_us // 125
    media2 = another_media(rig)
    second = start(media2, media_pb2.CallReattach())
    await media2.until(
        lambda: sum(len(p.payload) for p in played(media2)) >= len(REPLY) - heard, "the rest of the reply"
    )
    assert b"".join(p.payload for p in played(media2)) == REPLY[heard:]
    media2.edge.put(
        media_pb2.CallRequest(stop=common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))
    )
    await media2.finish(second)


async def test_a_reattach_no_agent_holds_starts_a_new_conversation_and_is_counted(rig) -> None:
    before = REATTACHES.labels("not_found").value
    task = start(rig, media_pb2.CallReattach(sent=common_pb2.PlaybackPosition(response_id=3, offset_us=1000)))
    agent = await asyncio.wait_for(rig.backend.next_session(), 5)
    assert not agent.start.HasField("attach")
    assert agent.start.call_secret == SECRET
    assert REATTACHES.labels("not_found").value == before + 1
    rig.edge.put(media_pb2.CallRequest(stop=common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP)))
    await rig.finish(task)


async def test_a_wrong_secret_cannot_take_the_call_over(rig) -> None:
    first, agent = await _mid_reply(rig)
    rig.edge.close()
    await rig.finish(first)
    await rig.until(lambda: len(rig.converse.holds) == 1, "held")
    before = REATTACHES.labels("denied").value
    media2 = another_media(rig)
    second = start(media2, media_pb2.CallReattach(), secret=b"\x00" * 32)
    fresh = await asyncio.wait_for(rig.backend.next_session(), 5)  # a conversation of its own
    assert fresh is not agent
    assert REATTACHES.labels("denied").value == before + 1
    assert len(rig.converse.holds) == 1  # the held one waits for its owner
    media2.edge.put(
        media_pb2.CallRequest(stop=common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))
    )
    await media2.finish(second)
