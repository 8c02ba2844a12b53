"""Test signals and the measures taken on them (numpy only), and the espeak-ng speech the PESQ and
CPU sections use: the bench's instruments, apart from what they measure."""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

PHONE = 8000
FRAME_S = 0.02
SENTENCES = (
    "Hello, thanks for calling. How can I help you today?",
    "I would like to check the balance on my account, please.",
    "Sure. Can you confirm the last four digits of your card number?",
)


def tone(freq: float, rate: int, seconds: float, amp: float = 16000.0) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)


def pcm(x: np.ndarray) -> bytes:
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()


def arr(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<i2").astype(np.float64)


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def stream(process: Callable[[bytes], bytes], x: np.ndarray, rate: int) -> np.ndarray:
    """Feed `x` in 20 ms chunks, as a call does."""
    return arr(b"".join(process(c) for c in chunks(pcm(x), 2 * round(rate * FRAME_S))))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


def steady(x: np.ndarray, rate: int) -> np.ndarray:
    n = round(0.1 * rate)
    return x[n : len(x) - n]


def sine_amp(x: np.ndarray, freq: float, rate: int) -> float:
    t = np.arange(len(x)) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t), np.ones_like(t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    return float(np.hypot(coef[0], coef[1]))


def energy_above_db(x: np.ndarray, rate: int, above_hz: float) -> float:
    """Energy above `above_hz` relative to the total, dB; Blackman-Harris window (−92 dB sidelobes)."""
    k = np.arange(len(x))
    coefs = (0.35875, 0.48829, 0.14128, 0.01168)
    w = sum((-1) ** i * c * np.cos(2 * np.pi * i * k / len(x)) for i, c in enumerate(coefs))
    spec = np.abs(np.fft.rfft(x * w)) ** 2
    high = spec[np.fft.rfftfreq(len(x), 1 / rate) > above_hz].sum()
    return float(10 * np.log10(max(high, 1e-30) / spec.sum()))


def xcorr_lag(reference: np.ndarray, delayed: np.ndarray) -> float:
    """Lag (samples, sub-sample by parabolic interpolation) by which `delayed` trails `reference`."""
    size = 1 << (len(reference) + len(delayed) - 1).bit_length()
    c = np.fft.irfft(np.fft.rfft(delayed, size) * np.conj(np.fft.rfft(reference, size)), size)
    i = int(np.argmax(c))
    a, b, d = c[i - 1], c[i], c[(i + 1) % size]
    frac = 0.5 * (a - d) / (a - 2 * b + d) if (a - 2 * b + d) != 0 else 0.0
    lag = i + frac
    return lag if lag < size / 2 else lag - size


# --- speech ----------------------------------------------------------------------------------------


def espeak(text: str) -> np.ndarray | None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.wav"
        subprocess.run([exe, "-w", str(path), text], check=True, capture_output=True)  # noqa: S603
        with wave.open(str(path), "rb") as w:
            if w.getframerate() != 22050 or w.getsampwidth() != 2:
                return None
            return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def speech_22k() -> np.ndarray | None:
    parts = [espeak(s) for s in SENTENCES]
    if any(p is None for p in parts):
        return None
    gap = np.zeros(11025)
    return np.concatenate([x for p in parts for x in (p, gap)])


def to_rate(x22k: np.ndarray, rate: int) -> np.ndarray:
    """Offline high-quality resampling (scipy, long Kaiser filter), for reference signals only."""
    from scipy.signal import resample_poly  # bench extra

    g = math.gcd(rate, 22050)
    return resample_poly(x22k, rate // g, 22050 // g, window=("kaiser", 14.0))
