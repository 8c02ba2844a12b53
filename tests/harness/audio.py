"""Signals for the tests, and measurements of what came out: tones, speech, pitch, duration."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from voicebridge.media.audio.g711 import ulaw_decode, ulaw_encode


def ulaw_to_float(ulaw: bytes) -> np.ndarray:
    return np.frombuffer(ulaw_decode(ulaw), dtype="<i2").astype(np.float64) / 32768.0


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64) / 32768.0


def tone_pcm16(freq_hz: float, seconds: float, rate: int, level: float = 0.3) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq_hz * t) * level * 32767).astype("<i2").tobytes()


def tone_ulaw(freq_hz: float, seconds: float, level: float = 0.3) -> bytes:
    return ulaw_encode(tone_pcm16(freq_hz, seconds, 8000, level))


def active_region(x: np.ndarray, rate: int, threshold: float = 0.1, window_ms: int = 5) -> tuple[int, int]:
    """[start, end) samples where the short-term peak level exceeds `threshold` × the signal's peak."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak == 0.0:
        return 0, 0
    win = max(1, rate * window_ms // 1000)
    n = len(x) // win
    levels = np.abs(x[: n * win]).reshape(n, win).max(axis=1)
    loud = np.nonzero(levels > threshold * peak)[0]
    if len(loud) == 0:
        return 0, 0
    # refine the edges to single samples inside the first/last loud window
    start = loud[0] * win + int(np.argmax(np.abs(x[loud[0] * win : (loud[0] + 1) * win]) > threshold * peak))
    last = x[loud[-1] * win : (loud[-1] + 1) * win]
    end = loud[-1] * win + len(last) - int(np.argmax(np.abs(last[::-1]) > threshold * peak))
    return int(start), int(end)


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    """Frequency of the strongest spectral peak, refined by parabolic interpolation (Hann window)."""
    x = x - np.mean(x)
    n = len(x)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(n), n=4 * n))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-20)
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + offset) * rate / (4 * n)


def espeak_ulaw(text: str, voice: str = "en-us", wpm: int = 160) -> bytes:
    """Speech from espeak-ng as 8 kHz mu-law (converted with sox)."""
    if not shutil.which("espeak-ng") or not shutil.which("sox"):
        raise RuntimeError("espeak-ng and sox are needed (scripts/test installs them)")
    with tempfile.TemporaryDirectory() as tmp:
        wav, raw = Path(tmp) / "s.wav", Path(tmp) / "s.ulaw"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(wav), text], check=True)
        subprocess.run(
            ["sox", str(wav), "-r", "8000", "-e", "mu-law", "-b", "8", "-c", "1", "-t", "raw", str(raw)],
            check=True,
        )
        return raw.read_bytes()


def normalized_xcorr_peak(needle: np.ndarray, haystack: np.ndarray) -> tuple[float, int]:
    """Best normalised cross-correlation of `needle` inside `haystack`: (coefficient, offset)."""
    n = len(needle)
    if len(haystack) < n:
        return 0.0, 0
    size = 1 << int(np.ceil(np.log2(len(haystack) + n)))
    corr = np.fft.irfft(np.fft.rfft(haystack, size) * np.conj(np.fft.rfft(needle, size)), size)[
        : len(haystack) - n + 1
    ]
    energy = np.convolve(haystack**2, np.ones(n), mode="valid")
    coeff = corr / (np.sqrt(energy * np.sum(needle**2)) + 1e-12)
    best = int(np.argmax(coeff))
    return float(coeff[best]), best
