"""Every end path closes every piece in every service, in each ordering of the messages that race.

The three cores run together in this process (harness/call_chain.py): the edge's MediaStreamSession
on a fake Twilio socket, media's MediaServicer and CallSession, the agent's ConverseServicer on a
scripted backend, joined by the production multiplexed streams (or one stream per call) over
in-memory gRPC streams, on a virtual clock. After each end path: no call in media, no session in the
agent, the backend session closed, and no task of the call left in any service (only the shared
streams' own tasks remain). Valves on the in-memory streams hold what one side sends and release it at
once, which makes the racing orderings explicit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from harness.call_chain import SHARED_STREAM_TASKS, Chain, build_chain
from harness.core_fakes import FakeTwilioSocket, ScriptedSession, speech

from voicebridge.v1 import common_pb2

GREETING_MS = 400


@pytest.fixture(params=[True, False], ids=["multiplexed", "stream-per-call"])
async def chain(request: pytest.FixtureRequest) -> AsyncIterator[Chain]:
    before = asyncio.all_tasks()
    built = build_chain(multiplex=request.param)
    built.before = before  # type: ignore[attr-defined]
    built.multiplexed = request.param  # type: ignore[attr-defined]
    yield built
    await built.aclose()


async def _talking(chain: Chain) -> tuple[FakeTwilioSocket, asyncio.Task, ScriptedSession]:
    """A call whose agent is ready and has greeted the caller (the greeting fully heard)."""
    socket, task = chain.call()
    socket.connect()
    agent = await chain.run_until(chain.backend.next_session(), "the agent session opens")
    agent.say(GREETING_MS)
    await chain.until(lambda: socket.heard_bytes() >= GREETING_MS * 8, "the greeting is heard")
    return socket, task, agent


async def _ended(chain: Chain, task: asyncio.Task) -> None:
    await chain.run_until(task, "the edge session ends")
    await chain.until(lambda: not chain.leftovers(), "every service lets go of the call")


def assert_all_closed(chain: Chain) -> None:
    assert chain.leftovers() == []
    shared = sorted(SHARED_STREAM_TASKS * 2) if chain.multiplexed else []  # type: ignore[attr-defined]
    assert chain.live_tasks(chain.before) == shared  # type: ignore[attr-defined]


def _mid_reply(chain: Chain, socket: FakeTwilioSocket, agent: ScriptedSession):
    """The agent is in the middle of a long reply: media is still sending audio to the edge."""
    before = socket.heard_bytes()
    agent.say(3000)
    return chain.until(lambda: socket.heard_bytes() >= before + 800, "the reply is playing")


# -- the caller ends the call -----------------------------------------------------------------------


async def test_caller_stop_while_media_is_still_sending_audio(chain) -> None:
    socket, task, agent = await _talking(chain)
    await _mid_reply(chain, socket, agent)
    socket.stop()
    socket.drop()
    await _ended(chain, task)
    assert agent.closed_with.reason == common_pb2.END_REASON_CALLER_HANGUP
    assert chain.control.actions == []
    assert_all_closed(chain)


async def test_caller_socket_closes_without_stop_while_the_caller_speaks(chain) -> None:
    socket, task, agent = await _talking(chain)
    for i, offset in enumerate(range(0, 8 * 400, 160)):
        socket.media(speech(400)[offset : offset + 160], 20 * i)
    await chain.until(lambda: agent.got_request.is_set(), "caller audio reaches the agent")
    socket.drop(code=1006)
    await _ended(chain, task)
    assert agent.closed_with.reason == common_pb2.END_REASON_CALLER_HANGUP
    assert_all_closed(chain)


async def test_caller_stop_crosses_the_agents_end_in_flight(chain) -> None:
    """The caller hangs up while the agent's end is on its way to media (held, then released)."""
    socket, task, agent = await _talking(chain)
    chain.media_to_agent.responses.shut()
    agent.hang_up("end_call")
    agent.end(common_pb2.END_REASON_AGENT_ENDED, "ElevenLabs closed 1000")
    await chain.clock.advance(0.05)
    socket.stop()
    socket.drop()
    await chain.clock.advance(0.05)
    chain.media_to_agent.responses.release()
    await _ended(chain, task)
    assert chain.control.actions == []  # the caller had gone: no REST hang-up for a call already over
    assert_all_closed(chain)


# -- the agent ends the call ------------------------------------------------------------------------


async def test_agent_end_call_while_twilio_closes_the_socket_as_the_rest_hang_up_lands(chain) -> None:
    socket, task, agent = await _talking(chain)
    chain.control.on_action = lambda what: socket.drop()
    agent.say(300)
    agent.hang_up("end_call")
    await _ended(chain, task)
    assert chain.control.actions == [("hangup", socket.call_sid)]
    assert agent.closed_with.reason == common_pb2.END_REASON_AGENT_ENDED
    assert socket.heard_bytes() >= (GREETING_MS + 300) * 8  # the goodbye was heard first
    assert agent.closed
    assert_all_closed(chain)


