"""Bundled spoken prompts (greeting, busy), stored as raw G.711 mu-law 8 kHz and rendered per format.

The agent service has no DSP library on purpose (media owns audio). Prompts only need decoding and,
for PCM above 8 kHz, a plain linear-interpolation upsample: the caller hears them through media's
anti-aliased resampler back to 8 kHz, so the interpolation's images never reach the phone.
"""

from __future__ import annotations

import functools
from importlib import resources

from voicebridge.v1 import common_pb2

_BIAS = 0x84


def _ulaw_to_linear(code: int) -> int:
    """ITU-T G.711 mu-law expansion of one code to a 16-bit sample."""
    code = ~code & 0xFF
    magnitude = ((code & 0x0F) << 3) + _BIAS
    magnitude <<= (code & 0x70) >> 4
    return (_BIAS - magnitude) if code & 0x80 else (magnitude - _BIAS)


_DECODE = [_ulaw_to_linear(c) for c in range(256)]


def _upsample(samples: list[int], factor_num: int, factor_den: int) -> list[int]:
    n_out = len(samples) * factor_num // factor_den
    out = []
    last = len(samples) - 1
    for i in range(n_out):
        pos = i * factor_den / factor_num
        j = int(pos)
        frac = pos - j
        a = samples[min(j, last)]
        b = samples[min(j + 1, last)]
        out.append(round(a + (b - a) * frac))
    return out


@functools.cache
def load_prompt(name: str, encoding: int, sample_rate_hz: int) -> bytes:
    """The prompt `name` ("greeting", "busy") in the given format (AudioEncoding value, rate)."""
    raw = resources.files(__package__).joinpath(f"{name}.ulaw").read_bytes()
    if encoding == common_pb2.AUDIO_ENCODING_MULAW:
        if sample_rate_hz != 8000:
            raise ValueError("mu-law prompts exist only at 8000 Hz")
        return raw
    if encoding != common_pb2.AUDIO_ENCODING_PCM_S16LE:
        raise ValueError(f"unsupported prompt encoding {encoding}")
    samples = [_DECODE[c] for c in raw]
    if sample_rate_hz != 8000:
        samples = _upsample(samples, sample_rate_hz, 8000)
    pcm = bytearray()
    for s in samples:
        pcm += int(s).to_bytes(2, "little", signed=True)
    return bytes(pcm)
