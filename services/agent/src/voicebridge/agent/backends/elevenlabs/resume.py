"""A call whose ElevenLabs conversation drops with an error goes on in a new conversation.

Why: ElevenLabs has no way to reattach to a conversation (docs/elevenlabs.md#resume), and a new one
knows nothing; so the bridge keeps the call's turns (transcript.py) and tells the new conversation, in
the ways the protocol allows (docs/elevenlabs.md#resume):

* the init's dynamic variables `resumed`, `conversation_so_far` and `last_heard`, for agents whose
  prompt uses them (known from the conversation's first token);
* a `contextual_update` right after the metadata: the turns so far as the caller heard them, and that
  the agent must carry on, not greet again: this works for every agent, with no setting;
* the greeting: with ELEVENLABS_RESUME_FIRST_MESSAGE the agent's first message is overridden by that
  short bridging phrase (the agent must allow the override), and the caller's last words, if no reply
  reached them, are sent as a `user_message` so the agent answers them at once; without it, the new
  conversation's greeting is dropped (never played) and the agent speaks again when the caller does.

The caller's words the old conversation heard but never transcribed (the drop came while they spoke, or
before its `user_transcript`) would be lost: the caller audio sent since their last final transcript
(caller_audio.REPLAY_MAX_S at most) is sent to the new conversation right after its context, as caller
audio, before what the caller said during the gap (held meanwhile): it transcribes and answers them, and
that ends the dropped greeting as a caller turn would. A transcribed turn is not replayed: it is in the
context (and answered by a user_message with a bridging first message).

What the caller hears: the end of what the old conversation had sent (media plays out what it was
given), at most the bridging phrase, then the agent going on. The apology and the end of the call
remain when resuming is off, when the close is one a new conversation would only repeat
(closes.resumable), or when it fails twice in a row (refused, or dropped again before the caller spoke
or heard anything of it). Each outcome is counted (metrics.RESUMES). The transcript goes to ElevenLabs
only, never to a log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from voicebridge.v1 import agent_pb2, common_pb2

from ..base import AgentSession, Outbox, SessionEndInfo, SessionRefused
from .caller_audio import HeldAudio
from .metrics import RESUME_ATTEMPTS_FAILED, RESUME_SECONDS, RESUMES
from .negotiation import bytes_per_s
from .pending import End
from .session import ElevenLabsSession
from .settings import ElevenLabsSettings
from .transcript import ConversationLog

if TYPE_CHECKING:
    from .backend import ElevenLabsBackend

log = logging.getLogger(__name__)

MAX_FAILURES = 2  # attempts in a row that did not take before the apology
CONTEXT_INTRO = (
    "This phone call was already under way with you when the connection failed; it goes on now, in this"
    " conversation. Do not greet the caller or introduce yourself again and do not start over: carry on"
    " from where the conversation was."
)


def context_text(history: ConversationLog, answer_now: bool) -> str:
    """The contextual_update for a continuing conversation. `answer_now`: the caller's unanswered last
    words go separately, as a user_message, so they are left out here (they would count twice)."""
    turns = history.render(drop_unanswered=answer_now)
    parts = [CONTEXT_INTRO]
    if turns:
        parts.append(
            "The conversation so far (Caller: the caller; You: you, as the caller heard you):\n" + turns
        )
    if (last := history.last_agent()) is not None and last.cut == "failure":
        heard = last.spoken() if last.heard else ""
        parts.append(
            f'The caller last heard you say: "{heard}", then the line dropped.'
            if heard
            else "The line dropped while you were replying; the caller may not have heard all of it."
        )
    if history.unanswered() and not answer_now:
        parts.append("The caller's last words above have not been answered yet.")
    return "\n\n".join(parts)


def handover_text(history: ConversationLog, settings: ElevenLabsSettings) -> tuple[str, str]:
    """(the contextual_update, the unanswered words for a user_message or ""), as of now: taken before the
    next conversation opens, since its own first words join the same log. The words are answered at once
    only when a bridging first message replaces the greeting (otherwise replies wait for the caller)."""
    unanswered = history.unanswered() if settings.resume_first_message else ""
    return context_text(history, answer_now=bool(unanswered)), unanswered


class ResumingSession(AgentSession):
    """The call's conversation with ElevenLabs: one `ElevenLabsSession` at a time, replaced by a new one
    told the call so far when it drops with an error. Media sees one session throughout."""

    def __init__(
        self, backend: ElevenLabsBackend, first: ElevenLabsSession, settings: ElevenLabsSettings
    ) -> None:
        self._backend = backend
        self._settings = settings
        self._current = first
        self.ready = first.ready
        self._closing: common_pb2.CallEnd | None = None
        self._opening: asyncio.Task[ElevenLabsSession] | None = None
        self._held = HeldAudio(int(bytes_per_s(first.ready.input_format) * settings.max_buffered_audio_s))
        self._handing_over = False
        self._failures = 0  # attempts in a row that did not take

    @property
    def conversation(self) -> ElevenLabsSession:
        """The ElevenLabs conversation carrying the call now."""
        return self._current

    async def run(self, outbox: Outbox) -> SessionEndInfo:
        while True:
            end = await self._current.run_until_end(outbox)
            if self._closing is not None or not end.apologize:
                return end.info
            self._current.history.failed()
            # What to tell the next conversation, as of the failure (its own first words join the log).
            context, unanswered = handover_text(self._current.history, self._settings)
            replay = self._current.untranscribed_audio()
            began = time.perf_counter()
            following = await self._carry_on(end)
            if following is None:
                if self._closing is not None:
                    return SessionEndInfo(self._closing.reason, self._closing.detail)
                await self._current.apologize(outbox)
                return end.info
            self._current = following
            await self._hand_over(following, context, unanswered, replay)
            RESUME_SECONDS.observe(time.perf_counter() - began)

    async def _carry_on(self, end: End) -> ElevenLabsSession | None:
        """A new conversation for the call, or None (the apology follows), counting the outcome."""
        lost = self._current
        log.warning(
            "ElevenLabs conversation %s lost mid-call (close %s)", lost.conversation_id, end.close_code
        )
        if not self._settings.resume:
            RESUMES.labels("disabled").inc()
            return None
        if not end.resumable:
            RESUMES.labels("impossible").inc()
            log.info("not resuming: a new conversation would end the same way (close %s)", end.close_code)
            return None
        if lost.continues is not None and not lost.progressed:
            self._failures += 1  # it dropped again before anyone spoke or heard anything of it
            RESUME_ATTEMPTS_FAILED.labels("dropped").inc()
        else:
            self._failures = 0
        while self._failures < MAX_FAILURES and self._closing is None:
            try:
                following = await self._open(lost)
            except SessionRefused as refusal:
                self._failures += 1
                RESUME_ATTEMPTS_FAILED.labels("refused").inc()
                log.warning("resuming the call failed (attempt %d): %s", self._failures, refusal.detail)
                continue
            if following is None:
                return None
            RESUMES.labels("resumed").inc()
            log.info("the call goes on in ElevenLabs conversation %s", following.conversation_id)
            await lost.aclose(common_pb2.CallEnd(reason=common_pb2.END_REASON_AGENT_ERROR, detail="replaced"))
            return following
        if self._closing is None:
            RESUMES.labels("failed").inc()
            log.warning("not resuming: %d attempts in a row did not take", self._failures)
        return None

    async def _open(self, lost: ElevenLabsSession) -> ElevenLabsSession | None:
        """Open the continuation (cancelled by aclose: then None). Raises SessionRefused."""
        self._opening = asyncio.create_task(
            self._backend.continuation(lost.start, lost.history, lost.reply_floor)
        )
        try:
            await asyncio.wait({self._opening})
        finally:
            task, self._opening = self._opening, None
        if task.cancelled():
            return None
        following = task.result()
        if (following.ready.input_format, following.ready.output_format) != (
            self.ready.input_format,
            self.ready.output_format,
        ):
            await following.aclose()
            raise SessionRefused(
                common_pb2.END_REASON_UNSUPPORTED_FORMAT,
                "the new conversation uses other audio formats than the call negotiated",
            )
        if self._closing is not None:
            await following.aclose(self._closing)
            return None
        return following

    async def begin_continued(self, context: str, unanswered: str) -> None:
        """This first conversation continues a call another agent process carried (media's resume
        context, SessionStart.resume): tell it the call so far before anything else."""
        RESUMES.labels("continued").inc()
        await self._hand_over(self._current, context, unanswered)

    async def _hand_over(
        self, following: ElevenLabsSession, context: str, unanswered: str, replay: Sequence[bytes] = ()
    ) -> None:
        """Tell the new conversation the call so far, then the caller's words the old one never
        transcribed (`replay`), then pass on what the caller said meanwhile: in order, each once."""
        self._handing_over = True
        try:
            await following.send_context(context, unanswered)
            for words in replay:
                await following.handle(agent_pb2.ConverseRequest(audio=agent_pb2.AudioChunk(data=words)))
            while (chunk := self._held.pop()) is not None:
                await following.handle(agent_pb2.ConverseRequest(audio=agent_pb2.AudioChunk(data=chunk)))
        finally:
            self._handing_over = False

    async def handle(self, request: agent_pb2.ConverseRequest) -> None:
        kind = request.WhichOneof("event")
        if kind == "end":
            await self.aclose(request.end)
            return
        if kind == "audio" and self._closing is None and (self._current.ended or self._handing_over):
            self._held.push(request.audio.data)  # for the conversation that carries the call on
            return
        await self._current.handle(request)

    async def aclose(self, end: common_pb2.CallEnd | None = None) -> None:
        if self._closing is None:
            self._closing = end or common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP)
        if self._opening is not None:
            self._opening.cancel()
        await self._current.aclose(self._closing)
