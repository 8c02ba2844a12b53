"""Signal generators and measures shared by the audio tests (imported by name, pytest's prepend mode)."""

from __future__ import annotations

import numpy as np


def tone(freq: float, rate: int, seconds: float, amp: float = 16000.0, phase: float = 0.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t + phase)


def to_pcm(x: np.ndarray) -> bytes:
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()


def from_pcm(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<i2").astype(np.float64)


def steady(x: np.ndarray, rate: int, trim_s: float = 0.1) -> np.ndarray:
    """Drop filter start-up and tail transients."""
    n = round(rate * trim_s)
    return x[n : len(x) - n]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def fit_sine(x: np.ndarray, freq: float, rate: int) -> tuple[float, np.ndarray]:
    """Least-squares amplitude of a sine at `freq` (any phase), and the residual."""
    t = np.arange(len(x)) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t), np.ones_like(t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    return float(np.hypot(coef[0], coef[1])), x - basis @ coef


def band_energy_ratio_db(x: np.ndarray, rate: int, above_hz: float) -> float:
    """Energy above `above_hz` relative to total energy, in dB, with a 4-term Blackman-Harris window.

    The window's sidelobes are below −92 dB, so leakage of an in-band tone does not pose as an image.
    """
    n = len(x)
    k = np.arange(n)
    a = (0.35875, 0.48829, 0.14128, 0.01168)
    w = sum((-1) ** i * c * np.cos(2 * np.pi * i * k / n) for i, c in enumerate(a))
    spec = np.abs(np.fft.rfft(x * w)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / rate)
    high = spec[freqs > above_hz].sum()
    return float(10 * np.log10(max(high, 1e-30) / spec.sum()))


def xcorr_lag(reference: np.ndarray, delayed: np.ndarray) -> int:
    """Lag (samples) by which `delayed` trails `reference`, from the full cross-correlation peak."""
    n = len(reference) + len(delayed)
    size = 1 << (n - 1).bit_length()
    c = np.fft.irfft(np.fft.rfft(delayed, size) * np.conj(np.fft.rfft(reference, size)), size)
    lag = int(np.argmax(c))
    return lag if lag < size // 2 else lag - size
