"""Call status callbacks: parse them and keep each call's status in sequence order.

Twilio sends each callback as a separate HTTP request with "no guarantee they will arrive in the same
order", numbered by ``SequenceNumber`` from 0 (https://www.twilio.com/docs/voice/twiml/client, the status
callback table). So a late ``ringing`` must not overwrite ``in-progress``, and nothing overwrites a
terminal status. Nothing is buffered waiting for gaps: a callback Twilio failed to deliver never arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["TERMINAL_STATUSES", "CallStatusEvent", "CallStatusTracker", "parse_status_callback"]

CALL_STATUSES = frozenset(
    {"queued", "initiated", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled"}
)
TERMINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


@dataclass(frozen=True, slots=True)
class CallStatusEvent:
    call_sid: str
    status: str
    sequence_number: int
    duration_s: int | None = None  # CallDuration, on completed only
    answered_by: str | None = None  # AnsweredBy, with machine detection

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def parse_status_callback(form: Mapping[str, str]) -> CallStatusEvent:
    """The fields the bridge uses from a call status callback (form-encoded); raises ``ValueError``."""
    call_sid = form.get("CallSid", "")
    status = form.get("CallStatus", "")
    seq = form.get("SequenceNumber", "")
    if not call_sid:
        raise ValueError("status callback without CallSid")
    if status not in CALL_STATUSES:
        raise ValueError(f"unknown CallStatus {status!r:.40}")
    if not (seq.isascii() and seq.isdigit() and len(seq) <= 9):
        raise ValueError(f"SequenceNumber must be digits, got {seq!r:.40}")
    duration = form.get("CallDuration")
    return CallStatusEvent(
        call_sid=call_sid,
        status=status,
        sequence_number=int(seq),
        duration_s=int(duration) if duration and duration.isascii() and duration.isdigit() else None,
        answered_by=form.get("AnsweredBy") or None,
    )


class CallStatusTracker:
    """Latest status per call by ``SequenceNumber``; terminal statuses are final."""

    def __init__(self) -> None:
        self._latest: dict[str, CallStatusEvent] = {}

    def apply(self, event: CallStatusEvent) -> CallStatusEvent | None:
        """The event if it advances the call's status; None if it is stale, a duplicate or after the end."""
        current = self._latest.get(event.call_sid)
        if current is not None and (current.terminal or event.sequence_number <= current.sequence_number):
            return None
        self._latest[event.call_sid] = event
        return event

    def status(self, call_sid: str) -> CallStatusEvent | None:
        return self._latest.get(call_sid)

    def forget(self, call_sid: str) -> None:
        """Drop a finished call's state (callers decide when late callbacks no longer matter)."""
        self._latest.pop(call_sid, None)
