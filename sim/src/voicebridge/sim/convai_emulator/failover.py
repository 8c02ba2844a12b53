"""A scenario for calls that outlive their conversation: the agent drops with an error close mid-reply,
and every conversation that continues the call (its init says `resumed: true`) records the context it
was given, so tests and the chaos command can check that the call so far reached it.

The first conversation greets, answers the caller's first utterance with a reply whose audio stops part
way (alignment sent for the part that was sent, as ElevenLabs times characters per chunk), then closes
with `code`. A continuing conversation greets again, as the real service does with the agent's first
message (the client must keep the caller from hearing it), then answers each utterance with `continued`.
With `fail_continuations=N` the first N continuing conversations close with `code` right after their
metadata instead (a resume that does not take). With `code=None` the first conversation does not close
after its half reply: the test kills the client (the agent process) instead. With `drop_before_reply`
the first conversation closes as soon as it has heard the caller's first utterance, before transcribing
or answering it (the caller's words are with it only): the continuation must be sent them again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from .audio import bytes_per_ms
from .scenarios import Utterances
from .session import ContextReceived, EmulatedSession


def even_alignment(text: str, ms: float) -> dict[str, Any]:
    """Characters spread evenly over `ms` of audio, in ElevenLabs' `alignment` shape."""
    step = ms / max(1, len(text))
    return {
        "chars": list(text),
        "char_start_times_ms": [round(i * step) for i in range(len(text))],
        "char_durations_ms": [max(1, round(step))] * len(text),
    }


@dataclass
class DropsMidCall:
    """The scenario (an `AgentScript.scenario`); audio in the agent's output format."""

    greeting: bytes
    reply: bytes
    continued: bytes
    greeting_text: str = "Hello, this is the order line. How can I help?"
    caller_text: str = "I would like to change the delivery address of my order."
    reply_text: str = "Of course. I can change the address for your order, which is due on Friday."
    next_caller_text: str = "It is ten Main Street."
    continued_text: str = "Thank you, the new address is ten Main Street."
    heard_fraction: float = 0.5  # of the reply's audio sent before the close
    code: int | None = 1011  # None: the first conversation stays up (the client side dies instead)
    error_type: str = "unknown_websocket_crash"
    fail_continuations: int = 0
    drop_before_reply: bool = False  # close after the caller's utterance, before its transcript and reply
    conversations: list[EmulatedSession] = field(default_factory=list)
    contexts: list[ContextReceived] = field(default_factory=list)  # of continuing conversations, in order
    dropped: asyncio.Event = field(default_factory=asyncio.Event)
    context_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def heard_reply_text(self, fmt: str) -> str:
        """The characters of the reply whose audio was sent before the close."""
        return "".join(self._reply_alignment(fmt)["chars"])

    def _reply_alignment(self, fmt: str) -> dict[str, Any]:
        total_ms = len(self.reply) / bytes_per_ms(fmt)
        sent_ms = total_ms * self.heard_fraction
        full = even_alignment(self.reply_text, total_ms)
        keep = [i for i, t in enumerate(full["char_start_times_ms"]) if t < sent_ms]
        return {key: [values[i] for i in keep] for key, values in full.items()}

    async def __call__(self, session: EmulatedSession) -> None:
        self.conversations.append(session)
        if session.context.resumed:
            await self._continue(session)
        else:
            await self._first(session)

    async def _say(self, session: EmulatedSession, text: str, audio: bytes, **kw: Any) -> None:
        event_id = session.next_event_id()
        await session.send_event(
            {"type": "agent_response", "agent_response_event": {"agent_response": text, "event_id": event_id}}
        )
        await session.send_audio(audio, event_id=event_id, **kw)

    async def _first(self, session: EmulatedSession) -> None:
        fmt = session.script.output_format
        await self._say(session, self.greeting_text, self.greeting)
        await Utterances(session).next()
        if self.drop_before_reply:
            await session.fail(self.code or 1011, self.error_type, "Internal server error")
            self.dropped.set()
            return
        await session.send_event(
            {"type": "user_transcript", "user_transcription_event": {"user_transcript": self.caller_text}}
        )
        cut = int(len(self.reply) * self.heard_fraction)
        cut -= cut % (1 if fmt == "ulaw_8000" else 2)
        if cut:
            await self._say(session, self.reply_text, self.reply[:cut], alignment=self._reply_alignment(fmt))
        else:  # dropped before any of the reply's audio: its text only
            await session.send_event(
                {"type": "agent_response", "agent_response_event": {"agent_response": self.reply_text}}
            )
        if self.code is None:
            await session.wait_closed(timeout=3600)
            return
        await session.fail(self.code, self.error_type, "Internal server error")
        self.dropped.set()

    async def _continue(self, session: EmulatedSession) -> None:
        n = sum(1 for s in self.conversations if s.context.resumed)
        if n <= self.fail_continuations:
            await session.fail(self.code or 1011, self.error_type, "Internal server error")
            return
        await self._say(session, self.greeting_text, self.greeting)  # the agent's first message, as ever
        await session.wait_for_message("contextual_update", timeout=10)
        self.contexts.append(session.context)
        self.context_arrived.set()
        utterances = Utterances(session)
        while True:
            await utterances.next()
            await session.send_event(
                {
                    "type": "user_transcript",
                    "user_transcription_event": {"user_transcript": self.next_caller_text},
                }
            )
            await self._say(session, self.continued_text, self.continued)
