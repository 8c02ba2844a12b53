"""The conversations this replica could hand over, and the grace period of those nobody streams.

Why a grace period: a call whose media replica died comes back within a second or so (the edge
re-opens it on another media); one whose edge died comes back when the provider has fetched the
`<Connect action>` URL and opened a new stream, a few seconds. `AGENT_HOLD_GRACE_S` (15 s by default)
covers both with room on a loaded machine, and bounds what a call that is really over costs: its
backend conversation (billed by the minute at ElevenLabs) runs on at most that long, unheard.

A conversation with a call secret is registered here while a stream serves it, and held when that
stream breaks or detaches. Held, its backend keeps running and what it produces goes to the
conversation's `ReplayLog`; when the grace expires (or the log overflows) the backend session is
closed as at a call's end. Timing uses a `Clock`, so tests run the grace on a virtual one.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass

from voicebridge.runtime.clock import Clock, LoopClock
from voicebridge.runtime.logs import call_context
from voicebridge.v1 import common_pb2

from .conversation import Conversation
from .metrics import ATTACHES, HELD, HOLD_SECONDS

log = logging.getLogger(__name__)

_HOLD_ENDED = common_pb2.CallEnd(
    reason=common_pb2.END_REASON_CALLER_HANGUP, detail="held conversation not re-attached"
)


@dataclass(frozen=True)
class HoldSettings:
    # How long a conversation whose stream broke waits for its call to re-attach; 0: never held.
    grace_s: float = 15.0
    # The agent audio a conversation keeps for a resume (and may gather while held), in seconds.
    buffer_s: float = 60.0


class _Hold:
    def __init__(self, since: float) -> None:
        self.since = since
        self.task: asyncio.Task | None = None
        self.overflow = asyncio.Event()


class Holds:
    def __init__(self, settings: HoldSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self._clock = clock or LoopClock()
        self._conversations: dict[str, Conversation] = {}
        self._held: dict[str, _Hold] = {}
        self.closing = False  # draining: nothing more is held
        self.changed = asyncio.Event()  # set whenever a hold begins or ends (tests wait on it)

    @property
    def enabled(self) -> bool:
        return self.settings.grace_s > 0 and not self.closing

    def __len__(self) -> int:
        return len(self._held)

    def find(self, call_sid: str) -> Conversation | None:
        return self._conversations.get(call_sid)

    def is_held(self, conversation: Conversation) -> bool:
        return conversation.call_sid in self._held and self.find(conversation.call_sid) is conversation

    async def register(self, conversation: Conversation) -> None:
        """A new conversation that may be held later. One per call: a new conversation for a call
        this replica still holds (media started afresh) replaces the held one, which is closed, if it
        presents the same secret; one with another secret is served but never held."""
        old = self._conversations.get(conversation.call_sid)
        if old is not None and not hmac.compare_digest(old.secret_hash, conversation.secret_hash):
            conversation.log = None  # not the call's owner: it may not displace the call's conversation
            log.warning("a new conversation for this call with another secret: it will not be held")
            return
        if old is not None and old is not conversation and not self.is_held(old):
            old.log = None  # still streamed somewhere: it runs on, but is no longer handed over
        elif old is not None and old is not conversation:
            log.info("a new conversation replaces the one held for this call")
            replaced = common_pb2.CallEnd(
                reason=common_pb2.END_REASON_CALLER_HANGUP, detail="replaced by a new conversation"
            )
            await self._end(old, "expired", replaced)
        self._conversations[conversation.call_sid] = conversation

    def forget(self, conversation: Conversation) -> None:
        if self._conversations.get(conversation.call_sid) is conversation:
            del self._conversations[conversation.call_sid]

    async def hold(self, conversation: Conversation) -> None:
        """Its stream is gone: keep the backend running for the grace period."""
        await conversation.switch_to(None)
        hold = _Hold(self._clock.now())
        conversation.on_overflow = hold.overflow.set
        hold.task = asyncio.create_task(self._expire(conversation, hold), name="agent-hold")
        self._held[conversation.call_sid] = hold
        HELD.set(len(self._held))
        self.changed.set()
        log.info("conversation held for %.0fs for its call to re-attach", self.settings.grace_s)
        if conversation.log is not None and conversation.log.overflowed:
            hold.overflow.set()

    def take(self, conversation: Conversation) -> None:
        """A stream re-attached: the hold (if any) is over."""
        hold = self._held.pop(conversation.call_sid, None)
        if hold is not None:
            if hold.task is not None:
                hold.task.cancel()
            HOLD_SECONDS.observe(max(0.0, self._clock.now() - hold.since))
            HELD.set(len(self._held))
            self.changed.set()
        conversation.on_overflow = None

    async def _expire(self, conversation: Conversation, hold: _Hold) -> None:
        with call_context(conversation.call_sid):
            sleep = asyncio.create_task(self._clock.sleep_until(hold.since + self.settings.grace_s))
            overflow = asyncio.create_task(hold.overflow.wait())
            try:
                await asyncio.wait({sleep, overflow}, return_when=asyncio.FIRST_COMPLETED)
            finally:  # no await here: a hold cancelled as its loop closes must not block
                sleep.cancel()
                overflow.cancel()
            outcome = "overflow" if hold.overflow.is_set() else "expired"
            if outcome == "overflow":
                log.warning("held conversation ended: its buffer is full (AGENT_HOLD_BUFFER_S)")
            else:
                log.info("held conversation ended: no stream re-attached within the grace period")
            self._held.pop(conversation.call_sid, None)
            await self._end(conversation, outcome, _HOLD_ENDED, hold)

    async def _end(
        self, conversation: Conversation, outcome: str, end: common_pb2.CallEnd, hold: _Hold | None = None
    ) -> None:
        hold = hold or self._held.pop(conversation.call_sid, None)
        if hold is not None:
            if hold.task is not None and hold.task is not asyncio.current_task():
                hold.task.cancel()
            HOLD_SECONDS.observe(max(0.0, self._clock.now() - hold.since))
        self._held.pop(conversation.call_sid, None)
        HELD.set(len(self._held))
        ATTACHES.labels(outcome).inc()
        self.forget(conversation)
        await conversation.close(end)
        self.changed.set()

    async def close_all(self) -> None:
        """Draining: end every held conversation now; none is held from here on."""
        self.closing = True
        for call_sid in list(self._held):
            conversation = self._conversations.get(call_sid)
            if conversation is not None:
                await self._end(conversation, "expired", _HOLD_ENDED)

    async def wait_until(self, check: Callable[[], bool]) -> None:
        """Return once `check()` holds, re-checked whenever a hold begins or ends."""
        while not check():
            self.changed.clear()
            await self.changed.wait()
