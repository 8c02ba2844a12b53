"""Holding a conversation whose media stream broke, and handing it to the stream that re-attaches.

The agent's servicer with the real parrot backend (μ-law 8 kHz, so audio compares byte for byte with
the bundled greeting) on a real gRPC server on loopback; media is played by the generated stubs (and
by the real mux client for ConverseMany). The grace period runs on a virtual clock: a conversation
expires only when the test moves time, never because the machine was slow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from harness.core_fakes import ScriptedBackend
from harness.feeds import Feed
from harness.virtual_clock import VirtualClock

from voicebridge.agent.backends.base import AgentBackend
from voicebridge.agent.backends.parrot import ParrotBackend, ParrotSession
from voicebridge.agent.converse import ConverseServicer
from voicebridge.agent.holds import HoldSettings
from voicebridge.agent.metrics import ATTACHES, HELD
from voicebridge.agent.prompts import load_prompt
from voicebridge.media.agent_link import CONVERSE, agent_calls
from voicebridge.runtime.mux import CONVERSE_MANY, MuxClient
from voicebridge.v1 import agent_pb2, agent_pb2_grpc, common_pb2

ULAW = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)
PCM16 = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16000)
SECRET = bytes(range(32))
GREETING = load_prompt("greeting", ULAW.encoding, ULAW.sample_rate_hz)
US_PER_BYTE = 125  # μ-law 8 kHz


class RecordingParrot(ParrotBackend):
    """The parrot, remembering its sessions and whether each was closed."""

    def __init__(self) -> None:
        super().__init__("ulaw_8000")
        self.sessions: list[ParrotSession] = []
        self.closed: list[common_pb2.CallEnd] = []
        self.closed_sessions: set[int] = set()

    async def open(self, start: agent_pb2.SessionStart) -> ParrotSession:
        session = await super().open(start)
        assert isinstance(session, ParrotSession)
        closed, number, original = self.closed, len(self.sessions), session.aclose

        async def aclose(end: common_pb2.CallEnd) -> None:
            if number not in self.closed_sessions:
                closed.append(end)
            self.closed_sessions.add(number)
            await original(end)

        session.aclose = aclose  # type: ignore[method-assign]
        self.sessions.append(session)
        return session


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    await rig.start()
    try:
        yield rig
    finally:
        await rig.stop()


class Rig:
    def __init__(self, backend: AgentBackend | None = None, hold: HoldSettings | None = None) -> None:
        self.clock = VirtualClock()
        self.backend = backend or RecordingParrot()
        hold = hold or HoldSettings(grace_s=15.0)
        self.servicer = ConverseServicer(self.backend, hold=hold, clock=self.clock)
        self.server = grpc.aio.server()
        agent_pb2_grpc.add_AgentServiceServicer_to_server(self.servicer, self.server)

    async def start(self) -> None:
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = agent_pb2_grpc.AgentServiceStub(self.channel)

    async def stop(self) -> None:
        await self.channel.close()
        await self.servicer.drain(0)
        await self.server.stop(None)

    def open(self, call_sid: str = "CA0001", secret: bytes = SECRET, **start: object) -> Stream:
        call = self.stub.Converse()
        session_start = agent_pb2.SessionStart(
            call=common_pb2.CallInfo(call_sid=call_sid),
            input_formats=start.pop("formats", [ULAW]),
            output_formats=start.pop("out_formats", [ULAW]),
            call_secret=secret,
            **start,
        )
        return Stream(call, session_start)

    async def held(self, n: int) -> None:
        async with asyncio.timeout(10):  # failure detector
            await self.servicer.holds.wait_until(lambda: len(self.servicer.holds) == n)


class Stream:
    """Media's side of one Converse stream: what it wrote, what it read (audio per reply)."""

    def __init__(self, call: grpc.aio.StreamStreamCall, start: agent_pb2.SessionStart) -> None:
        self.call = call
        self.start = start
        self.responses: list[agent_pb2.ConverseResponse] = []
        self._sent_start = False

    async def begin(self) -> agent_pb2.ConverseResponse:
        await self.call.write(agent_pb2.ConverseRequest(start=self.start))
        return await self.next()

    async def next(self) -> agent_pb2.ConverseResponse:
        async with asyncio.timeout(10):  # failure detector
            message = await self.call.read()
        assert message is not grpc.aio.EOF, "the agent ended the stream"
        self.responses.append(message)
        return message

    async def audio_until(self, nbytes: int, response_id: int = 0) -> bytes:
        """Read until `nbytes` of agent audio (of `response_id`, if given) arrived; returns it."""
        while len(got := self.audio(response_id)) < nbytes:
            await self.next()
        return got

    def audio(self, response_id: int = 0) -> bytes:
        return b"".join(
            r.audio.data
            for r in self.responses
            if r.WhichOneof("event") == "audio" and (not response_id or r.audio.response_id == response_id)
        )

    async def rest(self) -> list[agent_pb2.ConverseResponse]:
        """Everything until the agent ends the stream."""
        async with asyncio.timeout(10):
            while (message := await self.call.read()) is not grpc.aio.EOF:
                self.responses.append(message)
        return self.responses

    async def speak(self, start_ms: int, ms: int) -> None:
        """An utterance the parrot plays back: loud audio between two voice-activity events."""
        speech = b"\x10\x90" * (4 * ms)
        await self.call.write(
            agent_pb2.ConverseRequest(
                activity=agent_pb2.VoiceActivity(
                    kind=agent_pb2.VoiceActivity.KIND_SPEECH_STARTED, timestamp_ms=start_ms
                )
            )
        )
        for i in range(0, len(speech), 160):
            await self.call.write(
                agent_pb2.ConverseRequest(
                    audio=agent_pb2.AudioChunk(
                        data=speech[i : i + 160], format=ULAW, timestamp_ms=start_ms + i // 8
                    )
                )
            )
        await self.call.write(
            agent_pb2.ConverseRequest(
                activity=agent_pb2.VoiceActivity(
                    kind=agent_pb2.VoiceActivity.KIND_SPEECH_ENDED, timestamp_ms=start_ms + ms
                )
            )
        )


