"""The ConvAI wire shapes (docs/elevenlabs.md, messages and events) decode and encode exactly."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from voicebridge.agent.backends.elevenlabs import protocol as p


def _frame(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()


DECODE_CASES: list[tuple[str, dict[str, Any], p.ServerEvent]] = [
    (
        "metadata",
        {
            "type": "conversation_initiation_metadata",
            "conversation_initiation_metadata_event": {
                "conversation_id": "conv_1",
                "agent_output_audio_format": "ulaw_8000",
                "user_input_audio_format": "pcm_16000",
            },
        },
        p.Metadata("conv_1", "ulaw_8000", "pcm_16000"),
    ),
    (
        "audio with alignment",
        {
            "type": "audio",
            "audio_event": {"audio_base_64": "AAEC", "event_id": 7, "alignment": {"chars": ["h"]}},
        },
        p.Audio(7, b"\x00\x01\x02", {"chars": ["h"]}),
    ),
    (
        "audio without alignment",
        {"type": "audio", "audio_event": {"audio_base_64": "", "event_id": 1}},
        p.Audio(1, b""),
    ),
    ("interruption", {"type": "interruption", "interruption_event": {"event_id": 7}}, p.Interruption(7)),
    (
        "interruption with reason",
        {"type": "interruption", "interruption_event": {"event_id": 3, "reason": "user"}},
        p.Interruption(3, "user"),
    ),
    ("ping", {"type": "ping", "ping_event": {"event_id": 123456, "ping_ms": 50}}, p.Ping(123456, 50)),
    ("ping null ms", {"type": "ping", "ping_event": {"event_id": 1, "ping_ms": None}}, p.Ping(1, None)),
    ("ping absent ms", {"type": "ping", "ping_event": {"event_id": 2}}, p.Ping(2, None)),
    (
        "user transcript",
        {"type": "user_transcript", "user_transcription_event": {"user_transcript": "hi", "event_id": 6}},
        p.UserTranscript("hi", 6),
    ),
    (
        "tentative transcript",
        {"type": "tentative_user_transcript", "tentative_user_transcription_event": {"user_transcript": "h"}},
        p.TentativeUserTranscript("h", None),
    ),
    (
        "agent response",
        {"type": "agent_response", "agent_response_event": {"agent_response": "Hello", "event_id": 7}},
        p.AgentResponse("Hello", 7),
    ),
    (
        "agent response correction",
        {
            "type": "agent_response_correction",
            "agent_response_correction_event": {
                "original_agent_response": "Hello there friend",
                "corrected_agent_response": "Hello there",
                "event_id": 7,
            },
        },
        p.AgentResponseCorrection("Hello there friend", "Hello there", 7),
    ),
    (
        "client tool call",
        {
            "type": "client_tool_call",
            "client_tool_call": {
                "tool_name": "transfer_call",
                "tool_call_id": "tc1",
                "parameters": {"phone_number": "+15550100"},
                "event_id": 8,
            },
        },
        p.ClientToolCall("transfer_call", "tc1", {"phone_number": "+15550100"}, 8),
    ),
    (
        "error",
        {
            "type": "error",
            "error_event": {
                "code": 1008,
                "message": "Override not allowed",
                "error_type": "override_error",
                "reason": "bad override",
                "debug_message": None,
                "details": {"field": "tts"},
            },
        },
        p.ErrorEvent(1008, "Override not allowed", "override_error", "bad override", None, {"field": "tts"}),
    ),
    ("error, bare", {"type": "error", "error_event": {"code": 1011}}, p.ErrorEvent(1011)),
    ("vad score", {"type": "vad_score", "vad_score_event": {"vad_score": 0.95}}, p.VadScore(0.95)),
    (
        "unknown type",
        {"type": "agent_chat_response_part", "text_response_part": {"text": "x"}},
        p.Unknown(
            "agent_chat_response_part",
            {"type": "agent_chat_response_part", "text_response_part": {"text": "x"}},
        ),
    ),
]


@pytest.mark.parametrize(
    ("message", "expected"), [c[1:] for c in DECODE_CASES], ids=[c[0] for c in DECODE_CASES]
)
def test_decode_reads_each_documented_shape(message: dict[str, Any], expected: p.ServerEvent) -> None:
    assert p.decode(_frame(message)) == expected


def test_decode_accepts_bytes_frames() -> None:
    assert p.decode(b'{"type":"ping","ping_event":{"event_id":5}}') == p.Ping(5, None)


BAD_CASES: list[tuple[str, str | bytes, str | None]] = [
    ("not json", "{nope", None),
    ("json array", "[1, 2]", None),
    ("no type", '{"user_audio_chunk": "AA=="}', None),
    ("metadata missing formats", '{"type":"conversation_initiation_metadata",'
     '"conversation_initiation_metadata_event":{"conversation_id":"c"}}', "conversation_initiation_metadata"),
    ("audio missing event_id", '{"type":"audio","audio_event":{"audio_base_64":"AA=="}}', "audio"),
    ("audio bad base64", '{"type":"audio","audio_event":{"audio_base_64":"%%%","event_id":1}}', "audio"),
    ("ping without payload", '{"type":"ping"}', "ping"),
    ("ping with string id", '{"type":"ping","ping_event":{"event_id":"7"}}', "ping"),
    ("interruption without id", '{"type":"interruption","interruption_event":{}}', "interruption"),
    ("tool call without id", '{"type":"client_tool_call","client_tool_call":{"tool_name":"x"}}',
     "client_tool_call"),
]  # fmt: skip


@pytest.mark.parametrize(("frame", "event_type"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_decode_raises_protocol_error_for_unusable_frames(frame: str, event_type: str | None) -> None:
    with pytest.raises(p.ProtocolError) as raised:
        p.decode(frame)
    assert raised.value.event_type == event_type
    assert str(raised.value)


ENCODE_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("user audio", p.encode_user_audio(b"\x00\x01\x02"), {"user_audio_chunk": "AAEC"}),
    ("pong", p.encode_pong(12345), {"type": "pong", "event_id": 12345}),
    (
        "tool result",
        p.encode_client_tool_result("tc1", "done", False),
        {"type": "client_tool_result", "tool_call_id": "tc1", "result": "done", "is_error": False},
    ),
    (
        "tool error",
        p.encode_client_tool_result("tc2", "Unknown client tool: x", True),
        {
            "type": "client_tool_result",
            "tool_call_id": "tc2",
            "result": "Unknown client tool: x",
            "is_error": True,
        },
    ),
    (
        "contextual update",
        p.encode_contextual_update("pressed 5"),
        {"type": "contextual_update", "text": "pressed 5"},
    ),
    ("user activity", p.encode_user_activity(), {"type": "user_activity"}),
    ("user message", p.encode_user_message("hello"), {"type": "user_message", "text": "hello"}),
    (
        "init, minimal",
        p.encode_init(),
        {"type": "conversation_initiation_client_data", "dynamic_variables": {}},
    ),
    (
        "init, full",
        p.encode_init(
            dynamic_variables={"call_sid": "CA1", "vip": True, "tries": 2},
            conversation_config_override={"agent": {"first_message": "Hi"}},
            user_id="+15550100",
            custom_llm_extra_body={"temperature": 0.2},
            source_info={"source": "voicebridge", "version": "0.1.0"},
        ),
        {
            "type": "conversation_initiation_client_data",
            "conversation_config_override": {"agent": {"first_message": "Hi"}},
            "custom_llm_extra_body": {"temperature": 0.2},
            "dynamic_variables": {"call_sid": "CA1", "vip": True, "tries": 2},
            "user_id": "+15550100",
            "source_info": {"source": "voicebridge", "version": "0.1.0"},
        },
    ),
]


@pytest.mark.parametrize(
    ("frame", "expected"), [c[1:] for c in ENCODE_CASES], ids=[c[0] for c in ENCODE_CASES]
)
def test_encoders_produce_the_documented_json(frame: str, expected: dict[str, Any]) -> None:
    assert isinstance(frame, str)
    assert orjson.loads(frame) == expected


def test_user_audio_chunk_has_no_type_field() -> None:
    assert p.encode_user_audio(b"\xff") == '{"user_audio_chunk":"/w=="}'
