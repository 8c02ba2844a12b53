"""Caller audio held while an agent session connects: bounded by duration, the oldest goes first.

Why: the caller may speak before the agent is ready (or while a replacement session opens); that
speech should reach the agent once it is, but an agent that is slow to get ready must not make media
hold audio without bound. The same bounded store keeps the caller audio sent to the agent since the
caller's last final transcript (agent_sessions.py), replayed to a new session if the agent dies.
"""

from __future__ import annotations

from voicebridge.v1 import media_pb2

from .metrics import FRAMES_DROPPED


class PreReadyBuffer:
    def __init__(self, max_ms: int, drop_label: str | None = "agent_not_ready") -> None:
        self._max_ms = max_ms
        self._drop_label = drop_label  # FRAMES_DROPPED's reason for audio pushed out, None: not counted
        self._held: list[media_pb2.CallerAudio] = []
        self._held_ms = 0

    def hold(self, audio: media_pb2.CallerAudio) -> None:
        self._held.append(audio)
        self._held_ms += len(audio.payload) // 8
        while self._held_ms > self._max_ms and len(self._held) > 1:
            dropped = self._held.pop(0)
            self._held_ms -= len(dropped.payload) // 8
            if self._drop_label is not None:
                FRAMES_DROPPED.labels(self._drop_label).inc()

    def take(self) -> list[media_pb2.CallerAudio]:
        """All held audio, oldest first; the buffer is empty after."""
        held, self._held, self._held_ms = self._held, [], 0
        return held
