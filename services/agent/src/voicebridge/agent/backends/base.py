"""The interface every agent backend implements inside the agent service.

A backend turns one Converse stream into one conversation with some agent (ElevenLabs Agents, the
local parrot, ...). The gRPC plumbing, ordering rules and teardown live in `converse.py`; a backend
only does three things:

* `AgentBackend.open(start)` performs the handshake and returns a ready `AgentSession`, or raises
  `SessionRefused` with a clear reason (busy, unsupported format, timeout, ...).
* `AgentSession.run(outbox)` pumps the backend's events (audio, interruptions, transcripts, hang-up,
  transfer) into the outbox until the conversation ends on the backend's side, and returns why.
* `AgentSession.handle(request)` takes what media sends (caller audio, voice activity, local barge-in,
  DTMF); `AgentSession.aclose(end)` releases the backend (idempotent, called exactly once or more).
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field

from voicebridge.v1 import agent_pb2, common_pb2


class SessionRefused(Exception):
    """The backend cannot start this conversation. `reason` is a `common_pb2.EndReason` value."""

    def __init__(
        self,
        reason: int,
        detail: str,
        code: int = common_pb2.ERROR_CODE_UNAVAILABLE,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.code = code


class Outbox:
    """Bounded queue of messages for media. Audio waits for room; control messages never wait.

    Control messages (interruption, end, errors) must not queue behind seconds of audio, so they
    bypass the bound; audio blocks the producer when media is slow (backpressure, nothing dropped).
    """

    def __init__(self, max_audio: int = 500) -> None:
        self._queue: asyncio.Queue[agent_pb2.ConverseResponse] = asyncio.Queue()
        self._audio_room = asyncio.Semaphore(max_audio)
        self.last_response_sent: int | None = None  # the reply whose audio last left for media

    async def put_audio(self, message: agent_pb2.ConverseResponse) -> None:
        await self._audio_room.acquire()
        self._queue.put_nowait(message)

    def put_control(self, message: agent_pb2.ConverseResponse) -> None:
        self._queue.put_nowait(message)

    async def get(self) -> agent_pb2.ConverseResponse:
        message = await self._queue.get()
        if message.WhichOneof("event") == "audio":
            self._audio_room.release()
            self.last_response_sent = message.audio.response_id
        return message

    def drop_audio(self, up_to_response_id: int | None = None) -> int:
        """Remove queued agent audio (all, or of responses <= the id); returns how many chunks."""
        kept: list[agent_pb2.ConverseResponse] = []
        dropped = 0
        while not self._queue.empty():
            message = self._queue.get_nowait()
            is_audio = message.WhichOneof("event") == "audio"
            if is_audio and (up_to_response_id is None or message.audio.response_id <= up_to_response_id):
                dropped += 1
                self._audio_room.release()
            else:
                kept.append(message)
        for message in kept:
            self._queue.put_nowait(message)
        return dropped


@dataclass
class SessionEndInfo:
    """How a backend conversation ended, as `run()` reports it."""

    reason: int  # common_pb2.EndReason
    detail: str = ""
    extra: dict[str, str] = field(default_factory=dict)


class AgentSession(abc.ABC):
    """One conversation with a backend, already past its handshake."""

    #: The formats chosen from those media offered, and the backend's conversation id.
    ready: agent_pb2.SessionReady

    @abc.abstractmethod
    async def run(self, outbox: Outbox) -> SessionEndInfo:
        """Forward the backend's events to media until the backend ends the conversation."""

    @abc.abstractmethod
    async def handle(self, request: agent_pb2.ConverseRequest) -> None:
        """Take one message from media (audio, activity, interrupted, dtmf). Never blocks for long."""

    @abc.abstractmethod
    async def aclose(self, end: common_pb2.CallEnd) -> None:
        """Release the backend (close sockets, cancel tasks). Idempotent."""


class AgentBackend(abc.ABC):
    """Opens conversations. One instance per agent-service process, shared by all calls."""

    name: str

    @abc.abstractmethod
    async def open(self, start: agent_pb2.SessionStart) -> AgentSession:
        """Handshake with the backend for this call; raise SessionRefused when it cannot be served."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release process-wide resources (HTTP clients) at shutdown."""
