"""The ConvAI protocol's shapes as the emulator speaks them: paths, formats, error events, message kinds,
and the per-chunk split of a reply's character timing. Pure functions, no I/O (docs/elevenlabs.md).
"""

from __future__ import annotations

from typing import Any

CONVERSATION_PATH = "/v1/convai/conversation"
SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"
FORMATS = ("pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000", "ulaw_8000")


class Omit:
    """Marker for "leave the key out" (a ping without `ping_ms`, which the docs call optional)."""


OMIT = Omit()


def chunk_alignment(alignment: dict[str, Any], start_ms: float, end_ms: float, last: bool) -> dict[str, Any]:
    """The part of a reply's character timing that starts within [start_ms, end_ms) of it (anything
    later too, for the last chunk), timed from `start_ms`. Keys missing from `alignment` stay missing."""
    chars = list(alignment.get("chars") or [])
    starts = list(alignment.get("char_start_times_ms") or [])
    durations = list(alignment.get("char_durations_ms") or [])
    if len(starts) != len(chars):  # not a timing the emulator can split: send it as given
        return alignment
    keep = [i for i, t in enumerate(starts) if start_ms <= t and (t < end_ms or last)]
    part: dict[str, Any] = {
        "chars": [chars[i] for i in keep],
        "char_start_times_ms": [round(starts[i] - start_ms) for i in keep],
    }
    if "char_durations_ms" in alignment:
        part["char_durations_ms"] = [durations[i] for i in keep if i < len(durations)]
    return part


def message_kind(message: dict[str, Any]) -> str:
    """The client message's type; audio chunks carry none on the wire ("for performance")."""
    if "user_audio_chunk" in message and "type" not in message:
        return "user_audio_chunk"
    return str(message.get("type", "unknown"))


def error_event(
    code: int,
    message: str,
    error_type: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An `error` event exactly as the spec's `ErrorPayload` describes it."""
    data: dict[str, Any] = {"code": code, "message": message, "error_type": error_type, "reason": reason}
    if details is not None:
        data["details"] = details
    return {"type": "error", "error_event": data}
