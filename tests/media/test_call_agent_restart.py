"""media's CallSession on a virtual clock when the agent's process dies mid-call: a new agent session given
the call so far (SessionStart.resume), at most twice, and never when AGENT_RESUME is off; the caller's
words the lost session never transcribed are replayed to the new one, a transcribed turn is not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from harness.call_rig import CALL, Rig, call_rig, ready_call, silence, speak
from harness.core_fakes import ScriptedSession

from voicebridge.v1 import agent_pb2, common_pb2


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with call_rig() as built:
        yield built


def _transcript(agent: ScriptedSession, role: int, text: str, response_id: int = 0) -> None:
    turn = common_pb2.Transcript(role=role, text=text, final=True, response_id=response_id)
    agent._next.put_nowait(agent_pb2.ConverseResponse(transcript=turn))


def _kill_agent(rig: Rig) -> None:
    """The agent process dies: every stream to it ends at once, with no end message."""
    for call in rig.channel.open_streams():
        call.task.cancel()


async def test_an_agent_lost_mid_call_is_replaced_by_a_session_given_the_call_so_far(rig) -> None:
    task, agent = await ready_call(rig)
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
    speak(rig, 200, 2000)
    await rig.until(lambda: "audio" in second.received_kinds(), "caller audio reaches the new session")
    assert not task.done()  # the call went on
    rig.edge.close()
    assert (await rig.finish(task)).reason == common_pb2.END_REASON_CALLER_HANGUP
    assert rig.backend.open_sessions() == []


def _audio(agent: ScriptedSession) -> list[bytes]:
    return [r.audio.data for r in agent.received if r.WhichOneof("event") == "audio"]


async def test_words_the_lost_agent_never_answered_are_replayed_to_the_new_session(rig) -> None:
    task, first = await ready_call(rig)
    first.say(300)
    await rig.until(lambda: rig.played_bytes() == 300 * 8, "the greeting played")
    speak(rig, 400, 1000)  # the caller's words: sent to the agent, which dies before transcribing them
    await rig.until(lambda: len(_audio(first)) == 20, "the words reached the first session")
    words = _audio(first)
    _kill_agent(rig)
    await rig.until(lambda: len(rig.backend.sessions) == 2, "a new agent session")
    second = rig.backend.sessions[1]
    silence(rig, 200, 1400)  # the caller goes on after the failure: live audio, after the replay
    await rig.until(lambda: len(_audio(second)) >= 30, "the replay and the live audio")
    await rig.clock.settle()
    assert second.start.HasField("resume")
    # The words first, in order, then the live audio (10 frames), each once.
    assert _audio(second)[:20] == words
    assert len(_audio(second)) == 30
    assert not task.done()
    rig.edge.close()
    assert (await rig.finish(task)).reason == common_pb2.END_REASON_CALLER_HANGUP


async def test_a_turn_the_lost_agent_transcribed_is_not_replayed(rig) -> None:
    task, first = await ready_call(rig)
    first.say(300)
    await rig.until(lambda: rig.played_bytes() == 300 * 8, "the greeting played")
    speak(rig, 400, 1000)
    await rig.until(lambda: len(_audio(first)) == 20, "the words reached the first session")
    _transcript(first, common_pb2.Transcript.ROLE_CALLER, "Where is my parcel?")  # heard as a turn
    await rig.until(lambda: "transcript" in rig.kinds(), "media saw the caller's transcript")
    _kill_agent(rig)
    await rig.until(lambda: len(rig.backend.sessions) == 2, "a new agent session")
    second = rig.backend.sessions[1]
    assert [t.text for t in second.start.resume.turns] == ["Where is my parcel?"]  # in the context
    silence(rig, 200, 1400)
    await rig.until(lambda: len(_audio(second)) >= 10, "the live audio")
    await rig.clock.settle()
    assert len(_audio(second)) == 10  # the live audio only: the turn is not replayed
    rig.edge.close()
    assert (await rig.finish(task)).reason == common_pb2.END_REASON_CALLER_HANGUP


async def test_without_agent_resume_a_lost_agent_ends_the_call(rig) -> None:
    task, agent = await ready_call(rig, AGENT_RESUME="false")
    agent.say(200)
    await rig.until(lambda: rig.played_bytes() == 200 * 8, "the greeting played")
    _kill_agent(rig)
    end = await rig.finish(task)
    assert end.reason == common_pb2.END_REASON_AGENT_ERROR
    assert len(rig.backend.sessions) == 1


async def test_an_agent_lost_three_times_ends_the_call(rig) -> None:
    task, _first = await ready_call(rig)
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
