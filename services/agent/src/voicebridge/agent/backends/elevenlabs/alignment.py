"""ElevenLabs' per-chunk character timing (`alignment`) as the contract's TextAlignment.

Media uses it to tell which words the caller heard before cutting in (CallerInterrupted.heard_text).
It is optional on the wire, so a missing or malformed one gives None and never costs the audio.
"""

from __future__ import annotations

from typing import Any

from voicebridge.v1 import agent_pb2


def text_alignment(alignment: dict[str, Any] | None) -> agent_pb2.TextAlignment | None:
    """(chars, char_start_times_ms, char_durations_ms) → TextAlignment; None when absent or malformed."""
    if not alignment:
        return None
    chars = alignment.get("chars")
    starts = alignment.get("char_start_times_ms")
    durations = alignment.get("char_durations_ms") or []
    if not isinstance(chars, list) or not isinstance(starts, list) or len(chars) != len(starts):
        return None
    try:
        return agent_pb2.TextAlignment(
            chars=[str(c) for c in chars],
            char_start_ms=[max(0, int(v)) for v in starts],
            char_duration_ms=[max(0, int(v)) for v in durations][: len(chars)],
        )
    except (TypeError, ValueError):
        return None
