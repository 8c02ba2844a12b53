"""Each call's status from Twilio's status callbacks, ordered by SequenceNumber, in bounded memory.

CallStatusTracker keeps every call it has seen (so a late callback cannot resurrect an ended call);
an edge that runs for months must forget the oldest ones. Forgetting a call only means a callback
arriving after thousands of newer calls is applied instead of ignored: harmless.
"""

from __future__ import annotations

from collections import OrderedDict

from .twilio.status_callbacks import CallStatusEvent, CallStatusTracker


class BoundedCallStatus:
    def __init__(self, max_calls: int = 10_000) -> None:
        self._tracker = CallStatusTracker()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._max_calls = max_calls

    def apply(self, event: CallStatusEvent) -> CallStatusEvent | None:
        """The event if it advances the call's status; None if stale, duplicated or after the end."""
        applied = self._tracker.apply(event)
        self._seen[event.call_sid] = None
        self._seen.move_to_end(event.call_sid)
        while len(self._seen) > self._max_calls:
            oldest, _ = self._seen.popitem(last=False)
            self._tracker.forget(oldest)
        return applied

    def status(self, call_sid: str) -> CallStatusEvent | None:
        return self._tracker.status(call_sid)

    def __len__(self) -> int:
        return len(self._seen)
