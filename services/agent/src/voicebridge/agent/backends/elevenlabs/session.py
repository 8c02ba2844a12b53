"""One call's conversation with an ElevenLabs agent over its WebSocket.

Two tasks per call, both on the service's event loop (no threads):

* the reader reads every server frame as it arrives. It answers `ping` with `pong` at once and handles
  `interruption` at once (outbox.drop_audio + Interruption), so neither waits behind agent audio; every
  other event is appended, in order, to a pending list.
* `run()` moves the pending list into the outbox in order. Only it waits for room for audio
  (backpressure from media), so a slow media link never stops pongs.

Decisions, with their sources (docs/elevenlabs.md, section named in brackets):
* Replies are told apart by `replies.ReplyTracker`, not by the audio `event_id` (documented only as a
  chunk id) [#replies]: `response_id` towards media is the tracker's reply id. An `interruption` voids
  the open reply and every chunk with event_id <= its id, the Python SDK rule [#interruption]. Media's
  own barge-in (CallerInterrupted) voids the reply it stopped until the next reply boundary, and the
  agent gets a `contextual_update` saying how much of it the caller heard.
* DTMF: `user_activity` (resets the agent's turn timeout while the caller types, [#dtmf]) followed by a
  `contextual_update` naming the key. `user_message` was rejected: it would make the key a spoken turn.
* Client tools: `end_call` → HangUp, answered `client_tool_result` at once. `transfer_call` /
  `transfer_to_number` → TransferCall (destination from `phone_number`, `destination`, `transfer_number`
  or `number`), answered only when the edge's TransferResult comes back (after the words before it were
  heard): success, or `is_error: true` with the reason (destination not allowed...), after which the
  conversation goes on. Any other tool is answered `is_error: true` [#client-tools].
* A frame that is malformed or unknown mid-call is logged, counted and skipped [#events-we-receive].
* Close codes [#close-codes]: 1000 → AGENT_ENDED; 1002/1011 → AGENT_ERROR; 1008 → PROTOCOL_ERROR; the detail
  names the `error_type` of the preceding `error` event (e.g. missing_dynamic_variable).
* An error close after the call started (anything but 1000, including a lost connection) plays the
  bundled `apology` prompt (espeak-ng, stored as μ-law 8 kHz and rendered to the negotiated output format
  by `voicebridge.agent.prompts.load_prompt`), then run() returns AGENT_ERROR: the caller hears why the
  line goes quiet instead of dead air, and no silent reconnect starts a new conversation [#no-resume].
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from voicebridge.agent.formats import format_from_name, format_name, offered
from voicebridge.agent.prompts import load_prompt
from voicebridge.runtime.logs import call_context
from voicebridge.runtime.privacy import end_detail
from voicebridge.runtime.redaction import SecretScope
from voicebridge.v1 import agent_pb2, common_pb2

from ...metrics import PROCESSING
from ..base import AgentSession, Outbox, SessionEndInfo, SessionRefused
from . import protocol as p
from .metrics import (
    AUDIO_CHUNKS,
    AUDIO_SECONDS,
    CLOSES,
    FIRST_AUDIO_SECONDS,
    INBOUND_ADDED_LATENCY,
    INTERRUPTIONS,
    LATE_AUDIO_DROPPED,
    PING_RTT,
    SKIPPED_FRAMES,
    TURN_SECONDS,
    close_label,
)
from .replies import ReplyTracker

log = logging.getLogger(__name__)
_AUDIO_SENT = AUDIO_CHUNKS.labels("sent")
_AUDIO_RECEIVED = AUDIO_CHUNKS.labels("received")
_PROCESSING_IN = PROCESSING.labels("inbound")
_PROCESSING_OUT = PROCESSING.labels("outbound")
_SECONDS_SENT = AUDIO_SECONDS.labels("sent")
_SECONDS_RECEIVED = AUDIO_SECONDS.labels("received")

END_CALL_TOOLS = {"end_call"}
TRANSFER_TOOLS = {"transfer_call", "transfer_to_number"}
DESTINATION_PARAMS = ("phone_number", "destination", "transfer_number", "number")
CLOSE_TIMEOUT_S = 2.0


@dataclass
class _End:
    """The conversation is over; run() returns `info` after delivering what came before it."""

    info: SessionEndInfo
    apologize: bool = False


@dataclass
class _Pending:
    """Server events waiting for run(), in arrival order, with the audio they hold bounded."""

    items: collections.deque[agent_pb2.ConverseResponse | _End] = field(default_factory=collections.deque)
    audio_bytes: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, item: agent_pb2.ConverseResponse | _End) -> None:
        if isinstance(item, agent_pb2.ConverseResponse) and item.WhichOneof("event") == "audio":
            self.audio_bytes += len(item.audio.data)
        self.items.append(item)
        self.wake.set()

    def pop(self) -> agent_pb2.ConverseResponse | _End:
        item = self.items.popleft()
        if isinstance(item, agent_pb2.ConverseResponse) and item.WhichOneof("event") == "audio":
            self.audio_bytes -= len(item.audio.data)
        if not self.items:
            self.wake.clear()
        return item

    def drop_audio_up_to(self, response_id: int) -> int:
        kept: collections.deque[agent_pb2.ConverseResponse | _End] = collections.deque()
        dropped = 0
        for item in self.items:
            is_audio = isinstance(item, agent_pb2.ConverseResponse) and item.WhichOneof("event") == "audio"
            if is_audio and item.audio.response_id <= response_id:
                self.audio_bytes -= len(item.audio.data)
                dropped += 1
            else:
                kept.append(item)
        self.items = kept
        if not kept:
            self.wake.clear()
        return dropped


def _bytes_per_s(fmt: common_pb2.AudioFormat) -> int:
    width = 2 if fmt.encoding == common_pb2.AUDIO_ENCODING_PCM_S16LE else 1
    return fmt.sample_rate_hz * width


def _transcript(role: int, text: str, *, final: bool = True, correction: bool = False, rid: int = 0):
    return agent_pb2.ConverseResponse(
        transcript=common_pb2.Transcript(
            role=role, text=text, final=final, correction=correction, response_id=rid
        )
    )


def _close_end(code: int | None, reason: str, error: p.ErrorEvent | None) -> SessionEndInfo:
    """Map a close (code, last `error` event) to the contract's end reason: docs/elevenlabs.md#close-codes."""
    error_type = error.error_type if error else None
    message = (error.message if error else "") or reason
    extra = {"close_code": str(code if code is not None else 1006)}
    if error_type:
        extra["error_type"] = error_type
    described = f"{error_type}: {message}" if error_type else message or "no reason given"
    if code == 1000:
        return SessionEndInfo(
            common_pb2.END_REASON_AGENT_ENDED, f"agent ended the conversation ({described})", extra
        )
    if code == 1008:
        return SessionEndInfo(
            common_pb2.END_REASON_PROTOCOL_ERROR, f"ElevenLabs closed 1008: {described}", extra
        )
    if code in (1002, 1011):
        return SessionEndInfo(
            common_pb2.END_REASON_AGENT_ERROR, f"ElevenLabs closed {code}: {described}", extra
        )
    return SessionEndInfo(
        common_pb2.END_REASON_AGENT_ERROR, f"ElevenLabs connection lost (code {code}): {described}", extra
    )


