"""The simulated caller's pure parts: its check of what the server sends (Twilio's error codes) and
its playout buffer (what the caller heard, when marks fall due), table-tested without a socket."""

from __future__ import annotations

import json

import pytest

from voicebridge.sim.twilio_caller import wire
from voicebridge.sim.twilio_caller.config import CallerConfig
from voicebridge.sim.twilio_caller.playout import Playout, turns

SID = "MZ1"


@pytest.mark.parametrize(
    ("frame", "violation"),
    [
        (json.dumps({"event": "media", "streamSid": SID, "media": {"payload": "//8="}}), None),
        (json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": "m1"}}), None),
        (json.dumps({"event": "clear", "streamSid": SID}), None),
        (b"\x00\x01", (31950, "binary frame")),
        ("{nope", (31951, "not JSON: '{nope'")),
        ("[1]", (31951, "message is not a JSON object")),
        (
            json.dumps({"event": "stop", "streamSid": SID}),
            (31951, "event 'stop' is not media, mark or clear"),
        ),
        (
            json.dumps({"event": "clear", "streamSid": SID, "extra": 1}),
            (31951, "clear: fields ['event', 'extra', 'streamSid'] (expected ['event', 'streamSid'])"),
        ),
        (json.dumps({"event": "clear", "streamSid": "MZ2"}), (31951, "clear: wrong streamSid 'MZ2'")),
        (
            json.dumps({"event": "mark", "streamSid": SID, "mark": {}}),
            (31951, "mark.mark must be an object with exactly ['name']"),
        ),
        (
            json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": 3}}),
            (31951, "mark: name must be a string"),
        ),
        (
            json.dumps({"event": "media", "streamSid": SID, "media": {"payload": "!!"}}),
            (31951, "media: payload is not valid base64"),
        ),
    ],
)
def test_server_frames_are_checked_with_twilios_error_codes(frame, violation):
    received, found = wire.decode(frame, SID)
    assert found == violation
    # What is recorded as received: the decoded message when the frame is JSON text, else the frame.
    is_json = isinstance(frame, str) and frame != "{nope"
    assert received == (json.loads(frame) if is_json else frame)


def test_caller_messages_carry_numbers_as_strings():
    cfg = CallerConfig(url="ws://x", stream_sid=SID, call_sid="CA1", account_sid="AC1")
    assert wire.media(SID, "7", chunk=3, frame_ms=20, payload=b"\xff\xff")["media"] == {
        "track": "inbound",
        "chunk": "3",
        "timestamp": "40",
        "payload": "//8=",
    }
    assert wire.start(cfg, "1")["start"]["mediaFormat"] == {
        "encoding": "audio/x-mulaw",
        "sampleRate": 8000,
        "channels": 1,
    }
    assert wire.stop(cfg, "9") == {
        "event": "stop",
        "sequenceNumber": "9",
        "stop": {"accountSid": "AC1", "callSid": "CA1"},
        "streamSid": SID,
    }
    assert wire.mark(SID, "4", "m1")["mark"] == {"name": "m1"}


def test_playout_queues_audio_behind_the_buffer_and_marks_fall_due_when_it_has_played():
    playout = Playout()
    playout.play(b"\x01" * 160, now=0)
    playout.play(b"\x02" * 160, now=80)  # arrives while the first frame plays: queued behind it
    playout.mark("m1", now=80)
    assert playout.next_mark_due() == 320
    assert playout.pop_due_mark(319) is None
    assert playout.pop_due_mark(320) == ("m1", False)
    assert playout.heard_spans(end=1000) == [(0, 320)]
    assert playout.samples_heard(end=200) == 200
    playout.play(b"\x03" * 80, now=4000)  # after 3680 samples of quiet: a second turn
    assert turns(playout.heard_spans(end=5000)) == [(0.0, 0.04), (0.5, 0.51)]
    assert playout.heard_ulaw(end=4080)[318:322] == b"\x02\x02\xff\xff"


def test_clear_drops_what_has_not_played_and_flushes_pending_marks():
    playout = Playout()
    playout.play(b"\x01" * 800, now=0)
    playout.mark("m1", now=0)
    playout.clear(now=300)
    assert playout.samples_heard(end=10_000) == 300
    assert playout.buffer_end == 300
    assert playout.pop_due_mark(0) == ("m1", True)  # due at once, flushed by the clear
    assert playout.pop_due_mark(0) is None
