"""A request stream a test writes into: the async iterator a servicer or session reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

_CLOSED = object()


class Feed:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(self, message: Any) -> None:
        self._queue.put_nowait(message)

    def close(self) -> None:
        """The peer half-closes: the iterator ends after what was put before."""
        self._queue.put_nowait(_CLOSED)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while (message := await self._queue.get()) is not _CLOSED:
            yield message
