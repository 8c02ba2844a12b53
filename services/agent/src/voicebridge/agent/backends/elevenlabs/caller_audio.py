"""The caller's audio on its way to ElevenLabs: held until the conversation is ready, then sent.

Why hold: caller audio reaches the session while the handshake is still under way, and audio sent before
the metadata may be refused (docs/elevenlabs.md#the-websocket); the caller's first words must not be lost
either. What is held is bounded (the newest `limit_bytes` kept); it is released, in order, once the
formats are known.

The same bounded store keeps the caller audio sent since the caller's last final `user_transcript`
(`REPLAY_MAX_S`, the newest kept): words the conversation had heard but not yet transcribed or
answered when it dropped, replayed to the conversation that continues the call (resume.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from voicebridge.v1 import common_pb2

from ...metrics import PROCESSING
from . import protocol as p
from .metrics import AUDIO_CHUNKS, AUDIO_SECONDS, INBOUND_ADDED_LATENCY
from .negotiation import bytes_per_s

_AUDIO_SENT = AUDIO_CHUNKS.labels("sent")
_PROCESSING_IN = PROCESSING.labels("inbound")
_SECONDS_SENT = AUDIO_SECONDS.labels("sent")

# Caller audio kept since the last final user_transcript, for a continuing conversation: a caller's
# turn is rarely longer; older audio of an untranscribed turn is dropped, oldest first.
REPLAY_MAX_S = 8.0


class HeldAudio:
    """Caller audio kept while nothing can take it, bounded: beyond `limit_bytes` the oldest goes."""

    def __init__(self, limit_bytes: int) -> None:
        self._limit = limit_bytes
        self._chunks: collections.deque[bytes] = collections.deque()
        self._bytes = 0

    def push(self, data: bytes) -> None:
        self._chunks.append(data)
        self._bytes += len(data)
        while self._bytes > self._limit and self._chunks:
            self._bytes -= len(self._chunks.popleft())

    def clear(self) -> None:
        self._chunks.clear()
        self._bytes = 0

    def take(self) -> list[bytes]:
        """Every chunk held, oldest first; empty after."""
        chunks = list(self._chunks)
        self.clear()
        return chunks

    def pop(self) -> bytes | None:
        """The oldest chunk held, or None."""
        if not self._chunks:
            return None
        chunk = self._chunks.popleft()
        self._bytes -= len(chunk)
        return chunk


class CallerAudio:
    """user_audio_chunk frames for one conversation, in order, with nothing sent before `release()`."""

    def __init__(self, ws: ClientConnection, limit_bytes: int) -> None:
        self._ws = ws
        self._held = HeldAudio(limit_bytes)
        self._ready = False
        self._rate = 0
        self._lock = asyncio.Lock()

    async def send(self, data: bytes, received_unix_nanos: int = 0) -> None:
        """Send one chunk (or hold it until ready). Raises ConnectionClosed when the socket is gone."""
        if not self._ready:
            self._held.push(data)
            return
        async with self._lock:
            begin = time.perf_counter()
            await self._ws.send(p.encode_user_audio(data))
            _PROCESSING_IN.observe(time.perf_counter() - begin)
        self._count(data)
        if received_unix_nanos:
            INBOUND_ADDED_LATENCY.observe(max(0.0, (time.time_ns() - received_unix_nanos) / 1e9))

    async def release(self, input_format: common_pb2.AudioFormat) -> None:
        """The conversation is ready: send what was held, oldest first, then pass audio straight on."""
        self._rate = bytes_per_s(input_format)
        async with self._lock:
            self._ready = True
            while (chunk := self._held.pop()) is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.send(p.encode_user_audio(chunk))
                    self._count(chunk)

    def _count(self, data: bytes) -> None:
        _AUDIO_SENT.inc()
        if self._rate:
            _SECONDS_SENT.inc(len(data) / self._rate)
