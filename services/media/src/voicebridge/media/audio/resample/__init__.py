"""Streaming resamplers behind one small interface (`Resampler`), picked by `make_resampler`."""

from __future__ import annotations

from voicebridge.media.audio.resample.base import Resampler
from voicebridge.media.audio.resample.passthrough import PassthroughResampler
from voicebridge.media.audio.resample.polyphase import PolyphaseResampler

__all__ = ["PassthroughResampler", "PolyphaseResampler", "Resampler", "make_resampler"]


def make_resampler(in_rate: int, out_rate: int) -> Resampler:
    """A fresh stateful resampler for one stream (filters are designed once per rate pair and cached)."""
    if in_rate <= 0 or out_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {in_rate} → {out_rate}")
    if in_rate == out_rate:
        return PassthroughResampler()
    return PolyphaseResampler(in_rate, out_rate)
