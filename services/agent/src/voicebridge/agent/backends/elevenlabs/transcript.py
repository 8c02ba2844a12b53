"""The conversation so far, as the bridge saw it: what a new conversation needs to carry on a call.

Why the bridge keeps it: ElevenLabs has no way to reattach to a conversation whose WebSocket dropped
(docs/elevenlabs.md#resume), so a resumed call starts a new conversation and is told the old one's
turns (resume.py). The agent's words are kept as the caller heard them, not as the model wrote them:
a reply cut off (by the caller, by ElevenLabs' own interruption, or by the failure itself) counts with
its heard part only, from the alignment of the audio handed to media, the `agent_response_correction`,
or media's CallerInterrupted.heard_text. Audio handed to media is heard: media plays out everything it
was given unless the caller cuts in, and then it says so (CallerInterrupted).

Pure state, no I/O; the text is personal data: it goes to ElevenLabs only, never to a log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MAX_CONTEXT_CHARS = 6000  # the newest turns that fit; older ones are summarised as omitted

# A reply whose aligned characters reach this share of its text was heard in full (alignment and text
# may differ a little: normalised numbers, punctuation).
HEARD_IN_FULL = 0.9

Cut = Literal["caller", "agent", "failure"]


@dataclass
class Turn:
    role: Literal["caller", "agent"]
    text: str = ""
    reply_id: int = 0
    heard: str = ""  # agent: the characters of the audio handed to media (alignment), in order
    heard_ms: float = 0.0  # agent: audio handed to media, in ms
    heard_exact: bool = False  # `heard` is known to be what the caller heard (a barge-in told us)
    cut: Cut | None = None

    @property
    def reached(self) -> bool:
        """Some of it reached the caller."""
        return self.heard_ms > 0 or self.heard_exact

    def spoken(self) -> str:
        """The agent's words as the caller heard them."""
        if self.cut is not None and (self.heard_exact or self.heard):
            return self.heard.strip()
        return self.text.strip()


class ConversationLog:
    """Caller turns and agent replies in order, across every conversation of one call."""

    def __init__(self) -> None:
        self.turns: list[Turn] = []

    def heard(self, role: Literal["caller", "agent"], text: str, reply_id: int = 0) -> None:
        """A turn as someone else saw it heard (media's resume context, after an agent process died)."""
        if not text.strip():
            return
        if role == "caller":
            self.caller(text)
        else:
            self.turns.append(Turn("agent", text.strip(), reply_id, text.strip(), heard_exact=True))

    def caller(self, text: str) -> None:
        """The caller's final transcript of a turn."""
        if text.strip():
            self.turns.append(Turn("caller", text.strip()))

    def agent(self, reply_id: int, text: str) -> None:
        """The agent's text of a reply (`agent_response`, once per reply)."""
        self._reply(reply_id).text = text

    def corrected(self, reply_id: int, text: str) -> None:
        """ElevenLabs cut the reply off and says what was actually spoken."""
        turn = self._reply(reply_id)
        turn.text, turn.heard, turn.heard_exact, turn.cut = text, text, True, "agent"

    def played(self, reply_id: int, audio_ms: float, chars: str = "") -> None:
        """Audio of a reply handed to media (with the characters its alignment carries)."""
        turn = self._reply(reply_id)
        turn.heard_ms += audio_ms
        if not turn.heard_exact:
            turn.heard += chars

    def interrupted(self, reply_id: int, heard_text: str, heard_ms: int) -> None:
        """Media's barge-in: the caller heard only `heard_ms` (the words `heard_text`) of the reply."""
        turn = self._find(reply_id)
        if turn is None:
            return
        turn.heard, turn.heard_ms, turn.heard_exact, turn.cut = heard_text, float(heard_ms), True, "caller"

    def failed(self) -> None:
        """The conversation dropped: a reply whose audio stopped short of its text was cut by it."""
        last = self.last_agent()
        if last is None or last.cut is not None or self.turns[-1] is not last:
            return
        if not last.text or (last.heard and _letters(last.heard) < HEARD_IN_FULL * _letters(last.text)):
            last.cut = "failure"

    def last_agent(self) -> Turn | None:
        return next((t for t in reversed(self.turns) if t.role == "agent"), None)

    def unanswered(self) -> str:
        """The caller's last words when no reply to them was heard (the failure came first), else ""."""
        if self.turns and self.turns[-1].role == "caller":
            return self.turns[-1].text
        last = self.turns[-1] if self.turns else None
        if last is not None and last.role == "agent" and not last.reached and len(self.turns) > 1:
            before = self.turns[-2]
            return before.text if before.role == "caller" else ""
        return ""

    def last_heard(self) -> str:
        """What the caller last heard the agent say (the heard part of a cut reply)."""
        for turn in reversed(self.turns):
            if turn.role == "agent" and turn.reached:
                return turn.spoken()
        return ""

    def render(self, max_chars: int = MAX_CONTEXT_CHARS, drop_unanswered: bool = False) -> str:
        """The turns as lines ("Caller: …", "You: …"), the newest that fit in `max_chars`;
        `drop_unanswered` leaves out the caller's unanswered last words (sent on their own)."""
        turns = self.turns
        if drop_unanswered and self.unanswered():
            last_caller = max(i for i, t in enumerate(turns) if t.role == "caller")
            turns = turns[:last_caller] + turns[last_caller + 1 :]
        lines = [line for line in (_line(t) for t in turns) if line]
        kept: list[str] = []
        size = 0
        for line in reversed(lines):
            if size + len(line) + 1 > max_chars:
                break
            kept.append(line)
            size += len(line) + 1
        kept.reverse()
        if len(kept) < len(lines):
            kept.insert(0, f"({len(lines) - len(kept)} earlier turns omitted)")
        return "\n".join(kept)

    def _find(self, reply_id: int) -> Turn | None:
        return next((t for t in reversed(self.turns) if t.role == "agent" and t.reply_id == reply_id), None)

    def _reply(self, reply_id: int) -> Turn:
        turn = self._find(reply_id)
        if turn is None:
            turn = Turn("agent", reply_id=reply_id)
            self.turns.append(turn)
        return turn


def _letters(text: str) -> int:
    return sum(1 for c in text if c.isalnum())


def _line(turn: Turn) -> str:
    if turn.role == "caller":
        return f"Caller: {turn.text}"
    if not turn.reached and turn.cut is None:
        return ""  # never reached the caller: they did not hear it
    spoken = turn.spoken()
    if turn.cut == "failure":
        if spoken:  # the heard part is known (alignment): only that counts
            return f"You (the line dropped as you said this; the caller heard only): {spoken}"
        return f"(The line dropped {turn.heard_ms / 1000:.1f} s into a reply of yours.)"  # its words unknown
    if turn.cut is not None:
        return f'You (the caller cut in; they heard only "{spoken}")' if spoken else ""
    return f"You: {spoken}"
