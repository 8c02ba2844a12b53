"""The call so far as media saw and played it: what a new agent session needs if the agent process dies.

Why media keeps it: the agent service that carried the call is gone with everything it knew, and media
is the one place that saw every final transcript and knows what reached the caller. On an agent stream
lost mid-call, media opens a new session with `SessionStart.resume` (agent.proto) built from this, so
the agent carries on instead of greeting again (docs/failover.md).

An agent turn counts as the caller heard it: only replies whose audio media received (media plays
out all it was given); a reply the caller cut into by its heard part (CallerInterrupted.heard_text); a
reply with alignment by the characters media received (`aligned`). Bounded: the newest turns only.
Pure state, no I/O; the text is personal data and is never logged.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from voicebridge.v1 import agent_pb2, common_pb2

MAX_TURNS = 200  # the agent keeps the newest that fit its own bound anyway


class CallTranscript:
    def __init__(self) -> None:
        self._turns: collections.deque[common_pb2.Transcript] = collections.deque(maxlen=MAX_TURNS)
        self._with_audio: set[int] = set()
        self._cut: dict[int, str] = {}
        self.response_floor = 0  # the newest response id any audio arrived for

    def note(self, transcript: common_pb2.Transcript) -> None:
        """A transcript from the agent: final turns are kept; a correction replaces its reply's text."""
        if not transcript.final or not transcript.text.strip():
            return
        if transcript.correction:
            for turn in reversed(self._turns):
                if (
                    turn.role == common_pb2.Transcript.ROLE_AGENT
                    and turn.response_id == transcript.response_id
                ):
                    turn.text = transcript.text
                    return
        kept = common_pb2.Transcript()
        kept.CopyFrom(transcript)
        self._turns.append(kept)

    def note_audio(self, response_id: int) -> None:
        """Audio of a reply arrived (it will be heard unless the caller cuts in)."""
        self._with_audio.add(response_id)
        self.response_floor = max(self.response_floor, response_id)

    def note_cut(self, response_id: int, heard_text: str) -> None:
        """The caller cut into a reply having heard `heard_text` of it."""
        self._cut[response_id] = heard_text

    def context(self, aligned: Callable[[int], str]) -> agent_pb2.ResumeContext:
        """The resume context; `aligned(response_id)` gives the characters of the audio media received
        for a reply ("" when it had no alignment)."""
        resume = agent_pb2.ResumeContext(response_floor=self.response_floor)
        for turn in self._turns:
            text = turn.text
            if turn.role == common_pb2.Transcript.ROLE_AGENT:
                rid = turn.response_id
                if rid in self._cut:
                    text = self._cut[rid]
                elif rid not in self._with_audio:
                    continue  # never reached the caller
                else:
                    text = aligned(rid) or text
            if text.strip():
                resume.turns.add(role=turn.role, text=text, final=True, response_id=turn.response_id)
        return resume
