"""The resampler for equal rates: no copy, no delay, so 8 kHz PCM costs nothing."""

from __future__ import annotations

__all__ = ["PassthroughResampler"]


class PassthroughResampler:
    """Returns its input unchanged; see the Resampler protocol."""

    __slots__ = ("delay_s",)

    def __init__(self) -> None:
        self.delay_s = 0.0

    def process(self, pcm: bytes) -> bytes:
        if len(pcm) & 1:
            raise ValueError(f"PCM must hold whole int16 samples, got {len(pcm)} bytes")
        return pcm

    def reset(self) -> None:
        return None
