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

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        if self._loop is None:  # looked up once: this is called for every frame
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - self.now()
        await asyncio.sleep(delay if delay > 0 else 0)
