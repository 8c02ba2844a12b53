"""The server half: a *Batch or *Many RPC served by running the per-call servicer method once per call
number.

Servers answer at once, with no pacing: their senders (media's pacer) already line their calls up on
a shared tick, so whatever responses are ready when the stream's sender runs leave in one batch.

Call numbers first appear on the wire in increasing order (the client numbers a call when it first
sends), so a number at or below the highest seen that has no live call is the late message of an
ended call, dropped, never a new call."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from ..grpc_metrics import ServerStreamMetrics
from .batching import Outbox
from .codec import BAD, MESSAGE, SIGNAL, RpcCodec
from .framing import BATCH_ITEMS, CALLS_OVERRUN, CANCEL, HALF_CLOSE, Handler, status_message

log = logging.getLogger(__name__)


class _ServerCall:
    """One call's requests, handed to its handler in order; at most `max_unread` waiting."""

    def __init__(self, number: int, max_unread: int) -> None:
        self.number = number
        self.max_unread = max_unread
        self.inbox: collections.deque[Any] = collections.deque()
        self.readable = asyncio.Event()
        self.closed = False  # half-closed by the client
        self.task: asyncio.Task[None] | None = None
        self.cancelled = False

    def push(self, message: Any) -> bool:
        """False when the handler has fallen too far behind."""
        self.inbox.append(message)
        self.readable.set()
        return len(self.inbox) <= self.max_unread

    def half_close(self) -> None:
        self.closed = True
        self.readable.set()

    def stop(self) -> None:
        """Ended from this side (or cancelled by the client): no status is sent for it."""
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()

    async def requests(self) -> AsyncIterator[Any]:
        while True:
            while self.inbox:
                yield self.inbox.popleft()
            if self.closed:
                return
            self.readable.clear()
            await self.readable.wait()


class MuxServer:
    """Serves a multiplexed RPC by running `handler` (the per-call servicer method) once per call number.

    `codec` lays out that RPC's messages (codec.py: CALL_BATCH, CALL_MANY, ...); `method` is the
    per-call method's full name, under which each call is counted in the standard gRPC metrics."""

    def __init__(
        self,
        handler: Handler,
        codec: RpcCodec,
        method: str,
        max_pending: int = 4096,
        max_unread: int = 1024,
    ) -> None:
        self.handler = handler
        self.decode, self.encode = codec.requests.decode, codec.responses.encode
        self.method, self.many_method = method, f"{method}{codec.suffix}"
        self.max_pending = max_pending
        self.max_unread = max_unread
        self.metrics = ServerStreamMetrics.for_method(method)
        self.sent_items = BATCH_ITEMS.labels(self.many_method, "server", "sent")
        self.received_items = BATCH_ITEMS.labels(self.many_method, "server", "received")

    def serve(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        """The response batches of one *Many RPC (the servicer method yields them)."""
        return _ServerStream(self, request_iterator, context).batches()


class _ServerStream:
    """One *Many RPC being served: a reader task that routes requests to their calls, a task per call
    running the handler, and the RPC's own generator sending what they answer, in batches."""

    def __init__(
        self, server: MuxServer, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        self._server = server
        self._requests = requests
        self._context = context
        self._calls: dict[int, _ServerCall] = {}
        self._highest = 0  # the highest call number seen
        self._outbox = Outbox(server.max_pending)
        self._reading_done = False

    async def batches(self) -> AsyncIterator[Any]:
        await self._context.send_initial_metadata(())  # the client learns at once that we serve it
        reader = asyncio.create_task(self._read(), name="mux-reader")
        try:
            while True:
                await self._outbox.wait()
                items = self._outbox.take()
                if items:
                    self._server.sent_items.observe(len(items))
                    yield self._server.encode(items)
                if self._reading_done and not self._calls and not len(self._outbox):
                    return
        finally:
            reader.cancel()
            calls = list(self._calls.values())
            for call in calls:
                call.stop()
            for task in (reader, *(c.task for c in calls if c.task is not None)):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # -- requests in ---------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for batch in self._requests:
                entries = self._server.decode(batch)
                self._server.received_items.observe(len(entries))
                for number, kind, value in entries:
                    self._route(number, kind, value)
        except Exception:
            log.exception("reading the multiplexed stream failed")  # its calls end as if half-closed
        finally:
            self._reading_done = True
            for call in self._calls.values():
                call.half_close()
            self._outbox.wake()

    def _route(self, number: int, kind: int, value: Any) -> None:
        call = self._calls.get(number)
        if call is None and number <= self._highest:
            return  # the call already ended here; its last messages crossed
        if kind == MESSAGE:
            call = call or self._open(number)
            self._server.metrics.received.inc()
            if not call.push(value):
                CALLS_OVERRUN.labels(self._server.many_method).inc()
                log.warning("multiplexed call %d fell behind its requests; ending it", call.number)
                self._end(call, grpc.StatusCode.RESOURCE_EXHAUSTED, "requests piled up unread")
        elif kind == SIGNAL and value == HALF_CLOSE:
            call = call or self._open(number)  # one that sent nothing: its handler sees no requests
            call.half_close()
        elif kind == SIGNAL and value == CANCEL:
            self._highest = max(self._highest, number)  # cancelled before it opened: never opens
            if call is not None:
                self._calls.pop(number, None)
                call.stop()
        else:  # unreadable, or not a client's to send: this call ends, no other notices
            reason = value if kind == BAD else "an item a client does not send"
            log.warning("multiplexed call %d sent a malformed item; ending it", number)
            self._highest = max(self._highest, number)
            if call is None:
                self._outbox.put((number, status_message(grpc.StatusCode.INVALID_ARGUMENT, reason)))
            else:
                self._end(call, grpc.StatusCode.INVALID_ARGUMENT, reason)

    def _open(self, number: int) -> _ServerCall:
        self._highest = number
        call = self._calls[number] = _ServerCall(number, self._server.max_unread)
        call.task = asyncio.create_task(self._run(call), name="mux-call")
        return call

    # -- responses out -------------------------------------------------------------------------

    async def _run(self, call: _ServerCall) -> None:
        server = self._server
        loop = asyncio.get_running_loop()
        begin = loop.time()
        server.metrics.started.inc()
        code, details = grpc.StatusCode.OK, ""
        try:
            async for response in server.handler(call.requests(), self._context):
                await self._outbox.wait_room()
                self._outbox.put((call.number, response))
                server.metrics.sent.inc()
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            if not call.cancelled:
                raise
        except Exception as exc:
            log.exception("multiplexed call %d failed", call.number)
            code, details = grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}"
        finally:
            self._calls.pop(call.number, None)
            server.metrics.handled(code, loop.time() - begin)
            if not call.cancelled:
                self._put_status(call, code, details)

    def _end(self, call: _ServerCall, code: grpc.StatusCode, details: str) -> None:
        """End a call from here (it fell behind): the client hears the status, the handler stops."""
        self._calls.pop(call.number, None)
        call.stop()
        self._put_status(call, code, details)

    def _put_status(self, call: _ServerCall, code: grpc.StatusCode, details: str) -> None:
        self._outbox.put((call.number, status_message(code, details)))
