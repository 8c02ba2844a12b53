"""Twilio Media Streams WebSocket protocol (bidirectional ``<Connect><Stream>``): pure decode and encode.

No I/O here: the WebSocket handler feeds text frames to :func:`decode` and writes what the ``encode_*``
functions return. Shapes follow https://www.twilio.com/docs/voice/media-streams/websocket-messages.

Decisions:
- Numeric fields (``sequenceNumber``, ``chunk``, ``timestamp``) arrive as JSON strings of digits.
  Non-negative JSON integers are accepted too (a proxy or test peer may re-serialise them); booleans,
  floats, negative, non-ASCII-digit or absurdly long (> 18 digits) values are rejected.
- Unknown extra fields are ignored, so a field Twilio adds later cannot take calls down.
- ``stop.accountSid``/``stop.callSid`` are optional: ``stop`` is the only in-band end signal, so it
  must never be lost to a missing detail.
- Whether ``streamSid`` matches the session's is the session's check, not the codec's.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "Connected",
    "Dtmf",
    "Inbound",
    "Mark",
    "Media",
    "MediaFormat",
    "MediaStreamsProtocolError",
    "Start",
    "Stop",
    "decode",
    "encode_clear",
    "encode_mark",
    "encode_media",
]

MEDIA_TRACKS = frozenset({"inbound", "outbound"})


class MediaStreamsProtocolError(ValueError):
    """A frame from Twilio that does not follow the protocol (what Twilio itself would call 31951)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class MediaFormat:
    encoding: str
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class Start:
    sequence_number: int
    account_sid: str
    call_sid: str
    stream_sid: str
    tracks: tuple[str, ...]
    media_format: MediaFormat
    custom_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Media:
    sequence_number: int
    stream_sid: str
    track: str
    chunk: int
    timestamp_ms: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Dtmf:
    sequence_number: int
    stream_sid: str
    track: str
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    sequence_number: int
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    sequence_number: int
    stream_sid: str
    account_sid: str
    call_sid: str


Inbound = Connected | Start | Media | Dtmf | Mark | Stop


