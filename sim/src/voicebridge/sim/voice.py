"""A caller's voice made up on the spot: speech-like audio with no text-to-speech tool installed.

Used by the load generator and by `voicebridge-caller --speak`, so that trying a call needs nothing
but this package (no espeak-ng, no sox, no WAV file).
"""

from __future__ import annotations

import math

import numpy as np

from voicebridge.sim.wav import RATE, pcm16_to_ulaw


def speech_like(seconds: float = 1.2, f0: float = 120.0) -> bytes:
    """Voiced, syllable-modulated audio (harmonics of f0 under two formant bumps) as 8 kHz μ-law.

    Deterministic and dependency-free; webrtcvad and the emulator's level detector both take it as
    speech, which is all a test caller needs (intelligibility does not matter)."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = np.zeros_like(t)
    for k in range(1, int(3400 / f0)):
        f = k * f0
        gain = math.exp(-(((f - 700) / 300) ** 2)) + 0.6 * math.exp(-(((f - 1200) / 400) ** 2)) + 0.05
        wave += gain * np.sin(2 * np.pi * f * t + k)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)  # ~4 syllables a second
    pcm = (wave / np.max(np.abs(wave)) * envelope * 0.5 * 32767).astype(np.int16)
    return pcm16_to_ulaw(pcm)
