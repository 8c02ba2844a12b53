"""Twilio's side of the Media Streams messages, as pure functions (no I/O): the messages the caller
sends, and the check of what the server sends (https://www.twilio.com/docs/voice/media-streams/websocket-messages).

Numeric fields are JSON strings, as Twilio writes them. A server message that breaks the protocol
yields Twilio's error code for it: 31950 (not a text frame) or 31951 (not a valid media, mark or
clear message)."""

from __future__ import annotations

import binascii
from typing import Any

import orjson

from .config import CallerConfig

RATE = 8000
SILENCE = b"\xff"  # μ-law silence

BINARY_FRAME = 31950
INVALID_MESSAGE = 31951

# event -> (its top-level fields, the fields of its body or None when it has no body)
ALLOWED_KEYS: dict[str, tuple[set[str], set[str] | None]] = {
    "media": ({"event", "streamSid", "media"}, {"payload"}),
    "mark": ({"event", "streamSid", "mark"}, {"name"}),
    "clear": ({"event", "streamSid"}, None),
}


def connected() -> dict[str, Any]:
    return {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def start(cfg: CallerConfig, seq: str) -> dict[str, Any]:
    return {
        "event": "start",
        "sequenceNumber": seq,
        "start": {
            "accountSid": cfg.account_sid,
            "streamSid": cfg.stream_sid,
            "callSid": cfg.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
            "customParameters": dict(cfg.custom_parameters),
        },
        "streamSid": cfg.stream_sid,
    }


def media(stream_sid: str, seq: str, chunk: int, frame_ms: int, payload: bytes) -> dict[str, Any]:
    """The ``chunk``-th frame (from 1) of caller audio; ``timestamp`` is ms since the stream started."""
    return {
        "event": "media",
        "sequenceNumber": seq,
        "media": {
            "track": "inbound",
            "chunk": str(chunk),
            "timestamp": str((chunk - 1) * frame_ms),
            "payload": binascii.b2a_base64(payload, newline=False).decode(),
        },
        "streamSid": stream_sid,
    }


def mark(stream_sid: str, seq: str, name: str) -> dict[str, Any]:
    """The echo of a server's mark once the audio before it has played."""
    return {"event": "mark", "sequenceNumber": seq, "streamSid": stream_sid, "mark": {"name": name}}


def dtmf(stream_sid: str, seq: str, digit: str) -> dict[str, Any]:
    """A key press (bidirectional streams only; the track is always ``inbound_track``)."""
    return {
        "event": "dtmf",
        "streamSid": stream_sid,
        "sequenceNumber": seq,
        "dtmf": {"track": "inbound_track", "digit": digit},
    }


def stop(cfg: CallerConfig, seq: str) -> dict[str, Any]:
    return {
        "event": "stop",
        "sequenceNumber": seq,
        "stop": {"accountSid": cfg.account_sid, "callSid": cfg.call_sid},
        "streamSid": cfg.stream_sid,
    }


def decode(frame: str | bytes, stream_sid: str) -> tuple[Any, tuple[int, str] | None]:
    """One frame from the server: (what to record as received, the violation (code, detail) or None).
    A message with no violation is a valid media, mark or clear message for this stream."""
    if isinstance(frame, bytes):
        return frame, (BINARY_FRAME, "binary frame")
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return frame, (INVALID_MESSAGE, f"not JSON: {frame[:60]!r}")
    problem = check(msg, stream_sid)
    return msg, None if problem is None else (INVALID_MESSAGE, problem)


def check(msg: Any, stream_sid: str) -> str | None:
    """Why a decoded server message is not a valid media/mark/clear message, or None when it is."""
    if not isinstance(msg, dict):
        return "message is not a JSON object"
    event = msg.get("event")
    if event not in ALLOWED_KEYS:
        return f"event {event!r} is not media, mark or clear"
    top, inner = ALLOWED_KEYS[event]
    if set(msg) != top:
        return f"{event}: fields {sorted(msg)} (expected {sorted(top)})"
    if msg["streamSid"] != stream_sid:
        return f"{event}: wrong streamSid {msg['streamSid']!r}"
    if inner is None:
        return None
    body = msg[event]
    if not isinstance(body, dict) or set(body) != inner:
        return f"{event}.{event} must be an object with exactly {sorted(inner)}"
    value = body[next(iter(inner))]
    if not isinstance(value, str):
        return f"{event}: {next(iter(inner))} must be a string"
    if event == "media":
        try:
            binascii.a2b_base64(value, strict_mode=True)
        except (binascii.Error, ValueError):
            return "media: payload is not valid base64"
    return None


def media_audio(msg: dict[str, Any]) -> bytes:
    """The μ-law bytes of a checked ``media`` message."""
    return binascii.a2b_base64(msg["media"]["payload"], strict_mode=True)
