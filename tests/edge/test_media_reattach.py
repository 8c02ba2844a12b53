"""A media replica dies mid-call (edge/media_link.py): the edge opens the call again on another one
with `reattach{sent}` and the call goes on. MediaStreamSession between a fake Twilio socket and a
scripted media service whose streams fail UNAVAILABLE as a killed process's do; no server, no clock."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from edge_helpers import metric
from harness.call_chain import edge_settings
from harness.core_fakes import FakeCallControl, FakeTwilioSocket
from harness.scripted_media import MediaSide, ScriptedMedia

from voicebridge.edge.media_stream import MediaStreamSession, StreamGate
from voicebridge.edge.twilio_actions import TwilioActions
from voicebridge.v1 import common_pb2, media_pb2


class NoticingSocket(FakeTwilioSocket):
    """Twilio's side, telling the test whenever the edge sent it something."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()
        self.drained = asyncio.Event()  # the edge has taken every queued message (set at each time)

    async def receive(self) -> dict:
        message = await super().receive()
        if self._incoming.empty():
            self.drained.set()
        return message

    async def send_text(self, text: str) -> None:
        await super().send_text(text)
        self.changed.set()


class Rig:
    def __init__(self, **env: str) -> None:
        self.socket, self.media, self.control = NoticingSocket(), ScriptedMedia(), FakeCallControl()
        session = MediaStreamSession(
            self.socket,
            edge_settings(**env),
            self.media,
            TwilioActions(self.control, frozenset({"*"})),
            lambda start: None,  # type: ignore[arg-type]
        )
        self.task = asyncio.create_task(session.run(StreamGate(8)))

    async def ended(self) -> None:
        await asyncio.wait_for(self.task, 5)

    async def socket_drained(self) -> None:
        """Until the edge has read every message the test queued on Twilio's side."""
        await asyncio.wait_for(self.socket.drained.wait(), 5)

    async def sent_to_twilio(self, kind: str, count: int) -> None:
        async with asyncio.timeout(5):  # failure detector
            while len(self.socket.events(kind)) < count:
                self.socket.changed.clear()
                await self.socket.changed.wait()


@pytest.fixture
async def rig():
    built = Rig()
    yield built
    for side in built.media.sides:
        side.end()
    built.task.cancel()
    await asyncio.gather(built.task, return_exceptions=True)


def play(payload: bytes, mark: str = "", response_id: int = 0, offset_us: int = 0) -> media_pb2.CallResponse:
    audio = media_pb2.PlayAudio(payload=payload, mark=mark)
    if response_id:
        audio.position.CopyFrom(common_pb2.PlaybackPosition(response_id=response_id, offset_us=offset_us))
    return media_pb2.CallResponse(audio=audio)


def marks_of(side: MediaSide) -> list[str]:
    return [r.mark.name for r in side.requests if r.WhichOneof("event") == "mark"]


def reattaches(outcome: str) -> float:
    return metric("edge_media_reattach_total", outcome=outcome)


async def test_a_dead_media_is_replaced_with_the_position_of_the_last_agent_audio_forwarded(rig) -> None:
    rig.socket.connect()
    first = await rig.media.side(0)
    first.say(play(b"\x10" * 160, "m1", response_id=3, offset_us=20_000))
    first.say(play(b"\x11" * 160, "m2", response_id=3, offset_us=40_000))
    first.say(play(b"\x12" * 160))  # media's own prompt: no position, so not where the agent stands
    await rig.sent_to_twilio("media", 3)
    before = reattaches("reattached")
    first.die()
    second = await rig.media.side(1)
    start = second.requests[0].start
    assert start.reattach.HasField("sent")
    assert (start.reattach.sent.response_id, start.reattach.sent.offset_us) == (3, 40_000)
    assert start.call.call_sid == first.requests[0].start.call.call_sid
    assert start.call_secret == first.requests[0].start.call_secret != b""
    assert rig.media.reopened == [rig.media.rpcs[0]]
    assert reattaches("reattached") == before + 1
    second.say(play(b"\x13" * 160, "m1", response_id=3, offset_us=60_000))  # the agent goes on
    await rig.sent_to_twilio("media", 4)
    assert rig.socket.events("clear") == []  # what Twilio already had plays on
    assert not rig.task.done()


@pytest.mark.parametrize(
    ("code", "details"),
    [
        (grpc.StatusCode.UNAVAILABLE, "Stream removed (Socket closed)"),
        (grpc.StatusCode.INTERNAL, "multiplexed stream failed: Internal error from Core"),
    ],
    ids=["unavailable", "internal"],
)
async def test_a_media_dying_before_any_agent_audio_reattaches_from_the_start(rig, code, details) -> None:
    rig.socket.connect()
    first = await rig.media.side(0)
    first.die(code, details)  # both seen when a media process is SIGKILLed
    start = (await rig.media.side(1)).requests[0].start
    assert start.reattach.HasField("sent")
    assert (start.reattach.sent.response_id, start.reattach.sent.offset_us) == (0, 0)


async def test_caller_audio_after_the_death_reaches_the_new_media_in_order(rig) -> None:
    rig.socket.connect()
    first = await rig.media.side(0)
    rig.socket.media(b"\x01" * 160, 0)
    await first.wait_for("audio")
    first.die()
    second = await rig.media.side(1)
    for k in range(2, 7):
        rig.socket.media(bytes([k]) * 160, 20 * k)
    await second.wait_for("audio", 5)
    assert second.kinds() == ["start"] + ["audio"] * 5
    assert [r.audio.timestamp_ms for r in second.requests[1:]] == [40, 60, 80, 100, 120]
    assert first.kinds() == ["start", "audio"]


