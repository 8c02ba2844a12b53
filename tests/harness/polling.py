"""Waiting on another process: poll a condition (its metrics, its log) until it holds, with a deadline.

Only for state in other processes, where no event can be awaited; in-process code waits on events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(
    check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for: {what}")
        await asyncio.sleep(interval_s)
