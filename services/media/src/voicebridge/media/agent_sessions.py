"""The agent side of one call: its current agent session, and a successor if that one's stream fails.

Why its own module: continuing a call on a new agent session (its process died) needs what the call
session otherwise does not keep — the SessionStart that opened the call, the call so far
(`CallTranscript`), the count of restarts — and none of that is about audio. `CallSession` decides
*when* a restart is allowed (only while talking); this decides whether one is left and opens it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from voicebridge.runtime.replicas import Opener
from voicebridge.v1 import agent_pb2

from .agent_link import AgentLink
from .call_transcript import CallTranscript

log = logging.getLogger(__name__)

MAX_AGENT_RESTARTS = 2  # new agent sessions per call after the agent's stream failed


class AgentSessions:
    def __init__(self, calls: Opener, max_audio_chunks: int, resume: bool) -> None:
        self._calls = calls
        self._max_audio_chunks = max_audio_chunks
        self._resume = resume
        self._start: agent_pb2.SessionStart | None = None
        self._restarts = 0
        self.transcript = CallTranscript()  # for a new agent session if this one's process dies
        self.link: AgentLink | None = None

    def open(self, start: agent_pb2.SessionStart) -> None:
        """Open the call's first agent session."""
        self._start = start
        self.link = AgentLink(self._calls, self._max_audio_chunks)
        self.link.send_control(agent_pb2.ConverseRequest(start=start))

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
