"""The voice activity interface barge-in depends on, independent of the detector behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = ["VadEvent", "VoiceActivityDetector"]


@dataclass
class VadEvent:
    """Speech started or ended, on the caller's media timeline (Twilio `media.timestamp`, ms).

    `timestamp_ms` is when it happened in the audio: the start of the first speech frame for "start",
    the end of the last speech frame for "end". `decided_at_ms` is the point of the same timeline at which
    the detector had heard enough to say so (end of the frame that confirmed it); the difference is the
    detector's own latency, which barge-in metrics report. It defaults to `timestamp_ms`.
    """

    kind: Literal["start", "end"]
    timestamp_ms: int
    decided_at_ms: int = -1

    def __post_init__(self) -> None:
        if self.decided_at_ms < 0:
            self.decided_at_ms = self.timestamp_ms

    @property
    def decision_delay_ms(self) -> int:
        return self.decided_at_ms - self.timestamp_ms


@runtime_checkable
class VoiceActivityDetector(Protocol):
    """Streaming detector over int16 LE 8 kHz PCM."""

    @property
    def is_speaking(self) -> bool:
        """True between a "start" and the following "end"."""
        ...

    def feed(self, pcm8k: bytes, timestamp_ms: int) -> list[VadEvent]:
        """Feed any length of audio whose first sample is at `timestamp_ms`; returns events decided now."""
        ...

    def reset(self) -> None:
        """Forget everything (buffered audio and speaking state) without emitting an event."""
        ...
