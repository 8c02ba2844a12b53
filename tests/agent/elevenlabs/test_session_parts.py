"""The pure parts of the ElevenLabs session, table by table: close codes → end reasons, the "busy"
heuristic, alignment, format negotiation (docs/elevenlabs.md#close-codes, #capacity, #audio-formats)."""

from __future__ import annotations

import pytest

from voicebridge.agent.backends.base import SessionRefused
from voicebridge.agent.backends.elevenlabs import protocol as p
from voicebridge.agent.backends.elevenlabs.alignment import text_alignment
from voicebridge.agent.backends.elevenlabs.busy import looks_busy
from voicebridge.agent.backends.elevenlabs.closes import close_end, describe, resumable
from voicebridge.agent.backends.elevenlabs.negotiation import bytes_per_s, negotiate
from voicebridge.v1 import agent_pb2, common_pb2

ULAW = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)
PCM16 = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16000)


@pytest.mark.parametrize(
    ("code", "error_type", "reason", "close_code"),
    [
        (1000, None, common_pb2.END_REASON_AGENT_ENDED, "1000"),
        (1002, "llm_timeout", common_pb2.END_REASON_AGENT_ERROR, "1002"),
        (1011, None, common_pb2.END_REASON_AGENT_ERROR, "1011"),
        (1008, "override_error", common_pb2.END_REASON_PROTOCOL_ERROR, "1008"),
        (1006, None, common_pb2.END_REASON_AGENT_ERROR, "1006"),
        (None, None, common_pb2.END_REASON_AGENT_ERROR, "1006"),
    ],
)
def test_close_codes_map_to_end_reasons(
    code: int | None, error_type: str | None, reason: int, close_code: str
) -> None:
    error = p.ErrorEvent(code, "it broke", error_type) if error_type else None
    end = close_end(code, "closing", error)
    assert end.reason == reason
    assert end.extra["close_code"] == close_code
    if error_type:
        assert end.extra["error_type"] == error_type
        assert f"{error_type}: it broke" in end.detail
    else:
        assert "error_type" not in end.extra


@pytest.mark.parametrize(
    ("error", "reason", "busy"),
    [
        (p.ErrorEvent(1002, "x", "http_exception", details={"status_code": 429}), "", True),
        (p.ErrorEvent(1002, "Too many concurrent conversations", "http_exception"), "", True),
        (None, "Concurrency limit exceeded", True),
        (p.ErrorEvent(1002, "quota reached"), "", True),
        (p.ErrorEvent(1008, "Agent not found", "value_error"), "", False),
        (p.ErrorEvent(1002, "x", "http_exception", details={"status_code": 500}), "", False),
        (None, "", False),
    ],
)
def test_busy_is_read_from_429_or_the_words_of_a_limit(
    error: p.ErrorEvent | None, reason: str, busy: bool
) -> None:
    assert looks_busy(1002, error, reason) is busy


@pytest.mark.parametrize(
    ("code", "error_type", "expected"),
    [
        (1000, None, False),  # the agent ended the call
        (1008, "invalid_message", False),  # a new conversation would repeat it
        (1008, "override_error", False),
        (1002, "llm_timeout", True),
        (1002, "asr_transcription_error", True),
        (1002, "safety_violation", False),  # stopped on purpose
        (1002, "transport_receive_timeout", False),
        (1000, "max_duration_exceeded", False),
        (1011, None, True),
        (1001, None, True),
        (1006, None, True),  # the connection lost
        (None, None, True),
    ],
)
def test_which_closes_a_new_conversation_may_carry_on(
    code: int | None, error_type: str | None, expected: bool
) -> None:
    error = p.ErrorEvent(code, "x", error_type) if error_type else None
    assert resumable(code, error) is expected


def test_describe_names_the_error_type_or_the_reason() -> None:
    assert describe(None, "") == "no reason given"
    assert describe(None, "bye") == "bye"
    assert describe(p.ErrorEvent(1011, "boom", "internal"), "r") == "internal: boom"
    assert describe(p.ErrorEvent(1011, "", None, reason="why"), "r") == "error: why"


@pytest.mark.parametrize(
    ("alignment", "chars"),
    [
        (None, None),
        ({}, None),
        ({"chars": ["a", "b"], "char_start_times_ms": [0]}, None),  # lengths differ
        ({"chars": ["a"], "char_start_times_ms": ["x"]}, None),  # not a number
        ({"chars": "ab", "char_start_times_ms": [0, 1]}, None),  # not a list
        ({"chars": ["h", "i"], "char_start_times_ms": [0, 40], "char_durations_ms": [40, 40]}, ["h", "i"]),
    ],
)
def test_alignment_is_kept_only_when_well_formed(alignment: dict | None, chars: list[str] | None) -> None:
    result = text_alignment(alignment)
    if chars is None:
        assert result is None
    else:
        assert result is not None
        assert list(result.chars) == chars
        assert list(result.char_start_ms) == [0, 40]


def test_negative_alignment_times_become_zero() -> None:
    result = text_alignment({"chars": ["a"], "char_start_times_ms": [-5], "char_durations_ms": [-1]})
    assert result is not None
    assert (list(result.char_start_ms), list(result.char_duration_ms)) == ([0], [0])


def _start(
    inputs: list[common_pb2.AudioFormat], outputs: list[common_pb2.AudioFormat]
) -> agent_pb2.SessionStart:
    return agent_pb2.SessionStart(input_formats=inputs, output_formats=outputs)


def test_negotiate_takes_the_announced_formats_media_offers() -> None:
    ready = negotiate(p.Metadata("conv_1", "pcm_16000", "ulaw_8000"), _start([ULAW], [ULAW, PCM16]), "a")
    assert (ready.input_format, ready.output_format, ready.conversation_id) == (ULAW, PCM16, "conv_1")


@pytest.mark.parametrize(
    ("out_fmt", "in_fmt"), [("pcm_16000", "ulaw_8000"), ("ulaw_8000", "pcm_48000"), ("mp3", "ulaw_8000")]
)
def test_negotiate_refuses_formats_media_does_not_offer(out_fmt: str, in_fmt: str) -> None:
    with pytest.raises(SessionRefused) as refused:
        negotiate(p.Metadata("conv_1", out_fmt, in_fmt), _start([ULAW], [ULAW]), "agent_x")
    assert refused.value.reason == common_pb2.END_REASON_UNSUPPORTED_FORMAT
    assert "agent_x" in refused.value.detail
    assert "ulaw_8000 both ways" in refused.value.detail


def test_bytes_per_second_of_each_encoding() -> None:
    assert (bytes_per_s(ULAW), bytes_per_s(PCM16)) == (8000, 32000)
