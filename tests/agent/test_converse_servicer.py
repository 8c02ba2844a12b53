"""The agent service's core: ConverseServicer between a feed of media's requests and a scripted
backend, with no gRPC server. Ready first, the backend's events in order, refusals spoken, and the
session closed on every way a conversation ends. No clock is involved: everything is an event."""

from __future__ import annotations

import asyncio

import pytest
from harness.core_fakes import ULAW_8K, ScriptedBackend
from harness.feeds import Feed

from voicebridge.agent.backends.base import SessionRefused
from voicebridge.agent.converse import ConverseServicer
from voicebridge.agent.prompts import load_prompt
from voicebridge.v1 import agent_pb2, common_pb2

START = agent_pb2.SessionStart(
    call=common_pb2.CallInfo(call_sid="CA0001"), input_formats=[ULAW_8K], output_formats=[ULAW_8K]
)


class Conversation:
    def __init__(self, servicer: ConverseServicer) -> None:
        self.media = Feed()
        self.media.put(agent_pb2.ConverseRequest(start=START))
        self.responses: list[agent_pb2.ConverseResponse] = []
        self._changed = asyncio.Event()
        self._stream = servicer.Converse(self.media, None)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._stream:
            self.responses.append(message)
            self._changed.set()

    def kinds(self) -> list[str]:
        return [r.WhichOneof("event") for r in self.responses]

    async def wait_for(self, kind: str) -> agent_pb2.ConverseResponse:
        async with asyncio.timeout(5):  # failure detector
            while kind not in self.kinds():
                self._changed.clear()
                if self.task.done():
                    raise AssertionError(f"stream ended without {kind}: {self.kinds()}")
                await self._changed.wait()
        return self.responses[self.kinds().index(kind)]

    async def ended(self) -> common_pb2.CallEnd:
        await asyncio.wait_for(self.task, 5)
        assert self.kinds()[-1] == "end"
        return self.responses[-1].end


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def servicer(backend: ScriptedBackend) -> ConverseServicer:
    return ConverseServicer(backend)


async def _open(servicer: ConverseServicer, backend: ScriptedBackend):
    conv = Conversation(servicer)
    agent = await asyncio.wait_for(backend.next_session(), 5)
    await conv.wait_for("ready")
    return conv, agent


async def test_ready_comes_first_then_the_backends_events_in_order(servicer, backend) -> None:
    conv, agent = await _open(servicer, backend)
    agent.say(100)
    agent.interrupt()
    agent.hang_up("bye")
    await conv.wait_for("hangup")
    assert conv.kinds() == ["ready", "audio", "audio", "audio", "audio", "audio", "interruption", "hangup"]
    assert conv.responses[0].ready.conversation_id == agent.ready.conversation_id
    conv.media.close()
    await conv.ended()


async def test_medias_messages_reach_the_session(servicer, backend) -> None:
    conv, agent = await _open(servicer, backend)
    conv.media.put(agent_pb2.ConverseRequest(dtmf=common_pb2.DtmfDigit(digit="3")))
    conv.media.put(agent_pb2.ConverseRequest(audio=agent_pb2.AudioChunk(data=b"\xff" * 160, format=ULAW_8K)))
    conv.media.put(
        agent_pb2.ConverseRequest(end=common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))
    )
    end = await conv.ended()
    assert agent.received_kinds() == ["dtmf", "audio"]
    assert end.reason == common_pb2.END_REASON_CALLER_HANGUP
    assert agent.closed_with.reason == common_pb2.END_REASON_CALLER_HANGUP


@pytest.mark.parametrize(
    "reason",
    [
        common_pb2.END_REASON_CALLER_HANGUP,
        common_pb2.END_REASON_AGENT_ENDED,
        common_pb2.END_REASON_TRANSFERRED,
    ],
    ids=common_pb2.EndReason.Name,
)
async def test_medias_end_closes_the_session_with_its_reason(servicer, backend, reason) -> None:
    conv, agent = await _open(servicer, backend)
    conv.media.put(agent_pb2.ConverseRequest(end=common_pb2.CallEnd(reason=reason, detail="media")))
    assert (await conv.ended()).reason == reason
    assert agent.closed_with.reason == reason
    assert servicer.sessions_in_progress == 0


async def test_media_half_closing_without_end_is_a_caller_hang_up(servicer, backend) -> None:
    conv, agent = await _open(servicer, backend)
    conv.media.close()
    assert (await conv.ended()).reason == common_pb2.END_REASON_CALLER_HANGUP
    assert agent.closed


async def test_the_backend_ending_ends_the_stream(servicer, backend) -> None:
    conv, agent = await _open(servicer, backend)
    agent.end(common_pb2.END_REASON_AGENT_ENDED, "ElevenLabs closed 1000")
    assert (await conv.ended()).reason == common_pb2.END_REASON_AGENT_ENDED
    assert agent.closed
    assert servicer.sessions_in_progress == 0