async def test_caller_audio_the_dead_stream_had_not_taken_moves_to_the_new_one(rig) -> None:
    rig.socket.connect()
    first = await rig.media.side(0)
    rig.media.stuck.set()  # the process is dying: a write into its stream hangs
    rig.socket.drained.clear()
    for k in range(1, 5):
        rig.socket.media(bytes([k]) * 160, 20 * k)
    await rig.socket_drained()  # the edge has read all four
    await asyncio.wait_for(rig.media.hanging.wait(), 5)  # the first is stuck in a write, three wait
    first.die()
    second = await rig.media.side(1)
    rig.socket.media(b"\x05" * 160, 100)
    await second.wait_for("audio", 4)
    # The frame in flight when the stream died is lost; the rest arrive, in order, after the start.
    assert second.kinds() == ["start"] + ["audio"] * 4
    assert [r.audio.timestamp_ms for r in second.requests[1:]] == [40, 60, 80, 100]
    assert first.kinds() == ["start"]


async def test_echoes_of_the_dead_medias_marks_are_not_passed_to_the_new_one(rig) -> None:
    rig.socket.echo_marks = False
    rig.socket.connect()
    first = await rig.media.side(0)
    first.say(play(b"\x10" * 160, "m1", 1, 20_000))
    first.say(play(b"\x10" * 160, "m2", 1, 40_000))
    await rig.sent_to_twilio("mark", 2)
    rig.socket.mark("m1")  # heard while the first media lived: it gets the echo
    await first.wait_for("mark")
    first.die()
    second = await rig.media.side(1)
    second.say(play(b"\x11" * 160, "m1", 1, 60_000))  # the new media names its marks m1, m2... again
    await rig.sent_to_twilio("mark", 3)
    rig.socket.mark("m2")  # the dead media's, still in Twilio's buffer: dropped
    rig.socket.mark("m1")  # the new media's: passed on
    rig.socket.dtmf("5")  # after both echoes, in order: when it arrives, the echoes were handled
    await second.wait_for("dtmf")
    assert marks_of(second) == ["m1"]
    assert marks_of(first) == ["m1"]


async def test_a_hang_up_from_the_new_media_waits_until_the_dead_medias_audio_was_heard(rig) -> None:
    rig.socket.echo_marks = False
    rig.socket.connect()
    first = await rig.media.side(0)
    first.say(play(b"\x10" * 160, "m1", 1, 20_000))
    await rig.sent_to_twilio("mark", 1)
    first.die()
    second = await rig.media.side(1)
    second.say(media_pb2.CallResponse(hangup=common_pb2.HangUp(reason="goodbye said")))
    for _ in range(50):  # let the edge read it: it must not act while m1's audio is still playing
        await asyncio.sleep(0)
    assert rig.control.actions == []
    rig.socket.mark("m1")  # the caller has heard the dead media's last audio
    await asyncio.wait_for(second.half_closed.wait(), 5)
    assert rig.control.actions == [("hangup", rig.socket.call_sid)]
    assert next(r.stop for r in second.requests if r.WhichOneof("event") == "stop").reason == (
        common_pb2.END_REASON_AGENT_ENDED
    )


async def test_after_the_reopen_limit_the_call_ends_as_before() -> None:
    rig = Rig(EDGE_MEDIA_REATTACH_MAX="2")
    rig.socket.connect()
    before = reattaches("limit")
    for n in range(3):
        side = await rig.media.side(n)
        side.say(play(b"\x10" * 160, "", 1, 20_000 * (n + 1)))
        await rig.sent_to_twilio("media", n + 1)
        side.die()
    await rig.ended()
    assert len(rig.media.sides) == 3  # the first and two re-opens, no more
    assert rig.socket.closed_with[0] == 1011
    assert reattaches("limit") == before + 1


async def test_with_reattach_off_a_dead_media_ends_the_call() -> None:
    rig = Rig(EDGE_MEDIA_REATTACH_MAX="0")
    rig.socket.connect()
    (await rig.media.side(0)).die()
    await rig.ended()
    assert rig.media.reopened == []
    assert rig.socket.closed_with[0] == 1011


async def test_other_stream_failures_are_not_reopened(rig) -> None:
    rig.socket.connect()
    (await rig.media.side(0)).say(RuntimeError("media broke"))  # UNKNOWN: media's own failure
    await rig.ended()
    assert rig.media.reopened == []
    assert rig.socket.closed_with[0] == 1011


class NoReplica:
    """A re-opened call the pool could place nowhere (ReplicaCall with no replica left)."""

    def __init__(self) -> None:
        self._error = grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            "no media replica can take the call",
        )

    def write_nowait(self, message) -> bool:
        return False

    async def write(self, message) -> None:
        raise asyncio.InvalidStateError(self._error.details())

    async def done_writing(self) -> None:
        return None

    async def read(self):
        raise self._error

    def cancel(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    async def code(self):
        return self._error.code()


async def test_no_replica_to_take_the_call_ends_it_and_is_counted() -> None:
    rig = Rig()
    rig.media.reopen = lambda previous: NoReplica()  # type: ignore[method-assign]
    rig.socket.connect()
    before = reattaches("no_replica")
    (await rig.media.side(0)).die()
    await rig.ended()
    assert rig.socket.closed_with[0] == 1011
    assert reattaches("no_replica") == before + 1
