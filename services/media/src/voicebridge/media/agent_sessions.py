"""The agent side of one call: its current agent session, and a successor if that one's stream fails.

Why its own module: continuing a call on a new agent session (its process died) needs what the call
session otherwise does not keep — the SessionStart that opened the call, the call so far
(`CallTranscript`), the count of restarts — and none of that is about audio. `CallSession` decides
*when* a restart is allowed (only while talking); this decides whether one is left and opens it.

The caller's words the dead agent had been sent but never answered would be lost with it (the drop came
while the caller spoke, or before the agent's transcript of it): the caller audio sent to the agent since
the last final caller transcript media saw (the newest `REPLAY_MAX_MS`) is replayed to the new session
once it is ready, before the audio held while it connected, so the new conversation transcribes and
answers it. A turn with a final caller transcript is in `SessionStart.resume` instead, not replayed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from voicebridge.runtime.replicas import Opener
from voicebridge.v1 import agent_pb2, common_pb2, media_pb2

from .agent_link import AgentLink
from .call_transcript import CallTranscript
from .metrics import REATTACHES
from .pre_ready import PreReadyBuffer

log = logging.getLogger(__name__)

MAX_AGENT_RESTARTS = 2  # new agent sessions per call after the agent's stream failed
REPLAY_MAX_MS = 8000  # caller audio since their last final transcript kept for a new session (a turn)


class AgentSessions:
    def __init__(self, calls: Opener, max_audio_chunks: int, resume: bool) -> None:
        self._calls = calls
        self._max_audio_chunks = max_audio_chunks
        self._resume = resume
        self._start: agent_pb2.SessionStart | None = None
        self._restarts = 0
        self.transcript = CallTranscript()  # for a new agent session if this one's process dies
        self.link: AgentLink | None = None
        self._untranscribed = PreReadyBuffer(REPLAY_MAX_MS, drop_label=None)
        self._replay: list[media_pb2.CallerAudio] = []
        self.attaching = False  # the session asked to take over a held conversation, not ready yet

    def sent(self, audio: media_pb2.CallerAudio) -> None:
        """Caller audio was sent to the agent (kept until a final caller transcript of it arrives)."""
        self._untranscribed.hold(audio)

    def note_transcript(self, transcript: common_pb2.Transcript) -> None:
        """A transcript from the agent: kept for a resume; a final caller one means the agent heard the
        audio sent so far as a turn (it is in the transcript, so never replayed)."""
        self.transcript.note(transcript)
        if transcript.final and transcript.role == common_pb2.Transcript.ROLE_CALLER:
            self._untranscribed.take()

    def take_replay(self) -> list[media_pb2.CallerAudio]:
        """The caller audio the lost session never answered, oldest first, for the new one once ready
        (before the audio held while it connected); empty after, and for a first session."""
        replay, self._replay = self._replay, []
        return replay

    def open(self, start: agent_pb2.SessionStart, attach: agent_pb2.SessionAttach | None = None) -> None:
        """Open the call's first agent session; with `attach`, take over the conversation an agent
        replica holds for the call (its earlier stream broke): each replica is asked in turn until one
        answers other than NOT_FOUND (runtime/replica_call.py)."""
        self._start = start
        first = start
        if attach is not None:
            first = agent_pb2.SessionStart()
            first.CopyFrom(start)
            first.attach.CopyFrom(attach)
            self.attaching = True
        self.link = AgentLink(self._calls, self._max_audio_chunks)
        self.link.send_control(agent_pb2.ConverseRequest(start=first))

    def ready(self, ready: agent_pb2.SessionReady) -> None:
        """The session is ready: a re-attach is counted by what it found."""
        if self.attaching:
            self.attaching = False
            outcome = "attached" if ready.attached else "ignored"
            REATTACHES.labels(outcome).inc()
            log.info("agent conversation re-attach: %s", outcome)

    async def start_afresh(self, outcome: str, aligned: Callable[[int], str]) -> None:
        """No agent replica holds the call's conversation (or would hand it over): a new conversation,
        told the call so far if media knows any of it (SessionStart.resume)."""
        assert self._start is not None
        self.attaching = False
        REATTACHES.labels(outcome).inc()
        log.warning("agent conversation re-attach failed (%s): starting a new conversation", outcome)
        start = agent_pb2.SessionStart()
        start.CopyFrom(self._start)
        context = self.transcript.context(aligned)
        if context.turns:
            start.resume.CopyFrom(context)
        lost, self.link = self.link, AgentLink(self._calls, self._max_audio_chunks)
        self.link.send_control(agent_pb2.ConverseRequest(start=start))
        if lost is not None:
            with contextlib.suppress(Exception):
                await lost.close()

    async def detach(self, heard: common_pb2.PlaybackPosition) -> None:
        """The edge's stream broke (no stop): the call may come back on another stream, so the agent is
        asked to hold the conversation (Detach{heard}) rather than told the call ended."""
        if self.link is not None:
            await self.link.close(agent_pb2.ConverseRequest(detach=agent_pb2.Detach(heard=heard)))

    def send_control(self, message: agent_pb2.ConverseRequest) -> None:
        if self.link is not None:
            self.link.send_control(message)

    def can_reopen(self) -> bool:
        """Whether a failed agent stream may be replaced: resuming is on and restarts are left."""
        return self._resume and self._start is not None and self._restarts < MAX_AGENT_RESTARTS

    async def reopen(self, why: str, aligned: Callable[[int], str]) -> None:
        """The agent's stream failed mid-call (its process died): open a new session, on whichever agent
        replica AGENT_TARGET reaches now, with the call so far (SessionStart.resume), at most twice per
        call (`can_reopen` first). `aligned` gives the agent text the caller heard of a reply."""
        assert self._start is not None
        self._restarts += 1
        log.warning("agent stream lost (%s): continuing the call on a new agent session", why)
        lost = self.link
        self._replay = self._untranscribed.take()
        start = agent_pb2.SessionStart()
        start.CopyFrom(self._start)
        start.resume.CopyFrom(self.transcript.context(aligned))
        self.link = AgentLink(self._calls, self._max_audio_chunks)
        self.link.send_control(agent_pb2.ConverseRequest(start=start))
        if lost is not None:
            with contextlib.suppress(Exception):
                await lost.close()

    async def close(self, final: agent_pb2.ConverseRequest) -> None:
        if self.link is not None:
            await self.link.close(final)
