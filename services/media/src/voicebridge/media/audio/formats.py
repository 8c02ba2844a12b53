"""The audio format type: an encoding at a rate, named the way ElevenLabs names them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from voicebridge.v1 import common_pb2

__all__ = ["PCM_16000", "SUPPORTED_FORMATS", "ULAW_8000", "Encoding", "Format", "UnsupportedFormatError"]

Encoding = Literal["mulaw", "pcm_s16le"]

_TO_PROTO: dict[str, common_pb2.AudioEncoding] = {
    "mulaw": common_pb2.AUDIO_ENCODING_MULAW,
    "pcm_s16le": common_pb2.AUDIO_ENCODING_PCM_S16LE,
}
_FROM_PROTO = {v: k for k, v in _TO_PROTO.items()}
_PREFIX = {"mulaw": "ulaw", "pcm_s16le": "pcm"}
_FROM_PREFIX = {"ulaw": "mulaw", "pcm": "pcm_s16le"}


class UnsupportedFormatError(ValueError):
    """An audio format the bridge cannot convert (maps to END_REASON_UNSUPPORTED_FORMAT)."""


@dataclass(frozen=True)
class Format:
    """An audio encoding at a sample rate, mono, no header."""

    encoding: Encoding
    rate: int

    def __post_init__(self) -> None:
        if self.encoding not in _TO_PROTO:
            raise UnsupportedFormatError(f"unknown encoding {self.encoding!r}")
        if not isinstance(self.rate, int) or self.rate <= 0:
            raise UnsupportedFormatError(f"sample rate must be a positive int, got {self.rate!r}")

    @classmethod
    def from_proto(cls, msg: common_pb2.AudioFormat) -> Format:
        """From the wire; UNSPECIFIED or a zero rate is an error, never a guess."""
        encoding = _FROM_PROTO.get(msg.encoding)
        if encoding is None:
            raise UnsupportedFormatError(f"unsupported audio encoding {msg.encoding}")
        return cls(encoding, int(msg.sample_rate_hz))  # type: ignore[arg-type]

    def to_proto(self) -> common_pb2.AudioFormat:
        return common_pb2.AudioFormat(encoding=_TO_PROTO[self.encoding], sample_rate_hz=self.rate)

    @classmethod
    def from_name(cls, name: str) -> Format:
        """From an ElevenLabs name such as "pcm_16000" or "ulaw_8000"."""
        prefix, _, rate = name.partition("_")
        encoding = _FROM_PREFIX.get(prefix)
        if encoding is None or not rate.isdigit():
            raise UnsupportedFormatError(f"not an audio format name: {name!r}")
        return cls(encoding, int(rate))  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        return f"{_PREFIX[self.encoding]}_{self.rate}"

    @property
    def sample_width(self) -> int:
        """Bytes per sample."""
        return 1 if self.encoding == "mulaw" else 2

    @property
    def bytes_per_second(self) -> int:
        return self.rate * self.sample_width

    @property
    def is_supported(self) -> bool:
        return self in SUPPORTED_FORMATS

    def __str__(self) -> str:
        return self.name


ULAW_8000 = Format("mulaw", 8000)
PCM_16000 = Format("pcm_s16le", 16000)

#: Every format ElevenLabs offers, best first for a phone call (μ-law pass-through costs nothing).
SUPPORTED_FORMATS: tuple[Format, ...] = (
    ULAW_8000,
    PCM_16000,
    Format("pcm_s16le", 24000),
    Format("pcm_s16le", 8000),
    Format("pcm_s16le", 22050),
    Format("pcm_s16le", 44100),
    Format("pcm_s16le", 48000),
)
