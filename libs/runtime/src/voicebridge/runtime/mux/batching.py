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
    """At most one send per `interval_s`; the first after a quiet interval goes at once."""

    def __init__(self, interval_s: float, clock: Clock | None = None) -> None:
        self._interval = interval_s
        self._clock = clock or LoopClock()
        self._last = -math.inf

    async def wait(self) -> None:
        if self._interval <= 0:
            return
        due = self._last + self._interval
        if due > self._clock.now():
            await self._clock.sleep_until(due)
        self._last = self._clock.now()
