"""media's CallSession on a virtual clock when the agent's process dies mid-call: a new agent session given
the call so far (SessionStart.resume), at most twice, and never when AGENT_RESUME is off."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from harness.call_rig import CALL, Rig, call_rig, ready_call, speak
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
