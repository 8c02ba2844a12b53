"""One agent conversation, which may outlive the Converse stream that opened it.

Why it is apart from the stream: a call whose media replica dies, or whose edge dies, comes back on a
new stream a moment later (agent.proto, Detach / SessionAttach). The backend session, its `run` task
and the messages it produces belong to the conversation; a stream only borrows it. A relay task moves
every message the backend produces into the `ReplayLog` and on to the stream attached now, or, while
none is (held), nowhere else: the log keeps it for the stream that re-attaches.

    backend.run() --> outbox --> relay --> ReplayLog --> the attached stream's Outbox --> media
                                                     \\--> (held: kept in the log only)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Callable

from voicebridge.runtime.tasks import cancel_and_wait
from voicebridge.v1 import agent_pb2, common_pb2

from .backends.base import AgentSession, Outbox
from .replay_log import Point, ReplayLog, Resend

log = logging.getLogger(__name__)


def secret_hash(secret: bytes) -> bytes:
    """What the agent keeps of a call's secret: never the secret itself."""
    return hashlib.sha256(secret).digest()


def secret_matches(stored_hash: bytes, presented: bytes) -> bool:
    """Constant time, so a stranger learns nothing from how long a refusal takes."""
    return bool(stored_hash) and hmac.compare_digest(stored_hash, secret_hash(presented))


class Conversation:
    """The backend session of one call and where its messages go."""

    def __init__(
        self,
        call_sid: str,
        call_secret: bytes,
        session: AgentSession,
        outbox: Outbox,
        replay_log: ReplayLog | None,
    ) -> None:
        self.call_sid = call_sid
        self.secret_hash = secret_hash(call_secret) if call_secret else b""
        self.session = session
        self.ready = session.ready
        self.outbox = outbox  # what the backend produces
        self.log = replay_log  # None: this conversation is never held (no call secret, or holding off)
        self.stream: Outbox | None = None  # the attached stream's outbox; None while held
        self.pump: asyncio.Task | None = None  # the attached stream's requests -> session
        self.backend: asyncio.Task | None = None  # session.run()
        self._relay: asyncio.Task | None = None
        self.ended = False  # the backend's end has been relayed: nothing more will come
        self.closed = False
        self.last_sent: agent_pb2.ConverseResponse | None = None  # the last audio a stream sent
        self.heard: Point | None = None  # Detach.heard, in bytes of the output format
        self.on_overflow: Callable[[], None] | None = None
        self.live: object | None = None  # the servicer's record of the call (its drain, its gauges)
        self.on_closed: Callable[[int], None] | None = None  # the servicer's books: reason of the end

    @property
    def holdable(self) -> bool:
        return self.log is not None

    async def switch_to(self, stream: Outbox | None, resume: Point | None = None) -> list[Resend]:
        """Send from now on to `stream` (None: hold), and return what that stream must be sent first to
        resume at `resume` (ReplayLog.replay; nothing for a stream that starts the conversation).

        The relay restarts, so none of its messages waits on a stream that is gone (what it had taken
        is in the log already), and the replay is taken from the log with no relay running: every
        message reaches the new stream once, from the replay or live."""
        self.stream = stream  # at once: the stream this replaces sees it is out
        if self._relay is not None:
            await cancel_and_wait([self._relay])
            self._relay = None
        replay: list[Resend] = []
        if self.log is not None:
            if stream is None:
                self.log.hold()
            else:
                replay = self.log.replay(resume) if resume is not None else []
                self.log.release()
        if not self.ended and not self.closed:
            self._relay = asyncio.create_task(self._run_relay(), name="agent-relay")
        return replay

    async def _run_relay(self) -> None:
        while True:
            message = await self.outbox.get()
            kind = message.WhichOneof("event")
            if self.log is not None:
                self.log.note(message)
            if kind == "end":
                self.ended = True
            stream = self.stream
            if stream is None:
                if self.log is not None and self.log.overflowed and self.on_overflow is not None:
                    self.on_overflow()
                    return
            elif kind == "audio":
                await stream.put_audio(message)
            else:
                stream.put_control(message)
            if kind == "end":
                return

    def cut(self, response_id: int) -> None:
        """Media refuses the rest of this reply (the caller cut in): never resend it."""
        if self.log is not None:
            self.log.cut(response_id)

    def resume_point(self) -> Point | None:
        """Where a stream attaching without resume_from continues: Detach.heard, else the end of what
        the last stream was sent."""
        if self.heard is not None:
            return self.heard
        if self.log is None:
            return None
        return self.log.point_after(self.last_sent)

    async def close(self, end: common_pb2.CallEnd) -> None:
        """End the backend session, exactly as a call's end does. Idempotent."""
        if self.closed:
            return
        self.closed = True
        tasks = [t for t in (self._relay, self.pump, self.backend) if t is not None]
        await cancel_and_wait(tasks)
        try:
            await self.session.aclose(end)
        except Exception:
            log.exception("closing the agent session failed")
        if self.on_closed is not None:
            self.on_closed(end.reason)
