"""In-memory bidirectional gRPC streams: a servicer method served in this process, no sockets.

For tests of the services' cores on a virtual clock. `InMemoryCall` is the client's side of one
stream (the grpc.aio StreamStreamCall subset our code uses: write, done_writing, read, cancel, done,
code, initial_metadata) and runs the servicer method as a task, as grpc.aio does on the server:
the handler's return is status OK, an exception is UNKNOWN (an AioRpcError: its own status, standing
for a broken transport), a cancel reaches the handler as a CancelledError. `mux_client` puts the real
`runtime/mux/` client and server halves over it, so the per-process-pair multiplexed stream is part
of what the tests drive.

A `Valve` per direction lets a test hold what one side sends and release it all at once: messages
sent at different moments then arrive together, the ordering a busy process or network produces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from voicebridge.runtime.mux import CONVERSE_BATCH, CONVERSE_MANY, MuxClient, RpcCodec

_HALF_CLOSE = object()
_END = object()


class Valve:
    """Delivers messages at once while open; while shut, holds them (in order) until `release`."""

    def __init__(self) -> None:
        self.is_open = True
        self._held: list[tuple[asyncio.Queue[Any], Any]] = []

    def deliver(self, queue: asyncio.Queue[Any], item: Any) -> None:
        if self.is_open:
            queue.put_nowait(item)
        else:
            self._held.append((queue, item))

    def shut(self) -> None:
        self.is_open = False

    def release(self) -> None:
        self.is_open = True
        held, self._held = self._held, []
        for queue, item in held:
            queue.put_nowait(item)


class FakeContext:
    """The grpc.aio.ServicerContext subset the servicers use."""

    async def send_initial_metadata(self, metadata: Any) -> None:
        return None


class InMemoryCall:
    def __init__(
        self,
        handler: Callable[[AsyncIterator[Any], Any], AsyncIterator[Any]],
        requests: Valve | None = None,
        responses: Valve | None = None,
    ) -> None:
        self._up = requests or Valve()
        self._down = responses or Valve()
        self._requests: asyncio.Queue[Any] = asyncio.Queue()
        self._responses: asyncio.Queue[Any] = asyncio.Queue()
        self._writes_closed = False
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._finished = asyncio.Event()
        self.task = asyncio.create_task(self._serve(handler), name="inmemory-rpc")

    async def _request_iterator(self) -> AsyncIterator[Any]:
        while (item := await self._requests.get()) is not _HALF_CLOSE:
            yield item

    async def _serve(self, handler: Callable[[AsyncIterator[Any], Any], AsyncIterator[Any]]) -> None:
        try:
            async for response in handler(self._request_iterator(), FakeContext()):
                if self._code is not None:
                    break
                self._down.deliver(self._responses, response)
        except asyncio.CancelledError:
            self._finish(grpc.StatusCode.CANCELLED, "cancelled")
            raise
        except grpc.aio.AioRpcError as exc:  # stands for the transport failing so (a peer gone)
            self._finish(exc.code(), exc.details() or "")
            return
        except Exception as exc:  # what grpc.aio does with a handler's exception
            self._finish(grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}")
            return
        self._finish(grpc.StatusCode.OK, "")

    def _finish(self, code: grpc.StatusCode, details: str) -> None:
        if self._code is None:
            self._code, self._details = code, details
            self._down.deliver(self._responses, _END)
            self._finished.set()

    async def initial_metadata(self) -> tuple:
        return ()

    async def write(self, message: Any) -> None:
        if self._code is not None or self._writes_closed:
            raise asyncio.InvalidStateError("the RPC has finished or was half-closed")
        self._up.deliver(self._requests, message)

    async def done_writing(self) -> None:
        if self._code is None and not self._writes_closed:
            self._writes_closed = True
            self._up.deliver(self._requests, _HALF_CLOSE)

    async def read(self) -> Any:
        message = await self._responses.get()
        if message is _END:
            self._responses.put_nowait(_END)  # every later read sees the end too
            if self._code is grpc.StatusCode.OK:
                return grpc.aio.EOF
            assert self._code is not None
            raise grpc.aio.AioRpcError(self._code, grpc.aio.Metadata(), grpc.aio.Metadata(), self._details)
        return message

    def cancel(self) -> bool:
        if self._code is not None:
            return False
        self._finish(grpc.StatusCode.CANCELLED, "cancelled by the client")
        self.task.cancel()
        return True

    def done(self) -> bool:
        return self._code is not None

    async def code(self) -> grpc.StatusCode:
        await self._finished.wait()
        assert self._code is not None
        return self._code


class InMemoryChannel:
    """Every stream opened to one servicer, so a test can assert they have all ended."""

    def __init__(self) -> None:
        self.calls: list[InMemoryCall] = []
        self.requests, self.responses = Valve(), Valve()  # client -> server, server -> client

    def opener(self, handler: Callable[..., AsyncIterator[Any]]) -> Callable[[], InMemoryCall]:
        def open_call() -> InMemoryCall:
            call = InMemoryCall(handler, self.requests, self.responses)
            self.calls.append(call)
            return call

        return open_call

    def open_streams(self) -> list[InMemoryCall]:
        return [c for c in self.calls if not c.task.done()]

    async def aclose(self) -> None:
        self.requests.release()
        self.responses.release()
        for call in self.calls:
            call.cancel()
        await asyncio.gather(*(c.task for c in self.calls), return_exceptions=True)


def mux_client(
    channel: InMemoryChannel,
    streams: Sequence[tuple[Callable[..., AsyncIterator[Any]], RpcCodec]],
    one: Callable[..., AsyncIterator[Any]],
    method: str,
    enabled: bool = True,
) -> MuxClient:
    """The production client (runtime/mux/) over in-memory streams: `streams` are the multiplexed
    servicer methods to try, best first, with their codecs; no batching interval, which would pace on
    the loop's real clock."""
    return MuxClient(
        [(channel.opener(handler), codec) for handler, codec in streams],
        channel.opener(one),
        method,
        interval_s=0.0,
        enabled=enabled,
    )


def converse_client(
    channel: InMemoryChannel,
    many: Callable[..., AsyncIterator[Any]],
    one: Callable[..., AsyncIterator[Any]],
    enabled: bool = True,
    batch: Callable[..., AsyncIterator[Any]] | None = None,
) -> MuxClient:
    """media's client of the AgentService (Converse, carried by ConverseBatch when given, else
    ConverseMany) over `channel`."""
    streams = [(many, CONVERSE_MANY)] if batch is None else [(batch, CONVERSE_BATCH), (many, CONVERSE_MANY)]
    return mux_client(channel, streams, one, "/voicebridge.v1.AgentService/Converse", enabled=enabled)
