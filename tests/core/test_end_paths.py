"""Every end path closes every piece in every service, in each ordering of the messages that race.

The three cores run together in this process (harness/call_chain.py): the edge's MediaStreamSession
on a fake Twilio socket, media's MediaServicer and CallSession, the agent's ConverseServicer on a
scripted backend, joined by the production multiplexed streams over in-memory gRPC streams, on a
virtual clock. After each end path: no call in media, no session in the agent, the backend session
closed, no task of the call left in any service (only the two shared streams' own tasks remain).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from harness.call_chain import SHARED_STREAM_TASKS, Chain, build_chain
from harness.core_fakes import FakeTwilioSocket, ScriptedSession


@pytest.fixture
async def chain() -> AsyncIterator[Chain]:
    before = asyncio.all_tasks()
    built = build_chain()
    built.before = before  # type: ignore[attr-defined]
    yield built
    await built.aclose()


async def _talking(chain: Chain) -> tuple[FakeTwilioSocket, asyncio.Task, ScriptedSession]:
    """A call whose agent is ready and has greeted the caller (the greeting fully heard)."""
    socket, task = chain.call()
    socket.connect()
    agent = await chain.run_until(chain.backend.next_session(), "the agent session opens")
    agent.say(400)
    await chain.until(lambda: socket.heard_bytes() >= 400 * 8, "the greeting is heard")
    return socket, task, agent


async def _ended(chain: Chain, task: asyncio.Task) -> None:
    await chain.run_until(task, "the edge session ends")
    await chain.until(lambda: not chain.leftovers(), "every service lets go of the call")


def assert_all_closed(chain: Chain) -> None:
    assert chain.leftovers() == []
    assert chain.live_tasks(chain.before) == sorted(SHARED_STREAM_TASKS * 2)  # type: ignore[attr-defined]


async def test_agent_end_call_while_twilio_closes_the_socket_as_the_rest_hang_up_lands(chain) -> None:
    socket, task, agent = await _talking(chain)
    chain.control.on_action = lambda what: socket.drop()
    agent.say(300)
    agent.hang_up("end_call")
    await _ended(chain, task)
    assert chain.control.actions == [("hangup", socket.call_sid)]
    assert agent.closed_with is not None
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
    assert agent.closed_with is not None
    assert_all_closed(chain)
