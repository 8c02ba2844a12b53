"""What a simulated caller received and heard, for tests that compare agent audio byte for byte."""

from __future__ import annotations

import base64
from importlib import resources

from voicebridge.sim.twilio_caller import RATE, TwilioCaller


def prompt(name: str) -> bytes:
    """A bundled spoken prompt of the agent service (μ-law 8 kHz), e.g. "apology", "busy"."""
    return (resources.files("voicebridge.agent.prompts") / f"{name}.ulaw").read_bytes()


def received_audio(call: TwilioCaller) -> bytes:
    """Every media payload the edge sent, in order: the content, independent of playout timing."""
    return b"".join(
        base64.b64decode(m["media"]["payload"])
        for _, m in call.received
        if isinstance(m, dict) and m.get("event") == "media"
    )


def played_seconds(call: TwilioCaller, since: int = 0) -> float:
    """Agent audio the caller heard from sample `since` on. Spans of playback, so a playout stall on a
    loaded machine (a gap with nothing to play) does not count, where a timeline measure would."""
    return sum(max(0, b - max(a, since)) for a, b in call.heard_spans()) / RATE


def played_audio(call: TwilioCaller, since: int = 0) -> bytes:
    """Agent audio as the caller heard it from sample `since` on, gaps left out: a playout stall on a
    loaded machine is a gap in the caller's timeline, not a change of what it heard."""
    heard = call.heard_ulaw
    return b"".join(heard[max(a, since) : b] for a, b in call.heard_spans() if b > since)
