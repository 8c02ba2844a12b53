"""One writer per outgoing gRPC bidi stream, with control messages ahead of audio.

gRPC allows one write in flight per stream. Callers must never block on it: the edge's WebSocket
receive loop and media's caller-audio path would stall behind a slow peer, and Twilio then drops
audio (warning 31930). So writes are queued: control messages (start, marks, barge-in, end) in an
unbounded-but-rare queue that is always written first, audio in a bounded queue that drops its
oldest entry when full (counted by the caller's `on_drop`).

A call multiplexed on a shared stream (runtime/mux/) can take a message without waiting
(`write_nowait`): when nothing is queued ahead of it, the message goes straight there, with no
task switch, which is most of the time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import grpc

log = logging.getLogger(__name__)


class PriorityStreamWriter:
    def __init__(
        self,
        call: Any,  # grpc.aio.StreamStreamCall
        max_audio: int,
        on_sent: Callable[[], None] | None = None,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self._call = call
        self._max_audio = max(1, max_audio)
        self._audio: collections.deque[Any] = collections.deque()
        self._control: collections.deque[Any] = collections.deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._on_sent = on_sent
        self._on_drop = on_drop
        self._write_nowait: Callable[[Any], bool] | None = getattr(call, "write_nowait", None)
        self._writing = False  # the task is writing: a message sent now could overtake it
        self.error: grpc.aio.AioRpcError | None = None
        self._task = asyncio.create_task(self._loop(), name="stream-writer")

    def control(self, message: Any) -> None:
        if not self._closing and not self._sent_now(message):
            self._control.append(message)
            self._wake.set()

    def audio(self, message: Any) -> None:
        if self._closing or self._sent_now(message):
            return
        if len(self._audio) >= self._max_audio:
            self._audio.popleft()
            if self._on_drop:
                self._on_drop()
        self._audio.append(message)
        self._wake.set()

    def _sent_now(self, message: Any) -> bool:
        if self._write_nowait is None or self._writing or self._control or self._audio:
            return False
        if not self._write_nowait(message):
            return False
        if self._on_sent:
            self._on_sent()
        return True

    async def _loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._control or self._audio:
                    message = self._control.popleft() if self._control else self._audio.popleft()
                    self._writing = True
                    await self._call.write(message)
                    self._writing = False
                    if self._on_sent:
                        self._on_sent()
                if self._closing:
                    await self._call.done_writing()
                    return
        except grpc.aio.AioRpcError as exc:
            self.error = exc
            log.debug("stream write failed: %s", exc.code().name)
        except asyncio.InvalidStateError:  # the RPC already finished
            pass

    def take_unsent(self) -> list[Any]:
        """What is queued and not written yet, in the order it would have gone (control first), and
        the queues emptied: for a stream that broke, to be written on the one replacing it."""
        unsent = [*self._control, *self._audio]
        self._control.clear()
        self._audio.clear()
        return unsent

    def abandon(self) -> None:
        """Stop at once, writing nothing more: the stream is gone (no half-close to send)."""
        self._closing = True
        self._task.cancel()

    async def close(self, final: Any | None = None, timeout_s: float = 1.0) -> None:
        """Write `final` (if any) after what is queued, half-close, stop. Idempotent."""
        if not self._closing:
            if final is not None:
                self._control.append(final)
            self._closing = True
            self._wake.set()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
