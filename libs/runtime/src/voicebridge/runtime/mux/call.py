"""One call as the client side sees it: a handle that behaves like a grpc.aio bidi call, whether the
call rides the shared stream or, when the server has no multiplexed method (or multiplexing is off),
a stream of its own; frame objects (frames.py) written to a stream of its own go as their message."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any

import grpc

from .frames import as_proto
from .framing import CALLS_OVERRUN, HALF_CLOSE, rpc_error

if TYPE_CHECKING:
    from .client import MuxClient, _ClientStream

log = logging.getLogger(__name__)


class MuxCall:
    """One call, on a shared stream (or on its own stream when the server has no *Many method).

    The subset of grpc.aio.StreamStreamCall that the services use. Messages read are bounded: a
    reader that falls `max_unread` behind is ended with RESOURCE_EXHAUSTED rather than slowing the
    other calls on the stream."""

    def __init__(self, client: MuxClient, max_unread: int) -> None:
        self._client = client
        self._max_unread = max_unread
        self._stream: _ClientStream | None = None
        self._number = 0
        self._delegate: Any = None  # a per-call grpc.aio call, after fallback
        self._attached = asyncio.Event()
        self._inbox: collections.deque[Any] = collections.deque()
        self._readable = asyncio.Event()
        self._finished = asyncio.Event()
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._writes_closed = False

    # Called by the client once it knows which kind of stream carries the call.
    def _attach(self, stream: _ClientStream | None, number: int, delegate: Any = None) -> None:
        self._stream, self._number, self._delegate = stream, number, delegate
        self._attached.set()

    def _deliver(self, message: Any) -> None:
        if self._code is not None:
            return
        self._inbox.append(message)
        self._readable.set()
        if len(self._inbox) > self._max_unread:
            CALLS_OVERRUN.labels(self._client.many_method).inc()
            log.warning(
                "multiplexed call %d fell %d messages behind; ending it", self._number, len(self._inbox)
            )
            self._inbox.clear()
            self._finish(grpc.StatusCode.RESOURCE_EXHAUSTED, "responses piled up unread")
            if self._stream is not None:
                self._stream.cancel_call(self)

    def _finish(self, code: grpc.StatusCode, details: str) -> None:
        if self._code is None:
            self._code, self._details = code, details
        self._readable.set()
        self._finished.set()

    def write_nowait(self, message: Any) -> bool:
        """Queue `message` on the shared stream without waiting; False when that is not possible now
        (not settled yet, its own stream, the shared stream full, or the call over): use `write`."""
        stream = self._stream
        if stream is None or self._code is not None or self._writes_closed:
            return False
        return stream.send_nowait(self, message)

    async def write(self, message: Any) -> None:
        await self._attached.wait()
        if self._delegate is not None:
            await self._delegate.write(as_proto(message))
            return
        if self._code is not None or self._writes_closed:
            raise asyncio.InvalidStateError("the call has finished or was half-closed")
        assert self._stream is not None
        await self._stream.send(self, request=message)

    async def done_writing(self) -> None:
        await self._attached.wait()
        if self._delegate is not None:
            await self._delegate.done_writing()
            return
        if self._code is None and not self._writes_closed:
            self._writes_closed = True
            assert self._stream is not None
            await self._stream.send(self, signal=HALF_CLOSE)

    async def read(self) -> Any:
        """The next message; grpc.aio.EOF after an OK end; raises AioRpcError after any other end."""
        await self._attached.wait()
        if self._delegate is not None:
            return await self._delegate.read()
        while not self._inbox:
            if self._code is not None:
                if self._code is grpc.StatusCode.OK:
                    return grpc.aio.EOF
                raise rpc_error(self._code, self._details)
            self._readable.clear()
            await self._readable.wait()
        return self._inbox.popleft()

    def cancel(self) -> bool:
        if self._delegate is not None:
            return bool(self._delegate.cancel())
        if self._code is not None:
            return False
        self._finish(grpc.StatusCode.CANCELLED, "cancelled by the client")
        if self._stream is not None:
            self._stream.cancel_call(self)
        elif not self._attached.is_set():  # still settling: nothing was sent for it
            self._attached.set()
        return True

    def done(self) -> bool:
        if self._delegate is not None:
            return bool(self._delegate.done())
        return self._code is not None

    async def code(self) -> grpc.StatusCode:
        await self._attached.wait()
        if self._delegate is not None:
            code: grpc.StatusCode = await self._delegate.code()
            return code
        await self._finished.wait()
        assert self._code is not None
        return self._code
