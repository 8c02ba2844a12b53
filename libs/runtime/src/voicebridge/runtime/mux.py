"""Many calls on one gRPC stream: the client and server halves of the *Many RPCs.

Why: with Python's grpc.aio a stream message costs 0.3-1.1 ms of CPU over its two ends whatever it
carries (`voicebridge-grpc-bench`), and a call sends a caller frame every 20 ms over every hop.
Carrying every call between two processes on one stream, with everything that is ready at the same
moment in one message, divides that cost by the batch size. A batch leaves as soon as the sender task
runs, with whatever the other calls queued meanwhile. A client given `interval_s` sends at most one
message per interval (one ready after a quiet interval still leaves at once), which bounds its gRPC
messages per second whatever the number of calls, at a cost of at most `interval_s` of added latency;
that pacing runs on an injectable `clock` (a virtual one in tests).
Servers answer at once: their senders (media's pacer) already line their calls up on a shared tick.

The per-call code stays as it is. The client hands out `MuxCall`s that behave like a grpc.aio bidi
call (write, done_writing, read, cancel, done, code); the server runs the per-call servicer method once
per call number and feeds it that call's messages. A server without the *Many method answers
UNIMPLEMENTED, and the client then opens per-call streams instead.

One call's trouble stays that call's: a call whose messages pile up unread is ended with
RESOURCE_EXHAUSTED, and a failing handler ends only its call. Losing the shared stream itself ends
every call on it, as losing the peer process would.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from voicebridge.v1 import common_pb2

from .clock import Clock, LoopClock
from .grpc_metrics import ClientStreamMetrics, ServerStreamMetrics
from .loop_metrics import Counter, Histogram

log = logging.getLogger(__name__)

_ITEM_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)
BATCH_ITEMS = Histogram(
    "voicebridge_mux_batch_items",
    "Call messages carried per gRPC message on multiplexed streams",
    ["grpc_method", "side", "direction"],
    buckets=_ITEM_BUCKETS,
)
CALLS_OVERRUN = Counter(
    "voicebridge_mux_calls_overrun_total",
    "Multiplexed calls ended because their messages piled up unread",
    ["grpc_method"],
)

HALF_CLOSE = common_pb2.STREAM_SIGNAL_HALF_CLOSE
CANCEL = common_pb2.STREAM_SIGNAL_CANCEL
_CODES = {code.value[0]: code for code in grpc.StatusCode}

Handler = Callable[[AsyncIterator[Any], grpc.aio.ServicerContext], AsyncIterator[Any]]


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class _Pace:
    """At most one send per `interval_s`; the first after a quiet interval goes at once."""

    def __init__(self, interval_s: float, clock: Clock | None = None) -> None:
        self._interval = interval_s
        self._clock = clock or LoopClock()
        self._last = -math.inf

    async def wait(self) -> None:
        if self._interval <= 0:
            return
        due = self._last + self._interval
        if due > self._clock.now():
            await self._clock.sleep_until(due)
        self._last = self._clock.now()


# -- client ------------------------------------------------------------------------------------


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
            await self._delegate.write(message)
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
                raise _rpc_error(self._code, self._details)
            self._readable.clear()
            await self._readable.wait()
        return self._inbox.popleft()

    def cancel(self) -> bool:
        if self._delegate is not None:
            return self._delegate.cancel()
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
            return self._delegate.done()
        return self._code is not None

    async def code(self) -> grpc.StatusCode:
        await self._attached.wait()
        if self._delegate is not None:
            return await self._delegate.code()
        await self._finished.wait()
        assert self._code is not None
        return self._code


class _ClientStream:
    """One open *Many RPC: a writer task that batches, a reader task that routes responses."""

    def __init__(self, client: MuxClient) -> None:
        self._client = client
        self._rpc = client.open_many()
        self._calls: dict[int, MuxCall] = {}  # calls that have sent something, by number
        self._unnumbered: set[MuxCall] = set()  # calls on this stream that have sent nothing yet
        self._next = 1
        self._pending: list[Any] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.failed = False
        self.supported = asyncio.get_running_loop().create_future()  # True, or False: UNIMPLEMENTED
        self._began = asyncio.get_running_loop().time()
        self._metrics = ClientStreamMetrics.for_method(client.many_method)
        self._metrics.started.inc()
        self._sent_items = BATCH_ITEMS.labels(client.many_method, "client", "sent")
        self._received_items = BATCH_ITEMS.labels(client.many_method, "client", "received")
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
        while len(self._pending) >= self._client.max_pending and not self.failed:
            self._room.clear()
            await self._room.wait()
        number = None if self.failed else self._number_for(call)
        if number is None:
            raise asyncio.InvalidStateError("the multiplexed stream or the call has ended")
        item_cls = self._client.request_item
        self._queue(
            item_cls(call=number, request=request)
            if request is not None
            else item_cls(call=number, signal=signal)
        )

    def send_nowait(self, call: MuxCall, request: Any) -> bool:
        """`send` for a request when there is room now; False (nothing queued) otherwise."""
        if len(self._pending) >= self._client.max_pending or self.failed:
            return False
        number = self._number_for(call)
        if number is None:
            return False
        self._queue(self._client.request_item(call=number, request=request))
        return True

    def _queue(self, item: Any) -> None:
        self._pending.append(item)
        self._wake.set()

    def cancel_call(self, call: MuxCall) -> None:
        self._unnumbered.discard(call)  # never sent anything: nothing to cancel on the server
        if call._number and self._calls.pop(call._number, None) is not None and not self.failed:
            self._queue(self._client.request_item(call=call._number, signal=CANCEL))

    async def _write_loop(self) -> None:
        pace = _Pace(self._client.interval_s, self._client.clock)
        try:
            while True:
                await self._wake.wait()
                await pace.wait()
                self._wake.clear()
                items, self._pending = self._pending, []
                self._room.set()
                await self._rpc.write(self._client.request_batch(items=items))
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
                self._received_items.observe(len(batch.items))
                for item in batch.items:
                    call = self._calls.get(item.call)
                    if call is None:
                        continue  # a call we cancelled: its last messages crossed the cancel
                    if item.WhichOneof("kind") == "response":
                        call._deliver(item.response)
                    else:
                        del self._calls[item.call]
                        call._finish(
                            _CODES.get(item.status.code, grpc.StatusCode.UNKNOWN), item.status.message
                        )
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), f"multiplexed stream failed: {exc.details()}"
            if not self.supported.done():
                self.supported.set_result(code is not grpc.StatusCode.UNIMPLEMENTED)
        finally:
            if not self.supported.done():
                self.supported.set_result(True)
            self._fail(code, details)

    def _fail(self, code: grpc.StatusCode, details: str) -> None:
        self._metrics.handled(code, asyncio.get_running_loop().time() - self._began)
        self.failed = True
        self._room.set()
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


class MuxClient:
    """Opens calls on one shared *Many stream per process pair, re-opened after it fails.

    `open_many()` and `open_one()` start the multiplexed and the per-call RPC on a stub;
    `request_batch` and `request_item` are the *ManyRequest message classes; `method` is the per-call
    method's full name. With `enabled` false every call gets its own stream. `clock` paces the sends
    `interval_s` apart (the event loop's clock unless given)."""

    def __init__(
        self,
        open_many: Callable[[], Any],
        open_one: Callable[[], Any],
        request_batch: type,
        request_item: type,
        method: str,
        interval_s: float = 0.0,
        max_pending: int = 4096,
        max_unread: int = 1024,
        enabled: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.open_many, self.open_one = open_many, open_one
        self.request_batch, self.request_item = request_batch, request_item
        self.method, self.many_method = method, f"{method}Many"
        self.interval_s = interval_s
        self.clock = clock
        self.max_pending = max_pending
        self._max_unread = max_unread
        self._enabled = enabled
        self._stream: _ClientStream | None = None

    def open(self) -> MuxCall | Any:
        """A new call. Synchronous like a stub call; the stream is settled on first use."""
        if not self._enabled:
            return self.open_one()
        call = MuxCall(self, self._max_unread)
        if self._stream is None or self._stream.failed:
            self._stream = _ClientStream(self)
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
        if self._enabled:
            log.info("%s is not implemented by the server; one stream per call", self.many_method)
            self._enabled = False
        call._attach(None, 0, delegate=self.open_one())

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()


# -- server ------------------------------------------------------------------------------------


class _ServerCall:
    def __init__(self, number: int, max_unread: int) -> None:
        self.number = number
        self.max_unread = max_unread
        self.inbox: collections.deque[Any] = collections.deque()
        self.readable = asyncio.Event()
        self.closed = False  # half-closed by the client
        self.task: asyncio.Task | None = None
        self.cancelled = False

    def push(self, message: Any) -> bool:
        """False when the handler has fallen too far behind."""
        self.inbox.append(message)
        self.readable.set()
        return len(self.inbox) <= self.max_unread

    def half_close(self) -> None:
        self.closed = True
        self.readable.set()

    async def requests(self) -> AsyncIterator[Any]:
        while True:
            while self.inbox:
                yield self.inbox.popleft()
            if self.closed:
                return
            self.readable.clear()
            await self.readable.wait()


class MuxServer:
    """Serves a *Many RPC by running `handler` (the per-call servicer method) once per call number.

    `response_batch` and `response_item` are the *ManyResponse message classes; `method` is the
    per-call method's full name, under which each call is counted in the standard gRPC metrics."""

    def __init__(
        self,
        handler: Handler,
        response_batch: type,
        response_item: type,
        method: str,
        max_pending: int = 4096,
        max_unread: int = 1024,
    ) -> None:
        self._handler = handler
        self._batch, self._item = response_batch, response_item
        self._method = method
        self._max_pending = max_pending
        self._max_unread = max_unread
        self._metrics = ServerStreamMetrics.for_method(method)
        self._many_method = f"{method}Many"
        self._sent_items = BATCH_ITEMS.labels(self._many_method, "server", "sent")
        self._received_items = BATCH_ITEMS.labels(self._many_method, "server", "received")

    async def serve(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        await context.send_initial_metadata(())
        calls: dict[int, _ServerCall] = {}
        highest = 0
        pending: list[Any] = []
        wake = asyncio.Event()
        room = asyncio.Event()
        room.set()
        reading_done = False

        def emit_now(item: Any) -> None:
            pending.append(item)
            wake.set()

        async def run_call(call: _ServerCall) -> None:
            loop = asyncio.get_running_loop()
            begin = loop.time()
            self._metrics.started.inc()
            code, details = grpc.StatusCode.OK, ""
            try:
                async for response in self._handler(call.requests(), context):
                    while len(pending) >= self._max_pending:
                        room.clear()
                        await room.wait()
                    emit_now(self._item(call=call.number, response=response))
                    self._metrics.sent.inc()
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                if not call.cancelled:
                    raise
            except Exception as exc:
                log.exception("multiplexed call %d failed", call.number)
                code, details = grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}"
            finally:
                calls.pop(call.number, None)
                self._metrics.handled(code, loop.time() - begin)
                if not call.cancelled:
                    emit_now(
                        self._item(
                            call=call.number,
                            status=common_pb2.StreamStatus(code=code.value[0], message=details),
                        )
                    )

        def end_call(call: _ServerCall, code: grpc.StatusCode, details: str) -> None:
            """End a call from here (it fell behind): the client hears the status, the handler stops."""
            call.cancelled = True
            calls.pop(call.number, None)
            if call.task is not None:
                call.task.cancel()
            emit_now(
                self._item(
                    call=call.number, status=common_pb2.StreamStatus(code=code.value[0], message=details)
                )
            )

        async def read() -> None:
            nonlocal highest, reading_done
            received = self._metrics.received
            try:
                async for batch in request_iterator:
                    self._received_items.observe(len(batch.items))
                    for item in batch.items:
                        call = calls.get(item.call)
                        if call is None and item.call <= highest:
                            continue  # the call already ended here; its last messages crossed
                        if item.WhichOneof("kind") == "request":
                            if call is None:
                                highest = item.call
                                call = calls[item.call] = _ServerCall(item.call, self._max_unread)
                                call.task = asyncio.create_task(run_call(call), name="mux-call")
                            received.inc()
                            if not call.push(item.request):
                                CALLS_OVERRUN.labels(self._many_method).inc()
                                log.warning(
                                    "multiplexed call %d fell behind its requests; ending it", call.number
                                )
                                end_call(call, grpc.StatusCode.RESOURCE_EXHAUSTED, "requests piled up unread")
                        elif item.signal == HALF_CLOSE:
                            if call is None:  # a call that sent nothing: its handler sees no requests
                                highest = item.call
                                call = calls[item.call] = _ServerCall(item.call, self._max_unread)
                                call.task = asyncio.create_task(run_call(call), name="mux-call")
                            call.half_close()
                        elif item.signal == CANCEL:
                            highest = max(highest, item.call)  # cancelled before it opened: never opens
                            if call is not None:
                                call.cancelled = True
                                calls.pop(item.call, None)
                                if call.task is not None:
                                    call.task.cancel()
            finally:
                reading_done = True
                for call in calls.values():
                    call.half_close()
                wake.set()

        reader = asyncio.create_task(read(), name="mux-reader")
        try:
            while True:
                await wake.wait()
                wake.clear()
                if pending:
                    items = pending[:]
                    pending.clear()
                    room.set()
                    self._sent_items.observe(len(items))
                    yield self._batch(items=items)
                if reading_done and not calls and not pending:
                    return
        finally:
            reader.cancel()
            tasks = [c.task for c in calls.values() if c.task is not None]
            for call in calls.values():
                call.cancelled = True
            for task in (reader, *tasks):
                task.cancel()
            for task in (reader, *tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
