"""media's core, on a virtual clock: one CallSession (and the MediaServicer around it) between a
feed of the edge's requests and the agent service's real servicer on a scripted backend, over the
production multiplexed stream in memory. Turn flow, marks, clear, the agent's interruption,
hang-up after the goodbye, and every way the call ends; each test runs in milliseconds. An agent
lost mid-call: test_call_agent_restart.py."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest
from harness.call_chain import media_settings
from harness.call_rig import CALL, Rig, call_rig, ready_call, silence, speak
from harness.core_fakes import FRAME

from voicebridge.media.call import GOODBYE, CallSession
from voicebridge.media.config import PlayoutConfig
from voicebridge.media.servicer import MediaServicer
from voicebridge.sim.loadgen import speech_like
from voicebridge.v1 import agent_pb2, common_pb2, media_pb2


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with call_rig() as built:
        yield built


async def test_caller_audio_and_voice_activity_reach_the_agent_in_its_format(rig) -> None:
    task, agent = await ready_call(rig)
    speak(rig, 600)
    silence(rig, 800, 600)
    await rig.until(lambda: agent.received_kinds().count("audio") == 70, "the caller's audio")
    kinds = agent.received_kinds()
    activities = [r.activity.kind for r in agent.received if r.WhichOneof("event") == "activity"]
    assert activities == [
        agent_pb2.VoiceActivity.KIND_SPEECH_STARTED,
        agent_pb2.VoiceActivity.KIND_SPEECH_ENDED,
    ]
    audio = [r.audio for r in agent.received if r.WhichOneof("event") == "audio"]
    assert kinds.count("audio") == 70  # every 20 ms frame, none lost
    assert all(a.format.encoding == common_pb2.AUDIO_ENCODING_MULAW for a in audio)
    rig.edge.close()
    assert (await rig.finish(task)).reason == common_pb2.END_REASON_CALLER_HANGUP


async def test_agent_reply_is_paced_in_real_time_with_marks_the_edge_echoes(rig) -> None:
    task, agent = await ready_call(rig)
    agent.say(1000)
    await rig.clock.advance(0.5)
    # 60 ms of lead, then real time: about 560 ms sent after 500 ms, not the whole second at once.
    assert 500 * 8 <= rig.played_bytes() <= 600 * 8
    await rig.clock.advance(1.0)
    assert rig.played_bytes() == 1000 * 8
    marks = [m.audio.mark for m in rig.out if m.audio.mark]
    # At least every 100 ms of audio, on frame boundaries: with the default 60 ms frames, every 120 ms.
    frame_ms = PlayoutConfig().frame_ms
    assert len(marks) >= 1000 // (math.ceil(100 / frame_ms) * frame_ms)
    rig.edge.close()
    await rig.finish(task)


async def test_dtmf_reaches_the_agent(rig) -> None:
    task, agent = await ready_call(rig)
    rig.edge.put(media_pb2.CallRequest(dtmf=common_pb2.DtmfDigit(digit="7")))
    await rig.until(lambda: "dtmf" in agent.received_kinds(), "the digit")
    assert [r.dtmf.digit for r in agent.received if r.WhichOneof("event") == "dtmf"] == ["7"]
    rig.edge.close()
    await rig.finish(task)


# -- clear and interruption --------------------------------------------------------------------------


async def test_agent_interruption_clears_once_and_drops_the_rest_of_that_reply(rig) -> None:
    task, agent = await ready_call(rig)
    agent.say(3000)
    await rig.clock.advance(0.5)
    agent.interrupt()
    await rig.until(lambda: "clear" in rig.kinds(), "the clear")
    played = rig.played_bytes()
    await rig.clock.advance(3.0)
    assert rig.kinds().count("clear") == 1
    assert rig.played_bytes() == played  # nothing of the interrupted reply after the clear
    agent.say(400)  # the next reply is heard in full
    await rig.clock.advance(1.0)
    assert rig.played_bytes() == played + 400 * 8
    rig.edge.close()
    await rig.finish(task)


# -- hang-up and teardown ----------------------------------------------------------------------------


async def test_hang_up_is_sent_only_after_the_last_mark_comes_back(rig) -> None:
    rig.echo_marks = False
    task, agent = await ready_call(rig)
    agent.say(500)
    agent.hang_up("end_call")
    await rig.clock.advance(2.0)
    assert "hangup" not in rig.kinds()  # the goodbye has not been heard yet
    for message in [m for m in rig.out if m.audio.mark]:
        rig.edge.put(media_pb2.CallRequest(mark=media_pb2.MarkEcho(name=message.audio.mark)))
    await rig.until(lambda: "hangup" in rig.kinds(), "the hang-up")
    assert rig.kinds().index("hangup") > max(i for i, k in enumerate(rig.kinds()) if k == "audio")
    rig.edge.put(media_pb2.CallRequest(stop=common_pb2.CallEnd(reason=common_pb2.END_REASON_AGENT_ENDED)))
    end = await rig.finish(task)
    assert end.reason == common_pb2.END_REASON_AGENT_ENDED
    assert agent.closed_with.reason == common_pb2.END_REASON_AGENT_ENDED


async def test_a_cancelled_call_still_ends_the_agent_session(rig) -> None:
    """The edge cancels its stream (or it is lost): the agent's session must not outlive the call."""
    task, agent = await ready_call(rig)
    agent.say(2000)
    await rig.clock.advance(0.3)
    task.cancel()
    await rig.until(lambda: agent.closed and rig.converse.sessions_in_progress == 0, "the agent lets go")
    assert task.cancelled()
    assert rig.channel.open_streams() == [rig.channel.calls[0]]  # only the shared stream is left


