"""Malformed Twilio messages (hypothesis) at the WebSocket of a running, locked-down edge: every stream
ends with a close code and a reason, the edge stays up, and a concurrent healthy call never notices.

Oversized frames are left to test_bad_input.py: when the server closes on a frame it is still
receiving, the TCP reset can beat its close frame to the client (1006), a property of TCP, not the edge.
Each example opens a properly signed stream (so the messages reach the parser), sends `connected`,
optionally a valid `start` with a token from the signed voice webhook, then the generated messages.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from harness.audio import espeak_ulaw
from harness.secured_edge import (
    ACCOUNT_SID,
    PUBLIC,
    PUBLIC_WSS,
    SIGNER,
    answer_inbound,
    dial_config,
    secured_env,
)
from harness.stack import Stack, start_stack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller, stream_from_twiml
from voicebridge.sim.twilio_rest_fake import TwilioRestFake

STREAM = "MZ" + "f" * 32
CONNECTED = orjson.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}).decode()
STOP = {
    "event": "stop",
    "sequenceNumber": "9",
    "streamSid": STREAM,
    "stop": {"accountSid": ACCOUNT_SID, "callSid": ""},
}
VALID: list[dict[str, Any]] = [
    {
        "event": "media",
        "sequenceNumber": "2",
        "streamSid": STREAM,
        "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "//////////8="},
    },
    {"event": "mark", "sequenceNumber": "3", "streamSid": STREAM, "mark": {"name": "m1"}},
    {
        "event": "dtmf",
        "sequenceNumber": "4",
        "streamSid": STREAM,
        "dtmf": {"track": "inbound_track", "digit": "7"},
    },
    STOP,
]
# Close codes the edge may use: normal (after a `stop`), protocol error, policy (auth/timeouts), too big.
CLOSE_CODES = {1000, 1002, 1008, 1009}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(value, dict):
        return []
    found = []
    for key, inner in value.items():
        found.append((*prefix, key))
        found.extend(_paths(inner, (*prefix, key)))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid Twilio message with one field dropped or replaced by any JSON value."""
    message = copy.deepcopy(draw(st.sampled_from(VALID)))
    path = draw(st.sampled_from(_paths(message)))
    parent = message
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return orjson.dumps(message).decode()


twilio_shaped = st.fixed_dictionaries(
    {"event": st.sampled_from(["connected", "start", "media", "mark", "dtmf", "stop", "clear", "", "Media"])},
    optional={
        "streamSid": st.sampled_from([STREAM, "MZ0", ""]) | json_values,
        "sequenceNumber": st.text(max_size=4) | st.integers(-(2**63), 2**63 - 1),
        "media": json_values,
        "mark": json_values,
        "dtmf": json_values,
        "start": json_values,
        "stop": json_values,
    },
).map(lambda m: orjson.dumps(m).decode())

messages = st.lists(
    st.one_of(
        mutated(),
        twilio_shaped,
        st.text(max_size=100),
        st.binary(max_size=100),
    ),
    min_size=1,
    max_size=4,
)


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory, fake: TwilioRestFake) -> Iterator[Stack]:
    env = secured_env(fake, EDGE_START_TIMEOUT_S="1")
    stack = start_stack(tmp_path_factory.mktemp("fuzz-stack"), {"AGENT_BACKEND": "parrot"}, env)
    yield stack
    stack.stop()


def _valid_start(stack: Stack) -> str:
    """A `start` that passes authentication: its token comes from a signed voice webhook."""
    caller = CallerConfig(url="unused", account_sid=ACCOUNT_SID)
    form = caller.voice_webhook_form()
    signature = SIGNER.compute_signature(f"{PUBLIC}/twilio/voice", form)
    reply = httpx.post(
        f"{stack.http_base}/twilio/voice", data=form, headers={"X-Twilio-Signature": signature}
    )
    _, params = stream_from_twiml(reply.text)
    start = {
        "accountSid": ACCOUNT_SID,
        "streamSid": STREAM,
        "callSid": caller.call_sid,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": params,
    }
    return orjson.dumps(
        {"event": "start", "sequenceNumber": "1", "start": start, "streamSid": STREAM}
    ).decode()


def _exchange(stack: Stack, started: bool, sent: list[str | bytes]) -> tuple[int | None, str]:
    """Act as a broken Twilio, then end with `stop` like Twilio would. The edge reads a stream's
    messages in order, so one it refuses closes the socket before it reads the `stop`; one it
    accepts lets the `stop` end the stream normally. Either way the close is the outcome."""
    headers = {"X-Twilio-Signature": SIGNER.compute_signature(PUBLIC_WSS, {})}
    with connect(stack.media_ws_url, additional_headers=headers, open_timeout=5, max_size=None) as ws:
        try:
            ws.send(CONNECTED)
            if started:
                ws.send(_valid_start(stack))
            for message in sent:
                ws.send(message)
            ws.send(orjson.dumps(STOP).decode())
            while True:
                ws.recv(timeout=30)  # a failure detector: the edge closes the socket either way
        except ConnectionClosed:
            pass
        return ws.protocol.close_code, ws.protocol.close_reason or ""


def _fuzz(stack: Stack, outcomes: list[tuple[int | None, str]]) -> None:
    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(started=st.booleans(), sent=messages)
    def one_stream(started: bool, sent: list[str | bytes]) -> None:
        code, reason = _exchange(stack, started, sent)
        outcomes.append((code, reason))
        assert code in CLOSE_CODES, f"closed with {code} {reason!r}"
        assert reason, f"close {code} without a reason"
        assert stack.edge.proc is not None
        assert stack.edge.proc.poll() is None, "the edge exited"

    one_stream()


async def test_malformed_messages_close_only_their_stream_with_a_reason(fuzz_stack: Stack) -> None:
    caller = CallerConfig(url="unused", account_sid=ACCOUNT_SID)
    stream_url, params = await answer_inbound(fuzz_stack, caller)
    async with TwilioCaller(dial_config(fuzz_stack, stream_url, params, call_sid=caller.call_sid)) as healthy:
        await healthy.wait_heard(0.3, timeout=10)
        outcomes: list[tuple[int | None, str]] = []

        await asyncio.to_thread(_fuzz, fuzz_stack, outcomes)

        # The healthy call still works both ways, however long the fuzzing took: it speaks, and the
        # parrot plays its words back.
        speech = espeak_ulaw("One two three, are you still there?")
        await healthy.wait_agent_quiet(0.5, timeout=15)
        heard = healthy.samples_heard()
        await healthy.speak(speech)
        await healthy.wait_heard((heard + 0.5 * len(speech)) / 8000, timeout=20)
        assert not healthy.closed
        assert healthy.violations == []
    assert healthy.closed_by == "caller"
    assert len(outcomes) >= 40
    assert {code for code, _ in outcomes} - {1000}, "no example was refused: the fuzzing missed the parser"
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{fuzz_stack.http_base}/healthz")).status_code == 200
