"""How an ElevenLabs close (code, last `error` event) maps to the contract's end reason.

Pure functions, table-tested (tests/agent/elevenlabs/test_closes.py). The codes and their meanings are
in docs/elevenlabs.md#close-codes: 1000 → AGENT_ENDED; 1002/1011 → AGENT_ERROR; 1008 → PROTOCOL_ERROR;
anything else (a lost connection, 1006) → AGENT_ERROR. The detail names the `error_type` of the
preceding `error` event (e.g. missing_dynamic_variable).
"""

from __future__ import annotations

from voicebridge.v1 import common_pb2

from ..base import SessionEndInfo
from . import protocol as p

LOST = 1006  # no close frame: the connection was lost


def close_end(code: int | None, reason: str, error: p.ErrorEvent | None) -> SessionEndInfo:
    """Map a close (code, last `error` event) to the contract's end reason: docs/elevenlabs.md#close-codes."""
    error_type = error.error_type if error else None
    message = (error.message if error else "") or reason
    extra = {"close_code": str(code if code is not None else LOST)}
    if error_type:
        extra["error_type"] = error_type
    described = f"{error_type}: {message}" if error_type else message or "no reason given"
    if code == 1000:
        return SessionEndInfo(
            common_pb2.END_REASON_AGENT_ENDED, f"agent ended the conversation ({described})", extra
        )
    if code == 1008:
        return SessionEndInfo(
            common_pb2.END_REASON_PROTOCOL_ERROR, f"ElevenLabs closed 1008: {described}", extra
        )
    if code in (1002, 1011):
        return SessionEndInfo(
            common_pb2.END_REASON_AGENT_ERROR, f"ElevenLabs closed {code}: {described}", extra
        )
    return SessionEndInfo(
        common_pb2.END_REASON_AGENT_ERROR, f"ElevenLabs connection lost (code {code}): {described}", extra
    )


def describe(error: p.ErrorEvent | None, reason: str) -> str:
    """One line for a refusal: the error event's type and message, else the close reason."""
    if error is None:
        return reason or "no reason given"
    return f"{error.error_type or 'error'}: {error.message or error.reason or reason}"


# Error types that a new conversation would only repeat, or that ended the call on purpose
# (docs/elevenlabs.md#resume): a safety stop, the conversation's time limit, 60 s without caller input.
NOT_RESUMABLE_ERROR_TYPES = frozenset(
    {"safety_violation", "max_duration_exceeded", "transport_receive_timeout"}
)


def resumable(code: int | None, error: p.ErrorEvent | None) -> bool:
    """Whether a close mid-call may be followed by a new conversation carrying the call on.

    Not after 1000 (the agent ended it) or 1008 (the contract was broken: invalid message, override or
    dynamic variable errors, which a new conversation would repeat), nor after the error types above;
    1002 (operational: LLM, ASR or TTS failures), 1011 (internal), 1001 and a lost connection are.
    """
    if code in (1000, 1008):
        return False
    return not (error is not None and error.error_type in NOT_RESUMABLE_ERROR_TYPES)
