"""One call's conversation with an ElevenLabs agent over its WebSocket.

Two tasks per call, both on the service's event loop (no threads):

* the reader reads every server frame as it arrives. It answers `ping` with `pong` at once and handles
  `interruption` at once (outbox.drop_audio + Interruption), so neither waits behind agent audio; every
  other event is appended, in order, to a pending list (pending.py).
* `run()` moves the pending list into the outbox in order. Only it waits for room for audio
  (backpressure from media), so a slow media link never stops pongs.

The parts, one concern each beside this file: formats (negotiation.py), caller audio held until ready
(caller_audio.py), replies (replies.py), client tools (tools.py), close codes (closes.py), the "busy"
heuristic (busy.py), alignment (alignment.py). Decisions, with their sources (docs/elevenlabs.md, section
named in brackets):
* Replies are told apart by `replies.ReplyTracker`, not by the audio `event_id` (documented only as a
  chunk id) [#replies]: `response_id` towards media is the tracker's reply id. An `interruption` voids
  the open reply and every chunk with event_id <= its id, the Python SDK rule [#interruption]. Media's
  own barge-in (CallerInterrupted) voids the reply it stopped until the next reply boundary, and the
  agent gets a `contextual_update` saying how much of it the caller heard.
* DTMF: `user_activity` (resets the agent's turn timeout while the caller types, [#dtmf]) followed by a
  `contextual_update` naming the key. `user_message` was rejected: it would make the key a spoken turn.
* A frame that is malformed or unknown mid-call is logged, counted and skipped [#events-we-receive].
* An error close after the call started (anything but 1000, including a lost connection) ends
  `run_until_end()` with a resumable or not `End` (closes.resumable); resume.py then continues the call
  in a new conversation [#resume] or has `apologize()` play the bundled `apology` prompt (espeak-ng,
  stored as μ-law 8 kHz and rendered to the negotiated output format by
  `voicebridge.agent.prompts.load_prompt`): the caller hears why the line goes quiet instead of dead air.
  A continuing conversation (`Continuation`) numbers its replies above the old ones and drops its
  greeting until the caller speaks. Every turn is kept in `history` (transcript.py) for the next one.

Why this file stays near 500 lines: what is left is the one state machine every server event passes
through (reader, pending list, outbox, end). Its parts that stand alone already live beside it; cutting
the dispatch itself in two would split each event's handling across files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from voicebridge.agent.formats import format_from_name, format_name
from voicebridge.agent.prompts import load_prompt
from voicebridge.runtime.logs import call_context
from voicebridge.runtime.privacy import end_detail
from voicebridge.runtime.redaction import SecretScope
from voicebridge.v1 import agent_pb2, common_pb2

from ...metrics import PROCESSING
from ..base import AgentSession, Outbox, SessionEndInfo, SessionRefused
from . import protocol as p
from .alignment import text_alignment
from .busy import looks_busy
from .caller_audio import REPLAY_MAX_S, CallerAudio, HeldAudio
from .closes import close_end, describe, resumable
from .metrics import (
    AUDIO_CHUNKS,
    AUDIO_SECONDS,
    CLOSES,
    FIRST_AUDIO_SECONDS,
    INTERRUPTIONS,
    LATE_AUDIO_DROPPED,
    PING_RTT,
    SKIPPED_FRAMES,
    TURN_SECONDS,
    close_label,
)
from .negotiation import bytes_per_s, negotiate
from .pending import End, Pending
from .replies import ReplyTracker
from .tools import ClientTools
from .transcript import ConversationLog

__all__ = ["ElevenLabsSession", "looks_busy"]

log = logging.getLogger(__name__)
_AUDIO_RECEIVED = AUDIO_CHUNKS.labels("received")
_PROCESSING_OUT = PROCESSING.labels("outbound")
_SECONDS_RECEIVED = AUDIO_SECONDS.labels("received")

CLOSE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Continuation:
    """This conversation continues a call whose earlier conversation dropped (resume.py): its reply ids
    stay above the earlier ones (media refuses ids it has seen cut off), and with `drop_greeting` its
    replies are dropped until the caller speaks (the agent's first message would greet them again)."""

    reply_floor: int
    drop_greeting: bool


def _transcript(
    role: int, text: str, *, final: bool = True, correction: bool = False, rid: int = 0
) -> agent_pb2.ConverseResponse:
    return agent_pb2.ConverseResponse(
        transcript=common_pb2.Transcript(
            role=role, text=text, final=final, correction=correction, response_id=rid
        )
    )


class ElevenLabsSession(AgentSession):
    """A conversation: created connected, made ready by `handshake()`, then driven by the servicer."""

    def __init__(
        self,
        ws: ClientConnection,
        start: agent_pb2.SessionStart,
        agent_id: str,
        max_buffered_audio_s: float,
        max_pending_audio_s: float,
        secrets: SecretScope | None = None,
        history: ConversationLog | None = None,
        continues: Continuation | None = None,
    ) -> None:
        self._ws = ws
        self._secrets = secrets or SecretScope()  # this conversation's signed URL, forgotten in aclose()
        self.start = start
        self.connect_started = time.perf_counter()
        self._agent_id = agent_id
        self._call_sid = start.call.call_sid
        self.ready = agent_pb2.SessionReady()
        self.conversation_id = ""
        offered_rates = [bytes_per_s(f) for f in start.input_formats] or [96_000]
        self._caller_audio = CallerAudio(ws, int(max(offered_rates) * max_buffered_audio_s))
        # Caller audio since their last final transcript: replayed to a continuation (resume.py).
        self._untranscribed = HeldAudio(int(max(offered_rates) * REPLAY_MAX_S))
        self._max_pending_s = max_pending_audio_s
        self._pending_limit = 0
        self._output_format = common_pb2.AudioFormat()
        self._pending = Pending()
        self._metadata: asyncio.Future[p.Metadata] = asyncio.get_running_loop().create_future()
        self._outbox: Outbox | None = None
        # The call's turns, shared with the conversations that continue it (resume.py).
        self.history = history or ConversationLog()
        self.continues = continues
        self._replies = ReplyTracker(continues.reply_floor if continues else 0)
        self._dropping_greeting = bool(continues and continues.drop_greeting)
        self.progressed = False  # the caller spoke, or heard this conversation (resume.py's "it took")
        self._last_error: p.ErrorEvent | None = None
        self._closing: common_pb2.CallEnd | None = None
        self._ended = False
        self._tools = ClientTools(self._send_quietly, self._pending.push)
        # Latency watch (docs/elevenlabs.md#observability): when the conversation began (until 1st audio), and
        # the caller's last final transcript with the response id current at that moment.
        self._started_at: float | None = None
        self._turn_began: tuple[float, int] | None = None
        self._reader: asyncio.Task[None] = asyncio.create_task(self._read_in_context())

    # --- handshake ---------------------------------------------------------------------------------

    async def handshake(self, init_frame: str) -> None:
        """Send the init, wait for the metadata, check the formats. Raises SessionRefused."""
        with contextlib.suppress(ConnectionClosed):  # a refusal can close before the init is read
            await self._ws.send(init_frame)
        metadata = await self._metadata
        self._started_at = None if self.continues else time.perf_counter()  # a greeting's latency only
        self.conversation_id = metadata.conversation_id
        self.ready = negotiate(metadata, self.start, self._agent_id)
        log.info(
            "ElevenLabs conversation %s for call %s (agent %s, in %s, out %s)",
            metadata.conversation_id,
            self._call_sid,
            self._agent_id,
            metadata.user_input_audio_format,
            metadata.agent_output_audio_format,
        )
        await self._caller_audio.release(self.ready.input_format)

    async def refused(self) -> SessionRefused:
        """Why the conversation closed before its metadata (busy, protocol, error), for open()."""
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        code, reason, error = self._ws.close_code, self._ws.close_reason or "", self._last_error
        CLOSES.labels(close_label(code)).inc()
        if looks_busy(code, error, reason):
            return SessionRefused(
                common_pb2.END_REASON_AGENT_BUSY,
                f"ElevenLabs refused the conversation (busy, close {code}): {describe(error, reason)}",
                common_pb2.ERROR_CODE_RESOURCE_EXHAUSTED,
            )
        end = close_end(code, reason, error)
        code_for = {
            common_pb2.END_REASON_PROTOCOL_ERROR: common_pb2.ERROR_CODE_FAILED_PRECONDITION,
            common_pb2.END_REASON_AGENT_ENDED: common_pb2.ERROR_CODE_UNAVAILABLE,
        }.get(end.reason, common_pb2.ERROR_CODE_UNAVAILABLE)
        reason_for = (
            end.reason
            if end.reason != common_pb2.END_REASON_AGENT_ENDED
            else common_pb2.END_REASON_AGENT_ERROR
        )
        return SessionRefused(reason_for, f"before the conversation started: {end.detail}", code_for)

    # --- reader ------------------------------------------------------------------------------------

    async def _read_in_context(self) -> None:
        with call_context(self._call_sid):
            await self._read()

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                await self._on_frame(frame)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("ElevenLabs reader failed")
            with contextlib.suppress(Exception):
                await self._ws.close(1011, "client error")
        finally:
            self._on_closed()

    async def _on_frame(self, frame: str | bytes) -> None:
        try:
            event = p.decode(frame)
        except p.ProtocolError as exc:
            if exc.event_type == "conversation_initiation_metadata" and not self._metadata.done():
                self._metadata.set_exception(
                    SessionRefused(
                        common_pb2.END_REASON_PROTOCOL_ERROR,
                        f"ElevenLabs sent unusable conversation metadata: {exc}",
                        common_pb2.ERROR_CODE_INVALID_ARGUMENT,
                    )
                )
                return
            SKIPPED_FRAMES.labels("malformed").inc()
            log.warning("skipping a malformed ElevenLabs frame: %s", exc)
            return
        match event:
            case p.Ping():
                await self._pong(event)
            case p.Metadata():
                if self._metadata.done():
                    log.warning("ignoring a second conversation_initiation_metadata")
                    return
                with contextlib.suppress(ValueError):  # handshake() refuses unusable formats
                    self._output_format = format_from_name(event.agent_output_audio_format)
                    self._pending_limit = int(bytes_per_s(self._output_format) * self._max_pending_s)
                self._metadata.set_result(event)
            case p.Audio():
                self._on_audio(event)
            case p.Interruption():
                self._interrupt(event.event_id)
            case p.UserTranscript():
                if self._dropping_greeting:  # late chunks of the greeting stay dropped
                    self._replies.caller_interrupted(self._replies.last_reply)
                    self._dropping_greeting = False
                self.progressed = True
                self._untranscribed.clear()  # heard and transcribed: this conversation answers it
                self.history.caller(event.text)
                self._replies.user_turn()
                self._turn_began = (time.perf_counter(), self._replies.last_reply)
                self._pending.push(_transcript(common_pb2.Transcript.ROLE_CALLER, event.text))
            case p.TentativeUserTranscript():
                self._pending.push(_transcript(common_pb2.Transcript.ROLE_CALLER, event.text, final=False))
            case p.AgentResponse():
                rid = self._replies.agent_response(event.event_id)
                if self._dropping_greeting:
                    return  # a continued call is not greeted again (resume.py)
                self.history.agent(rid, event.text)
                self._pending.push(_transcript(common_pb2.Transcript.ROLE_AGENT, event.text, rid=rid))
            case p.AgentResponseCorrection():
                rid = self._replies.last_reply  # the reply that was cut off (the correction follows it)
                if self._dropping_greeting:
                    return
                self.history.corrected(rid, event.corrected)
                self._pending.push(
                    _transcript(common_pb2.Transcript.ROLE_AGENT, event.corrected, correction=True, rid=rid)
                )
            case p.ClientToolCall():
                await self._tools.on_call(event)
            case p.ErrorEvent():
                self._last_error = event
                log.warning(
                    "ElevenLabs error event: code=%s type=%s message=%s",
                    event.code,
                    event.error_type,
                    event.message,
                )
            case p.VadScore():
                pass
            case p.Unknown():
                SKIPPED_FRAMES.labels("unknown").inc()
                log.debug("ignoring ElevenLabs event %s", event.type)

    async def _pong(self, ping: p.Ping) -> None:
        """Answer at once, from the reader: nothing else it does waits on media."""
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(p.encode_pong(ping.event_id))
        if ping.ping_ms is not None:
            PING_RTT.observe(ping.ping_ms / 1000)

    def _on_audio(self, event: p.Audio) -> None:
        _AUDIO_RECEIVED.inc()
        begin = time.perf_counter()
        reply = self._replies.audio(event.event_id)
        if reply is None:  # of a reply the caller or the server cut off
            LATE_AUDIO_DROPPED.inc()
            return
        if self._dropping_greeting:
            return
        if self._pending_limit and self._pending.audio_bytes + len(event.audio) > self._pending_limit:
            SKIPPED_FRAMES.labels("audio_backlog").inc()
            log.warning("media is not taking agent audio; dropping a chunk of reply %d", reply)
            return
        self._observe_agent_audio(event, reply)
        chunk = agent_pb2.AudioChunk(
            data=event.audio,
            format=self._output_format,
            response_id=reply,
            received_unix_nanos=time.time_ns(),
        )
        alignment = text_alignment(event.alignment)
        if alignment is not None:  # lets media tell which words the caller heard before cutting in
            chunk.alignment.CopyFrom(alignment)
        self._pending.push(agent_pb2.ConverseResponse(audio=chunk))
        _PROCESSING_OUT.observe(time.perf_counter() - begin)

    def _observe_agent_audio(self, event: p.Audio, reply: int) -> None:
        now = time.perf_counter()
        if self._started_at is not None:
            FIRST_AUDIO_SECONDS.observe(now - self._started_at)
            self._started_at = None
        if self._turn_began is not None and reply > self._turn_began[1]:
            TURN_SECONDS.observe(now - self._turn_began[0])
            self._turn_began = None
        if rate := bytes_per_s(self._output_format):
            _SECONDS_RECEIVED.inc(len(event.audio) / rate)

    def _interrupt(self, event_id: int) -> None:
        INTERRUPTIONS.inc()
        void_through = self._replies.server_interruption(event_id)
        dropped = self._pending.drop_audio_up_to(void_through)
        message = agent_pb2.ConverseResponse(interruption=agent_pb2.Interruption(response_id=void_through))
        if self._outbox is not None:
            dropped += self._outbox.drop_audio(void_through)
            self._outbox.put_control(message)
        else:
            self._pending.push(message)
        LATE_AUDIO_DROPPED.inc(dropped)

    async def _send_quietly(self, frame: str) -> None:
        """Send a frame; a closed socket is the reader's to report."""
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(frame)

    def _on_closed(self) -> None:
        if not self._metadata.done():
            self._metadata.set_exception(ConnectionError("closed before metadata"))
            self._metadata.exception()  # retrieved here; open() reads the reason from refused()
            return
        if self._ended:
            return
        self._ended = True
        code, reason = self._ws.close_code, self._ws.close_reason or ""
        if self._closing is not None:
            info = SessionEndInfo(
                self._closing.reason or common_pb2.END_REASON_CALLER_HANGUP, self._closing.detail
            )
            self._pending.push(End(info))
            return
        CLOSES.labels(close_label(code)).inc()
        info = close_end(code, reason, self._last_error)
        log.info(
            "ElevenLabs conversation %s closed: %s",
            self.conversation_id,
            end_detail(info.reason, info.detail),
        )
        self._pending.push(
            End(info, apologize=code != 1000, resumable=resumable(code, self._last_error), close_code=code)
        )

    # --- the AgentSession interface ------------------------------------------------------------------

    async def run(self, outbox: Outbox) -> SessionEndInfo:
        end = await self.run_until_end(outbox)
        if end.apologize:
            await self.apologize(outbox)
        return end.info

    async def run_until_end(self, outbox: Outbox) -> End:
        """Deliver the conversation's events to media in order until it ends; returns how it ended
        (resume.py decides what follows an error close: a new conversation, or the apology)."""
        self._outbox = outbox
        while True:
            if not self._pending.items:
                # Re-check after waking: an interruption read right after the audio that woke us may
                # have emptied the list again before this task ran.
                self._pending.wake.clear()
                await self._pending.wake.wait()
                continue
            item = self._pending.pop()
            if isinstance(item, End):
                return item
            if item.WhichOneof("event") == "audio":
                if item.audio.response_id <= self._replies.void_through:
                    LATE_AUDIO_DROPPED.inc()
                    continue
                await outbox.put_audio(item)
                self._played(item.audio)
            else:
                outbox.put_control(item)

    def _played(self, chunk: agent_pb2.AudioChunk) -> None:
        """Audio handed to media is heard (media plays it out unless the caller cuts in and says so)."""
        self.progressed = True
        rate = bytes_per_s(chunk.format)
        self.history.played(
            chunk.response_id, len(chunk.data) * 1000 / rate if rate else 0.0, "".join(chunk.alignment.chars)
        )

    @property
    def ended(self) -> bool:
        """The WebSocket has closed (whoever closed it)."""
        return self._ended

    @property
    def reply_floor(self) -> int:
        """Every reply id this conversation gave media is <= this; a continuation numbers above it."""
        return max(self._replies.last_reply, self._replies.void_through)

    def untranscribed_audio(self) -> list[bytes]:
        """The caller audio sent since their last final transcript (the newest REPLAY_MAX_S), oldest
        first: words this conversation may have heard but never answered. Taken once: empty after."""
        return self._untranscribed.take()

    async def send_context(self, text: str, unanswered: str = "") -> None:
        """Tell a continuing conversation what came before (`contextual_update`); `unanswered`, the
        caller's last words that no reply reached, goes as a `user_message` so the agent answers them."""
        await self._send_quietly(p.encode_contextual_update(text))
        if unanswered:
            await self._send_quietly(p.encode_user_message(unanswered))

    async def apologize(self, outbox: Outbox) -> None:
        """The bundled apology, in the negotiated format, as a reply of the bridge's own."""
        fmt = self.ready.output_format
        try:
            audio = load_prompt("apology", fmt.encoding, fmt.sample_rate_hz)
        except (ValueError, OSError) as exc:
            log.warning("no apology prompt for %s: %s", format_name(fmt), exc)
            return
        rid = self._replies.next_reply()
        await outbox.put_audio(
            agent_pb2.ConverseResponse(
                audio=agent_pb2.AudioChunk(
                    data=audio, format=fmt, response_id=rid, received_unix_nanos=time.time_ns()
                )
            )
        )

    async def handle(self, request: agent_pb2.ConverseRequest) -> None:
        kind = request.WhichOneof("event")
        try:
            if kind == "audio":
                self._untranscribed.push(request.audio.data)
                await self._caller_audio.send(request.audio.data, request.audio.received_unix_nanos)
            elif kind == "interrupted":
                await self._on_caller_interrupted(request.interrupted)
            elif kind == "dtmf":
                await self._ws.send(p.encode_user_activity())
                await self._ws.send(
                    p.encode_contextual_update(
                        f"The caller pressed the key {request.dtmf.digit} on their phone keypad."
                    )
                )
            elif kind == "transfer_result":
                await self._tools.on_transfer_result(request.transfer_result)
            elif kind == "end":
                await self.aclose(request.end)
        except ConnectionClosed:
            pass  # the reader reports how the conversation ended

    async def _on_caller_interrupted(self, interrupted: agent_pb2.CallerInterrupted) -> None:
        self.history.interrupted(interrupted.response_id, interrupted.heard_text, interrupted.heard_ms)
        void_through = self._replies.caller_interrupted(interrupted.response_id)
        self._pending.drop_audio_up_to(void_through)
        if self._outbox is not None:
            LATE_AUDIO_DROPPED.inc(self._outbox.drop_audio(void_through))
        heard = f"{interrupted.heard_ms / 1000:.2f} seconds"
        text = f"The caller cut in while you were speaking; they heard only the first {heard} of your reply"
        text += f': "{interrupted.heard_text}".' if interrupted.heard_text else "."
        await self._ws.send(p.encode_contextual_update(text))

    async def aclose(self, end: common_pb2.CallEnd | None = None) -> None:
        """Close the WebSocket with 1000 (or the server keeps the conversation: docs/elevenlabs.md)."""
        if self._closing is None:
            self._closing = end or common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP)
            if self._ws.close_code is None:
                CLOSES.labels("1000").inc()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(1000, "call ended"), CLOSE_TIMEOUT_S)
        if not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if not self._ended:
            self._ended = True
            reason = self._closing.reason or common_pb2.END_REASON_CALLER_HANGUP
            self._pending.push(End(SessionEndInfo(reason, self._closing.detail)))
        self._secrets.close()
