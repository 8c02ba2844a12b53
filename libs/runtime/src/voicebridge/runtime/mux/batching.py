"""Gathering call messages into batches: a bounded outbox that one sender task drains, and the pacing
that spaces a client's sends.

Whatever is queued while the sender waits leaves in its next batch; the bound makes a producer wait
(or, with `put_nowait`'s caller, fall back to waiting) instead of letting a stalled stream grow memory."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from ..clock import Clock, LoopClock


class Outbox:
    """Call messages waiting for the next batch, at most `limit` of them."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: list[Any] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._released = False

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self._limit

    async def wait_room(self) -> None:
        """Return once there is room, or once `release` was called (the stream is gone)."""
        while self.full() and not self._released:
            self._room.clear()
            await self._room.wait()

    def put(self, item: Any) -> None:
        """Queue `item` (bounded by the callers, who wait for room first) and wake the sender."""
        self._items.append(item)
        self._wake.set()

    def wake(self) -> None:
        """Wake the sender with nothing new, so that it looks at its stream's state again."""
        self._wake.set()

    async def wait(self) -> None:
        """Until something was queued (or `wake` was called) since the last `take`."""
        await self._wake.wait()

    def take(self) -> list[Any]:
        """Everything queued, in order, leaving the outbox empty and producers free to queue again."""
        self._wake.clear()
        items, self._items = self._items, []
        self._room.set()
        return items

    def release(self) -> None:
        """The stream has failed: nobody waits for room any more."""
        self._released = True
        self._room.set()


class Pace:
    """How long the next send waits, so that a stream carries at most about one message per
    `interval_s` however many calls it carries, and items coming in slower than that never wait.

    Holding a batch for a window w while items arrive at a rate r makes about r / (1 + r·w) messages
    a second. The window is the least that keeps that at or under 1/interval: w = interval - 1/r,
    so it is 0 while items come slower than one per interval (a lone call's frames, 20 ms apart,
    cross at once) and approaches `interval_s` as calls grow (never more). The rate is estimated from
    what was sent, with an exponentially decaying count over `time_constant_s`. Evenly spaced items
    (the worst case) can make up to 2/interval messages a second, at a rate of about 2/interval
    items; from there it falls to 1/interval as the rate grows.

    The first send after a quiet spell therefore goes at once, and no item waits more than
    `interval_s`; that is the latency this trades for the bounded message rate."""

    def __init__(self, interval_s: float, clock: Clock | None = None, time_constant_s: float = 0.2) -> None:
        self._interval = interval_s
        self._clock = clock or LoopClock()
        self._tau = time_constant_s
        self._rate = 0.0  # items per second, as of `_rate_at`
        self._rate_at = -math.inf
        self._last = -math.inf

    def rate(self, now: float) -> float:
        """The estimated item rate at `now` (items per second)."""
        if self._rate_at == -math.inf:
            return 0.0
        return self._rate * math.exp(-(now - self._rate_at) / self._tau)

    def window(self, now: float) -> float:
        """How long after the last send the next one may leave."""
        rate = self.rate(now)
        if rate * self._interval <= 1.0:
            return 0.0
        return self._interval - 1.0 / rate

    async def wait(self) -> None:
        """Until the next send may leave (at once when nothing was sent for a window)."""
        if self._interval <= 0:
            return
        due = self._last + self.window(self._clock.now())
        if due > self._clock.now():
            await self._clock.sleep_until(due)

    def sent(self, items: int) -> None:
        """A message carrying `items` left now."""
        if self._interval <= 0:
            return
        now = self._clock.now()
        self._rate = self.rate(now) + items / self._tau
        self._rate_at = self._last = now
