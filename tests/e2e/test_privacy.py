"""Personal data stays out of the logs, and per-call secrets do not pile up in them, end to end.

Real processes (edge with signatures on, media, agent with the `elevenlabs` backend against the ConvAI
emulator, a private agent so every call fetches a signed URL); Twilio played by the simulated caller
and the fake REST API. A call carries a known caller number, caller and agent words (ElevenLabs
transcripts) and DTMF digits; afterwards every service's log is searched for them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from harness.polling import eventually
from harness.secured_edge import (
    ACCOUNT_SID,
    API_TOKEN,
    answer_inbound,
    dial_config,
    no_agent_work,
    secured_env,
)
from harness.stack import Stack, start_edge, start_stack

from voicebridge.sim.convai_emulator import (
    AgentScript,
    ConvAIEmulator,
    EmulatedSession,
    message_kind,
    tone,
)
from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller
from voicebridge.sim.twilio_rest_fake import TwilioRestFake

CALLER = "+15551234567"
CALLER_MASKED = "+1******4567"
OUTBOUND_TO = "+15559876543"
CALLER_WORDS = "my account password is purple elephant"
AGENT_WORDS = "your balance is seventeen thousand dollars"
DIGITS = "9817"
AGENT = "agent_private_privacy"
API_KEY = "xi-privacy-test-key-0123456789"


async def talkative(session: EmulatedSession) -> None:
    """Greets, waits for the caller's keys, then 'hears' them say CALLER_WORDS and answers."""
    await session.send_audio(tone("ulaw_8000", 440, 300))
    for _ in DIGITS:  # one user_activity + contextual_update pair per key
        await session.wait_for_message(
            lambda m: message_kind(m) == "contextual_update" and "pressed" in m.get("text", ""), 15
        )
    await session.send_event(
        {"type": "user_transcript", "user_transcription_event": {"user_transcript": CALLER_WORDS}}
    )
    rid = session.next_event_id()
    await session.send_event(
        {"type": "agent_response", "agent_response_event": {"agent_response": AGENT_WORDS, "event_id": rid}}
    )
    await session.send_audio(tone("ulaw_8000", 660, 300), event_id=rid)
    await session.wait_closed(timeout=60)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, fake: TwilioRestFake, convai_emulator: ConvAIEmulator
) -> Iterator[Stack]:
    convai_emulator.add_agent(
        AGENT, AgentScript("ulaw_8000", "ulaw_8000", requires_auth=True, scenario=talkative)
    )
    agent_env = {
        "AGENT_BACKEND": "elevenlabs",
        "ELEVENLABS_AGENT_ID": AGENT,
        "ELEVENLABS_API_KEY": API_KEY,
        "ELEVENLABS_BASE_URL": convai_emulator.base_url,
    }
    started = start_stack(tmp_path_factory.mktemp("privacy-stack"), agent_env, secured_env(fake))
    yield started
    started.stop()


async def _call_with_personal_data(
    stack: Stack, media_ws_url: str | None = None, during: Callable[[], None] | None = None
) -> None:
    caller = CallerConfig(url="unused", account_sid=ACCOUNT_SID, from_number=CALLER)
    stream_url, params = await answer_inbound(stack, caller)
    cfg = dial_config(stack, stream_url, params, call_sid=caller.call_sid)
    if media_ws_url:
        cfg.url = media_ws_url
    async with TwilioCaller(cfg) as call:
        await call.wait_heard(0.3, timeout=15)  # the greeting
        if during is not None:
            during()
        for digit in DIGITS:
            await call.send_dtmf(digit)
        await call.wait_heard(0.6, timeout=15)  # the answer to CALLER_WORDS
    await eventually(lambda: no_agent_work(stack), 10, "the call to end everywhere")


def _token(digits: str) -> re.Pattern[str]:
    """`digits` standing alone: not inside a longer run of letters and digits, such as a random call
    SID, conversation id or port, which holds a given four digits now and then (by a count of the ids
    and ports a call logs, about one run in 400)."""
    return re.compile(rf"(?<![0-9A-Za-z]){re.escape(digits)}(?![0-9A-Za-z])")


def _leaks(logs: str) -> list[str]:
    numbers = (CALLER, CALLER[1:], CALLER[2:], OUTBOUND_TO, OUTBOUND_TO[1:], OUTBOUND_TO[2:], DIGITS)
    found = [what for what in numbers if _token(what).search(logs)]
    found += [words for words in (CALLER_WORDS, AGENT_WORDS) if words in logs]
    found += re.findall(r"pressed (?:the key )?[0-9*#]", logs)
    return found


async def test_no_number_words_or_digits_reach_any_log_at_info(stack: Stack, fake: TwilioRestFake) -> None:
    await _call_with_personal_data(stack)
    async with httpx.AsyncClient(base_url=stack.http_base) as client:  # an outbound call logs its number too
        placed = await client.post(
            "/calls", json={"to": OUTBOUND_TO}, headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
    assert placed.status_code == 201, placed.text

    logs = stack.logs()
    assert f"answering inbound call from {CALLER_MASKED}" in logs  # the call's lines are there, masked
    assert "caller pressed a key" in logs
    assert "+1******6543" in logs
    assert _leaks(logs) == []


async def test_with_log_transcripts_the_same_call_logs_words_and_digits(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The control: the words and digits did flow through the edge; only the setting kept them out."""
    edge, url = start_edge(
        stack, tmp_path_factory.mktemp("transcripts-edge"), "edge-transcripts", LOG_TRANSCRIPTS="true"
    )
    try:
        await _call_with_personal_data(stack, url)
    finally:
        edge.stop()
    logs = edge.log()
    assert f"caller: {CALLER_WORDS}" in logs
    assert f"agent: {AGENT_WORDS}" in logs
    assert [f"caller pressed {d}" in logs for d in DIGITS] == [True] * len(DIGITS)
    assert CALLER not in logs  # numbers stay masked whatever the setting


async def test_signed_urls_leave_the_redaction_set_when_their_calls_end(
    stack: Stack, convai_emulator: ConvAIEmulator
) -> None:
    await eventually(lambda: no_agent_work(stack), 10, "no call in progress")
    baseline = stack.metric("agent", "voicebridge_log_redactions")
    signed_before = len(convai_emulator.signed_url_requests)
    during: list[float] = []
    for _ in range(3):
        await _call_with_personal_data(
            stack, during=lambda: during.append(stack.metric("agent", "voicebridge_log_redactions"))
        )
        assert stack.metric("agent", "voicebridge_log_redactions") == baseline
    assert during == [baseline + 2] * 3  # the signed URL and its signature, while the call lasted
    assert len(convai_emulator.signed_url_requests) == signed_before + 3  # each call had its signed URL
    signatures = list(convai_emulator._signatures)  # what the signed URLs carried
    logs = stack.logs()
    assert signatures
    assert [sig for sig in signatures if sig in logs] == []