def looks_busy(code: int | None, error: p.ErrorEvent | None, reason: str = "") -> bool:
    """A refusal for capacity: HTTP 429 behind an `http_exception`, or words of a concurrency/quota limit.

    No error_type for it is documented (the AsyncAPI spec lists none); the concurrency limit rejects calls at
    connect (docs/elevenlabs.md#capacity), and `http_exception` is how HTTP errors become close frames.
    """
    if error is not None and error.details and error.details.get("status_code") == 429:
        return True
    text = " ".join(
        filter(None, [reason, error and error.message, error and error.reason, error and error.error_type])
    )
    text = text.lower()
    return any(
        word in text for word in ("concurren", "too many", "quota", "limit exceeded", "busy", "capacity")
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
    ) -> None:
        self._ws = ws
        self._secrets = secrets or SecretScope()  # this conversation's signed URL, forgotten in aclose()
        self.start = start
        self.connect_started = time.perf_counter()
        self._agent_id = agent_id
        self._call_sid = start.call.call_sid
        self.ready = agent_pb2.SessionReady()
        self.conversation_id = ""
        offered_rates = [_bytes_per_s(f) for f in start.input_formats] or [96_000]
        self._held_limit = int(max(offered_rates) * max_buffered_audio_s)
        self._held: collections.deque[bytes] = collections.deque()
        self._held_bytes = 0
        self._max_pending_s = max_pending_audio_s
        self._pending_limit = 0
        self._output_format = common_pb2.AudioFormat()
        self._pending = _Pending()
        self._metadata: asyncio.Future[p.Metadata] = asyncio.get_running_loop().create_future()
        self._is_ready = False
        self._outbox: Outbox | None = None
        self._replies = ReplyTracker()
        self._last_error: p.ErrorEvent | None = None
        self._audio_lock = asyncio.Lock()
        self._closing: common_pb2.CallEnd | None = None
        self._ended = False
        # Transfer tool calls awaiting the edge's TransferResult: (destination, tool_call_id), oldest first.
        self._transfers: collections.deque[tuple[str, str]] = collections.deque()
        # Latency watch (docs/elevenlabs.md#observability): when the conversation began (until 1st audio), and
        # the caller's last final transcript with the response id current at that moment.
        self._started_at: float | None = None
        self._turn_began: tuple[float, int] | None = None
        self._in_rate = 0
        self._reader: asyncio.Task[None] = asyncio.create_task(self._read_in_context())

    # --- handshake ---------------------------------------------------------------------------------

    async def handshake(self, init_frame: str) -> None:
        """Send the init, wait for the metadata, check the formats. Raises SessionRefused."""
        with contextlib.suppress(ConnectionClosed):  # a refusal can close before the init is read
            await self._ws.send(init_frame)
        metadata = await self._metadata
        self._started_at = time.perf_counter()
        self.conversation_id = metadata.conversation_id
        try:
            input_format = format_from_name(metadata.user_input_audio_format)
            output_format = format_from_name(metadata.agent_output_audio_format)
        except ValueError:
            input_format = output_format = None
        in_ok = input_format is not None and offered(input_format, list(self.start.input_formats))
        out_ok = output_format is not None and offered(output_format, list(self.start.output_formats))
        if not (in_ok and out_ok):
            ins = ", ".join(format_name(f) for f in self.start.input_formats) or "none"
            outs = ", ".join(format_name(f) for f in self.start.output_formats) or "none"
            raise SessionRefused(
                common_pb2.END_REASON_UNSUPPORTED_FORMAT,
                f"ElevenLabs agent {self._agent_id} uses input {metadata.user_input_audio_format} and output "
                f"{metadata.agent_output_audio_format}; media offers input [{ins}] and output [{outs}]. "
                "Set the agent's formats (ulaw_8000 both ways for Twilio) or enable a matching media format.",
                common_pb2.ERROR_CODE_FAILED_PRECONDITION,
            )
        assert input_format is not None
        assert output_format is not None
        self.ready = agent_pb2.SessionReady(
            input_format=input_format, output_format=output_format, conversation_id=metadata.conversation_id
        )
        log.info(
            "ElevenLabs conversation %s for call %s (agent %s, in %s, out %s)",
            metadata.conversation_id,
            self._call_sid,
            self._agent_id,
            metadata.user_input_audio_format,
            metadata.agent_output_audio_format,
        )
        await self._release_held_audio()

    async def refused(self) -> SessionRefused:
        """Why the conversation closed before its metadata (busy, protocol, error), for open()."""
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        code, reason, error = self._ws.close_code, self._ws.close_reason or "", self._last_error
        CLOSES.labels(close_label(code)).inc()
        if looks_busy(code, error, reason):
            return SessionRefused(
                common_pb2.END_REASON_AGENT_BUSY,
                f"ElevenLabs refused the conversation (busy, close {code}): {self._describe(error, reason)}",
                common_pb2.ERROR_CODE_RESOURCE_EXHAUSTED,
            )
        end = _close_end(code, reason, error)
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

    @staticmethod
    def _describe(error: p.ErrorEvent | None, reason: str) -> str:
        if error is None:
            return reason or "no reason given"
        return f"{error.error_type or 'error'}: {error.message or error.reason or reason}"

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
                    self._pending_limit = int(_bytes_per_s(self._output_format) * self._max_pending_s)
                self._metadata.set_result(event)
            case p.Audio():
                self._on_audio(event)
            case p.Interruption():
                self._interrupt(event.event_id)
            case p.UserTranscript():
                self._replies.user_turn()
                self._turn_began = (time.perf_counter(), self._replies.last_reply)
                self._pending.push(_transcript(common_pb2.Transcript.ROLE_CALLER, event.text))
            case p.TentativeUserTranscript():
                self._pending.push(_transcript(common_pb2.Transcript.ROLE_CALLER, event.text, final=False))
            case p.AgentResponse():
                rid = self._replies.agent_response(event.event_id)
                self._pending.push(_transcript(common_pb2.Transcript.ROLE_AGENT, event.text, rid=rid))
            case p.AgentResponseCorrection():
                rid = self._replies.last_reply  # the reply that was cut off (the correction follows it)
                self._pending.push(
                    _transcript(common_pb2.Transcript.ROLE_AGENT, event.corrected, correction=True, rid=rid)
                )
            case p.ClientToolCall():
                await self._on_tool_call(event)
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
        alignment = _text_alignment(event.alignment)
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
        if rate := _bytes_per_s(self._output_format):
            _SECONDS_RECEIVED.inc(len(event.audio) / rate)

    def _sent_audio(self, data: bytes) -> None:
        _AUDIO_SENT.inc()
        if self._in_rate:
            _SECONDS_SENT.inc(len(data) / self._in_rate)

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

    async def _on_tool_call(self, call: p.ClientToolCall) -> None:
        params = call.parameters
        reason = str(params.get("reason") or "")
        if call.tool_name in END_CALL_TOOLS:
            await self._tool_result(call, "Call will end after the current message.")
            self._pending.push(
                agent_pb2.ConverseResponse(hangup=common_pb2.HangUp(reason=reason or "end_call"))
            )
            return
        if call.tool_name in TRANSFER_TOOLS:
            destination = next((str(params[k]) for k in DESTINATION_PARAMS if params.get(k)), "")
            if not destination:
                names = ", ".join(DESTINATION_PARAMS)
                await self._tool_result(call, f"No destination: pass one of {names}.", is_error=True)
                return
            self._transfers.append((destination, call.tool_call_id))  # answered by _on_transfer_result
            self._pending.push(
                agent_pb2.ConverseResponse(
                    transfer=common_pb2.TransferCall(destination=destination, reason=reason)
                )
            )
            return
        log.warning("agent called unknown client tool %r", call.tool_name)
        await self._tool_result(call, f"Unknown client tool: {call.tool_name}", is_error=True)

    async def _tool_result(self, call: p.ClientToolCall, result: str, is_error: bool = False) -> None:
        await self._send_tool_result(call.tool_call_id, result, is_error)

    async def _send_tool_result(self, tool_call_id: str, result: str, is_error: bool) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(p.encode_client_tool_result(tool_call_id, result, is_error))

    async def _on_transfer_result(self, outcome: common_pb2.TransferResult) -> None:
        """Answer the transfer tool call this outcome belongs to with what really happened."""
        match = next((t for t in self._transfers if t[0] == outcome.destination), None)
        if match is None and self._transfers:
            match = self._transfers[0]
        if match is None:
            log.warning("transfer result with no transfer tool call waiting")
            return
        self._transfers.remove(match)
        if outcome.transferred:
            await self._send_tool_result(match[1], f"The call is being transferred to {match[0]}.", False)
            return
        detail = outcome.detail or "the transfer failed"
        await self._send_tool_result(
            match[1],
            f"Transfer to {match[0]} failed: {detail}. The call was not transferred and goes on with you.",
            True,
        )

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
            self._pending.push(_End(info))
            return
        CLOSES.labels(close_label(code)).inc()
        info = _close_end(code, reason, self._last_error)
        log.info(
            "ElevenLabs conversation %s closed: %s",
            self.conversation_id,
            end_detail(info.reason, info.detail),
        )
        self._pending.push(_End(info, apologize=code != 1000))

    # --- the AgentSession interface ------------------------------------------------------------------

    async def run(self, outbox: Outbox) -> SessionEndInfo:
        self._outbox = outbox
        while True:
            if not self._pending.items:
                # Re-check after waking: an interruption read right after the audio that woke us may
                # have emptied the list again before this task ran.
                self._pending.wake.clear()
                await self._pending.wake.wait()
                continue
            item = self._pending.pop()
            if isinstance(item, _End):
                if item.apologize:
                    await self._apologize(outbox)
                return item.info
            if item.WhichOneof("event") == "audio":
                if item.audio.response_id <= self._replies.void_through:
                    LATE_AUDIO_DROPPED.inc()
                    continue
                await outbox.put_audio(item)
            else:
                outbox.put_control(item)

    async def _apologize(self, outbox: Outbox) -> None:
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
                await self._send_audio(request.audio.data, request.audio.received_unix_nanos)
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
                await self._on_transfer_result(request.transfer_result)
            elif kind == "end":
                await self.aclose(request.end)
        except ConnectionClosed:
            pass  # the reader reports how the conversation ended

    async def _send_audio(self, data: bytes, received_unix_nanos: int = 0) -> None:
        if not self._is_ready:
            self._held.append(data)
            self._held_bytes += len(data)
            while self._held_bytes > self._held_limit and self._held:
                self._held_bytes -= len(self._held.popleft())
            return
        async with self._audio_lock:
            begin = time.perf_counter()
            await self._ws.send(p.encode_user_audio(data))
            _PROCESSING_IN.observe(time.perf_counter() - begin)
        self._sent_audio(data)
        if received_unix_nanos:
            INBOUND_ADDED_LATENCY.observe(max(0.0, (time.time_ns() - received_unix_nanos) / 1e9))

    async def _release_held_audio(self) -> None:
        self._in_rate = _bytes_per_s(self.ready.input_format)
        async with self._audio_lock:
            self._is_ready = True
            while self._held:
                chunk = self._held.popleft()
                self._held_bytes -= len(chunk)
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.send(p.encode_user_audio(chunk))
                    self._sent_audio(chunk)

    async def _on_caller_interrupted(self, interrupted: agent_pb2.CallerInterrupted) -> None:
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
            self._pending.push(_End(SessionEndInfo(reason, self._closing.detail)))
        self._secrets.close()


def _text_alignment(alignment: dict | None) -> agent_pb2.TextAlignment | None:
    """ElevenLabs `alignment` (chars, char_start_times_ms, char_durations_ms) for the contract;
    None when absent or malformed (it is optional: a bad one must not cost the audio)."""
    if not alignment:
        return None
    chars = alignment.get("chars")
    starts = alignment.get("char_start_times_ms")
    durations = alignment.get("char_durations_ms") or []
    if not isinstance(chars, list) or not isinstance(starts, list) or len(chars) != len(starts):
        return None
    try:
        return agent_pb2.TextAlignment(
            chars=[str(c) for c in chars],
            char_start_ms=[max(0, int(v)) for v in starts],
            char_duration_ms=[max(0, int(v)) for v in durations][: len(chars)],
        )
    except (TypeError, ValueError):
        return None