def _obj(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise MediaStreamsProtocolError(f"{where}.{key} must be an object, got {_kind(value)}")
    return value


def _str(parent: dict[str, Any], key: str, where: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str):
        raise MediaStreamsProtocolError(f"{where}.{key} must be a string, got {_kind(value)}")
    return value


def _num(parent: dict[str, Any], key: str, where: str) -> int:
    value = parent.get(key)
    if isinstance(value, str):
        if 0 < len(value) <= 18 and value.isascii() and value.isdigit():
            return int(value)
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
        return value
    raise MediaStreamsProtocolError(
        f"{where}.{key} must be a string of digits, got {_kind(value)} {value!r:.40}"
    )


def _kind(value: object) -> str:
    return "missing" if value is None else type(value).__name__


def _connected(msg: dict[str, Any]) -> Connected:
    return Connected(protocol=_str(msg, "protocol", "connected"), version=_str(msg, "version", "connected"))


def _start(msg: dict[str, Any]) -> Start:
    seq = _num(msg, "sequenceNumber", "start")
    body = _obj(msg, "start", "start")
    stream_sid = _str(body, "streamSid", "start.start")
    top_sid = msg.get("streamSid")
    if top_sid is not None and top_sid != stream_sid:
        raise MediaStreamsProtocolError("start.streamSid differs from start.start.streamSid")
    tracks = body.get("tracks")
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise MediaStreamsProtocolError("start.start.tracks must be a list of strings")
    fmt = _obj(body, "mediaFormat", "start.start")
    params = body.get("customParameters", {})
    if params is None:
        params = {}
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise MediaStreamsProtocolError("start.start.customParameters must be an object of strings")
    return Start(
        sequence_number=seq,
        account_sid=_str(body, "accountSid", "start.start"),
        call_sid=_str(body, "callSid", "start.start"),
        stream_sid=stream_sid,
        tracks=tuple(tracks),
        media_format=MediaFormat(
            encoding=_str(fmt, "encoding", "start.mediaFormat"),
            sample_rate=_num(fmt, "sampleRate", "start.mediaFormat"),
            channels=_num(fmt, "channels", "start.mediaFormat"),
        ),
        custom_parameters=dict(params),
    )


def _media(msg: dict[str, Any]) -> Media:
    body = _obj(msg, "media", "media")
    track = _str(body, "track", "media.media")
    if track not in MEDIA_TRACKS:
        raise MediaStreamsProtocolError(f"media.media.track must be inbound or outbound, got {track!r:.40}")
    raw = _str(body, "payload", "media.media")
    try:
        payload = binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaStreamsProtocolError(f"media.media.payload is not valid base64: {exc}") from None
    return Media(
        sequence_number=_num(msg, "sequenceNumber", "media"),
        stream_sid=_str(msg, "streamSid", "media"),
        track=track,
        chunk=_num(body, "chunk", "media.media"),
        timestamp_ms=_num(body, "timestamp", "media.media"),
        payload=payload,
    )


def _dtmf(msg: dict[str, Any]) -> Dtmf:
    body = _obj(msg, "dtmf", "dtmf")
    digit = _str(body, "digit", "dtmf.dtmf")
    if not digit:
        raise MediaStreamsProtocolError("dtmf.dtmf.digit is empty")
    return Dtmf(
        sequence_number=_num(msg, "sequenceNumber", "dtmf"),
        stream_sid=_str(msg, "streamSid", "dtmf"),
        track=_str(body, "track", "dtmf.dtmf"),
        digit=digit,
    )


def _mark(msg: dict[str, Any]) -> Mark:
    body = _obj(msg, "mark", "mark")
    return Mark(
        sequence_number=_num(msg, "sequenceNumber", "mark"),
        stream_sid=_str(msg, "streamSid", "mark"),
        name=_str(body, "name", "mark.mark"),
    )


def _stop(msg: dict[str, Any]) -> Stop:
    body = msg.get("stop")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise MediaStreamsProtocolError(f"stop.stop must be an object, got {_kind(body)}")
    account_sid = body.get("accountSid", "")
    call_sid = body.get("callSid", "")
    if not isinstance(account_sid, str) or not isinstance(call_sid, str):
        raise MediaStreamsProtocolError("stop.stop.accountSid and callSid must be strings")
    return Stop(
        sequence_number=_num(msg, "sequenceNumber", "stop"),
        stream_sid=_str(msg, "streamSid", "stop"),
        account_sid=account_sid,
        call_sid=call_sid,
    )


_DECODERS: dict[str, Callable[[dict[str, Any]], Inbound]] = {
    "connected": _connected,
    "start": _start,
    "media": _media,
    "dtmf": _dtmf,
    "mark": _mark,
    "stop": _stop,
}


def decode(text: str | bytes) -> Inbound:
    """Parse one text frame from Twilio; raises only :class:`MediaStreamsProtocolError`."""
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise MediaStreamsProtocolError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise MediaStreamsProtocolError(f"message must be a JSON object, got {type(msg).__name__}")
    event = msg.get("event")
    decoder = _DECODERS.get(event) if isinstance(event, str) else None
    if decoder is None:
        raise MediaStreamsProtocolError(f"unknown event {event!r:.40}")
    return decoder(msg)


# --- server → Twilio. Only media, mark and clear are allowed (else 31951); text frames only (else 31950).


def _json_str(value: str) -> str:
    """A JSON string literal; the fast path skips orjson for the plain ASCII SIDs Twilio issues."""
    if value.isascii() and value.isalnum():
        return f'"{value}"'
    return orjson.dumps(value).decode()


def encode_media(stream_sid: str, payload: bytes) -> str:
    """Audio to play: raw 8 kHz mono μ-law, no file header, any length (Twilio buffers and plays in order)."""
    b64 = binascii.b2a_base64(payload, newline=False).decode("ascii")
    return f'{{"event":"media","streamSid":{_json_str(stream_sid)},"media":{{"payload":"{b64}"}}}}'


def encode_mark(stream_sid: str, name: str) -> str:
    """A label Twilio echoes back once the audio queued before it has played (or been cleared)."""
    name_json = orjson.dumps(name).decode()
    return f'{{"event":"mark","streamSid":{_json_str(stream_sid)},"mark":{{"name":{name_json}}}}}'


def encode_clear(stream_sid: str) -> str:
    """Empty Twilio's playout buffer (barge-in); every pending mark then echoes back at once."""
    return f'{{"event":"clear","streamSid":{_json_str(stream_sid)}}}'
