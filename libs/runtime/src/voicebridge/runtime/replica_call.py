"""One call on a replica of the next service, moved to another replica while it has not started.

Why its own module: the pool (runtime/replicas.py) decides *where* a new call goes; this is the call
itself — it behaves like the `MuxCall` it wraps, and until the replica has answered anything (or
`max_replay` messages were written) it keeps what was written, so that a refusal (`end` with
END_REASON_SHUTDOWN: the replica began draining after it was chosen) or a lost stream (TRANSPORT_LOST)
opens it again on another replica and writes it all there again: the caller notices nothing. A first
answer `Error{NOT_FOUND}` (an agent replica that holds no conversation for a call media asks to take
over) moves the call the same way, to each replica known now in turn, without counting that replica
as failing; after the last, the caller sees its NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import grpc

from voicebridge.v1 import common_pb2

if TYPE_CHECKING:
    from .replicas import Replica, ReplicaPool

log = logging.getLogger(__name__)

HALF_CLOSE = object()  # marks done_writing() in a call's replay log
# The stream errors that mean "the replica's process or connection is gone", what a broken connection
# gives every call on it: UNAVAILABLE ("Socket closed", "Connection reset by peer") or, now and then
# when the peer was SIGKILLed or stopped, INTERNAL ("Internal error from Core": the transport's own
# failure; our servers never answer a call with INTERNAL, a failing handler is UNKNOWN). Any other
# status is the replica's own answer about the call, and opening it elsewhere would not help.
TRANSPORT_LOST = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL})


def is_not_here(message: Any) -> bool:
    """The first answer of a replica that has nothing for this call (an agent asked to take over a
    conversation it does not hold: Error{NOT_FOUND}): another replica may have it."""
    return bool(
        message.WhichOneof("event") == "error" and message.error.code == common_pb2.ERROR_CODE_NOT_FOUND
    )


def is_refusal(message: Any) -> bool:
    """The first answer of a replica that will not take the call: `end` with END_REASON_SHUTDOWN."""
    return bool(message.WhichOneof("event") == "end" and message.end.reason == common_pb2.END_REASON_SHUTDOWN)


class ReplicaCall:
    """One call, on the replica the pool chose; moved to another one while it has not started.

    Behaves like the `MuxCall` it wraps (write, write_nowait, done_writing, read, cancel, done, code)."""

    def __init__(self, pool: ReplicaPool, exclude: Iterable[str] = ()) -> None:
        self._pool = pool
        self._inner: Any = None
        self._replica: Replica | None = None
        self._tried: set[str] = set(exclude)
        self._replay: list[Any] | None = []  # what was written, until the call has started
        self._failure: grpc.aio.AioRpcError | None = None
        self._lock = asyncio.Lock()  # writes wait while the call is being (re)placed
        self._attached = asyncio.Event()
        self._placing = asyncio.get_running_loop().create_task(self._first_place(), name="replica-place")

    @property
    def replica(self) -> str | None:
        return self._replica.address if self._replica is not None else None

    @property
    def tried(self) -> frozenset[str]:
        """Every replica this call was opened on (or excluded from)."""
        return frozenset(self._tried)

    async def _first_place(self) -> None:
        try:
            async with self._lock:
                await self._attach_next()
        except Exception as exc:  # a bug, not a missing replica: the call fails, nothing waits forever
            log.exception("placing a new %s call failed", self._pool.hop)
            self._fail(grpc.StatusCode.INTERNAL, f"placing the call failed: {exc!r}")
        finally:
            self._attached.set()

    async def _attach_next(self, wait: bool = True) -> bool:
        """Open the call on a replica not tried yet and write again what was written. Lock held."""
        replica = await self._pool.place(self._tried, None if wait else 0.0)
        if replica is None:
            self._fail(grpc.StatusCode.UNAVAILABLE, f"no {self._pool.hop} replica can take the call")
            return False
        self._tried.add(replica.address)
        inner = replica.client.open()
        self._inner, self._replica = inner, replica
        self._pool.track(replica, inner)
        for message in self._replay or ():
            with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError):
                if message is HALF_CLOSE:
                    await inner.done_writing()
                else:
                    await inner.write(message)
        return True

    def _fail(self, code: grpc.StatusCode, details: str) -> None:
        if self._failure is None:
            self._failure = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)

    def _record(self, message: Any) -> None:
        if self._replay is not None:
            self._replay.append(message)
            if len(self._replay) > self._pool.max_replay:
                self._replay = None  # this much has been said: the call counts as started

    def write_nowait(self, message: Any) -> bool:
        inner = self._inner
        if inner is None or self._lock.locked() or self._failure is not None:
            return False
        write_nowait = getattr(inner, "write_nowait", None)
        if write_nowait is None or not write_nowait(message):
            return False
        self._record(message)
        return True

    async def write(self, message: Any) -> None:
        await self._attached.wait()
        async with self._lock:
            if self._failure is not None:
                raise asyncio.InvalidStateError(self._failure.details())
            self._record(message)
            try:
                await self._inner.write(message)
            except (grpc.RpcError, asyncio.InvalidStateError):
                if self._replay is None:
                    raise  # a started call: its failure is the caller's to see

    async def done_writing(self) -> None:
        await self._attached.wait()
        async with self._lock:
            if self._failure is not None:
                return
            self._record(HALF_CLOSE)
            try:
                await self._inner.done_writing()
            except (grpc.RpcError, asyncio.InvalidStateError):
                if self._replay is None:
                    raise

    async def read(self) -> Any:
        while True:
            await self._attached.wait()
            async with self._lock:
                if self._failure is not None:
                    raise self._failure
                inner = self._inner
            try:
                message = await inner.read()
            except grpc.aio.AioRpcError as exc:
                unstarted = self._replay is not None and exc.code() in TRANSPORT_LOST
                if unstarted and await self._move("unavailable"):
                    continue
                raise
            if self._replay is not None and message is not grpc.aio.EOF:
                if is_refusal(message) and await self._move("refused"):
                    continue
                if is_not_here(message) and await self._move("not_found", unhealthy=False):
                    continue
                self._replay = None  # the replica has answered: the call has started there
            return message

    async def _move(self, why: str, unhealthy: bool = True) -> bool:
        """Open the call again elsewhere; False when no other replica can take it. A replica that only
        had nothing for this call (`unhealthy` false) stays in service for other calls."""
        async with self._lock:
            assert self._replica is not None
            self._inner.cancel()
            if unhealthy:
                self._pool.failed(self._replica, why)
            else:
                log.info("%s replica %s has nothing for this call", self._pool.hop, self._replica.address)
            # Not here is no failure: only a replica known now is asked, none is waited for.
            moved = await self._attach_next(wait=unhealthy)
            if not moved:
                self._failure = None  # the caller sees the last replica's own answer instead
                self._replay = None
            return moved

    def cancel(self) -> bool:
        self._replay = None
        if self._inner is not None:
            return bool(self._inner.cancel())
        self._placing.cancel()
        self._fail(grpc.StatusCode.CANCELLED, "cancelled before it was placed")
        self._attached.set()
        return True

    def done(self) -> bool:
        if self._failure is not None:
            return True
        return self._inner is not None and self._inner.done()

    async def code(self) -> grpc.StatusCode:
        await self._attached.wait()
        if self._failure is not None:
            failed: grpc.StatusCode = self._failure.code()
            return failed
        status: grpc.StatusCode = await self._inner.code()
        return status
