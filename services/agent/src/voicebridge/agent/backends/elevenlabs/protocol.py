"""The ElevenLabs Agents (ConvAI) WebSocket protocol as pure encode/decode functions, no I/O.

Why separate: the wire shapes (docs/elevenlabs.md#messages-we-send, #events-we-receive) are the part most
likely to drift; keeping them here makes them table-testable and keeps the session logic readable.

Decoding is tolerant the way a phone call needs it: unknown event types become `Unknown`, optional
fields (`ping_ms`, `alignment`, `reason`, `event_id` on text events) may be missing or null. A frame that
is not JSON, or lacks a field the event cannot work without, raises `ProtocolError`; the caller decides
(skip it mid-call, refuse the call during the handshake).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

DynamicValue = str | int | float | bool


class ProtocolError(ValueError):
    """A server frame that cannot be understood. `event_type` is its `type` when it had one."""

    def __init__(self, message: str, event_type: str | None = None) -> None:
        super().__init__(message)
        self.event_type = event_type


@dataclass(frozen=True, slots=True)
class Metadata:
    conversation_id: str
    agent_output_audio_format: str
    user_input_audio_format: str


@dataclass(frozen=True, slots=True)
class Audio:
    event_id: int
    audio: bytes
    alignment: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Interruption:
    event_id: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    event_id: int
    ping_ms: int | None = None


@dataclass(frozen=True, slots=True)
class UserTranscript:
    text: str
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class TentativeUserTranscript:
    text: str
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class AgentResponse:
    text: str
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class AgentResponseCorrection:
    original: str
    corrected: str
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class ClientToolCall:
    tool_name: str
    tool_call_id: str
    parameters: dict[str, Any] = field(default_factory=dict)
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    code: int | None
    message: str = ""
    error_type: str | None = None
    reason: str | None = None
    debug_message: str | None = None
    details: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class VadScore:
    score: float


@dataclass(frozen=True, slots=True)
class Unknown:
    type: str
    raw: dict[str, Any]


ServerEvent = (
    Metadata
    | Audio
    | Interruption
    | Ping
    | UserTranscript
    | TentativeUserTranscript
    | AgentResponse
    | AgentResponseCorrection
    | ClientToolCall
    | ErrorEvent
    | VadScore
    | Unknown
)


# --- decoding ---------------------------------------------------------------------------------------


def _payload(message: dict[str, Any], key: str, kind: str) -> dict[str, Any]:
    payload = message.get(key)
    if not isinstance(payload, dict):
        raise ProtocolError(f"{kind} event without a {key!r} object", kind)
    return payload


def _required(payload: dict[str, Any], key: str, kind: str, typ: type | tuple[type, ...]) -> Any:
    value = payload.get(key)
    if value is None or not isinstance(value, typ) or (isinstance(value, bool) and typ is int):
        raise ProtocolError(
            f"{kind} event: field {key!r} missing or not {getattr(typ, '__name__', typ)}", kind
        )
    return value


def _optional_int(payload: dict[str, Any], key: str) -> int | None:
    value = payload.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _optional_str(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) else None


def _metadata(m: dict[str, Any]) -> Metadata:
    kind = "conversation_initiation_metadata"
    p = _payload(m, "conversation_initiation_metadata_event", kind)
    return Metadata(
        conversation_id=_required(p, "conversation_id", kind, str),
        agent_output_audio_format=_required(p, "agent_output_audio_format", kind, str),
        user_input_audio_format=_required(p, "user_input_audio_format", kind, str),
    )


def _audio(m: dict[str, Any]) -> Audio:
    p = _payload(m, "audio_event", "audio")
    encoded = _required(p, "audio_base_64", "audio", str)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"audio event: audio_base_64 is not base64 ({exc})", "audio") from None
    alignment = p.get("alignment")
    return Audio(
        _required(p, "event_id", "audio", int), data, alignment if isinstance(alignment, dict) else None
    )


def _interruption(m: dict[str, Any]) -> Interruption:
    p = _payload(m, "interruption_event", "interruption")
    return Interruption(_required(p, "event_id", "interruption", int), _optional_str(p, "reason"))


def _ping(m: dict[str, Any]) -> Ping:
    p = _payload(m, "ping_event", "ping")
    return Ping(_required(p, "event_id", "ping", int), _optional_int(p, "ping_ms"))


def _user_transcript(m: dict[str, Any]) -> UserTranscript:
    p = _payload(m, "user_transcription_event", "user_transcript")
    return UserTranscript(
        _required(p, "user_transcript", "user_transcript", str), _optional_int(p, "event_id")
    )


def _tentative(m: dict[str, Any]) -> TentativeUserTranscript:
    kind = "tentative_user_transcript"
    p = _payload(m, "tentative_user_transcription_event", kind)
    return TentativeUserTranscript(_required(p, "user_transcript", kind, str), _optional_int(p, "event_id"))


def _agent_response(m: dict[str, Any]) -> AgentResponse:
    p = _payload(m, "agent_response_event", "agent_response")
    return AgentResponse(_required(p, "agent_response", "agent_response", str), _optional_int(p, "event_id"))


def _correction(m: dict[str, Any]) -> AgentResponseCorrection:
    kind = "agent_response_correction"
    p = _payload(m, "agent_response_correction_event", kind)
    return AgentResponseCorrection(
        original=_optional_str(p, "original_agent_response") or "",
        corrected=_required(p, "corrected_agent_response", kind, str),
        event_id=_optional_int(p, "event_id"),
    )


def _tool_call(m: dict[str, Any]) -> ClientToolCall:
    kind = "client_tool_call"
    p = _payload(m, "client_tool_call", kind)
    parameters = p.get("parameters")
    return ClientToolCall(
        tool_name=_required(p, "tool_name", kind, str),
        tool_call_id=_required(p, "tool_call_id", kind, str),
        parameters=parameters if isinstance(parameters, dict) else {},
        event_id=_optional_int(p, "event_id"),
    )


def _error(m: dict[str, Any]) -> ErrorEvent:
    p = m.get("error_event")
    if not isinstance(p, dict):
        p = {}
    details = p.get("details")
    debug = p.get("debug_message")
    return ErrorEvent(
        code=_optional_int(p, "code"),
        message=_optional_str(p, "message") or "",
        error_type=_optional_str(p, "error_type"),
        reason=_optional_str(p, "reason"),
        debug_message=debug if isinstance(debug, str) else None,
        details=details if isinstance(details, dict) else None,
    )


def _vad(m: dict[str, Any]) -> VadScore:
    p = _payload(m, "vad_score_event", "vad_score")
    return VadScore(float(_required(p, "vad_score", "vad_score", (int, float))))


_DECODERS: dict[str, Callable[[dict[str, Any]], ServerEvent]] = {
    "conversation_initiation_metadata": _metadata,
    "audio": _audio,
    "interruption": _interruption,
    "ping": _ping,
    "user_transcript": _user_transcript,
    "tentative_user_transcript": _tentative,
    "agent_response": _agent_response,
    "agent_response_correction": _correction,
    "client_tool_call": _tool_call,
    "error": _error,
    "vad_score": _vad,
}


def decode(frame: str | bytes) -> ServerEvent:
    """One server frame → a typed event. Raises `ProtocolError` for frames that cannot be used."""
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"frame is JSON {type(message).__name__}, not an object")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("frame has no 'type'")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        return Unknown(kind, message)
    return decoder(message)


# --- encoding (client → server), each one JSON text frame ---------------------------------------------


def _dumps(message: Mapping[str, Any]) -> str:
    return orjson.dumps(message).decode()


def encode_init(
    dynamic_variables: Mapping[str, DynamicValue] | None = None,
    conversation_config_override: Mapping[str, Any] | None = None,
    user_id: str | None = None,
    custom_llm_extra_body: Mapping[str, Any] | None = None,
    source_info: Mapping[str, str] | None = None,
) -> str:
    """`conversation_initiation_client_data`, with only the fields that are set."""
    message: dict[str, Any] = {"type": "conversation_initiation_client_data"}
    if conversation_config_override:
        message["conversation_config_override"] = dict(conversation_config_override)
    if custom_llm_extra_body:
        message["custom_llm_extra_body"] = dict(custom_llm_extra_body)
    message["dynamic_variables"] = dict(dynamic_variables or {})
    if user_id:
        message["user_id"] = user_id
    if source_info:
        message["source_info"] = dict(source_info)
    return _dumps(message)


def encode_user_audio(data: bytes) -> str:
    """Caller audio; no `type` field on purpose (the server detects it by key "for performance")."""
    return '{"user_audio_chunk":"' + base64.b64encode(data).decode() + '"}'


def encode_pong(event_id: int) -> str:
    return _dumps({"type": "pong", "event_id": event_id})


def encode_client_tool_result(tool_call_id: str, result: str, is_error: bool = False) -> str:
    return _dumps(
        {"type": "client_tool_result", "tool_call_id": tool_call_id, "result": result, "is_error": is_error}
    )


def encode_contextual_update(text: str) -> str:
    return _dumps({"type": "contextual_update", "text": text})


def encode_user_activity() -> str:
    return _dumps({"type": "user_activity"})


def encode_user_message(text: str) -> str:
    return _dumps({"type": "user_message", "text": text})