def attach_start(rig: Rig, resume: tuple[int, int] | None = None, secret: bytes = SECRET) -> Stream:
    attach = agent_pb2.SessionAttach()
    if resume is not None:
        attach.resume_from.CopyFrom(common_pb2.PlaybackPosition(response_id=resume[0], offset_us=resume[1]))
    return rig.open(secret=secret, attach=attach)


def _attached(rig: Rig) -> float:
    return ATTACHES.labels("attached").value


async def _held_mid_greeting(rig: Rig, received: int = 2400) -> Stream:
    first = rig.open()
    assert (await first.begin()).ready.output_format == ULAW
    await first.audio_until(received)
    first.call.cancel()  # the stream breaks: media died
    await rig.held(1)
    return first


async def test_a_stranger_cannot_attach_and_the_rightful_secret_still_can(rig: Rig) -> None:
    await _held_mid_greeting(rig)
    stranger = attach_start(rig, secret=b"\x00" * 32)
    error = await stranger.begin()
    assert error.error.code == common_pb2.ERROR_CODE_PERMISSION_DENIED
    assert [r.WhichOneof("event") for r in await stranger.rest()] == ["error", "end"]
    no_secret = attach_start(rig, secret=b"")
    assert (await no_secret.begin()).error.code == common_pb2.ERROR_CODE_PERMISSION_DENIED
    await no_secret.rest()
    assert len(rig.servicer.holds) == 1  # still held for its owner
    owner = attach_start(rig, resume=(1, 0))
    ready = await owner.begin()
    assert ready.ready.attached
    assert ready.ready.output_format == ULAW
    assert await owner.audio_until(len(GREETING)) == GREETING
    assert rig.backend.closed == []  # one backend session all along
    assert len(rig.backend.sessions) == 1