# -- every end reason --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reason",
    [
        common_pb2.END_REASON_CALLER_HANGUP,
        common_pb2.END_REASON_AGENT_ENDED,
        common_pb2.END_REASON_TRANSFERRED,
        common_pb2.END_REASON_PROTOCOL_ERROR,
        common_pb2.END_REASON_UNAVAILABLE,
    ],
    ids=common_pb2.EndReason.Name,
)
async def test_the_edges_stop_reason_ends_the_call_and_reaches_the_agent(rig, reason) -> None:
    task, agent = await ready_call(rig)
    rig.edge.put(media_pb2.CallRequest(stop=common_pb2.CallEnd(reason=reason, detail="edge says")))
    end = await rig.finish(task)
    assert end.reason == reason
    assert agent.closed_with.reason == reason


@pytest.mark.parametrize(
    "reason",
    [
        common_pb2.END_REASON_AGENT_ENDED,
        common_pb2.END_REASON_AGENT_ERROR,
        common_pb2.END_REASON_PROTOCOL_ERROR,
    ],
    ids=common_pb2.EndReason.Name,
)
async def test_the_agents_end_reason_is_handed_to_the_edge_with_a_hang_up(rig, reason) -> None:
    task, agent = await ready_call(rig)
    agent.end(reason, "backend says")
    end = await rig.finish(task)
    assert end.reason == reason
    (hangup,) = [m.hangup for m in rig.out if m.WhichOneof("event") == "hangup"]
    assert hangup.end_reason == reason


async def test_a_first_message_other_than_start_is_a_protocol_error(rig) -> None:
    session = CallSession(media_settings(), rig.agent_calls, rig.emit, rig.clock)
    rig.edge.put(media_pb2.CallRequest(dtmf=common_pb2.DtmfDigit(digit="1")))
    end = await session.run(rig.edge)
    assert end.reason == common_pb2.END_REASON_PROTOCOL_ERROR
    assert rig.backend.sessions == []  # no agent work for a call that never started


async def test_the_edge_closing_its_stream_is_a_caller_hang_up(rig) -> None:
    task, agent = await ready_call(rig)
    rig.edge.close()
    assert (await rig.finish(task)).reason == common_pb2.END_REASON_CALLER_HANGUP
    assert agent.closed


