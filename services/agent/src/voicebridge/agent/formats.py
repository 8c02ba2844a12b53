"""Names of audio formats as agent backends spell them ("pcm_16000", "ulaw_8000") ⇄ the contract's."""

from __future__ import annotations

from voicebridge.v1 import common_pb2


def format_from_name(name: str) -> common_pb2.AudioFormat:
    codec, _, rate = name.partition("_")
    if not rate.isdigit():
        raise ValueError(f"not an audio format name: {name!r}")
    encoding = {"pcm": common_pb2.AUDIO_ENCODING_PCM_S16LE, "ulaw": common_pb2.AUDIO_ENCODING_MULAW}.get(
        codec
    )
    if encoding is None:
        raise ValueError(f"unknown audio codec in {name!r}")
    return common_pb2.AudioFormat(encoding=encoding, sample_rate_hz=int(rate))


def format_name(fmt: common_pb2.AudioFormat) -> str:
    codec = {common_pb2.AUDIO_ENCODING_PCM_S16LE: "pcm", common_pb2.AUDIO_ENCODING_MULAW: "ulaw"}.get(
        fmt.encoding, "unspecified"
    )
    return f"{codec}_{fmt.sample_rate_hz}"


def offered(fmt: common_pb2.AudioFormat, formats: list[common_pb2.AudioFormat]) -> bool:
    return any(f.encoding == fmt.encoding and f.sample_rate_hz == fmt.sample_rate_hz for f in formats)
