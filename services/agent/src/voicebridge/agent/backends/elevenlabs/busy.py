"""Whether a refusal at connect means "busy" (the workspace's concurrency limit), from its words.

A heuristic on purpose: no error_type for it is documented (the AsyncAPI spec lists none); the
concurrency limit rejects calls at connect (docs/elevenlabs.md#capacity), and `http_exception` is how
HTTP errors become close frames. A busy refusal gets the spoken "busy" prompt instead of silence.
"""

from __future__ import annotations

from . import protocol as p

BUSY_WORDS = ("concurren", "too many", "quota", "limit exceeded", "busy", "capacity")


def looks_busy(code: int | None, error: p.ErrorEvent | None, reason: str = "") -> bool:
    """A refusal for capacity: HTTP 429 behind an `http_exception`, or words of a concurrency/quota limit."""
    if error is not None and error.details and error.details.get("status_code") == 429:
        return True
    parts = [reason]
    if error is not None:
        parts += [error.message or "", error.reason or "", error.error_type or ""]
    text = " ".join(parts).lower()
    return any(word in text for word in BUSY_WORDS)