async def test_service_shutdown_past_its_deadline_plays_the_goodbye_then_hangs_up_with_shutdown(rig) -> None:
    media = MediaServicer(media_settings(), rig.agent_calls, rig.clock)
    responses = media.Call(rig.edge, None)
    rig.edge.put(media_pb2.CallRequest(start=media_pb2.CallStart(call=CALL)))
    collected: list[media_pb2.CallResponse] = []

    async def read() -> None:  # the edge's part: what media sends, marks echoed as Twilio plays them
        async for message in responses:
            collected.append(message)
            if message.audio.mark:
                rig.edge.put(media_pb2.CallRequest(mark=media_pb2.MarkEcho(name=message.audio.mark)))

    reader = asyncio.create_task(read())
    agent = await asyncio.wait_for(rig.backend.next_session(), 5)
    assert media.calls_in_progress == 1
    drained = asyncio.create_task(media.drain(deadline_s=0.0))
    await rig.until(drained.done, "drain")
    await reader
    played = b"".join(m.audio.payload for m in collected if m.WhichOneof("event") == "audio")
    assert played == GOODBYE  # all of it, before the hang-up
    kinds = [m.WhichOneof("event") for m in collected]
    assert kinds[-2:] == ["hangup", "end"]
    assert collected[-2].hangup.end_reason == common_pb2.END_REASON_SHUTDOWN
    assert collected[-1].end.reason == common_pb2.END_REASON_SHUTDOWN
    assert agent.closed_with.reason == common_pb2.END_REASON_SHUTDOWN
    assert media.calls_in_progress == 0


# -- local barge-in (through CallSession's public behaviour only) ------------------------------------


def _speak_live(rig: Rig, ms: int, start_ms: int, then_silence_ms: int = 1000, quiet_before_ms: int = 0):
    """The caller is quiet, talks in real time, then is quiet again (Twilio sends frames all along):
    one 20 ms frame per 20 ms of virtual time, the speech from `start_ms`."""
    audio = b"\xff" * (8 * quiet_before_ms) + speech_like(ms / 1000) + b"\xff" * (8 * then_silence_ms)
    start_ms -= quiet_before_ms

    async def talk() -> None:
        for i, offset in enumerate(range(0, len(audio), FRAME)):
            rig.edge.put(
                media_pb2.CallRequest(
                    audio=media_pb2.CallerAudio(
                        payload=audio[offset : offset + FRAME], timestamp_ms=start_ms + 20 * i
                    )
                )
            )
            await rig.clock.sleep_until(rig.clock.now() + 0.02)

    return asyncio.create_task(talk())


async def test_caller_talking_over_the_agent_clears_then_tells_the_agent_what_was_heard(rig) -> None:
    task, agent = await ready_call(rig, BARGE_IN="true")
    agent.say(4000, pattern=b"\x70\xf0")  # quieter than the caller: not taken for its echo
    # the line is open from the start (a second of quiet), then the caller speaks
    talking = _speak_live(rig, 1200, 1000, quiet_before_ms=1000)
    await rig.until(lambda: "clear" in rig.kinds(), "the clear")
    played = rig.played_bytes()
    await rig.until(lambda: "interrupted" in agent.received_kinds(), "the agent is told")
    await rig.until(talking.done, "the caller finishes")
    await rig.clock.advance(3.0)
    assert rig.played_bytes() == played  # the rest of the interrupted reply never resumes
    (interrupted,) = [r.interrupted for r in agent.received if r.WhichOneof("event") == "interrupted"]
    assert 900 <= interrupted.heard_ms <= played / 8  # about the second heard before the caller cut in
    rig.edge.close()
    await rig.finish(task)


async def test_a_short_backchannel_pauses_the_reply_then_it_resumes_and_the_agent_is_not_told(rig) -> None:
    task, agent = await ready_call(rig, BARGE_IN="true")
    agent.say(4000, pattern=b"\x70\xf0")
    # the line is open from the start (a second of quiet), then the caller speaks
    talking = _speak_live(rig, 120, 1000, quiet_before_ms=1000)  # "mm-hm"
    await rig.until(lambda: "clear" in rig.kinds(), "the pause")
    paused_at = rig.played_bytes()
    await rig.until(talking.done, "the caller finishes")
    await rig.clock.advance(1.0)
    assert rig.played_bytes() > paused_at  # the reply resumed
    assert "interrupted" not in agent.received_kinds()
    await rig.clock.advance(4.0)
    assert rig.played_bytes() >= 4000 * 8 - 200 * 8  # all of it heard but what played while paused
    rig.edge.close()
    await rig.finish(task)


# -- the agent's process dies ----------------------------------------------------------------------
