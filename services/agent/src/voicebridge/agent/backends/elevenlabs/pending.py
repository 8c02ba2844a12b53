"""Server events read from ElevenLabs and not yet handed to media, in arrival order.

Why a list of its own, not the outbox: the reader must never wait (pongs and interruptions go out at
once), so it appends here and `session.run()` moves items into the outbox, the only place that waits
for media. An interruption can then void audio still listed here (`drop_audio_up_to`).
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

from voicebridge.v1 import agent_pb2

from ..base import SessionEndInfo


@dataclass
class End:
    """The conversation is over; run() returns `info` after delivering what came before it.

    `apologize`: it ended with an error mid-call (the caller hears why). `resumable`: a new conversation
    may carry the call on (closes.resumable; resume.py)."""

    info: SessionEndInfo
    apologize: bool = False
    resumable: bool = False
    close_code: int | None = None


def _audio(item: agent_pb2.ConverseResponse | End) -> agent_pb2.AudioChunk | None:
    if isinstance(item, agent_pb2.ConverseResponse) and item.WhichOneof("event") == "audio":
        return item.audio
    return None


@dataclass
class Pending:
    """Server events waiting for run(), in arrival order, with the audio they hold counted (bounded by the
    session, which drops new audio beyond its limit)."""

    items: collections.deque[agent_pb2.ConverseResponse | End] = field(default_factory=collections.deque)
    audio_bytes: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, item: agent_pb2.ConverseResponse | End) -> None:
        if (audio := _audio(item)) is not None:
            self.audio_bytes += len(audio.data)
        self.items.append(item)
        self.wake.set()

    def pop(self) -> agent_pb2.ConverseResponse | End:
        item = self.items.popleft()
        if (audio := _audio(item)) is not None:
            self.audio_bytes -= len(audio.data)
        if not self.items:
            self.wake.clear()
        return item

    def drop_audio_up_to(self, response_id: int) -> int:
        """Forget listed audio of replies <= `response_id`; returns how many chunks."""
        kept: collections.deque[agent_pb2.ConverseResponse | End] = collections.deque()
        dropped = 0
        for item in self.items:
            audio = _audio(item)
            if audio is not None and audio.response_id <= response_id:
                self.audio_bytes -= len(audio.data)
                dropped += 1
            else:
                kept.append(item)
        self.items = kept
        if not kept:
            self.wake.clear()
        return dropped
