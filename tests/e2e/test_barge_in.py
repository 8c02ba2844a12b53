"""The caller talks over the agent: playback stops, the rest of that reply is never heard, the agent
learns what was heard, and its next reply is heard in full — whether ElevenLabs numbers audio event ids
per reply or per chunk (docs/elevenlabs.md)."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest
from harness.audio import espeak_ulaw
from harness.heard import played_audio
from harness.stack import Stack

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession, Scenario
from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller
from voicebridge.sim.twilio_caller.wire import media_audio

REPLY = "Your order shipped yesterday and should arrive by Friday afternoon, weather permitting of course."
ANSWER = "Of course, go ahead."
CALLER_FRAME = 160  # samples per media message the caller sends (20 ms)
ROUNDING_S = 0.006  # the told time: truncated to whole ms, then written to 10 ms
FIRST = 8000 * 7 // 2  # the part of the reply sent before the caller cuts in: 3.5 s
NUMBERINGS = ["per_reply", "per_chunk"]
_ids = itertools.count()


def _alignment(text: str, duration_ms: int) -> dict[str, list]:
    """ElevenLabs-style character timing, spread evenly over the audio (the emulator's stand-in)."""
    step = duration_ms / len(text)
    return {
        "chars": list(text),
        "char_start_times_ms": [round(i * step) for i in range(len(text))],
        "char_durations_ms": [round(step)] * len(text),
    }


def _part(alignment: dict[str, list], start_ms: int, end_ms: int) -> dict[str, list]:
    """The characters of `alignment` that start in [start_ms, end_ms), timed from start_ms."""
    keep = [i for i, t in enumerate(alignment["char_start_times_ms"]) if start_ms <= t < end_ms]
    return {
        "chars": [alignment["chars"][i] for i in keep],
        "char_start_times_ms": [alignment["char_start_times_ms"][i] - start_ms for i in keep],
        "char_durations_ms": [alignment["char_durations_ms"][i] for i in keep],
    }


def _voiced(ulaw: bytes) -> int:
    """Index of the first sample that is not near silence."""
    return int(np.argmax(np.abs(np.frombuffer(ulaw, np.uint8).astype(int) - 0xFF) > 8))


def _played(call: TwilioCaller) -> tuple[bytes, list[tuple[int, int]]]:
    """What the caller heard, gaps left out (a stall on a loaded machine is a gap, not a change of
    content), and the sample ranges it played in."""
    return played_audio(call), call.heard_spans()


def _sample_at(spans: list[tuple[int, int]], offset: int) -> int:
    """The call's sample index at which byte `offset` of the played audio was heard."""
    for a, b in spans:
        if offset < b - a:
            return a + offset
        offset -= b - a
    return spans[-1][1]


def _mark_positions(call: TwilioCaller) -> dict[str, int]:
    """Each mark the caller was sent -> the bytes of agent audio sent before it: the stream position
    media gave it (the audio before a mark is the audio it stands for)."""
    positions, sent = {}, 0
    for _, msg in call.received:
        event = msg.get("event") if isinstance(msg, dict) else None
        if event == "media":
            sent += len(media_audio(msg))
        elif event == "mark":
            positions[msg["mark"]["name"]] = sent
    return positions


def _heard_bounds(
    call: TwilioCaller, spans: list[tuple[int, int]], voiced_at: int, cut: int
) -> tuple[int, int]:
    """What media can have known of the reply heard when it stopped it, in samples, from the caller's
    own record (docs/barge-in.md: mark echoes, plus real time since the last one).

    Low: the position of the last mark the caller echoed as played before it sent its first voiced
    frame; the edge forwards echoes ahead of audio, so media had it before the speech that stopped
    the reply. High: that position plus the time from when it played to the clear: media counts on
    from a later echo and never past the time the clear took effect. The gap between what was heard and
    either bound is the echo's and the clear's trip through the stack, which the machine's load sets:
    no fixed tolerance can hold it."""
    positions = _mark_positions(call)
    proven = [positions[name] for at, name, flushed in call.echoes if not flushed and at < voiced_at]
    assert proven, "no mark was echoed before the caller spoke"
    low = max(proven)
    played_at = _sample_at(spans, low - 1) + 1  # the caller's sample index at which the mark fell due
    return low, low + cut - played_at


def _heard_reply_then_answer(call: TwilioCaller, reply: bytes, answer: bytes) -> tuple[int, int]:
    """Asserts the caller heard the start of `reply`, nothing of it after the one clear, then all of
    `answer`; returns how many samples of the reply were heard and the sample index of the clear."""
    played, spans = _played(call)
    (cut,) = call.clears_at
    assert played.endswith(answer), "the next reply was not heard in full"
    heard = len(played) - len(answer)
    assert 0 < heard < len(reply)
    assert played[:heard] == reply[:heard], "the caller heard something other than the reply's start"
    assert _sample_at(spans, heard - 1) < cut, "the interrupted reply went on after the clear"
    assert _sample_at(spans, heard) >= cut
    return heard, cut


async def _answer(session: EmulatedSession, answer: bytes) -> None:
    """ElevenLabs after the caller's turn: its transcript, then the next reply's text and audio."""
    await session.send_event(
        _agent_event("user_transcript", "user_transcription_event", "user_transcript", "Hold on")
    )
    await session.send_event(_agent_event("agent_response", "agent_response_event", "agent_response", ANSWER))
    await session.send_audio(answer, chunk_ms=100)


async def _hear_out(call: TwilioCaller, answer: bytes) -> None:
    """Event-driven: until the answer has been played to its last sample and the line is quiet.

    Counted from what was heard before the last clear, not from now: on a loaded machine part of the
    answer may already have played by the time the test has seen the clear."""
    before_clear = call.samples_heard(before=call.clears_at[-1]) if call.clears_at else call.samples_heard()
    await call.wait_heard((before_clear + len(answer)) / 8000, timeout=20)
    await call.wait_agent_quiet(0.3, timeout=10)


def _caller_of(
    stack: Stack, emulator: ConvAIEmulator, agent_id: str, scenario: Scenario, numbering: str
) -> CallerConfig:
    emulator.add_agent(
        agent_id,
        AgentScript(
            input_format="ulaw_8000", output_format="ulaw_8000", scenario=scenario, event_ids=numbering
        ),
    )
    return CallerConfig(url=stack.media_ws_url, custom_parameters={"agent_id": agent_id})


def _agent_event(kind: str, key: str, field: str, text: str) -> dict[str, object]:
    return {"type": kind, key: {field: text, "event_id": 0}}


@pytest.fixture(scope="module")
def voices() -> tuple[bytes, bytes]:
    """The agent's reply and its answer after the caller's turn, as μ-law 8 kHz."""
    return espeak_ulaw(REPLY, voice="en-gb"), espeak_ulaw(ANSWER, voice="en-gb")


@pytest.mark.parametrize("numbering", NUMBERINGS)
async def test_talking_over_the_agent_stops_the_reply_for_good_and_tells_it_what_was_heard(
    elevenlabs_stack: Stack, convai_emulator: ConvAIEmulator, voices: tuple[bytes, bytes], numbering: str
) -> None:
    reply, answer = voices
    # One continuous phrase: a pause between words may briefly resume the agent (by design, see
    # docs/barge-in.md; tested in tests/media), which this test is not about.
    interruption = espeak_ulaw("Hold on a second I need to ask you something about my bill")
    agent_id = f"barge-in-{numbering}-{next(_ids)}"
    sessions: asyncio.Queue[EmulatedSession] = asyncio.Queue()
    caller_done = asyncio.Event()

    async def scenario(session: EmulatedSession) -> None:
        sessions.put_nowait(session)
        # The reply's first seconds at once, faster than real time, in 100 ms chunks, as TTS does:
        # media paces it. ElevenLabs is not told of the local barge-in and streams the rest of the
        # same reply after it; it answers once the caller's turn is over.
        timing = _alignment(REPLY, len(reply) // 8)
        await session.send_event(
            _agent_event("agent_response", "agent_response_event", "agent_response", REPLY)
        )
        first = await session.send_audio(reply[:FIRST], chunk_ms=100, alignment=_part(timing, 0, FIRST // 8))
        await session.wait_for_message("contextual_update", timeout=30)
        rest = _part(timing, FIRST // 8, len(reply) // 8)
        await session.send_audio(reply[FIRST:], chunk_ms=100, event_id=first, alignment=rest)
        await caller_done.wait()
        await _answer(session, answer)

    config = _caller_of(elevenlabs_stack, convai_emulator, agent_id, scenario, numbering)
    async with TwilioCaller(config) as call:
        session = await asyncio.wait_for(sessions.get(), 10)
        await call.wait_heard(1.5, timeout=10)
        cut_in = len(call.heard_ulaw)  # the caller starts talking here (sample index)
        await call.speak(interruption)
        update = await session.wait_for_message("contextual_update", timeout=10)
        clears = call.clears_received
        caller_done.set()
        await _hear_out(call, answer)
        assert call.violations == []
        assert call.clears_received == clears == 1, "one barge-in, one clear"

    # From the recording alone: the start of the reply, cut while the caller spoke, then the answer.
    heard, cut = _heard_reply_then_answer(call, reply, answer)
    voiced_at = cut_in + _voiced(interruption)
    assert voiced_at < cut
    # The agent was told how long and which words of the reply were heard, from the reply's start:
    # no less than the marks had proven played, no more than had played by the clear.
    text = update["text"]
    assert "heard only the first" in text
    told_s = float(text.split("first ")[1].split(" seconds")[0])
    low, high = _heard_bounds(call, _played(call)[1], voiced_at - CALLER_FRAME, cut)
    assert low <= heard <= high
    assert low / 8000 - ROUNDING_S <= told_s <= high / 8000 + ROUNDING_S, (low / 8000, told_s, high / 8000)
    spoken = text.split('"')[1]
    assert spoken
    assert REPLY.startswith(spoken)
    char_s = len(reply) / 8000 / len(REPLY)  # the alignment spreads chars evenly
    assert abs(len(spoken) * char_s - told_s) <= 2 * char_s + ROUNDING_S  # the words of the told time


@pytest.mark.parametrize("numbering", NUMBERINGS)
async def test_an_elevenlabs_interruption_stops_the_reply_for_good_and_the_next_is_heard(
    elevenlabs_stack: Stack, convai_emulator: ConvAIEmulator, voices: tuple[bytes, bytes], numbering: str
) -> None:
    reply, answer = voices
    agent_id = f"server-interruption-{numbering}-{next(_ids)}"
    sessions: asyncio.Queue[EmulatedSession] = asyncio.Queue()
    interrupt = asyncio.Event()

    async def scenario(session: EmulatedSession) -> None:
        sessions.put_nowait(session)
        await session.send_event(
            _agent_event("agent_response", "agent_response_event", "agent_response", REPLY)
        )
        last = await session.send_audio(reply, chunk_ms=100)
        await interrupt.wait()  # ElevenLabs' own turn-taking decides the caller cut in
        await session.send_event({"type": "interruption", "interruption_event": {"event_id": last}})
        await _answer(session, answer)

    config = _caller_of(elevenlabs_stack, convai_emulator, agent_id, scenario, numbering)
    async with TwilioCaller(config) as call:
        await asyncio.wait_for(sessions.get(), 10)
        await call.wait_heard(1.0, timeout=10)
        interrupt.set()
        await call.wait_for_event("clear", timeout=10)
        await _hear_out(call, answer)
        assert call.violations == []
        assert call.clears_received == 1

    heard, _ = _heard_reply_then_answer(call, reply, answer)
    assert heard >= 8000, "the caller heard a second of the reply before ElevenLabs cut it off"
