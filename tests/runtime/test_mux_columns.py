"""The batch codec (runtime/mux/columns.py, codec.py, frames.py), table-tested as pure functions: what goes
in as call entries comes out, in order, after a trip through the wire bytes; audio lands in columns,
everything else in items among them; a malformed entry or batch names only its own calls."""

from __future__ import annotations

from typing import Any

import pytest

from voicebridge.runtime.mux import (
    CALL_BATCH,
    CALL_MANY,
    CANCEL,
    CONVERSE_BATCH,
    HALF_CLOSE,
    AgentChunkFrame,
    CallerAudioFrame,
    CallerChunkFrame,
    PlayAudioFrame,
    as_proto,
)
from voicebridge.runtime.mux.codec import BAD, MESSAGE, SIGNAL, STATUS
from voicebridge.v1 import agent_pb2, common_pb2, media_pb2

MULAW = common_pb2.AUDIO_ENCODING_MULAW
PCM = common_pb2.AUDIO_ENCODING_PCM_S16LE
START = media_pb2.CallRequest(start=media_pb2.CallStart(call=common_pb2.CallInfo(call_sid="CA1")))
MARK = media_pb2.CallRequest(mark=media_pb2.MarkEcho(name="m1"))
STOP = media_pb2.CallRequest(stop=common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))
CLEAR = media_pb2.CallResponse(clear=media_pb2.ClearAudio())
OK = common_pb2.StreamStatus(code=0)
DTMF = agent_pb2.ConverseRequest(dtmf=common_pb2.DtmfDigit(digit="5"))
ALIGNED = agent_pb2.ConverseResponse(
    audio=agent_pb2.AudioChunk(
        data=b"\x01\x02",
        format=common_pb2.AudioFormat(encoding=PCM, sample_rate_hz=16000),
        response_id=3,
        alignment=agent_pb2.TextAlignment(chars=["h"], char_start_ms=[0], char_duration_ms=[10]),
    )
)


def caller(payload: bytes, ts: int, rx: int = 0) -> CallerAudioFrame:
    return CallerAudioFrame(payload, ts, rx)


def wire(codec: Any, entries: list[tuple[int, Any]]) -> Any:
    """Encode, serialize, parse: the batch as the peer sees it."""
    batch = codec.encode(entries)
    return type(batch).FromString(batch.SerializeToString())


