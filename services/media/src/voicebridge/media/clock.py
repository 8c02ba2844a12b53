"""Time as the media service sees it: a monotonic clock that tests can replace with a virtual one."""

from __future__ import annotations

import asyncio
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""

    async def sleep_until(self, deadline: float) -> None:
        """Return at (or just after) `deadline`."""


class LoopClock:
    """The event loop's monotonic clock: what the pacer uses in production."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - self.now()
        await asyncio.sleep(delay if delay > 0 else 0)
