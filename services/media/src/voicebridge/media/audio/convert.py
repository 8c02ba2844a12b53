"""The two per-call converters between the phone's μ-law 8 kHz and the agent's format.

Why objects: each direction of a call keeps resampler history (and, outbound, a torn byte), and both must
forget it together on a barge-in clear. μ-law 8 kHz on the agent side is a pure pass-through: the caller's
bytes are returned as the very same object, with no decode/encode round trip.
"""

from __future__ import annotations

from voicebridge.media.audio.formats import (
    PCM_16000,
    SUPPORTED_FORMATS,
    ULAW_8000,
    Format,
    UnsupportedFormatError,
)
from voicebridge.media.audio.g711 import ulaw_decode, ulaw_encode, ulaw_encode_array
from voicebridge.media.audio.resample import PolyphaseResampler, make_resampler

__all__ = [
    "PCM_16000",
    "SUPPORTED_FORMATS",
    "ULAW_8000",
    "AgentAudioConverter",
    "CallerAudioConverter",
    "Format",
    "UnsupportedFormatError",
    "decode_for_analysis",
]

PHONE_RATE = 8000


def _check(fmt: Format) -> None:
    if fmt.encoding == "mulaw" and fmt.rate != PHONE_RATE:
        raise UnsupportedFormatError(f"μ-law is only supported at 8000 Hz, got {fmt.name}")
    if fmt not in SUPPORTED_FORMATS:
        raise UnsupportedFormatError(f"unsupported agent audio format {fmt.name}")


def decode_for_analysis(ulaw: bytes) -> bytes:
    """Caller μ-law → int16 LE 8 kHz PCM, for the VAD (which runs at 8 kHz, before any upsampling)."""
    return ulaw_decode(ulaw)


class CallerAudioConverter:
    """Caller μ-law 8 kHz → the agent's input format."""

    __slots__ = ("_passthrough", "_resampler", "target")

    def __init__(self, target: Format) -> None:
        _check(target)
        self.target = target
        self._passthrough = target == ULAW_8000
        self._resampler = make_resampler(PHONE_RATE, target.rate)

    @property
    def delay_s(self) -> float:
        """Delay this direction adds (resampler group delay; 0 for pass-through and pcm_8000)."""
        return self._resampler.delay_s

    def convert(self, ulaw8k: bytes) -> bytes:
        """Convert the next chunk; for ulaw_8000 the argument itself is returned."""
        if self._passthrough:
            return ulaw8k
        return self._resampler.process(ulaw_decode(ulaw8k))

    def convert_decoded(self, pcm8k: bytes) -> bytes:
        """Like `convert`, for a chunk already decoded for the VAD (saves a second decode).

        For the ulaw_8000 target use `convert` on the original bytes instead (re-encoding is not free).
        """
        if self._passthrough:
            return ulaw_encode(pcm8k)
        return self._resampler.process(pcm8k)

    def reset(self) -> None:
        """Drop resampler history."""
        self._resampler.reset()


class AgentAudioConverter:
    """Agent output in `source` format → μ-law 8 kHz for the caller.

    PCM may arrive with an odd byte count (a sample torn across chunks); the dangling byte is carried
    to the next chunk, so any chunking gives the same output as the whole stream.
    """

    __slots__ = ("_carry", "_passthrough", "_resampler", "source")

    def __init__(self, source: Format) -> None:
        _check(source)
        self.source = source
        self._passthrough = source == ULAW_8000
        self._resampler = make_resampler(source.rate, PHONE_RATE)
        self._carry = b""

    @property
    def delay_s(self) -> float:
        return self._resampler.delay_s

    @property
    def pending_bytes(self) -> int:
        """Bytes held back until the next chunk completes them (0 or 1)."""
        return len(self._carry)

    def convert(self, data: bytes) -> bytes:
        """Convert the next chunk; for ulaw_8000 the argument itself is returned."""
        if self._passthrough:
            return data
        if self._carry:
            data = self._carry + data
            self._carry = b""
        if len(data) & 1:
            self._carry = data[-1:]
            data = data[:-1]
        if not data:
            return b""
        if isinstance(self._resampler, PolyphaseResampler):
            return ulaw_encode_array(self._resampler.process_array(data))
        return ulaw_encode(self._resampler.process(data))

    def reset(self) -> None:
        """After a clear: drop resampler history and any carried byte."""
        self._resampler.reset()
        self._carry = b""