def plain(decoded: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
    """Decoded entries with frames as the messages they stand for, to compare."""
    return [(n, kind, as_proto(value)) for n, kind, value in decoded]


def expected(entries: list[tuple[int, Any]]) -> list[tuple[int, int, Any]]:
    out = []
    for n, value in entries:
        if type(value) is int:
            out.append((n, SIGNAL, value))
        elif isinstance(value, common_pb2.StreamStatus):
            out.append((n, STATUS, value))
        else:
            out.append((n, MESSAGE, as_proto(value)))
    return out


ROUND_TRIPS = {
    "caller audio of many calls": (
        CALL_BATCH.requests,
        [(1, caller(b"\xff" * 160, 0, 11)), (2, caller(b"\x7f" * 160, 20, 12)), (1, caller(b"\x00", 20, 13))],
    ),
    "a call's control between its frames keeps its place": (
        CALL_BATCH.requests,
        [(1, START), (1, caller(b"a", 0)), (2, START), (1, MARK), (1, caller(b"b", 20)), (1, STOP)],
    ),
    "signals, with nothing else": (CALL_BATCH.requests, [(1, HALF_CLOSE), (2, CANCEL)]),
    "an empty payload": (CALL_BATCH.requests, [(1, caller(b"", 40))]),
    "caller audio given as the protobuf": (
        CALL_BATCH.requests,
        [(1, media_pb2.CallRequest(audio=media_pb2.CallerAudio(payload=b"xy", timestamp_ms=60)))],
    ),
    "audio to play, with marks, positions and statuses": (
        CALL_BATCH.responses,
        [
            (1, PlayAudioFrame(b"p" * 480, 99, 7, 60_000, "m1")),
            (2, PlayAudioFrame(b"q" * 480, 98)),
            (1, CLEAR),
            (1, PlayAudioFrame(b"r" * 480, 0, 8, 0, "m2")),
            (2, OK),
        ],
    ),
    "audio to play given as the protobuf, a prompt without position": (
        CALL_BATCH.responses,
        [(3, media_pb2.CallResponse(audio=media_pb2.PlayAudio(payload=b"g", mark="m9")))],
    ),
    "caller chunks to the agent": (
        CONVERSE_BATCH.requests,
        [
            (1, CallerChunkFrame(b"\x00\x01" * 160, PCM, 16000, 0, 20, 5)),
            (1, DTMF),
            (2, CallerChunkFrame(b"u", MULAW, 8000)),
        ],
    ),
    "agent chunks, one with an alignment": (
        CONVERSE_BATCH.responses,
        [(1, AgentChunkFrame(b"\x00" * 1600, MULAW, 8000, 4, 0, 77)), (1, ALIGNED), (2, OK)],
    ),
    "CallMany items, frames sent as their messages": (
        CALL_MANY.requests,
        [(1, START), (1, caller(b"a", 0, 1)), (1, HALF_CLOSE)],
    ),
}


@pytest.mark.parametrize(("codec", "entries"), ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_entries_come_out_as_they_went_in_and_in_order(codec: Any, entries: list[tuple[int, Any]]) -> None:
    assert plain(codec.decode(wire(codec, entries))) == expected(entries)


COLUMNS = {
    "caller audio": (CALL_BATCH.requests, [(1, caller(b"ab", 0, 5)), (2, caller(b"c", 20, 6))], 2, 0),
    "caller audio protobuf": (
        CALL_BATCH.requests,
        [(1, media_pb2.CallRequest(audio={"payload": b"z"}))],
        1,
        0,
    ),
    "audio to play": (CALL_BATCH.responses, [(1, PlayAudioFrame(b"x", 0, 1, 2, "m"))], 1, 0),
    "PlayAudio with a position before any reply": (
        CALL_BATCH.responses,
        [(1, media_pb2.CallResponse(audio=media_pb2.PlayAudio(payload=b"x", position={"offset_us": 5})))],
        0,
        1,
    ),
    "an aligned agent chunk": (CONVERSE_BATCH.responses, [(1, ALIGNED)], 0, 1),
    "control and signals": (CALL_BATCH.requests, [(1, START), (1, HALF_CLOSE)], 0, 2),
}


@pytest.mark.parametrize(("codec", "entries", "frames", "items"), COLUMNS.values(), ids=COLUMNS.keys())
def test_audio_goes_into_columns_and_the_rest_into_items(
    codec: Any, entries: list[tuple[int, Any]], frames: int, items: int
) -> None:
    batch = codec.encode(entries)
    assert len(batch.audio.calls) == frames
    assert len(batch.items) == items


def test_columns_that_are_zero_throughout_are_left_out_and_read_as_zero() -> None:
    batch = wire(CALL_BATCH.responses, [(1, PlayAudioFrame(b"a")), (2, PlayAudioFrame(b"bc"))])
    audio = batch.audio
    assert list(audio.lengths) == [1, 2]
    assert audio.payloads == b"abc"
    assert not audio.source_unix_nanos
    assert not audio.position_response_ids
    assert not audio.marks
    frames = [value for _, _, value in CALL_BATCH.responses.decode(batch)]
    assert [(f.payload, f.source_unix_nanos, f.HasField("position"), f.mark) for f in frames] == [
        (b"a", 0, False, ""),
        (b"bc", 0, False, ""),
    ]


def test_frames_read_like_the_messages_they_stand_for() -> None:
    frame = CallerAudioFrame(b"\xff\x7f", 40, 123)
    assert frame.WhichOneof("event") == "audio"
    assert frame.HasField("audio")
    assert (frame.audio.payload, frame.audio.timestamp_ms, frame.audio.received_unix_nanos) == (
        b"\xff\x7f",
        40,
        123,
    )
    assert frame == frame.to_proto()
    assert frame.to_proto() == frame
    play = PlayAudioFrame(b"p", 9, 4, 1000, "m3")
    assert play.audio.position == common_pb2.PlaybackPosition(response_id=4, offset_us=1000)
    assert play.HasField("position")
    assert not PlayAudioFrame(b"p").HasField("position")
    chunk = AgentChunkFrame(b"d", PCM, 16000, 2)
    assert chunk.audio.format == common_pb2.AudioFormat(encoding=PCM, sample_rate_hz=16000)
    assert not chunk.audio.HasField("alignment")
    assert not chunk.audio.alignment.chars
    assert chunk.to_proto().WhichOneof("event") == "audio"
    assert CallerChunkFrame(b"d").to_proto() == agent_pb2.ConverseRequest(audio={"data": b"d"})


def _columns(**fields: Any) -> media_pb2.CallBatchRequest:
    base: dict[str, Any] = {"calls": [1, 2], "lengths": [1, 1], "payloads": b"ab"}
    return media_pb2.CallBatchRequest(audio=media_pb2.CallerAudioColumns(**{**base, **fields}))


MALFORMED = {
    "lengths for fewer frames": _columns(lengths=[1]),
    "lengths past the blob": _columns(lengths=[1, 2]),
    "lengths short of the blob": _columns(payloads=b"abc"),
    "a number column of the wrong length": _columns(timestamps_ms=[0, 20, 40]),
    "more item positions than items": media_pb2.CallBatchRequest(
        item_positions=[0], audio={"calls": [1, 2], "lengths": [0, 0]}
    ),
    "an item placed past the frames": media_pb2.CallBatchRequest(
        items=[{"call": 2, "signal": HALF_CLOSE}], item_positions=[3], audio={"calls": [1], "lengths": [0]}
    ),
    "item positions going back": media_pb2.CallBatchRequest(
        items=[{"call": 2, "signal": HALF_CLOSE}, {"call": 1, "signal": HALF_CLOSE}],
        item_positions=[1, 0],
        audio={"calls": [1], "lengths": [0]},
    ),
}


@pytest.mark.parametrize("batch", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_batch_whose_columns_disagree_ends_every_call_it_names_and_no_other(batch: Any) -> None:
    decoded = CALL_BATCH.requests.decode(batch)
    assert {kind for _, kind, _ in decoded} == {BAD}
    assert {n for n, _, _ in decoded} == {1, 2}


def test_marks_out_of_order_or_past_the_frames_are_malformed() -> None:
    for frames, marks in (([1], ["m"]), ([0, 0], ["a", "b"]), ([0], [])):
        batch = media_pb2.CallBatchResponse(
            audio=media_pb2.PlayAudioColumns(
                calls=[4], lengths=[1], payloads=b"x", mark_frames=frames, marks=marks
            )
        )
        assert [(n, kind) for n, kind, _ in CALL_BATCH.responses.decode(batch)] == [(4, BAD)]


def test_an_empty_item_ends_its_call_only() -> None:
    batch = wire(CALL_BATCH.requests, [(1, caller(b"a", 0)), (2, START)])
    batch.items.add(call=3)  # neither a request nor a signal
    batch.item_positions.append(1)
    decoded = CALL_BATCH.requests.decode(batch)
    assert [(n, kind) for n, kind, _ in decoded] == [(1, MESSAGE), (2, MESSAGE), (3, BAD)]
    many = media_pb2.CallManyRequest(items=[{"call": 5}, {"call": 6, "signal": CANCEL}])
    assert [(n, kind) for n, kind, _ in CALL_MANY.requests.decode(many)] == [(5, BAD), (6, SIGNAL)]
