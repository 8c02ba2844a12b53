"""The caller talks over the agent: playback stops, the rest of that reply is never heard, the agent
learns what was heard, and its next reply is heard in full — whether ElevenLabs numbers audio event ids
per reply or per chunk (docs/elevenlabs.md)."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest
from harness.audio import espeak_ulaw
from harness.stack import Stack

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession
from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller

REPLY = "Your order shipped yesterday and should arrive by Friday afternoon, weather permitting of course."
ANSWER = "Of course, go ahead."
FRAME_S = 0.020
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


def _voiced(ulaw: bytes) -> int:
    """Index of the first sample that is not near silence."""
    return int(np.argmax(np.abs(np.frombuffer(ulaw, np.uint8).astype(int) - 0xFF) > 8))


def _find(haystack: bytes, needle: bytes, start: int = 0) -> int:
    at = haystack.find(needle, start)
    assert at >= 0, "expected audio not found in the caller's recording"
    return at


def _reply_heard(recording: bytes, reply: bytes) -> tuple[int, int]:
    """Where the reply starts in the caller's recording and how many of its samples play unbroken."""
    reply_at = _find(recording, reply[: 8 * 200])
    heard = 0
    while (
        reply_at + heard < len(recording)
        and heard < len(reply)
        and recording[reply_at + heard] == reply[heard]
    ):
        heard += 1
    return reply_at, heard


def _agent_event(kind: str, key: str, field: str, text: str) -> dict[str, object]:
    return {"type": kind, key: {field: text, "event_id": 0}}


