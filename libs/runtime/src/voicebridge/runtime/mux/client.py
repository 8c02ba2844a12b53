"""The client half: every call to one peer process on one shared *Batch (or *Many) stream, batched.

A batch leaves as soon as the writer task runs, with whatever the other calls queued meanwhile. Given
`interval_s` the client holds a batch for an adaptive window (batching.Pace): none while items come
slower than one per interval (a lone call crosses at once), up to `interval_s` as calls grow, which
bounds its gRPC messages per second at about one per interval whatever the number of calls, at a
cost of at most `interval_s` of added latency; that pacing runs on an injectable `clock`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from ..clock import Clock
from ..grpc_metrics import ClientStreamMetrics
from .batching import Outbox, Pace
from .call import MuxCall
from .codec import MESSAGE, STATUS, Decoded, RpcCodec
from .framing import BATCH_ITEMS, CANCEL, status_code

log = logging.getLogger(__name__)


class _ClientStream:
    """One open *Many or *Batch RPC: a writer task that batches, a reader task that routes responses."""

    def __init__(self, client: MuxClient, transport: Transport) -> None:
        self._client = client
        self.transport = transport
        opener, codec = transport
        self._rpc = opener()
        self._encode = codec.requests.encode
        self._decode = codec.responses.decode
        self.method = f"{client.method}{codec.suffix}"
        self._calls: dict[int, MuxCall] = {}  # calls that have sent something, by number
        self._unnumbered: set[MuxCall] = set()  # calls on this stream that have sent nothing yet
        self._next = 1
        self._outbox = Outbox(client.max_pending)
        self.failed = False
        self.supported = asyncio.get_running_loop().create_future()  # True, or False: UNIMPLEMENTED
        self._began = asyncio.get_running_loop().time()
        self._metrics = ClientStreamMetrics.for_method(self.method)
        self._metrics.started.inc()
        self._sent_items = BATCH_ITEMS.labels(self.method, "client", "sent")
        self._received_items = BATCH_ITEMS.labels(self.method, "client", "received")
        self._tasks = (
            asyncio.create_task(self._write_loop(), name="mux-writer"),
            asyncio.create_task(self._read_loop(), name="mux-reader"),
        )

    def add(self, call: MuxCall) -> None:
        self._unnumbered.add(call)
        call._attach(self, 0)

    def _number_for(self, call: MuxCall) -> int | None:
        """The call's number, given when it first sends: numbers then first appear on the wire in
        increasing order, which is how the server tells a new call from the late messages of an ended
        one. None once the call has ended."""
        if call._number:
            return call._number if call._number in self._calls else None
        if call not in self._unnumbered:
            return None
        self._unnumbered.discard(call)
        call._number, self._next = self._next, self._next + 1
        self._calls[call._number] = call
        return call._number

    async def send(self, call: MuxCall, request: Any = None, signal: int = 0) -> None:
        await self._outbox.wait_room()
        number = None if self.failed else self._number_for(call)
        if number is None:
            raise asyncio.InvalidStateError("the multiplexed stream or the call has ended")
        self._outbox.put((number, request if request is not None else signal))

    def send_nowait(self, call: MuxCall, request: Any) -> bool:
        """`send` for a request when there is room now; False (nothing queued) otherwise."""
        if self._outbox.full() or self.failed:
            return False
        number = self._number_for(call)
        if number is None:
            return False
        self._outbox.put((number, request))
        return True

    def cancel_call(self, call: MuxCall) -> None:
        self._unnumbered.discard(call)  # never sent anything: nothing to cancel on the server
        if call._number and self._calls.pop(call._number, None) is not None and not self.failed:
            self._outbox.put((call._number, CANCEL))

    async def _write_loop(self) -> None:
        pace = Pace(self._client.interval_s, self._client.clock)
        try:
            while True:
                await self._outbox.wait()
                await pace.wait()
                items = self._outbox.take()
                pace.sent(len(items))
                await self._rpc.write(self._encode(items))
                self._metrics.sent.inc()
                self._sent_items.observe(len(items))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            log.debug("multiplexed stream write failed: %r", exc)

    async def _read_loop(self) -> None:
        code, details = grpc.StatusCode.UNAVAILABLE, "the multiplexed stream ended"
        try:
            await self._rpc.initial_metadata()  # the server sends headers at once (see CallMany)
            if self._rpc.done() and await self._rpc.code() is grpc.StatusCode.UNIMPLEMENTED:
                self.supported.set_result(False)
                return
            self.supported.set_result(True)
            while (batch := await self._rpc.read()) is not grpc.aio.EOF:
                self._metrics.received.inc()
                entries = self._decode(batch)
                self._received_items.observe(len(entries))
                self._route(entries)
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), f"multiplexed stream failed: {exc.details()}"
            if not self.supported.done():
                self.supported.set_result(code is not grpc.StatusCode.UNIMPLEMENTED)
        finally:
            if not self.supported.done():
                self.supported.set_result(True)
            self._fail(code, details)

    def _route(self, entries: list[Decoded]) -> None:
        """Each response to its call; a status item ends its call, and so does one we cannot read."""
        for number, kind, value in entries:
            call = self._calls.get(number)
            if call is None:
                continue  # a call we cancelled: its last messages crossed the cancel
            if kind == MESSAGE:
                call._deliver(value)
            elif kind == STATUS:
                del self._calls[number]
                call._finish(status_code(value), value.message)
            else:
                log.warning("multiplexed call %d got a malformed response; ending it", number)
                del self._calls[number]
                call._finish(grpc.StatusCode.INTERNAL, f"malformed response: {value}")
                self._outbox.put((number, CANCEL))

    def _fail(self, code: grpc.StatusCode, details: str) -> None:
        self._metrics.handled(code, asyncio.get_running_loop().time() - self._began)
        self.failed = True
        self._outbox.release()
        calls, self._calls = self._calls, {}
        unnumbered, self._unnumbered = self._unnumbered, set()
        for call in [*calls.values(), *unnumbered]:
            call._finish(code, details)
        self._tasks[0].cancel()
        self._rpc.cancel()

    async def aclose(self) -> None:
        self._rpc.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


Transport = tuple[Callable[[], Any], RpcCodec]
"""A multiplexed RPC to try: the stub method that opens it, and how its messages are laid out."""


class MuxClient:
    """Opens calls on one shared multiplexed stream per process pair, re-opened after it fails.

    `transports` are the multiplexed RPCs the client may use, best first (CallBatch, then CallMany):
    a server that answers one with UNIMPLEMENTED is asked for the next, and once none is left every
    call gets its own stream from `open_one()` (the per-call RPC, whose full name is `method`). With
    `enabled` false every call gets its own stream at once. `clock` paces the sends `interval_s`
    apart (the event loop's clock unless given)."""

    def __init__(
        self,
        transports: Sequence[Transport],
        open_one: Callable[[], Any],
        method: str,
        interval_s: float = 0.0,
        max_pending: int = 4096,
        max_unread: int = 1024,
        enabled: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self._transports = list(transports)
        self.open_one = open_one
        self.method = method
        self.interval_s = interval_s
        self.clock = clock
        self.max_pending = max_pending
        self._max_unread = max_unread
        self._enabled = enabled and bool(self._transports)
        self._stream: _ClientStream | None = None

    @property
    def many_method(self) -> str:
        """The multiplexed method in use (or to be tried next), for metrics."""
        return f"{self.method}{self._transports[0][1].suffix}" if self._transports else self.method

    def open(self) -> MuxCall:
        """A new call. Synchronous like a stub call; the stream is settled on first use."""
        call = MuxCall(self, self._max_unread)
        if not self._enabled:
            call._attach(None, 0, delegate=self.open_one())
            return call
        if self._stream is None or self._stream.failed:
            self._stream = _ClientStream(self, self._transports[0])
        stream = self._stream
        if stream.supported.done() and stream.supported.result():
            stream.add(call)
        else:
            asyncio.get_running_loop().create_task(self._settle(stream, call), name="mux-settle")
        return call

    async def _settle(self, stream: _ClientStream, call: MuxCall) -> None:
        supported = await asyncio.shield(stream.supported)
        if call.done():
            return  # cancelled while we waited: nothing was sent for it
        if supported:
            if stream.failed:  # it failed between its headers and now: the call fails with it
                call._finish(grpc.StatusCode.UNAVAILABLE, "the multiplexed stream ended")
                call._attach(stream, 0)
            else:
                stream.add(call)
            return
        if self._transports and self._transports[0] is stream.transport:
            self._transports.pop(0)
            log.info("%s is not implemented by the server", stream.method)
        if self._enabled and self._transports:
            if self._stream is stream or self._stream is None or self._stream.failed:
                self._stream = _ClientStream(self, self._transports[0])
            await self._settle(self._stream, call)
            return
        if self._enabled:
            log.info("no multiplexed method is implemented by the server; one stream per call")
            self._enabled = False
        call._attach(None, 0, delegate=self.open_one())

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()