@pytest.mark.parametrize("offset", [0, 1, 1500, 2400, 5000], ids=lambda b: f"{b}B")
async def test_attach_resumes_the_reply_exactly_where_the_caller_is(rig: Rig, offset: int) -> None:
    """Mid-reply, mid-chunk, at a chunk boundary, past what the old stream got: the exact rest."""
    await _held_mid_greeting(rig, received=2400)
    resumed = attach_start(rig, resume=(1, offset * US_PER_BYTE))
    assert (await resumed.begin()).ready.attached
    assert await resumed.audio_until(len(GREETING) - offset) == GREETING[offset:]


async def test_attach_at_a_reply_boundary_sends_the_next_reply_whole_and_nothing_before(rig: Rig) -> None:
    first = rig.open()
    await first.begin()
    await first.audio_until(len(GREETING), response_id=1)
    await first.speak(start_ms=1000, ms=600)
    head = await first.audio_until(800, response_id=2)  # the echo has begun
    first.call.cancel()
    await rig.held(1)
    resumed = attach_start(rig, resume=(1, len(GREETING) * US_PER_BYTE))
    assert (await resumed.begin()).ready.attached
    echo = await resumed.audio_until(len(head), response_id=2)
    assert resumed.audio(response_id=1) == b""
    assert echo.startswith(head)
    # The whole echo arrives, and the conversation goes on live: another utterance, another echo.
    await resumed.speak(start_ms=5000, ms=400)
    await resumed.audio_until(1, response_id=3)


async def test_without_resume_from_the_detach_point_is_where_the_stream_resumes(rig: Rig) -> None:
    first = rig.open()
    await first.begin()
    await first.audio_until(3200)
    heard = common_pb2.PlaybackPosition(response_id=1, offset_us=1000 * US_PER_BYTE)
    await first.call.write(agent_pb2.ConverseRequest(detach=agent_pb2.Detach(heard=heard)))
    await first.call.done_writing()
    await first.rest()  # the agent ends the detached stream without a CallEnd
    assert all(r.WhichOneof("event") != "end" for r in first.responses)
    await rig.held(1)
    resumed = attach_start(rig)
    assert (await resumed.begin()).ready.attached
    assert await resumed.audio_until(len(GREETING) - 1000) == GREETING[1000:]


async def test_without_any_point_the_stream_resumes_after_what_the_old_one_was_sent(rig: Rig) -> None:
    """The agent sent the old stream more than media read (gRPC's buffers): it resumes after all it
    sent, the exact rest of the greeting from a point at or past what this side read — possibly none
    of it, when the whole greeting had been sent before the break (a busy machine)."""
    first = await _held_mid_greeting(rig, received=2400)
    received = len(first.audio())
    resumed = attach_start(rig)
    assert (await resumed.begin()).ready.attached
    # The caller speaks on the new stream: the parrot's echo (reply 2) comes after whatever is left
    # of the greeting, so once it begins the greeting's rest is complete.
    await resumed.speak(start_ms=5000, ms=400)
    await resumed.audio_until(1, response_id=2)
    rest = resumed.audio(response_id=1)
    assert GREETING.endswith(rest)
    assert len(rest) <= len(GREETING) - received


async def test_an_attach_for_a_call_not_held_here_is_not_found(rig: Rig) -> None:
    stream = attach_start(rig)
    assert (await stream.begin()).error.code == common_pb2.ERROR_CODE_NOT_FOUND
    await stream.rest()
    assert rig.backend.sessions == []


async def test_an_attach_offering_other_formats_is_refused_and_the_hold_stays(rig: Rig) -> None:
    await _held_mid_greeting(rig)
    stream = rig.open(formats=[PCM16], out_formats=[PCM16], attach=agent_pb2.SessionAttach())
    assert (await stream.begin()).error.code == common_pb2.ERROR_CODE_FAILED_PRECONDITION
    await stream.rest()
    assert len(rig.servicer.holds) == 1


