"""Real speech for the audio tests: espeak-ng, generated once per session, resampled offline with scipy."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

SENTENCE = "Hello, thanks for calling. How can I help you with your account today?"


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2
        assert w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64), w.getframerate()


@pytest.fixture(scope="session")
def speech_22k(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """espeak-ng speech at its native 22 050 Hz, as float samples on the int16 scale."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed")
    out = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run([exe, "-w", str(out), SENTENCE], check=True, capture_output=True)
    x, rate = _read_wav(out)
    assert rate == 22050
    return x


@pytest.fixture(scope="session")
def speech_8k(speech_22k: np.ndarray) -> np.ndarray:
    return resample_poly(speech_22k, 160, 441)


@pytest.fixture(scope="session")
def speech_16k(speech_22k: np.ndarray) -> np.ndarray:
    return resample_poly(speech_22k, 320, 441)
