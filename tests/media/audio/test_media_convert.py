"""Format type and the two per-call converters (caller → agent, agent → caller)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from audio_signals import from_pcm, to_pcm, tone
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebridge.media.audio.convert import (
    SUPPORTED_FORMATS,
    ULAW_8000,
    AgentAudioConverter,
    CallerAudioConverter,
    Format,
    UnsupportedFormatError,
    decode_for_analysis,
)
from voicebridge.media.audio.g711 import ulaw_decode, ulaw_encode
from voicebridge.media.audio.resample import make_resampler
from voicebridge.v1 import common_pb2

PCM_FORMATS = [f for f in SUPPORTED_FORMATS if f.encoding == "pcm_s16le"]
NAMES = ["ulaw_8000", "pcm_16000", "pcm_24000", "pcm_8000", "pcm_22050", "pcm_44100", "pcm_48000"]


def test_supported_formats_are_elevenlabs_list_best_first() -> None:
    assert [f.name for f in SUPPORTED_FORMATS] == NAMES
    assert SUPPORTED_FORMATS[0] is ULAW_8000


@pytest.mark.parametrize("name", NAMES)
def test_name_and_proto_round_trip(name: str) -> None:
    fmt = Format.from_name(name)
    assert fmt.name == name
    assert Format.from_proto(fmt.to_proto()) == fmt
    assert fmt.is_supported


@pytest.mark.parametrize(
    ("fmt", "bps"),
    [(ULAW_8000, 8000), (Format("pcm_s16le", 16000), 32000), (Format("pcm_s16le", 44100), 88200)],
)
def test_bytes_per_second(fmt: Format, bps: int) -> None:
    assert fmt.bytes_per_second == bps


def test_from_proto_maps_encodings() -> None:
    msg = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=24000)
    assert Format.from_proto(msg) == Format("pcm_s16le", 24000)
    assert ULAW_8000.to_proto() == common_pb2.AudioFormat(
        encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000
    )


@pytest.mark.parametrize(
    "msg",
    [
        common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_UNSPECIFIED, sample_rate_hz=8000),
        common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=0),
    ],
)
def test_from_proto_rejects_unspecified(msg: common_pb2.AudioFormat) -> None:
    with pytest.raises(UnsupportedFormatError):
        Format.from_proto(msg)


@pytest.mark.parametrize("name", ["mp3_44100", "pcm", "pcm_", "pcm_16k", "ulaw-8000", ""])
def test_from_name_rejects_garbage(name: str) -> None:
    with pytest.raises(UnsupportedFormatError):
        Format.from_name(name)


@pytest.mark.parametrize("fmt", [Format("mulaw", 16000), Format("pcm_s16le", 32000)])
@pytest.mark.parametrize("converter", [CallerAudioConverter, AgentAudioConverter])
def test_converters_refuse_unsupported_formats(fmt: Format, converter: type) -> None:
    assert not fmt.is_supported
    with pytest.raises(UnsupportedFormatError):
        converter(fmt)


def test_unsupported_format_error_is_a_value_error() -> None:
    assert issubclass(UnsupportedFormatError, ValueError)


def test_caller_ulaw_target_returns_the_same_object() -> None:
    c = CallerAudioConverter(ULAW_8000)
    chunk = bytes(range(160))
    assert c.convert(chunk) is chunk
    assert c.delay_s == 0


def test_caller_pcm_8000_is_decode_only() -> None:
    chunk = bytes(range(160))
    assert CallerAudioConverter(Format("pcm_s16le", 8000)).convert(chunk) == ulaw_decode(chunk)


@pytest.mark.parametrize("fmt", PCM_FORMATS)
def test_caller_converter_decodes_then_resamples(fmt: Format) -> None:
    ulaw = ulaw_encode(to_pcm(tone(440, 8000, 0.1)))
    c = CallerAudioConverter(fmt)
    out = b"".join(c.convert(ulaw[i : i + 160]) for i in range(0, len(ulaw), 160))
    assert out == make_resampler(8000, fmt.rate).process(ulaw_decode(ulaw))
    assert len(out) == round(0.1 * fmt.rate) * 2


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_caller_convert_decoded_equals_convert(fmt: Format) -> None:
    ulaw = ulaw_encode(to_pcm(tone(440, 8000, 0.06)))
    assert CallerAudioConverter(fmt).convert_decoded(decode_for_analysis(ulaw)) == CallerAudioConverter(
        fmt
    ).convert(ulaw)


@pytest.mark.parametrize("fmt", PCM_FORMATS)
def test_caller_reset_drops_history(fmt: Format) -> None:
    ulaw = ulaw_encode(to_pcm(tone(700, 8000, 0.02)))
    c = CallerAudioConverter(fmt)
    first = c.convert(ulaw)
    c.convert(ulaw)
    c.reset()
    assert c.convert(ulaw) == first


def test_agent_ulaw_source_returns_the_same_object() -> None:
    a = AgentAudioConverter(ULAW_8000)
    chunk = bytes(range(161))
    assert a.convert(chunk) is chunk


def test_agent_pcm_8000_is_encode_only() -> None:
    pcm = to_pcm(tone(440, 8000, 0.02))
    assert AgentAudioConverter(Format("pcm_s16le", 8000)).convert(pcm) == ulaw_encode(pcm)


@pytest.mark.parametrize("fmt", PCM_FORMATS)
def test_agent_converter_produces_8k_ulaw_of_the_right_length(fmt: Format) -> None:
    out = AgentAudioConverter(fmt).convert(to_pcm(tone(440, fmt.rate, 0.1)))
    assert len(out) == 800
    y = from_pcm(ulaw_decode(out))
    assert np.max(np.abs(y)) > 10000  # the tone made it through


def test_agent_odd_chunk_carries_the_dangling_byte() -> None:
    pcm = to_pcm(tone(440, 16000, 0.02))
    a = AgentAudioConverter(Format("pcm_s16le", 16000))
    first = a.convert(pcm[:301])
    assert a.pending_bytes == 1
    rest = a.convert(pcm[301:])
    assert a.pending_bytes == 0
    assert first + rest == AgentAudioConverter(Format("pcm_s16le", 16000)).convert(pcm)


def test_agent_single_byte_chunk_yields_nothing_yet() -> None:
    a = AgentAudioConverter(Format("pcm_s16le", 24000))
    assert a.convert(b"\x01") == b""
    assert a.pending_bytes == 1


def test_agent_reset_drops_carried_byte_and_history() -> None:
    pcm = to_pcm(tone(440, 24000, 0.02))
    fresh = AgentAudioConverter(Format("pcm_s16le", 24000)).convert(pcm)
    a = AgentAudioConverter(Format("pcm_s16le", 24000))
    a.convert(pcm[:481])
    a.reset()
    assert a.pending_bytes == 0
    assert a.convert(pcm) == fresh


@pytest.mark.parametrize("fmt", PCM_FORMATS)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_agent_any_byte_chunking_equals_whole_stream(fmt: Format, data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=0, max_value=3001), label="bytes")  # odd lengths included
    seed = data.draw(st.integers(min_value=0, max_value=2**32 - 1), label="seed")
    raw = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=n), max_size=15), label="cuts"))
    whole = AgentAudioConverter(fmt).convert(raw)
    a = AgentAudioConverter(fmt)
    pieces = b"".join(a.convert(raw[x:y]) for x, y in itertools.pairwise([0, *cuts, n]))
    assert pieces == whole
    assert a.pending_bytes == n % 2