async def test_an_attach_takes_over_a_stream_whose_break_was_not_seen_yet(rig: Rig) -> None:
    first = rig.open()
    await first.begin()
    await first.audio_until(1600)
    resumed = attach_start(rig, resume=(1, 1600 * US_PER_BYTE))
    assert (await resumed.begin()).ready.attached
    assert await resumed.audio_until(len(GREETING) - 1600) == GREETING[1600:]
    await first.rest()  # the old stream was ended
    assert rig.backend.closed == []
    assert len(rig.servicer.holds) == 0


async def test_the_grace_expiring_closes_the_backend_session_like_a_normal_end(rig: Rig) -> None:
    before = ATTACHES.labels("expired").value
    await _held_mid_greeting(rig)
    assert HELD._value.get() == 1
    await rig.clock.advance(14.9, step=0.1)
    assert rig.backend.closed == []
    assert len(rig.servicer.holds) == 1
    await rig.clock.advance(0.2, step=0.1)
    await rig.held(0)
    assert [e.reason for e in rig.backend.closed] == [common_pb2.END_REASON_CALLER_HANGUP]
    assert HELD._value.get() == 0
    assert ATTACHES.labels("expired").value == before + 1
    assert rig.servicer.sessions_in_progress == 0
    late = attach_start(rig)
    assert (await late.begin()).error.code == common_pb2.ERROR_CODE_NOT_FOUND
    await late.rest()


async def test_a_call_end_or_no_secret_is_never_held(rig: Rig) -> None:
    ended = rig.open()
    await ended.begin()
    await ended.call.write(
        agent_pb2.ConverseRequest(end=common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))
    )
    await ended.call.done_writing()
    await ended.rest()
    anonymous = rig.open(call_sid="CA0002", secret=b"")
    await anonymous.begin()
    anonymous.call.cancel()
    async with asyncio.timeout(10):  # failure detector
        await rig.servicer._drain._idle.wait()
    assert len(rig.servicer.holds) == 0
    assert len(rig.backend.sessions) == 2
    assert rig.backend.closed_sessions == {0, 1}


@pytest.fixture
async def scripted() -> AsyncIterator[Rig]:
    rig = Rig(ScriptedBackend(), HoldSettings(grace_s=15.0, buffer_s=0.5))
    await rig.start()
    try:
        yield rig
    finally:
        await rig.stop()


async def test_what_the_agent_says_while_held_reaches_the_stream_that_attaches(scripted: Rig) -> None:
    backend = scripted.backend
    assert isinstance(backend, ScriptedBackend)
    first = scripted.open()
    await first.begin()
    agent = backend.sessions[0]
    first.call.cancel()
    await scripted.held(1)
    rid = agent.say(200, pattern=b"\x01\x02")  # 0.2 s: fits the 0.5 s buffer
    agent.hang_up("goodbye said")
    resumed = attach_start(scripted, resume=(0, 0))
    assert (await resumed.begin()).ready.attached
    while not any(r.WhichOneof("event") == "hangup" for r in resumed.responses):
        await resumed.next()
    assert resumed.audio(rid) == b"\x01\x02" * 800
    assert [r.WhichOneof("event") for r in resumed.responses][-1] == "hangup"


async def test_a_hold_whose_buffer_overflows_ends_with_a_reason(scripted: Rig) -> None:
    backend = scripted.backend
    assert isinstance(backend, ScriptedBackend)
    before = ATTACHES.labels("overflow").value
    first = scripted.open()
    await first.begin()
    agent = backend.sessions[0]
    first.call.cancel()
    await scripted.held(1)
    agent.say(1000)  # 1 s of audio while held: more than the 0.5 s buffer
    await scripted.held(0)
    async with asyncio.timeout(10):  # failure detector
        await scripted.servicer._drain._idle.wait()
    assert agent.closed
    assert ATTACHES.labels("overflow").value == before + 1


