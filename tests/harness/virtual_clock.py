"""A deterministic clock for timing logic: time moves only when the test says so.

Implements `voicebridge.runtime.clock.Clock` (media's pacer, the mux's batching). `advance(seconds)`
moves time forward in small steps, waking sleepers in deadline order and letting the event loop run
everything that became ready, so a pacer under test behaves exactly as it would on a real clock,
minus the jitter.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class VirtualClock:
    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._ids), future))
        await future

    async def settle(self) -> None:
        """Let every task that can run at the current time run."""
        for _ in range(20):
            await asyncio.sleep(0)

    async def advance(self, seconds: float, step: float = 0.001) -> None:
        end = self._now + seconds
        while self._now < end - 1e-12:
            self._now = min(end, self._now + step)
            while self._sleepers and self._sleepers[0][0] <= self._now + 1e-12:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
            await self.settle()

    async def jump(self, seconds: float) -> None:
        """Move time in one go, then let things run: what a blocked event loop looks like to them."""
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now + 1e-12:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        await self.settle()
