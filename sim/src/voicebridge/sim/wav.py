"""G.711 μ-law and WAV helpers for the simulated peers (numpy; the sim is not the hot path).

WAVs are written as 16-bit PCM at 8 kHz (every player opens them). Reading accepts PCM 8/16/24/32-bit,
float32 and μ-law WAVs at any rate and channel count: channels are averaged, and other rates are resampled
to 8 kHz by a 63-tap Hamming-windowed-sinc low-pass (cut-off 3.6 kHz, only when downsampling) followed by
linear interpolation: crude, but faithful enough for a test caller's voice.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

RATE = 8000
SILENCE = 0xFF  # μ-law code for 0

_EXP_LUT = np.array([0] + [i.bit_length() - 1 for i in range(1, 256)], dtype=np.int32)


def ulaw_to_pcm16(ulaw: bytes) -> np.ndarray:
    """Decode G.711 μ-law bytes to int16 samples."""
    u = ~np.frombuffer(ulaw, dtype=np.uint8).astype(np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def pcm16_to_ulaw(pcm: np.ndarray) -> bytes:
    """Encode int16 samples to G.711 μ-law (ITU-T G.711 with the usual 0x84 bias and clip at 32635)."""
    s = np.asarray(pcm, dtype=np.int32)
    sign = np.where(s < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(s), 32635) + 0x84
    exponent = _EXP_LUT[magnitude >> 7]
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def write_wav(path: str | Path, ulaw: bytes) -> None:
    """Write μ-law audio as a 16-bit PCM, 8 kHz, mono WAV."""
    data = ulaw_to_pcm16(ulaw).astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16)
    Path(path).write_bytes(header + fmt + b"data" + struct.pack("<I", len(data)) + data)


def read_wav_as_ulaw(path: str | Path) -> bytes:
    """Read a WAV file of any common format and return 8 kHz mono μ-law bytes."""
    samples, rate = _read_wav_float(Path(path).read_bytes())
    return pcm16_to_ulaw(np.clip(np.round(resample(samples, rate, RATE) * 32768.0), -32768, 32767))


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample float samples (see module docstring for the method)."""
    if rate_in == rate_out or len(x) == 0:
        return x
    if rate_out < rate_in:
        cutoff = 0.45 * rate_out / rate_in  # of the input rate; 3.6 kHz for 8 kHz output
        n = np.arange(63) - 31
        taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(63)
        x = np.convolve(x, taps / taps.sum(), mode="same")
    out_len = int(len(x) * rate_out / rate_in)
    return np.interp(np.arange(out_len) * (rate_in / rate_out), np.arange(len(x)), x)


def _read_wav_float(blob: bytes) -> tuple[np.ndarray, int]:
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    pos, fmt, data = 12, None, None
    while pos + 8 <= len(blob):
        cid, size = blob[pos : pos + 4], struct.unpack("<I", blob[pos + 4 : pos + 8])[0]
        body = blob[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            data = body
        pos += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise ValueError("WAV without fmt or data chunk")
    code, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    if code == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real code starts the sub-format GUID
        code = struct.unpack("<H", fmt[24:26])[0]
    if code == 7 and bits == 8:
        x = ulaw_to_pcm16(data).astype(np.float64) / 32768.0
    elif code == 1 and bits == 8:
        x = (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif code == 1 and bits == 16:
        x = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64) / 32768.0
    elif code == 1 and bits == 24:
        raw = np.frombuffer(data[: len(data) // 3 * 3], dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64) / float(1 << 23)
    elif code == 1 and bits == 32:
        x = np.frombuffer(data[: len(data) // 4 * 4], dtype="<i4").astype(np.float64) / float(1 << 31)
    elif code == 3 and bits == 32:
        x = np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4").astype(np.float64)
    else:
        raise ValueError(f"unsupported WAV format code {code} with {bits} bits")
    if channels > 1:
        x = x[: len(x) // channels * channels].reshape(-1, channels).mean(axis=1)
    return x, rate
