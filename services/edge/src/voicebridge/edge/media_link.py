"""The edge's half of one call towards media: its Call stream, opened again on another media replica
when the process carrying it dies mid-call (issue 15).

Why its own module: the session (media_stream.py) bridges Twilio's messages and media's; this is what
lies behind "media's": which stream the call is on now, what the edge forwarded from it, and the
switch to a new one. A media replica that dies (SIGKILL, OOM: no goodbye) fails every call on it with
UNAVAILABLE (now and then INTERNAL); the edge sees that on its next read, within a frame or two. If
the call may still be re-opened (`EDGE_MEDIA_REATTACH_MAX` per call), it is opened again at once on
another replica (`Opener.reopen`: the dead one is marked down and never tried again for this call) with
`CallStart{call, call_secret, reattach{sent}}`, where `sent` is the position of the last agent audio
forwarded to Twilio. The new media takes over the agent conversation the agent service held, which
continues right after `sent`: nothing twice, nothing skipped. What Twilio already has plays on
(the edge sends no `clear`).

- Caller audio that arrives during the switch waits in the new stream's writer (bounded by
  `EDGE_MEDIA_QUEUE_MS`, oldest dropped and counted, as for a slow media link) and reaches the new
  media in order; what the old writer had not sent yet moves over with it. Only frames already
  written into the broken stream are lost (what was in flight when the process died).
- Marks: the dead media's marks still in Twilio's buffer come back after the switch. The new media
  never issued them (and names its own m1, m2, … again), so their echoes are dropped, not passed on;
  Twilio echoes in order, so they are the oldest pending ones. A HangUp or transfer from the new media
  waits for them (`old_marks_heard`): the new media only knows its own audio was heard, and the caller
  is still hearing the old media's.
- After the limit, or when no replica takes the call, the failure is the call's, as before: the edge
  ends it (`edge_media_reattach_total{outcome}` counts each outcome).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from voicebridge.runtime.replica_call import TRANSPORT_LOST
from voicebridge.runtime.replicas import Opener
from voicebridge.runtime.stream_writer import PriorityStreamWriter
from voicebridge.v1 import common_pb2, media_pb2

from .metrics import MEDIA_REATTACH_SECONDS, MEDIA_REATTACHES

log = logging.getLogger(__name__)

# The stream errors that mean "the media process is gone" (runtime/replica_call.py says why INTERNAL
# is one of them); any other status is media's own answer about this call.
REOPEN_CODES = TRANSPORT_LOST


class MediaLink:
    """One call's stream to media, and the re-opening of it on another replica when it breaks.

    `write_audio` / `write_control` never block (PriorityStreamWriter); `read` returns media's next
    message, switching streams underneath when the current one broke and the call may go on."""

    def __init__(
        self,
        opener: Opener,
        start: media_pb2.CallStart,
        max_audio: int,
        max_reopens: int,
        on_sent: Callable[[], None] | None = None,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self._opener = opener
        self._start = start
        self._max_audio = max_audio
        self._max_reopens = max_reopens
        self._on_sent, self._on_drop = on_sent, on_drop
        self.reopens = 0
        self.sent: common_pb2.PlaybackPosition | None = None  # the last agent audio forwarded
        self._pending: collections.deque[str] = collections.deque()  # current media's marks, unechoed
        self._stale: collections.deque[str] = collections.deque()  # dead media's marks, unechoed
        self._stale_gone = asyncio.Event()
        self._stale_gone.set()
        self._closing = False
        self._placed = False  # the current stream's CallStart has been written (it is on a replica)
        self.call: Any = opener.open()
        self.writer = self._writer_for(self.call, None)
        self.writer.control(media_pb2.CallRequest(start=start))

    def _writer_for(self, call: Any, lost_at: float | None) -> PriorityStreamWriter:
        """A writer for `call`; its first write (the CallStart) marks the stream placed, and for a
        re-opened one (`lost_at`: when the old stream's failure was seen) counts the re-attach."""
        self._placed = False

        def on_sent() -> None:
            if not self._placed:
                self._placed = True
                if lost_at is not None:
                    MEDIA_REATTACHES.labels("reattached").inc()
                    MEDIA_REATTACH_SECONDS.observe(time.monotonic() - lost_at)
            if self._on_sent is not None:
                self._on_sent()

        return PriorityStreamWriter(call, self._max_audio, on_sent, self._on_drop)

    # -- towards media ------------------------------------------------------------------------

    def write_audio(self, message: Any) -> None:
        """Caller audio: a CallRequest{audio}, or the CallerAudioFrame that stands for one."""
        self.writer.audio(message)

    def write_control(self, message: media_pb2.CallRequest) -> None:
        self.writer.control(message)

    def mark_echoed(self, name: str) -> None:
        """Twilio echoed a mark: passed to media unless the media that issued it has died."""
        if self._stale and name in self._stale:  # Twilio echoes in order: the dead media's come first
            while self._stale.popleft() != name:
                pass
            if not self._stale:
                self._stale_gone.set()
            return
        if name in self._pending:  # it, and any before it (in order, so none should be)
            while self._pending.popleft() != name:
                pass
        self.writer.control(media_pb2.CallRequest(mark=media_pb2.MarkEcho(name=name)))

    def forwarded(self, audio: media_pb2.PlayAudio) -> None:
        """`audio` went to Twilio: its mark is pending there, and the agent's audio stands at its
        position (media's own prompts carry none)."""
        if audio.mark:
            self._pending.append(audio.mark)
        if audio.HasField("position"):
            self.sent = audio.position

    async def old_marks_heard(self, timeout_s: float) -> None:
        """Until Twilio has echoed every mark of the media replicas that died (`timeout_s` at most)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stale_gone.wait(), timeout_s)

    # -- from media ---------------------------------------------------------------------------

    async def read(self) -> Any:
        """Media's next message (grpc.aio.EOF at an OK end); raises AioRpcError when the stream failed
        and the call cannot go on elsewhere."""
        while True:
            try:
                return await self.call.read()
            except grpc.aio.AioRpcError as exc:
                if not self._may_reopen(exc):
                    raise
                self._reopen(exc)

    def _may_reopen(self, exc: grpc.aio.AioRpcError) -> bool:
        if self._closing or exc.code() not in REOPEN_CODES:
            return False
        if not self._placed:  # this stream never reached a replica
            if self.reopens:  # the re-opened call found none (the pool waited for one)
                MEDIA_REATTACHES.labels("no_replica").inc()
                log.error("media stream lost and no media replica can take the call")
            return False  # a new call that found none: the pool already moved it where it could
        if self.reopens >= self._max_reopens:
            MEDIA_REATTACHES.labels("limit").inc()
            log.error("media stream lost after %d re-opens (EDGE_MEDIA_REATTACH_MAX): ending", self.reopens)
            return False
        return True

    def _reopen(self, exc: grpc.aio.AioRpcError) -> None:
        """Open the call on another replica with `reattach{sent}`; what the old writer still held
        (caller audio, digits) goes there after the start, in order."""
        self.reopens += 1
        log.warning("media stream lost (%s); re-opening the call on another replica", exc.code().name)
        unsent = self.writer.take_unsent()
        self.writer.abandon()
        old = self.call
        self._stale.extend(self._pending)
        self._pending.clear()
        if self._stale:
            self._stale_gone.clear()
        self.call = self._opener.reopen(old)
        with contextlib.suppress(Exception):
            old.cancel()
        self.writer = self._writer_for(self.call, time.monotonic())
        start = media_pb2.CallStart()
        start.CopyFrom(self._start)
        if self.sent is not None:
            start.reattach.sent.CopyFrom(self.sent)
        elif self._start.HasField("reattach"):
            # This stream itself re-opened a call whose edge died and has forwarded no agent audio yet:
            # where the caller stands is still what the agent learnt from the first media's Detach.
            start.reattach.SetInParent()
        else:
            start.reattach.sent.CopyFrom(common_pb2.PlaybackPosition())  # nothing played yet
        self.writer.control(media_pb2.CallRequest(start=start))
        for message in unsent:
            if message.WhichOneof("event") == "audio":
                self.writer.audio(message)
            elif message.WhichOneof("event") in ("dtmf", "transfer_result"):
                self.writer.control(message)

    async def close(self, final: media_pb2.CallRequest) -> None:
        """Write `final` (the stop) after what is queued and half-close; no re-open after this."""
        self._closing = True
        await self.writer.close(final)
