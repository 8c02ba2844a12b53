"""G.711 μ-law codec, bit-exact with ITU-T G.191 (`ulaw_compress` / `ulaw_expand`).

Why lookup tables: a 256-entry decode table and a 65 536-entry encode table indexed by the uint16 view of
the samples are the fastest bit-exact numpy route (docs/telephone-audio.md#g711). `audioop` decodes only
where it exists (Python ≤ 3.12, or `audioop-lts`) and only after checking at import that it matches the
table on all 256 codes; its encoder differs from G.191 on 508 inputs, so it is never used for encoding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from voicebridge.media.audio import optional_audioop

__all__ = ["ULAW_SILENCE", "ulaw_decode", "ulaw_encode", "ulaw_encode_array"]

#: The μ-law code for digital silence ("+0"); fill value for padding the caller's stream.
ULAW_SILENCE = 0xFF


def _expand_table() -> np.ndarray:
    """G.191 `ulaw_expand` for all 256 codes, vectorised."""
    code = np.arange(256, dtype=np.int32)
    sign = np.where(code < 0x80, -1, 1)
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa = mantissa & 0x0F
    step = 4 << segment
    value = sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)
    return value.astype("<i2")


def _compress_table() -> np.ndarray:
    """G.191 `ulaw_compress` for all 65 536 int16 inputs, indexed by their uint16 bit pattern."""
    x = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    absno = np.where(x < 0, (~x >> 2) + 33, (x >> 2) + 33)
    absno = np.minimum(absno, 0x1FFF)
    # segno = 1 + bit length of (absno >> 6)
    segno = 1 + np.ceil(np.log2((absno >> 6) + 1)).astype(np.int32)
    high = 8 - segno
    low = 0x0F - ((absno >> segno) & 0x0F)
    code = (high << 4) | low
    code = np.where(x >= 0, code | 0x80, code)
    return code.astype(np.uint8)


_DECODE = _expand_table()
_ENCODE = _compress_table()


def _numpy_decode(data: bytes) -> bytes:
    return _DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


def _pick_decoder() -> Callable[[bytes], bytes]:
    """audioop's decoder when present and proven identical to the G.191 table; numpy otherwise."""
    audioop = optional_audioop.load()
    if audioop is None:
        return _numpy_decode
    codes = bytes(range(256))
    if audioop.ulaw2lin(codes, 2) != _numpy_decode(codes):
        return _numpy_decode

    def _audioop_decode(data: bytes) -> bytes:
        return audioop.ulaw2lin(data, 2)

    return _audioop_decode


_decode = _pick_decoder()


def ulaw_decode(data: bytes) -> bytes:
    """μ-law bytes → int16 little-endian PCM (two bytes per input byte)."""
    return _decode(data)


def ulaw_encode(pcm: bytes) -> bytes:
    """int16 little-endian PCM → μ-law bytes. Raises ValueError on an odd byte count."""
    if len(pcm) & 1:
        raise ValueError(f"PCM must hold whole int16 samples, got {len(pcm)} bytes")
    return _ENCODE[np.frombuffer(pcm, dtype="<u2")].tobytes()


def ulaw_encode_array(samples: np.ndarray) -> bytes:
    """int16 samples (an ndarray, e.g. from a resampler) → μ-law bytes, skipping a bytes round trip."""
    return _ENCODE[samples.astype("<i2", copy=False).view(np.uint16)].tobytes()