@pytest.mark.parametrize("numbering", NUMBERINGS)
async def test_talking_over_the_agent_stops_the_reply_for_good_and_tells_it_what_was_heard(
    elevenlabs_stack: Stack, convai_emulator: ConvAIEmulator, numbering: str
) -> None:
    reply = espeak_ulaw(REPLY, voice="en-gb")
    answer = espeak_ulaw(ANSWER, voice="en-gb")
    # One continuous phrase: a pause between words may briefly resume the agent (by design, see
    # docs/barge-in.md; tested in tests/media), which this test is not about.
    interruption = espeak_ulaw("Hold on a second I need to ask you something about my bill")
    agent_id = f"barge-in-{numbering}-{next(_ids)}"
    sessions: asyncio.Queue[EmulatedSession] = asyncio.Queue()
    caller_done = asyncio.Event()

    async def scenario(session: EmulatedSession) -> None:
        sessions.put_nowait(session)
        # The whole reply at once, faster than real time, in 100 ms chunks, as TTS does: media paces it.
        await session.send_event(
            _agent_event("agent_response", "agent_response_event", "agent_response", REPLY)
        )
        await session.send_audio(reply, chunk_ms=100, alignment=_alignment(REPLY, len(reply) // 8))
        # ElevenLabs is not told of the local barge-in; it answers once the caller's turn is over.
        await session.wait_for_message("contextual_update", timeout=30)
        await caller_done.wait()
        await session.send_event(
            _agent_event("user_transcript", "user_transcription_event", "user_transcript", "Hold on")
        )
        await session.send_event(
            _agent_event("agent_response", "agent_response_event", "agent_response", ANSWER)
        )
        await session.send_audio(answer, chunk_ms=100)

    convai_emulator.add_agent(
        agent_id,
        AgentScript(
            input_format="ulaw_8000", output_format="ulaw_8000", scenario=scenario, event_ids=numbering
        ),
    )
    config = CallerConfig(url=elevenlabs_stack.media_ws_url, custom_parameters={"agent_id": agent_id})
    async with TwilioCaller(config) as call:
        session = await asyncio.wait_for(sessions.get(), 10)
        await call.wait_heard(1.5, timeout=10)
        cut_in = len(call.heard_ulaw)  # the caller starts talking here (sample index)
        await call.speak(interruption)
        update = await session.wait_for_message("contextual_update", timeout=10)
        clears = call.clears_received
        caller_done.set()
        # Event-driven: the answer has been played to its last sample.
        heard_before_answer = call.samples_heard()
        await call.wait_heard((heard_before_answer + len(answer)) / 8000, timeout=20)
        await call.wait_agent_quiet(0.3, timeout=10)
        recording = call.heard_ulaw
        assert call.violations == []
        assert call.clears_received == clears == 1, "one barge-in, one clear"

    # Where the reply started and where the caller stopped hearing it, from the recording alone.
    reply_at, heard = _reply_heard(recording, reply)
    onset = cut_in + _voiced(interruption)
    assert reply_at < onset < reply_at + heard + 8000, "the reply was cut off while the caller spoke"
    # The rest of the interrupted reply never reaches the caller: nothing of it after the cut.
    _rest_never_heard(recording, reply, heard, reply_at + heard)
    # The next reply is heard in full, after the cut.
    assert _find(recording, answer, reply_at + heard) > reply_at + heard
    # The agent was told how long and which words of the reply were heard, from the reply's start.
    text = update["text"]
    assert "heard only the first" in text
    told_s = float(text.split("first ")[1].split(" seconds")[0])
    heard_s = heard / 8000
    assert abs(told_s - heard_s) <= FRAME_S + 0.005, (told_s, heard_s)  # 0.005: the text rounds to 10 ms
    spoken = text.split('"')[1]
    assert spoken
    assert REPLY.startswith(spoken)
    char_s = len(reply) / 8000 / len(REPLY)  # the alignment spreads chars evenly
    assert abs(len(spoken) * char_s - heard_s) <= 2 * char_s + FRAME_S


def _rest_never_heard(recording: bytes, reply: bytes, heard: int, after: int) -> None:
    """No voiced 20 ms of `reply` past its first `heard` samples appears in `recording` after `after`."""
    rest, tail = reply[heard:], recording[after:]
    for at in range(0, len(rest) - 160, 160):
        piece = rest[at : at + 160]
        if len(set(piece)) > 4:  # silence would match anywhere
            assert piece not in tail, f"the interrupted reply resumed ({at / 8} ms after the cut)"


@pytest.mark.parametrize("numbering", NUMBERINGS)
async def test_an_elevenlabs_interruption_stops_the_reply_for_good_and_the_next_is_heard(
    elevenlabs_stack: Stack, convai_emulator: ConvAIEmulator, numbering: str
) -> None:
    reply = espeak_ulaw(REPLY, voice="en-gb")
    answer = espeak_ulaw(ANSWER, voice="en-gb")
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
        await session.send_event(
            _agent_event("user_transcript", "user_transcription_event", "user_transcript", "Hold on")
        )
        await session.send_event(
            _agent_event("agent_response", "agent_response_event", "agent_response", ANSWER)
        )
        await session.send_audio(answer, chunk_ms=100)

    convai_emulator.add_agent(
        agent_id,
        AgentScript(
            input_format="ulaw_8000", output_format="ulaw_8000", scenario=scenario, event_ids=numbering
        ),
    )
    config = CallerConfig(url=elevenlabs_stack.media_ws_url, custom_parameters={"agent_id": agent_id})
    async with TwilioCaller(config) as call:
        await asyncio.wait_for(sessions.get(), 10)
        await call.wait_heard(1.0, timeout=10)
        interrupt.set()
        await call.wait_for_event("clear", timeout=10)
        heard_before_answer = call.samples_heard()
        await call.wait_heard((heard_before_answer + len(answer)) / 8000, timeout=20)
        await call.wait_agent_quiet(0.3, timeout=10)
        recording = call.heard_ulaw
        assert call.violations == []
        assert call.clears_received == 1

    reply_at, heard = _reply_heard(recording, reply)
    assert 8000 <= heard < len(reply), "the reply was cut off after the caller heard a second of it"
    _rest_never_heard(recording, reply, heard, reply_at + heard)
    assert _find(recording, answer, reply_at + heard) > reply_at + heard