async def test_agent_end_call_whose_stop_and_cancel_reach_media_together(chain) -> None:
    """The race of issue 16: everything the edge sends after its REST hang-up arrives at media at once."""
    socket, task, agent = await _talking(chain)

    def rest_hang_up_landed(what: str) -> None:
        chain.edge_to_media.requests.shut()
        socket.drop()

    chain.control.on_action = rest_hang_up_landed
    agent.hang_up("end_call")
    await chain.until(lambda: bool(chain.control.actions), "the REST hang-up")
    await chain.clock.advance(0.2)  # the edge sends what it sends after the hang-up; all of it is held
    chain.edge_to_media.requests.release()
    await _ended(chain, task)
    assert agent.closed
    assert_all_closed(chain)


async def test_agent_end_call_with_the_socket_closed_before_the_rest_hang_up_returns(chain) -> None:
    socket, task, agent = await _talking(chain)
    chain.control.gate = asyncio.Event()  # a slow REST API
    agent.hang_up("end_call")
    await chain.clock.advance(0.2)
    socket.drop()  # Twilio ended the stream before the API answered
    await chain.clock.advance(0.2)
    chain.control.gate.set()
    await _ended(chain, task)
    assert chain.control.actions == [("hangup", socket.call_sid)]
    assert_all_closed(chain)


async def test_agent_end_call_then_elevenlabs_closes_before_the_edge_hangs_up(chain) -> None:
    socket, task, agent = await _talking(chain)
    chain.control.on_action = lambda what: socket.drop()
    agent.hang_up("end_call")
    agent.end(common_pb2.END_REASON_AGENT_ENDED, "ElevenLabs closed 1000")
    await _ended(chain, task)
    assert chain.control.actions == [("hangup", socket.call_sid)]  # once, not once per end message
    assert_all_closed(chain)


async def test_caller_stop_while_media_waits_for_the_goodbye_to_play(chain) -> None:
    socket, task, agent = await _talking(chain)
    agent.say(2000)
    agent.hang_up("end_call")
    await chain.clock.advance(0.3)
    socket.stop()
    socket.drop()
    await _ended(chain, task)
    assert chain.control.actions == []
    assert agent.closed_with.reason == common_pb2.END_REASON_CALLER_HANGUP
    assert_all_closed(chain)


async def test_transfer_with_the_socket_closed_as_it_lands(chain) -> None:
    socket, task, agent = await _talking(chain)
    chain.control.on_action = lambda what: socket.drop()
    agent.transfer("+15557770000")
    await _ended(chain, task)
    assert chain.control.actions == [("transfer +15557770000", socket.call_sid)]
    assert agent.closed_with.reason == common_pb2.END_REASON_TRANSFERRED
    assert_all_closed(chain)


async def test_elevenlabs_closes_the_conversation(chain) -> None:
    socket, task, agent = await _talking(chain)
    chain.control.on_action = lambda what: socket.drop()
    agent.end(common_pb2.END_REASON_AGENT_ENDED, "agent ended the conversation")
    await _ended(chain, task)
    assert chain.control.actions == [("hangup", socket.call_sid)]
    assert_all_closed(chain)


# -- errors ------------------------------------------------------------------------------------------


async def test_agent_backend_fails_mid_call(chain) -> None:
    socket, task, agent = await _talking(chain)
    chain.control.on_action = lambda what: socket.drop()
    agent.fail(RuntimeError("backend broke"))
    await _ended(chain, task)
    assert chain.control.actions == [("hangup", socket.call_sid)]
    assert agent.closed
    assert_all_closed(chain)


async def test_agent_backend_fails_on_what_media_sends(chain) -> None:
    socket, task, agent = await _talking(chain)
    chain.control.on_action = lambda what: socket.drop()
    agent.fail_on_handle = RuntimeError("cannot take this")
    socket.dtmf("5")
    await _ended(chain, task)
    assert agent.closed_with.reason == common_pb2.END_REASON_AGENT_ERROR
    assert_all_closed(chain)


async def test_malformed_twilio_message_mid_call(chain) -> None:
    socket, task, agent = await _talking(chain)
    await _mid_reply(chain, socket, agent)
    socket.raw(json.dumps({"event": "media", "streamSid": socket.stream_sid}))
    await _ended(chain, task)
    assert socket.closed_with is not None
    assert socket.closed_with[0] == 1002
    assert agent.closed_with.reason == common_pb2.END_REASON_PROTOCOL_ERROR
    assert_all_closed(chain)


async def test_every_path_in_turn_on_the_same_processes(chain) -> None:
    """Twenty calls on the same shared streams, each ended another way: nothing accumulates."""
    for i in range(20):
        socket, task, agent = await _talking(chain)
        chain.control.on_action = lambda what, s=socket: s.drop()
        match i % 4:
            case 0:
                socket.stop()
                socket.drop()
            case 1:
                agent.hang_up("end_call")
            case 2:
                agent.transfer("+15557770000")
            case 3:
                agent.end(common_pb2.END_REASON_AGENT_ENDED, "closed")
        await _ended(chain, task)
        assert_all_closed(chain)
