"""Audio as the emulated agent hears and speaks it, in wire formats (pcm_N is s16le mono at N Hz,
ulaw_8000 is G.711 μ-law): levels for the echo's speech detection, tones and silence for scripted replies,
and a plain resampler for the echo. Nothing here needs quality: a person testing by hand hears it.
"""

from __future__ import annotations

import numpy as np

from voicebridge.sim.wav import pcm16_to_ulaw, ulaw_to_pcm16


def bytes_per_ms(fmt: str) -> float:
    if fmt == "ulaw_8000":
        return 8.0
    if fmt.startswith("pcm_"):
        return int(fmt[4:]) * 2 / 1000
    raise ValueError(f"unknown audio format {fmt!r}")


def sample_rate(fmt: str) -> int:
    return 8000 if fmt == "ulaw_8000" else int(fmt[4:])


def encode_pcm16(pcm: np.ndarray, fmt: str) -> bytes:
    """s16 samples at the format's rate → wire bytes."""
    return pcm16_to_ulaw(pcm) if fmt == "ulaw_8000" else pcm.astype("<i2").tobytes()


def decode_to_pcm16(data: bytes, fmt: str) -> np.ndarray:
    return ulaw_to_pcm16(data) if fmt == "ulaw_8000" else np.frombuffer(data[: len(data) // 2 * 2], "<i2")


_ULAW_SQUARES = ulaw_to_pcm16(bytes(range(256))).astype(np.float64) ** 2


def rms(data: bytes, fmt: str) -> float:
    """RMS level of a frame in its wire format (μ-law by table: this runs for every caller frame)."""
    if fmt == "ulaw_8000":
        return float(np.sqrt(_ULAW_SQUARES[np.frombuffer(data, np.uint8)].mean()))
    return float(np.sqrt(np.mean(decode_to_pcm16(data, fmt).astype(np.float64) ** 2)))


def tone(fmt: str, freq_hz: float, ms: int, level: float = 0.3) -> bytes:
    rate = sample_rate(fmt)
    t = np.arange(rate * ms // 1000) / rate
    return encode_pcm16((np.sin(2 * np.pi * freq_hz * t) * level * 32767).astype(np.int16), fmt)


def silence(fmt: str, ms: int) -> bytes:
    n = sample_rate(fmt) * ms // 1000
    return encode_pcm16(np.zeros(n, dtype=np.int16), fmt)


def resample(pcm: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Linear interpolation; plenty for an echo heard by a person testing by hand."""
    if src == dst or len(pcm) == 0:
        return pcm
    n = int(len(pcm) * dst / src)
    return np.interp(np.linspace(0, len(pcm) - 1, n), np.arange(len(pcm)), pcm).astype(np.int16)
