"""Bad input on the Twilio WebSocket ends that call with a logged reason and never touches another."""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest
import websockets
from harness.polling import eventually
from harness.stack import Stack

from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller

STREAM = "MZ" + "b" * 32
CALL = "CA" + "b" * 32


def _msg(event: str, **fields: object) -> str:
    return orjson.dumps({"event": event, **fields}).decode()


CONNECTED = _msg("connected", protocol="Call", version="1.0.0")
START = _msg(
    "start",
    sequenceNumber="1",
    streamSid=STREAM,
    start={
        "accountSid": "AC" + "b" * 32,
        "streamSid": STREAM,
        "callSid": CALL,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {},
    },
)
GOOD_MEDIA = _msg(
    "media",
    sequenceNumber="2",
    streamSid=STREAM,
    media={
        "track": "inbound",
        "chunk": "1",
        "timestamp": "0",
        "payload": base64.b64encode(b"\xff" * 160).decode(),
    },
)

# (case, messages after `connected`, what the edge must log)
CASES = [
    ("not_json", [START, "this is not json"], "not JSON"),
    ("unknown_event", [START, _msg("teleport", streamSid=STREAM)], "teleport"),
    ("media_before_start", [GOOD_MEDIA], "media before start"),
    (
        "wrong_types",
        [
            START,
            _msg(
                "media",
                sequenceNumber="2",
                streamSid=STREAM,
                media={"track": "inbound", "chunk": "1", "timestamp": [], "payload": 7},
            ),
        ],
        "must be a",
    ),
    ("oversized", [START, _msg("media", streamSid=STREAM, media={"payload": "A" * 70_000})], "exceeds"),
    ("binary_frame", [START, b"\x00\x01\x02"], "binary frame"),
    ("wrong_stream_sid", [START, GOOD_MEDIA.replace(STREAM, "MZ" + "c" * 32)], "another stream"),
]


async def _misbehave(url: str, messages: list[str | bytes]) -> tuple[int | None, str]:
    """Act as a broken Twilio: send the messages, then read until the edge closes the socket."""
    async with websockets.connect(url, compression=None) as ws:
        await ws.send(CONNECTED)
        for message in messages:
            await ws.send(message)
        try:
            async with asyncio.timeout(5):
                async for _ in ws:
                    pass
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason


@pytest.mark.parametrize(("case", "messages", "logged"), CASES, ids=[c[0] for c in CASES])
async def test_bad_twilio_input_ends_only_that_call_with_a_logged_reason(
    parrot_stack: Stack, case: str, messages: list[str | bytes], logged: str
) -> None:
    async with TwilioCaller(CallerConfig(url=parrot_stack.media_ws_url)) as healthy:
        await healthy.wait_heard(0.3, timeout=10)

        code, reason = await _misbehave(parrot_stack.media_ws_url, messages)

        assert code in {1002, 1008, 1009}, f"{case}: closed with {code} {reason!r}"
        await eventually(lambda: logged in parrot_stack.edge.log(), 3, f"the edge to log why ({logged!r})")
        # The healthy call is untouched: still open, still hearing its agent, no protocol trouble.
        heard_before = healthy.samples_heard()
        await healthy.wait_heard(heard_before / 8000 + 0.5, timeout=5)
        assert not healthy.closed
        assert healthy.violations == []
    assert healthy.closed_by == "caller"
