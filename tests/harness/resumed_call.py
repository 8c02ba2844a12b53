"""A simulated call through a failure that the bridge recovers from: greeting, a reply cut short by the
failure, then the new conversation's answer. Shared by the end-to-end resume tests."""

from __future__ import annotations

from harness.audio import tone_ulaw
from harness.heard import played_seconds, received_audio
from voicebridge.sim.twilio_caller import RATE, TwilioCaller

VOICE = tone_ulaw(300.0, 0.4, level=0.5)  # loud enough for the emulator's utterance detection


async def hear(call: TwilioCaller, n_bytes: int, quiet_s: float = 0.2) -> None:
    """Until the caller has heard `n_bytes` of μ-law in all, and then nothing for `quiet_s`."""
    await call.wait_heard(n_bytes / RATE, timeout=10)
    await call.wait_agent_quiet(quiet_s, timeout=5)


async def answered_then_hang_up(call: TwilioCaller, heard_bytes: int) -> None:
    """The caller speaks and hears the answer (`heard_bytes` heard in all); the call is still up, and
    the caller hangs up cleanly."""
    await call.speak(VOICE)
    await hear(call, heard_bytes)
    assert not call.closed  # the call went on
    await call.hangup()
    await call.wait_closed(timeout=10)
    assert call.violations == []


def assert_heard_once_each(call: TwilioCaller, *parts: bytes) -> None:
    """The caller received each part once, in order, and heard nothing else (up to a frame of padding
    each): nothing twice, no second greeting."""
    received = received_audio(call)
    position = 0
    for part in parts:
        assert received.count(part) == 1
        found = received.find(part)
        assert found >= position
        position = found + len(part)
    assert abs(played_seconds(call) - sum(len(p) for p in parts) / RATE) <= 0.02 * len(parts)
