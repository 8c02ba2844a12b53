"""Time for timing logic (media's pacer, the mux's batching): a monotonic clock that tests replace
with a virtual one (tests/harness/virtual_clock.py)."""

from __future__ import annotations

import asyncio
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""

    async def sleep_until(self, deadline: float) -> None:
        """Return at (or just after) `deadline`."""


class LoopClock:
    """The event loop's monotonic clock: what production uses."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        if self._loop is None:  # looked up once: this is called for every frame
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - self.now()
        await asyncio.sleep(delay if delay > 0 else 0)
