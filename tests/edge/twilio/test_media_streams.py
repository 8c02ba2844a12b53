"""Media Streams codec: exact message shapes from Twilio's docs (docs/twilio.md#media-streams)."""

import base64
import contextlib
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebridge.edge.twilio.media_streams import (
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    MediaStreamsProtocolError,
    Start,
    Stop,
    decode,
    encode_clear,
    encode_mark,
    encode_media,
)

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
START = (
    '{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC123","streamSid":"' + SID + '",'
    '"callSid":"CA456","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,'
    '"channels":1},"customParameters":{"FirstName":"Jane","LastName":"Doe","RemoteParty":"Bob"}},'
    '"streamSid":"' + SID + '"}'
)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            '{"event":"connected","protocol":"Call","version":"1.0.0"}',
            Connected(protocol="Call", version="1.0.0"),
        ),
        (
            START,
            Start(
                sequence_number=1,
                account_sid="AC123",
                call_sid="CA456",
                stream_sid=SID,
                tracks=("inbound",),
                media_format=MediaFormat("audio/x-mulaw", 8000, 1),
                custom_parameters={"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"},
            ),
        ),
        (
            '{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2","timestamp":"5",'
            '"payload":"no+JhoaJjpw="},"streamSid":"' + SID + '"}',
            Media(4, SID, "inbound", 2, 5, base64.b64decode("no+JhoaJjpw=")),
        ),
        (
            '{"event":"dtmf","streamSid":"' + SID + '","sequenceNumber":"5","dtmf":{"track":"inbound_track",'
            '"digit":"1"}}',
            Dtmf(5, SID, "inbound_track", "1"),
        ),
        (
            '{"event":"mark","sequenceNumber":"4","streamSid":"' + SID + '","mark":{"name":"my label"}}',
            Mark(4, SID, "my label"),
        ),
        (
            '{"event":"stop","sequenceNumber":"5","stop":{"accountSid":"AC123","callSid":"CA456"},'
            '"streamSid":"' + SID + '"}',
            Stop(5, SID, "AC123", "CA456"),
        ),
    ],
    ids=["connected", "start", "media", "dtmf", "mark", "stop"],
)
def test_decode_documented_shapes(frame: str, expected: object) -> None:
    assert decode(frame) == expected
    assert decode(frame.encode()) == expected


def test_decode_accepts_integer_numbers_and_ignores_extra_fields() -> None:
    frame = {
        "event": "media",
        "sequenceNumber": 7,
        "streamSid": SID,
        "future": {"x": 1},
        "media": {"track": "inbound", "chunk": 3, "timestamp": 40, "payload": "", "extra": True},
    }
    assert decode(json.dumps(frame)) == Media(7, SID, "inbound", 3, 40, b"")


def test_start_without_custom_parameters_has_empty_dict() -> None:
    msg = orjson.loads(START)
    del msg["start"]["customParameters"]
    assert decode(orjson.dumps(msg)).custom_parameters == {}


def test_stop_without_details_still_decodes() -> None:
    assert decode('{"event":"stop","sequenceNumber":"9","streamSid":"MZ1"}') == Stop(9, "MZ1", "", "")


def _media(**media: object) -> str:
    body = {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "AAAA"} | media
    return json.dumps({"event": "media", "sequenceNumber": "2", "streamSid": SID, "media": body})


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1,2]", "must be a JSON object"),
        ('"media"', "must be a JSON object"),
        ('{"event":"hello"}', "unknown event"),
        ('{"event":7}', "unknown event"),
        ("{}", "unknown event"),
        ('{"event":"connected","protocol":"Call"}', "connected.version must be a string, got missing"),
        ('{"event":"media","sequenceNumber":"1","streamSid":"MZ1"}', "media.media must be an object"),
        (_media(payload="!!notbase64"), "not valid base64"),
        (_media(payload="AAA"), "not valid base64"),
        (_media(payload=5), "payload must be a string, got int"),
        (_media(chunk="1.5"), "chunk must be a string of digits"),
        (_media(chunk="-1"), "chunk must be a string of digits"),
        (_media(chunk=True), "chunk must be a string of digits"),
        (_media(chunk=1.0), "chunk must be a string of digits"),
        (_media(timestamp="٣"), "timestamp must be a string of digits"),
        (_media(timestamp="9" * 5000), "timestamp must be a string of digits"),
        (_media(track="both"), "track must be inbound or outbound"),
        (
            '{"event":"mark","sequenceNumber":"3","streamSid":"MZ1","mark":{}}',
            "mark.mark.name must be a string",
        ),
        ('{"event":"mark","sequenceNumber":"3","streamSid":"MZ1"}', "mark.mark must be an object"),
        ('{"event":"dtmf","sequenceNumber":"3","streamSid":"MZ1","dtmf":{"track":"t","digit":""}}', "empty"),
        ('{"event":"stop","sequenceNumber":"3","streamSid":"MZ1","stop":[]}', "stop.stop must be an object"),
        (START.replace('"tracks":["inbound"]', '"tracks":"inbound"'), "tracks must be a list"),
        (
            START.replace('"RemoteParty":"Bob"', '"RemoteParty":1'),
            "customParameters must be an object of strings",
        ),
        (START.replace('"streamSid":"' + SID + '"}', '"streamSid":"MZother"}'), "differs"),
        (START.replace('"sequenceNumber":"1",', ""), "start.sequenceNumber must be a string of digits"),
    ],
)
def test_decode_rejects_with_reason(frame: str | bytes, reason: str) -> None:
    with pytest.raises(MediaStreamsProtocolError) as info:
        decode(frame)
    assert reason in info.value.reason


def test_encode_media_is_documented_shape() -> None:
    text = encode_media(SID, b"\xff\x00\x7f")
    assert orjson.loads(text) == {"event": "media", "streamSid": SID, "media": {"payload": "/wB/"}}


def test_encode_mark_and_clear_are_documented_shapes() -> None:
    assert orjson.loads(encode_mark(SID, 'resp-42 "chunk" 7')) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": 'resp-42 "chunk" 7'},
    }
    assert orjson.loads(encode_clear(SID)) == {"event": "clear", "streamSid": SID}


def test_encoders_escape_unusual_stream_sid() -> None:
    sid = 'MZ"\\\n'
    assert orjson.loads(encode_media(sid, b""))["streamSid"] == sid
    assert orjson.loads(encode_clear(sid))["streamSid"] == sid
    assert orjson.loads(encode_mark(sid, "m"))["streamSid"] == sid


@given(st.binary(max_size=4000))
def test_encode_media_round_trips_payload(payload: bytes) -> None:
    assert base64.b64decode(orjson.loads(encode_media(SID, payload))["media"]["payload"]) == payload


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
_events = st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "clear", ""])
_fields = st.sampled_from(
    ["sequenceNumber", "streamSid", "start", "media", "mark", "dtmf", "stop", "protocol", "version"]
)
_messages = st.builds(
    lambda event, extra: {"event": event, **extra}, _events, st.dictionaries(_fields, _json, max_size=6)
)


@settings(max_examples=300)
@given(st.text() | st.binary())
def test_decode_only_raises_protocol_error_on_arbitrary_text(frame: str | bytes) -> None:
    with contextlib.suppress(MediaStreamsProtocolError):
        decode(frame)


@settings(max_examples=500)
@given(_messages)
def test_decode_only_raises_protocol_error_on_arbitrary_json(msg: dict) -> None:
    with contextlib.suppress(MediaStreamsProtocolError):
        decode(json.dumps(msg))
