"""The parrot: a local agent that needs no network or key, so the stack works out of the box.

It greets the caller, listens, and when the caller stops talking (media's VoiceActivity events)
plays the caller's utterance back. It speaks and listens in one format (PARROT_FORMAT), so the echo
needs no conversion; it is also the simplest complete example of the backend interface.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

from voicebridge.agent.formats import format_from_name, format_name, offered
from voicebridge.agent.prompts import load_prompt
from voicebridge.v1 import agent_pb2, common_pb2

from .base import AgentBackend, AgentSession, Outbox, SessionEndInfo, SessionRefused

log = logging.getLogger(__name__)

PRE_ROLL_MS = 150  # keep the utterance's first syllable even if the VAD decided a little late
TAIL_MS = 100
MAX_UTTERANCE_MS = 10_000
HISTORY_MS = 15_000
CHUNK_MS = 100


class ParrotSession(AgentSession):
    def __init__(self, fmt: common_pb2.AudioFormat) -> None:
        self.ready = agent_pb2.SessionReady(input_format=fmt, output_format=fmt, conversation_id="parrot")
        self._format = fmt
        self._bytes_per_ms = (
            fmt.sample_rate_hz * (2 if fmt.encoding == common_pb2.AUDIO_ENCODING_PCM_S16LE else 1) // 1000
        )
        # (timestamp_ms, bytes) of recent caller audio, bounded by HISTORY_MS.
        self._history: collections.deque[tuple[int, bytes]] = collections.deque()
        self._speech_started_ms: int | None = None
        self._utterances: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)
        self._response_id = 0

    async def run(self, outbox: Outbox) -> SessionEndInfo:
        greeting = load_prompt("greeting", self._format.encoding, self._format.sample_rate_hz)
        await self._say(outbox, greeting, "Hello, this is the voicebridge parrot.")
        while True:
            utterance = await self._utterances.get()
            if utterance is None:
                return SessionEndInfo(common_pb2.END_REASON_CALLER_HANGUP, "call ended")
            await self._say(outbox, utterance, "(your words, played back)")

    async def _say(self, outbox: Outbox, audio: bytes, text: str) -> None:
        self._response_id += 1
        rid = self._response_id
        outbox.put_control(
            agent_pb2.ConverseResponse(
                transcript=common_pb2.Transcript(
                    role=common_pb2.Transcript.ROLE_AGENT, text=text, final=True, response_id=rid
                )
            )
        )
        step = self._bytes_per_ms * CHUNK_MS
        for start in range(0, len(audio), step):
            chunk = agent_pb2.AudioChunk(
                data=audio[start : start + step],
                format=self._format,
                response_id=rid,
                received_unix_nanos=time.time_ns(),
            )
            await outbox.put_audio(agent_pb2.ConverseResponse(audio=chunk))

    async def handle(self, request: agent_pb2.ConverseRequest) -> None:
        kind = request.WhichOneof("event")
        if kind == "audio":
            self._remember(request.audio.timestamp_ms, request.audio.data)
        elif kind == "activity":
            activity = request.activity
            if activity.kind == agent_pb2.VoiceActivity.KIND_SPEECH_STARTED:
                self._speech_started_ms = activity.timestamp_ms
            elif (
                activity.kind == agent_pb2.VoiceActivity.KIND_SPEECH_ENDED
                and self._speech_started_ms is not None
            ):
                utterance = self._slice(
                    self._speech_started_ms - PRE_ROLL_MS, activity.timestamp_ms + TAIL_MS
                )
                self._speech_started_ms = None
                if utterance and not self._utterances.full():
                    self._utterances.put_nowait(utterance)

    def _remember(self, timestamp_ms: int, data: bytes) -> None:
        self._history.append((timestamp_ms, data))
        while self._history and timestamp_ms - self._history[0][0] > HISTORY_MS:
            self._history.popleft()

    def _slice(self, begin_ms: int, end_ms: int) -> bytes:
        end_ms = min(end_ms, begin_ms + MAX_UTTERANCE_MS + PRE_ROLL_MS + TAIL_MS)
        out = bytearray()
        for ts, data in self._history:
            chunk_end = ts + len(data) // self._bytes_per_ms
            if chunk_end <= begin_ms or ts >= end_ms:
                continue
            lo = max(0, (begin_ms - ts) * self._bytes_per_ms)
            hi = min(len(data), (end_ms - ts) * self._bytes_per_ms)
            if self._format.encoding == common_pb2.AUDIO_ENCODING_PCM_S16LE:
                lo -= lo % 2
                hi -= hi % 2
            out += data[lo:hi]
        return bytes(out)

    async def aclose(self, end: common_pb2.CallEnd) -> None:
        if not self._utterances.full():
            self._utterances.put_nowait(None)


class ParrotBackend(AgentBackend):
    name = "parrot"

    def __init__(self, format_name_: str = "pcm_16000") -> None:
        self._format = format_from_name(format_name_)

    async def open(self, start: agent_pb2.SessionStart) -> AgentSession:
        fmt = self._format
        if not (offered(fmt, list(start.input_formats)) and offered(fmt, list(start.output_formats))):
            raise SessionRefused(
                common_pb2.END_REASON_UNSUPPORTED_FORMAT,
                f"the parrot speaks {format_name(fmt)}, which media did not offer",
                common_pb2.ERROR_CODE_FAILED_PRECONDITION,
            )
        log.info("parrot session open (%s)", format_name(fmt))
        return ParrotSession(fmt)