async def test_a_backend_failure_is_an_agent_error(servicer, backend) -> None:
    conv, agent = await _open(servicer, backend)
    agent.fail(RuntimeError("broke"))
    assert (await conv.ended()).reason == common_pb2.END_REASON_AGENT_ERROR
    assert agent.closed


async def test_a_failure_handling_medias_message_is_an_agent_error(servicer, backend) -> None:
    conv, agent = await _open(servicer, backend)
    agent.fail_on_handle = ValueError("bad")
    conv.media.put(agent_pb2.ConverseRequest(dtmf=common_pb2.DtmfDigit(digit="1")))
    assert (await conv.ended()).reason == common_pb2.END_REASON_AGENT_ERROR
    assert agent.closed_with.reason == common_pb2.END_REASON_AGENT_ERROR


async def test_media_going_away_closes_the_session(servicer, backend) -> None:
    """The stream is cancelled (media vanished, or cancelled the call): the session still closes."""
    conv, agent = await _open(servicer, backend)
    conv.task.cancel()
    await asyncio.gather(conv.task, return_exceptions=True)
    await conv._stream.aclose()  # what grpc.aio does with a cancelled handler's generator
    assert agent.closed
    assert servicer.sessions_in_progress == 0


async def test_a_refusal_is_spoken_then_ends_with_its_reason(servicer, backend) -> None:
    backend.refusal = SessionRefused(common_pb2.END_REASON_AGENT_BUSY, "too many calls")
    conv = Conversation(servicer)
    end = await conv.ended()
    assert end.reason == common_pb2.END_REASON_AGENT_BUSY
    assert conv.kinds()[:2] == ["error", "ready"]
    assert "audio" in conv.kinds()  # the busy prompt
    assert servicer.sessions_in_progress == 0


async def test_a_first_message_other_than_start_is_a_protocol_error(servicer, backend) -> None:
    media = Feed()
    media.put(agent_pb2.ConverseRequest(dtmf=common_pb2.DtmfDigit(digit="1")))
    responses = [r async for r in servicer.Converse(media, None)]
    assert [r.WhichOneof("event") for r in responses] == ["error", "end"]
    assert responses[-1].end.reason == common_pb2.END_REASON_PROTOCOL_ERROR
    assert backend.sessions == []


async def test_a_duplicate_start_is_refused_without_ending_the_call(servicer, backend) -> None:
    conv, agent = await _open(servicer, backend)
    conv.media.put(agent_pb2.ConverseRequest(start=START))
    error = await conv.wait_for("error")
    assert not error.error.fatal
    assert not agent.closed
    conv.media.close()
    await conv.ended()


async def test_drain_past_its_deadline_says_goodbye_then_ends_every_conversation_with_shutdown(
    servicer, backend
) -> None:
    convs = [await _open(servicer, backend) for _ in range(3)]
    await asyncio.wait_for(servicer.drain(deadline_s=0.0), 5)
    goodbye = load_prompt("goodbye", ULAW_8K.encoding, ULAW_8K.sample_rate_hz)
    for conv, agent in convs:
        assert (await conv.ended()).reason == common_pb2.END_REASON_SHUTDOWN
        said = b"".join(r.audio.data for r in conv.responses if r.WhichOneof("event") == "audio")
        assert said == goodbye
        assert agent.closed
    assert servicer.sessions_in_progress == 0


async def test_at_the_deadline_the_reply_media_is_playing_is_cleared_before_the_goodbye(
    servicer, backend
) -> None:
    """Media may hold seconds of a reply already sent: the goodbye must not wait behind it."""
    conv, agent = await _open(servicer, backend)
    reply = agent.say(100)
    while len([r for r in conv.responses if r.WhichOneof("event") == "audio"]) < 5:
        await conv.wait_for("audio")
        await asyncio.sleep(0)
    await asyncio.wait_for(servicer.drain(deadline_s=0.0), 5)
    await conv.ended()
    after_reply = conv.kinds()[conv.kinds().index("audio") + 5 :]
    assert after_reply[0] == "interruption"
    interruption = next(r for r in conv.responses if r.WhichOneof("event") == "interruption")
    assert interruption.interruption.response_id == reply
    assert after_reply[1:-1] == ["audio"] * (len(after_reply) - 2)  # then the goodbye, then the end
    assert after_reply[-1] == "end"


async def test_a_draining_agent_refuses_a_new_conversation_first_thing_with_shutdown(
    servicer, backend
) -> None:
    conv, agent = await _open(servicer, backend)
    drained = asyncio.create_task(servicer.drain(deadline_s=60.0))
    await asyncio.sleep(0)  # the drain has begun (it waits for the call in progress)
    refused = Conversation(servicer)
    assert (await refused.ended()).reason == common_pb2.END_REASON_SHUTDOWN
    assert refused.kinds() == ["end"]  # before anything else: media places the call elsewhere
    assert not agent.closed  # the call in progress goes on
    conv.media.close()
    assert (await conv.ended()).reason == common_pb2.END_REASON_CALLER_HANGUP
    await asyncio.wait_for(drained, 5)
