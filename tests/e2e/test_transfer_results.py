"""What the agent is told about a transfer is what the edge did, end to end against the ConvAI emulator.

The emulated agent asks for a transfer with its `transfer_to_number` client tool; the edge allows only
EDGE_TRANSFER_DESTINATIONS. A refused transfer comes back as an `is_error` tool result and the call
goes on (the agent speaks again and the caller hears it); an allowed one is carried out on Twilio's
REST API (the fake) and then reported as done.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.polling import eventually
from harness.secured_edge import (
    call_updates,
    place_outbound,
    secured_env,
)
from harness.stack import Stack, start_stack

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession, tone
from voicebridge.sim.twilio_rest_fake import TwilioRestFake

AGENT = "agent_transfers"
ALLOWED = "+15557770000"
PREMIUM = "+19005550123"
RESULTS: dict[str, dict] = {}  # destination -> the client_tool_result the emulated agent received


async def asks_for_a_transfer(session: EmulatedSession) -> None:
    """Says a few words, calls transfer_to_number to the call's `destination`, then talks on."""
    assert session.init is not None
    destination = session.init["dynamic_variables"]["destination"]
    await session.send_audio(tone("ulaw_8000", 440, 400))  # "Let me put you through."
    await session.send_event(
        {
            "type": "client_tool_call",
            "client_tool_call": {
                "tool_name": "transfer_to_number",
                "tool_call_id": "tc_transfer",
                "parameters": {"phone_number": destination},
                "event_id": 2,
            },
        }
    )
    RESULTS[destination] = await session.wait_for_message("client_tool_result", timeout=20)
    await session.send_audio(tone("ulaw_8000", 660, 400))  # "Sorry, I cannot transfer you there."
    await session.wait_closed(timeout=60)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, fake: TwilioRestFake, convai_emulator: ConvAIEmulator
) -> Iterator[Stack]:
    convai_emulator.add_agent(AGENT, AgentScript("ulaw_8000", "ulaw_8000", scenario=asks_for_a_transfer))
    agent_env = {
        "AGENT_BACKEND": "elevenlabs",
        "ELEVENLABS_AGENT_ID": AGENT,
        "ELEVENLABS_BASE_URL": convai_emulator.base_url,
    }
    edge_env = secured_env(fake, EDGE_TRANSFER_DESTINATIONS=ALLOWED)
    started = start_stack(tmp_path_factory.mktemp("transfer-stack"), agent_env, edge_env)
    yield started
    started.stop()


async def test_a_refused_transfer_is_an_error_result_and_the_call_goes_on(
    stack: Stack, fake: TwilioRestFake
) -> None:
    call = await place_outbound(stack, fake, {"destination": PREMIUM})
    try:
        await call.wait_heard(0.8, timeout=20)  # the words before the tool call, then the words after it
        assert not call.closed
    finally:
        await call.hangup()
    result = RESULTS[PREMIUM]
    assert result["tool_call_id"] == "tc_transfer"
    assert result["is_error"] is True
    assert "destination not allowed" in result["result"]
    assert "not transferred" in result["result"]
    assert call_updates(fake, call.cfg.call_sid) == []  # nothing dialled, nothing hung up
    assert stack.metric("edge", "edge_hangups_total", 'result="refused"') >= 1


async def test_an_allowed_transfer_is_dialled_then_reported_done(stack: Stack, fake: TwilioRestFake) -> None:
    call = await place_outbound(stack, fake, {"destination": ALLOWED})
    await call.wait_closed(timeout=20)  # the edge ends the stream once Twilio has the <Dial>
    await call.hangup()
    (transfer,) = call_updates(fake, call.cfg.call_sid)
    assert f"<Number>{ALLOWED}</Number>" in (transfer.field("Twiml") or "")
    assert call.samples_heard() >= 3200  # the words before the transfer were heard first
    # The tool result travels edge -> media -> agent -> emulator after the edge has dialled.
    await eventually(lambda: ALLOWED in RESULTS, 10, "the transfer's tool result at the emulated agent")
    result = RESULTS[ALLOWED]
    assert result["is_error"] is False
    assert result["result"] == f"The call is being transferred to {ALLOWED}."
