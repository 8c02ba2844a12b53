"""Caller audio held while an agent session connects: bounded by duration, the oldest goes first.

Why: the caller may speak before the agent is ready (or while a replacement session opens); that
speech should reach the agent once it is, but an agent that is slow to get ready must not make media
hold audio without bound.
"""

from __future__ import annotations

from voicebridge.v1 import media_pb2

from .metrics import FRAMES_DROPPED


class PreReadyBuffer:
    def __init__(self, max_ms: int) -> None:
        self._max_ms = max_ms
        self._held: list[media_pb2.CallerAudio] = []
        self._held_ms = 0

    def hold(self, audio: media_pb2.CallerAudio) -> None:
        self._held.append(audio)
        self._held_ms += len(audio.payload) // 8
        while self._held_ms > self._max_ms and len(self._held) > 1:
            dropped = self._held.pop(0)
            self._held_ms -= len(dropped.payload) // 8
            FRAMES_DROPPED.labels("agent_not_ready").inc()

    def take(self) -> list[media_pb2.CallerAudio]:
        """All held audio, oldest first; the buffer is empty after."""
        held, self._held, self._held_ms = self._held, [], 0
        return held