@pytest.mark.parametrize("rpc", ["ConverseBatch", "ConverseMany"])
@pytest.mark.parametrize("how", ["cancel_the_call", "lose_the_shared_stream"])
async def test_a_multiplexed_call_is_held_when_cancelled_or_its_stream_lost(
    rig: Rig, how: str, rpc: str
) -> None:
    """The shared streams: a CANCEL signal for the call, or the whole stream breaking."""
    if rpc == "ConverseBatch":
        calls = agent_calls(rig.stub, enabled=True, interval_s=0.0)  # media's own: Batch first
    else:
        calls = MuxClient([(rig.stub.ConverseMany, CONVERSE_MANY)], rig.stub.Converse, CONVERSE)
    try:
        first = Stream(calls.open(), rig.open().start)
        assert (await first.begin()).ready.output_format == ULAW
        await first.audio_until(1600)
        if how == "cancel_the_call":
            first.call.cancel()
        else:
            await calls.aclose()
        await rig.held(1)
        resumed = attach_start(rig, resume=(1, 1600 * US_PER_BYTE))
        assert (await resumed.begin()).ready.attached
        assert await resumed.audio_until(len(GREETING) - 1600) == GREETING[1600:]
        assert rig.backend.closed == []
    finally:
        await calls.aclose()


async def test_a_draining_agent_ends_its_held_conversations_at_once(rig: Rig) -> None:
    await _held_mid_greeting(rig)
    await rig.servicer.drain(0)
    assert [e.reason for e in rig.backend.closed] == [common_pb2.END_REASON_CALLER_HANGUP]
    assert len(rig.servicer.holds) == 0
    assert rig.servicer.sessions_in_progress == 0


class _Read:
    """Everything a servicer's stream yields, with an event to wait on."""

    def __init__(self, stream: AsyncIterator[agent_pb2.ConverseResponse]) -> None:
        self.messages: list[agent_pb2.ConverseResponse] = []
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._run(stream))

    async def _run(self, stream: AsyncIterator[agent_pb2.ConverseResponse]) -> None:
        async for message in stream:
            self.messages.append(message)
            self._changed.set()

    async def until(self, check) -> None:
        async with asyncio.timeout(10):  # failure detector
            while not check(self.messages):
                self._changed.clear()
                await self._changed.wait()


@pytest.mark.parametrize("ticks", range(24))
async def test_an_attach_racing_the_break_of_the_old_stream_gets_the_conversation(ticks: int) -> None:
    """The attach is on its way when the old stream breaks `ticks` loop turns later (the orderings a
    busy process produces: the attach first, a take-over; the two crossing; the break first, a hold):
    whichever way they interleave, the new stream has the conversation, live, and no hold is left
    behind to expire under it."""
    clock = VirtualClock()
    backend = ScriptedBackend()
    servicer = ConverseServicer(backend, hold=HoldSettings(grace_s=15.0), clock=clock)
    start = agent_pb2.SessionStart(
        call=common_pb2.CallInfo(call_sid="CArace"),
        input_formats=[ULAW],
        output_formats=[ULAW],
        call_secret=SECRET,
    )
    old_feed = Feed()
    old_feed.put(agent_pb2.ConverseRequest(start=start))
    old = _Read(servicer.Converse(old_feed, None))
    agent = await asyncio.wait_for(backend.next_session(), 5)
    await old.until(bool)
    attach = agent_pb2.SessionStart()
    attach.CopyFrom(start)
    attach.attach.SetInParent()
    new_feed = Feed()
    new_feed.put(agent_pb2.ConverseRequest(start=attach))
    new = _Read(servicer.Converse(new_feed, None))
    for _ in range(ticks):
        await asyncio.sleep(0)
    old_feed.close()  # media's old stream is lost (gRPC shows it as a half-close)
    await new.until(bool)
    assert new.messages[0].ready.attached
    rid = agent.say(100)
    await new.until(lambda messages: any(m.audio.response_id == rid for m in messages))
    await clock.advance(20.0, step=1.0)  # a stray grace timer would close the conversation now
    assert not agent.closed
    assert len(servicer.holds) == 0
    new_feed.put(
        agent_pb2.ConverseRequest(end=common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))
    )
    await asyncio.wait_for(new.task, 10)
    await asyncio.wait_for(old.task, 10)
    assert agent.closed
    assert servicer.sessions_in_progress == 0
