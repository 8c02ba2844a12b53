"""The two audio paths the bench compares, per agent format: voicebridge's (WebRtcVad, the
converters) and the naive one (audioop's ulaw2lin/ratecv/lin2ulaw, with the same VAD). Python 3.13
has no audioop: `NAIVE_AVAILABLE` is then False and the naive path is not run."""

from __future__ import annotations

import warnings
from collections.abc import Callable

from voicebridge.media.audio.convert import (
    AgentAudioConverter,
    CallerAudioConverter,
    Format,
    decode_for_analysis,
)
from voicebridge.media.audio.vad import WebRtcVad

from .signals import PHONE

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop
    except ImportError:  # Python 3.13+ without audioop-lts
        audioop = None  # type: ignore[assignment]

NAIVE_AVAILABLE = audioop is not None


class RateCv:
    """audioop.ratecv with its state kept between chunks: the 'naive' resampler."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate, self.out_rate = in_rate, out_rate
        self.state: tuple[int, tuple[tuple[int, int], ...]] | None = None

    def process(self, pcm: bytes) -> bytes:
        out, self.state = audioop.ratecv(pcm, 2, 1, self.in_rate, self.out_rate, self.state)
        return out


def inbound_ours(fmt: Format) -> Callable[[bytes, int], None]:
    vad, conv = WebRtcVad(), CallerAudioConverter(fmt)
    passthrough = fmt.encoding == "mulaw"

    def step(frame: bytes, ts: int) -> None:
        pcm = decode_for_analysis(frame)
        vad.feed(pcm, ts)
        if passthrough:
            conv.convert(frame)
        else:
            conv.convert_decoded(pcm)

    return step


def outbound_ours(fmt: Format) -> Callable[[bytes], bytes]:
    return AgentAudioConverter(fmt).convert


def inbound_naive(fmt: Format) -> Callable[[bytes, int], None]:
    vad = WebRtcVad()
    rc = RateCv(PHONE, fmt.rate) if fmt.encoding != "mulaw" and fmt.rate != PHONE else None

    def step(frame: bytes, ts: int) -> None:
        pcm = audioop.ulaw2lin(frame, 2)
        vad.feed(pcm, ts)
        if rc is not None:
            rc.process(pcm)

    return step


def outbound_naive(fmt: Format) -> Callable[[bytes], bytes]:
    if fmt.encoding == "mulaw":
        return lambda data: data
    rc = RateCv(fmt.rate, PHONE) if fmt.rate != PHONE else None

    def step(data: bytes) -> bytes:
        return audioop.lin2ulaw(rc.process(data) if rc else data, 2)

    return step
