"""What the edge answers when a call's stream has ended: Twilio's `<Connect action>` request.

When a `<Connect><Stream>` ends, Twilio requests the Connect's `action` URL and runs the TwiML it gets
back (https://www.twilio.com/docs/voice/twiml/connect). A stream ends because the call did (the caller
hung up: `CallStatus` is final), because an edge ended it on purpose (the agent hung up, a transfer,
the drain's goodbye, a broken stream), or because the edge carrying it died. Only the last deserves a
new stream, and any edge can be the one that answers: its TwiML re-opens the stream for the same call,
marked as a re-open, so media reclaims the conversation the agent service holds for it
(docs/failover.md#edge-dies). A counter in the action URL's query string bounds the re-opens.

Pure decisions and one bounded record; the route is in webhooks.py.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, urlencode

__all__ = [
    "ATTEMPT",
    "FINAL_STATUSES",
    "EndedCalls",
    "Outcome",
    "action_url",
    "decide",
    "parse_attempt",
]

ATTEMPT = "attempt"  # the action URL's query: how many times this call's stream was re-opened so far
MAX_ATTEMPT_CHARS = 4
# CallStatus values of a call that is over (https://www.twilio.com/docs/voice/twiml#callstatus-values).
FINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
# How long, and for how many calls, an edge remembers that it ended a call's stream itself. Twilio
# requests the action URL as soon as the stream is gone, so minutes are plenty.
ENDED_TTL_S = 600.0
ENDED_MAX_CALLS = 20_000


class Outcome(enum.Enum):
    """The answer to an action request (its value is the metric label)."""

    REOPEN = "reopen"  # the edge carrying the stream died: a new stream for the same call
    CALL_ENDED = "call_ended"  # CallStatus is final: nothing to re-open
    ENDED_HERE = "ended_here"  # this edge ended the stream on purpose
    LIMIT = "limit"  # re-opened EDGE_MAX_STREAM_REOPENS times already


def action_url(base: str, attempt: int) -> str:
    """The absolute action URL of a stream that is re-open number `attempt` (0: the call's first)."""
    return base if attempt == 0 else f"{base}?{urlencode({ATTEMPT: attempt})}"


def parse_attempt(query: str) -> int:
    """The re-open count in an action request's query string; ValueError if it is not one."""
    values = parse_qs(query, keep_blank_values=True, max_num_fields=10).get(ATTEMPT)
    if values is None:
        return 0
    if len(values) != 1 or not values[0].isdigit() or len(values[0]) > MAX_ATTEMPT_CHARS:
        raise ValueError(f"{ATTEMPT} must be one small non-negative integer")
    return int(values[0])


def decide(form: Mapping[str, str], *, ended_here: bool, attempt: int, max_reopens: int) -> Outcome:
    """Re-open the stream only for a call that is still on and that no edge ended on purpose."""
    if form.get("CallStatus", "") in FINAL_STATUSES:
        return Outcome.CALL_ENDED
    if ended_here:
        return Outcome.ENDED_HERE
    if attempt >= max_reopens:
        return Outcome.LIMIT
    return Outcome.REOPEN


class EndedCalls:
    """The calls whose stream this edge ended itself, for ENDED_TTL_S, at most ENDED_MAX_CALLS."""

    def __init__(
        self,
        ttl_s: float = ENDED_TTL_S,
        max_calls: int = ENDED_MAX_CALLS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max = max_calls
        self._clock = clock
        self._ended: OrderedDict[str, float] = OrderedDict()  # call sid -> when, oldest first

    def add(self, call_sid: str) -> None:
        self._expire()
        self._ended.pop(call_sid, None)
        self._ended[call_sid] = self._clock()
        while len(self._ended) > self._max:
            self._ended.popitem(last=False)

    def __contains__(self, call_sid: object) -> bool:
        self._expire()
        return call_sid in self._ended

    def __len__(self) -> int:
        self._expire()
        return len(self._ended)

    def _expire(self) -> None:
        horizon = self._clock() - self._ttl_s
        while self._ended and next(iter(self._ended.values())) <= horizon:
            self._ended.popitem(last=False)
