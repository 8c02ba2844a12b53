"""μ-law and WAV helpers used by the simulated caller."""

import struct
from pathlib import Path

import numpy as np

from voicebridge.sim.wav import pcm16_to_ulaw, read_wav_as_ulaw, ulaw_to_pcm16, write_wav


def _wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> None:
    data = samples.astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)


def test_ulaw_codec_matches_g711_anchors_and_round_trips() -> None:
    codes = bytes(range(256))
    pcm = ulaw_to_pcm16(codes)
    assert (pcm[0xFF], pcm[0x80], pcm[0x00]) == (0, 32124, -32124)
    back = pcm16_to_ulaw(pcm)
    assert [i for i in range(256) if back[i] != codes[i]] == [0x7F]  # negative zero encodes as +0


def test_write_then_read_round_trips_ulaw(tmp_path: Path) -> None:
    ulaw = pcm16_to_ulaw((np.sin(np.arange(800) / 5) * 8000).astype(np.int16))
    write_wav(tmp_path / "a.wav", ulaw)
    assert read_wav_as_ulaw(tmp_path / "a.wav") == ulaw


def test_16k_stereo_pcm_is_mixed_and_resampled_to_8k(tmp_path: Path) -> None:
    t = np.arange(16000) / 16000
    tone = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)
    _wav(tmp_path / "b.wav", np.stack([tone, tone], axis=1).reshape(-1), 16000, channels=2)
    ulaw = read_wav_as_ulaw(tmp_path / "b.wav")
    assert len(ulaw) == 8000
    pcm = ulaw_to_pcm16(ulaw).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 s at 8 kHz → 1 Hz bins: the tone keeps its pitch
