"""The edge's core: MediaStreamSession between a fake Twilio socket and a scripted media service
(an in-memory gRPC stream), no server and no clock. Twilio's messages become media's requests and
media's responses become Twilio's messages; hang-up and transfer go to the REST API; and however the
call ends, media's stream is read to its end before it is dropped."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import grpc
import pytest
from harness.call_chain import edge_settings
from harness.core_fakes import FakeCallControl, FakeTwilioSocket
from harness.scripted_media import MediaSide, ScriptedMedia

from voicebridge.edge.media_stream import MediaStreamSession, StreamGate
from voicebridge.edge.twilio_actions import TwilioActions
from voicebridge.v1 import common_pb2, media_pb2


@dataclass
class Rig:
    socket: FakeTwilioSocket
    media: ScriptedMedia
    control: FakeCallControl
    task: asyncio.Task

    async def side(self) -> MediaSide:
        await asyncio.wait_for(self.media.opened.wait(), 5)
        side = self.media.sides[0]
        await side.wait_for("start")
        return side

    async def ended(self) -> None:
        await asyncio.wait_for(self.task, 5)


def _rig(verify=lambda start: None) -> Rig:
    socket, media, control = FakeTwilioSocket(), ScriptedMedia(), FakeCallControl()
    session = MediaStreamSession(
        socket,
        edge_settings(),
        media,
        TwilioActions(control, frozenset({"*"})),
        verify,  # type: ignore[arg-type]
    )
    return Rig(socket, media, control, asyncio.create_task(session.run(StreamGate(8))))


@pytest.fixture
async def rig():
    built = _rig()
    yield built
    for side in built.media.sides:
        side.end()  # media ends its side; the edge waits for that before it drops the stream
    built.task.cancel()
    await asyncio.gather(built.task, return_exceptions=True)


def _stop_of(side: MediaSide) -> common_pb2.CallEnd:
    return next(r.stop for r in side.requests if r.WhichOneof("event") == "stop")


async def test_start_carries_the_call_to_media(rig) -> None:
    rig.socket.connect({"agent_mood": "cheerful"})
    side = await rig.side()
    call = side.requests[0].start.call
    assert (call.call_sid, call.stream_sid) == (rig.socket.call_sid, rig.socket.stream_sid)
    assert call.custom_parameters["agent_mood"] == "cheerful"


async def test_twilio_media_marks_and_digits_reach_media(rig) -> None:
    rig.socket.connect()
    side = await rig.side()
    rig.socket.media(b"\x7f" * 160, 20)
    rig.socket.mark("m1")
    rig.socket.dtmf("9")
    await side.wait_for("dtmf")
    await side.wait_for("audio")
    # Control messages go ahead of audio (runtime/stream_writer.py); each arrives intact.
    audio, mark, dtmf = [await side.wait_for(kind) for kind in ("audio", "mark", "dtmf")]
    assert (audio.audio.payload, audio.audio.timestamp_ms) == (b"\x7f" * 160, 20)
    assert mark.mark.name == "m1"
    assert dtmf.dtmf.digit == "9"


async def test_medias_audio_marks_and_clear_reach_twilio(rig) -> None:
    rig.socket.echo_marks = False
    rig.socket.connect()
    side = await rig.side()
    side.say(media_pb2.CallResponse(audio=media_pb2.PlayAudio(payload=b"\x10" * 160, mark="p1")))
    side.say(media_pb2.CallResponse(clear=media_pb2.ClearAudio()))
    side.end()
    await rig.ended()
    assert [m["event"] for m in rig.socket.sent] == ["media", "mark", "clear"]
    assert rig.socket.sent[1]["mark"]["name"] == "p1"
    assert all(m["streamSid"] == rig.socket.stream_sid for m in rig.socket.sent)


async def test_twilio_stop_tells_media_and_waits_for_its_end_before_closing(rig) -> None:
    rig.socket.connect()
    side = await rig.side()
    rig.socket.stop()
    await asyncio.wait_for(side.half_closed.wait(), 5)
    assert _stop_of(side).reason == common_pb2.END_REASON_CALLER_HANGUP
    assert not rig.socket.server_closed.is_set()  # media is not cut off: it ends its side first
    assert not rig.media.rpcs[0].done()
    side.end()
    await rig.ended()
    assert await rig.media.rpcs[0].code() == grpc.StatusCode.OK  # read to its end, not cancelled
    assert rig.socket.closed_with[0] == 1000


async def test_a_dropped_socket_is_a_caller_hang_up(rig) -> None:
    rig.socket.connect()
    side = await rig.side()
    rig.socket.drop(1006)
    await asyncio.wait_for(side.half_closed.wait(), 5)
    assert _stop_of(side).detail == "websocket closed"
    side.end()
    await rig.ended()


@pytest.mark.parametrize("twilio_closes_on_rest", [False, True], ids=["socket-open", "twilio-closes"])
async def test_medias_hang_up_goes_to_the_rest_api_and_media_still_ends_its_side(
    rig, twilio_closes_on_rest
) -> None:
    if twilio_closes_on_rest:
        rig.control.on_action = lambda what: rig.socket.drop()
    rig.socket.connect()
    side = await rig.side()
    side.say(media_pb2.CallResponse(hangup=common_pb2.HangUp(reason="done")))
    await asyncio.wait_for(side.half_closed.wait(), 5)
    assert _stop_of(side).reason == common_pb2.END_REASON_AGENT_ENDED
    assert rig.control.actions == [("hangup", rig.socket.call_sid)]
    assert not rig.media.rpcs[0].done()  # the edge waits for media to close the agent's session
    side.say(media_pb2.CallResponse(audio=media_pb2.PlayAudio(payload=b"\x10" * 160)))  # still sending
    side.say(media_pb2.CallResponse(hangup=common_pb2.HangUp(reason="again")))  # a second end message
    side.end(common_pb2.END_REASON_AGENT_ENDED)
    await rig.ended()
    assert rig.control.actions == [("hangup", rig.socket.call_sid)]  # once
    assert await rig.media.rpcs[0].code() == grpc.StatusCode.OK


async def test_medias_transfer_goes_to_the_rest_api(rig) -> None:
    rig.control.on_action = lambda what: rig.socket.drop()
    rig.socket.connect()
    side = await rig.side()
    side.say(media_pb2.CallResponse(transfer=common_pb2.TransferCall(destination="+15557770000")))
    await asyncio.wait_for(side.half_closed.wait(), 5)
    assert _stop_of(side).reason == common_pb2.END_REASON_TRANSFERRED
    assert rig.control.actions == [("transfer +15557770000", rig.socket.call_sid)]
    side.end()
    await rig.ended()


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        ("{not json", "malformed"),
        (json.dumps({"event": "media", "streamSid": "MZ0001"}), "missing media body"),
        (
            json.dumps({"event": "stop", "streamSid": "MZother", "stop": {"callSid": "CA0001"}}),
            "other stream",
        ),
    ],
)
async def test_bad_input_mid_call_closes_with_1002_and_ends_media_as_protocol_error(rig, frame, why) -> None:
    rig.socket.connect()
    side = await rig.side()
    rig.socket.raw(frame)
    await asyncio.wait_for(side.half_closed.wait(), 5)
    assert _stop_of(side).reason == common_pb2.END_REASON_PROTOCOL_ERROR, why
    side.end()
    await rig.ended()
    assert rig.socket.closed_with[0] == 1002


async def test_a_rejected_start_opens_no_media_call() -> None:
    rig = _rig(verify=lambda start: "is not valid")
    rig.socket.connect()
    await rig.ended()
    assert rig.media.rpcs == []
    assert rig.socket.closed_with[0] == 1008


async def test_media_failing_closes_the_socket_with_1011(rig) -> None:
    rig.socket.connect()
    side = await rig.side()
    side.say(RuntimeError("media broke"))
    await rig.ended()
    assert rig.socket.closed_with[0] == 1011


# --- a stream re-opened after its edge died (edge/stream_action.py) ------------------------------


def _rig_with(actions: TwilioActions) -> Rig:
    socket, media = FakeTwilioSocket(), ScriptedMedia()
    session = MediaStreamSession(socket, edge_settings(), media, actions, lambda start: None)  # type: ignore[arg-type]
    return Rig(socket, media, FakeCallControl(), asyncio.create_task(session.run(StreamGate(8))))


@pytest.mark.parametrize("marker", [None, "1"], ids=["first-stream", "re-open"])
async def test_a_reopened_stream_asks_media_to_reattach_and_the_marker_stays_at_the_edge(marker) -> None:
    rig = _rig_with(TwilioActions(None))
    rig.socket.connect({"agent_mood": "cheerful", **({"vb_reopen": marker} if marker else {})})
    side = await rig.side()
    start = side.requests[0].start
    assert start.HasField("reattach") == (marker is not None)
    assert not start.reattach.HasField("sent")  # a new edge does not know what the old one sent
    assert dict(start.call.custom_parameters) == {"agent_mood": "cheerful"}
    rig.socket.drop(1006)
    side.end()
    await rig.ended()


@pytest.mark.parametrize(
    ("ending", "recorded"),
    [("caller-drops", False), ("caller-stops", False), ("agent-hangs-up", True), ("protocol-error", True)],
)
async def test_only_streams_the_edge_ended_itself_are_recorded_as_ended_here(ending, recorded) -> None:
    actions = TwilioActions(None)
    rig = _rig_with(actions)
    rig.socket.connect()
    side = await rig.side()
    if ending == "caller-drops":
        rig.socket.drop(1006)
    elif ending == "caller-stops":
        rig.socket.stop()
    elif ending == "agent-hangs-up":
        side.say(media_pb2.CallResponse(hangup=common_pb2.HangUp(reason="done")))
    else:
        rig.socket.raw("not json")
    await asyncio.wait_for(side.half_closed.wait(), 5)
    side.end()
    await rig.ended()
    assert (rig.socket.call_sid in actions.ended) == recorded
