"""media's core, on a virtual clock: one CallSession (and the MediaServicer around it) between a
feed of the edge's requests and the agent service's real servicer on a scripted backend, over the
production multiplexed stream in memory. Turn flow, marks, clear, the agent's interruption,
hang-up after the goodbye, and every way the call ends; each test runs in milliseconds."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from harness.call_chain import media_settings
from harness.core_fakes import FRAME, ScriptedBackend, ScriptedSession
from harness.feeds import Feed
from harness.inmemory_grpc import InMemoryChannel, converse_client
from harness.virtual_clock import VirtualClock

from voicebridge.agent.converse import ConverseServicer
from voicebridge.media.call import GOODBYE, CallSession
from voicebridge.media.config import PlayoutConfig
from voicebridge.media.servicer import MediaServicer
from voicebridge.sim.loadgen import speech_like
from voicebridge.v1 import agent_pb2, common_pb2, media_pb2

CALL = common_pb2.CallInfo(call_sid="CA0001", stream_sid="MZ0001")


@dataclass
class Rig:
    clock: VirtualClock
    backend: ScriptedBackend
    converse: ConverseServicer
    agent_calls: object
    channel: InMemoryChannel
    edge: Feed = field(default_factory=Feed)
    out: list[media_pb2.CallResponse] = field(default_factory=list)
    echo_marks: bool = True

    async def emit(self, message: media_pb2.CallResponse) -> None:
        self.out.append(message)
        if self.echo_marks and message.audio.mark:
            self.edge.put(media_pb2.CallRequest(mark=media_pb2.MarkEcho(name=message.audio.mark)))

    def kinds(self) -> list[str]:
        return [m.WhichOneof("event") for m in self.out]

    def played_bytes(self) -> int:
        return sum(len(m.audio.payload) for m in self.out if m.WhichOneof("event") == "audio")

    async def until(self, condition, what: str, virtual_s: float = 30.0) -> None:
        end = self.clock.now() + virtual_s
        await self.clock.settle()
        while not condition():
            assert self.clock.now() < end, f"not true after {virtual_s} virtual seconds: {what}"
            await self.clock.advance(0.01)

    async def finish(self, task: asyncio.Task, virtual_s: float = 30.0):
        await self.until(task.done, "the call ends", virtual_s)
        return task.result()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    backend = ScriptedBackend()
    converse = ConverseServicer(backend)
    channel = InMemoryChannel()
    agent_calls = converse_client(channel, converse.ConverseMany, converse.Converse)
    built = Rig(VirtualClock(), backend, converse, agent_calls, channel)
    yield built
    await agent_calls.aclose()
    await channel.aclose()


def _start(rig: Rig, **env: str) -> asyncio.Task:
    session = CallSession(media_settings(**env), rig.agent_calls, rig.emit, rig.clock)
    rig.edge.put(media_pb2.CallRequest(start=media_pb2.CallStart(call=CALL)))
    return asyncio.create_task(session.run(rig.edge))


async def _ready(rig: Rig, **env: str) -> tuple[asyncio.Task, ScriptedSession]:
    task = _start(rig, **env)
    agent = await asyncio.wait_for(rig.backend.next_session(), 5)
    return task, agent


def _speak(rig: Rig, ms: int, start_ms: int = 0) -> None:
    audio = speech_like(ms / 1000)
    for i, offset in enumerate(range(0, len(audio), FRAME)):
        rig.edge.put(
            media_pb2.CallRequest(
                audio=media_pb2.CallerAudio(
                    payload=audio[offset : offset + FRAME], timestamp_ms=start_ms + 20 * i
                )
            )
        )


def _silence(rig: Rig, ms: int, start_ms: int) -> None:
    for i in range(ms // 20):
        rig.edge.put(
            media_pb2.CallRequest(
                audio=media_pb2.CallerAudio(payload=b"\xff" * FRAME, timestamp_ms=start_ms + 20 * i)
            )
        )


# -- turn flow ---------------------------------------------------------------------------------------


async def test_caller_audio_and_voice_activity_reach_the_agent_in_its_format(rig) -> None:
    task, agent = await _ready(rig)
    _speak(rig, 600)
    _silence(rig, 800, 600)
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
    task, agent = await _ready(rig)
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
    task, agent = await _ready(rig)
    rig.edge.put(media_pb2.CallRequest(dtmf=common_pb2.DtmfDigit(digit="7")))
    await rig.until(lambda: "dtmf" in agent.received_kinds(), "the digit")
    assert [r.dtmf.digit for r in agent.received if r.WhichOneof("event") == "dtmf"] == ["7"]
    rig.edge.close()
    await rig.finish(task)


# -- clear and interruption --------------------------------------------------------------------------


async def test_agent_interruption_clears_once_and_drops_the_rest_of_that_reply(rig) -> None:
    task, agent = await _ready(rig)
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
    task, agent = await _ready(rig)
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
    task, agent = await _ready(rig)
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
    task, agent = await _ready(rig)
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
    task, agent = await _ready(rig)
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
    task, agent = await _ready(rig)
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
    task, agent = await _ready(rig, BARGE_IN="true")
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
    task, agent = await _ready(rig, BARGE_IN="true")
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


def _transcript(agent: ScriptedSession, role: int, text: str, response_id: int = 0) -> None:
    turn = common_pb2.Transcript(role=role, text=text, final=True, response_id=response_id)
    agent._next.put_nowait(agent_pb2.ConverseResponse(transcript=turn))


def _kill_agent(rig: Rig) -> None:
    """The agent process dies: every stream to it ends at once, with no end message."""
    for call in rig.channel.open_streams():
        call.task.cancel()


async def test_an_agent_lost_mid_call_is_replaced_by_a_session_given_the_call_so_far(rig) -> None:
    task, agent = await _ready(rig)
    greeting = agent.say(500)
    _transcript(agent, common_pb2.Transcript.ROLE_AGENT, "Hello, how can I help?", greeting)
    _transcript(agent, common_pb2.Transcript.ROLE_CALLER, "Where is my parcel?")
    _transcript(agent, common_pb2.Transcript.ROLE_AGENT, "Let me look.", greeting + 1)  # its audio never came
    await rig.until(lambda: rig.played_bytes() == 500 * 8, "the greeting played")
    _kill_agent(rig)
    await rig.until(lambda: len(rig.backend.sessions) == 2, "a new agent session")
    second = rig.backend.sessions[1]
    resume = second.start.resume
    assert [(t.role, t.text) for t in resume.turns] == [
        (common_pb2.Transcript.ROLE_AGENT, "Hello, how can I help?"),
        (
            common_pb2.Transcript.ROLE_CALLER,
            "Where is my parcel?",
        ),  # the reply the caller never heard: left out
    ]
    assert resume.response_floor == greeting
    assert second.start.call == CALL
    second._response_id = resume.response_floor  # a real backend numbers above the floor
    second.say(300)
    await rig.until(lambda: rig.played_bytes() == 800 * 8, "the new session's reply played")
    _speak(rig, 200, 2000)
    await rig.until(lambda: "audio" in second.received_kinds(), "caller audio reaches the new session")
    assert not task.done()  # the call went on
    rig.edge.close()
    assert (await rig.finish(task)).reason == common_pb2.END_REASON_CALLER_HANGUP
    assert rig.backend.open_sessions() == []


async def test_without_agent_resume_a_lost_agent_ends_the_call(rig) -> None:
    task, agent = await _ready(rig, AGENT_RESUME="false")
    agent.say(200)
    await rig.until(lambda: rig.played_bytes() == 200 * 8, "the greeting played")
    _kill_agent(rig)
    end = await rig.finish(task)
    assert end.reason == common_pb2.END_REASON_AGENT_ERROR
    assert len(rig.backend.sessions) == 1


async def test_an_agent_lost_three_times_ends_the_call(rig) -> None:
    task, _first = await _ready(rig)
    for n in range(1, 3):
        await rig.until(
            lambda n=n: len(rig.backend.sessions) == n and rig.backend.sessions[-1].running, "a session"
        )
        _kill_agent(rig)
    await rig.until(
        lambda: len(rig.backend.sessions) == 3 and rig.backend.sessions[-1].running, "a third session"
    )
    _kill_agent(rig)
    end = await rig.finish(task)
    assert end.reason == common_pb2.END_REASON_AGENT_ERROR
    assert len(rig.backend.sessions) == 3  # two new sessions at most
