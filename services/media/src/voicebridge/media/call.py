"""One phone call inside the media service: the edge's stream on one side, the agent's on the other.

    edge --CallerAudio--> decode --> VAD --------------------> VoiceActivity --> agent
                            \\--> CallerAudioConverter -----> AudioChunk ----> agent
    edge <--PlayAudio/mark-- Playout <-- AgentAudioConverter <-- AudioChunk --- agent
    edge <--ClearAudio------ barge-in (local VAD, or the agent's Interruption)

The session owns its tasks (edge reader, agent reader, pacer) and the agent stream; whatever ends
the call, `run()` cancels them all and closes the agent session before it returns.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources

import grpc

from voicebridge.runtime.logs import call_context
from voicebridge.runtime.privacy import end_detail
from voicebridge.runtime.replicas import Opener
from voicebridge.runtime.tasks import cancel_and_wait
from voicebridge.v1 import agent_pb2, common_pb2, media_pb2

from .agent_formats import AgentFormats
from .agent_sessions import AgentSessions
from .audio.convert import SUPPORTED_FORMATS, UnsupportedFormatError
from .audio.g711 import ulaw_decode
from .audio.vad.base import VadEvent
from .audio.vad.webrtc import VadConfig, WebRtcVad
from .bargein import BargeInController, BargeInDetector
from .clock import Clock, LoopClock
from .config import MediaSettings
from .metrics import (
    FRAMES,
    FRAMES_DROPPED,
    HEARD_TURN_LATENCY,
    PROCESSING,
    VAD_EVENTS,
)
from .playout import Playout
from .pre_ready import PreReadyBuffer

log = logging.getLogger(__name__)
_FRAMES_CALLER_IN = FRAMES.labels("caller_in")
_FRAMES_AGENT_OUT = FRAMES.labels("agent_out")
_FRAMES_AGENT_IN = FRAMES.labels("agent_in")
_PROCESSING_IN = PROCESSING.labels("inbound")
_PROCESSING_OUT = PROCESSING.labels("outbound")

Emit = Callable[[media_pb2.CallResponse], Awaitable[None]]
FIRST_MESSAGE_TIMEOUT_S = 10.0
# The goodbye a draining media plays at the deadline (espeak-ng, μ-law 8 kHz): its own response.
GOODBYE = resources.files("voicebridge.media").joinpath("prompts/goodbye.ulaw").read_bytes()
GOODBYE_RESPONSE_ID = 2**63


class CallEnded(Exception):
    def __init__(self, reason: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Phase(enum.Enum):
    CONNECTING = "connecting"  # waiting for the agent's SessionReady
    TALKING = "talking"
    ENDING = "ending"  # the agent asked to end; playing out its last words


# An attach's refusals, and how media counts them before it starts a new conversation instead.
_ATTACH_FAILED = {
    common_pb2.ERROR_CODE_NOT_FOUND: "not_found",
    common_pb2.ERROR_CODE_PERMISSION_DENIED: "denied",
    common_pb2.ERROR_CODE_FAILED_PRECONDITION: "refused",
}


def _caller_end(reason: int, detail: str) -> agent_pb2.ConverseRequest:
    return agent_pb2.ConverseRequest(end=common_pb2.CallEnd(reason=reason, detail=detail))


class CallSession:
    def __init__(
        self,
        settings: MediaSettings,
        agent_calls: Opener,
        emit: Emit,
        clock: Clock | None = None,
    ) -> None:
        self._settings = settings
        self._emit = emit
        self._clock = clock or LoopClock()
        self._phase = _Phase.CONNECTING
        self._agent = AgentSessions(
            agent_calls, max(1, settings.agent_queue_ms // 20), resume=settings.agent_resume
        )
        self._formats: AgentFormats | None = None  # from the agent's SessionReady
        self._vad = WebRtcVad(
            VadConfig(
                aggressiveness=settings.vad_aggressiveness,
                onset_ms=settings.vad_onset_ms,
                offset_ms=settings.vad_offset_ms,
            )
        )
        self._playout = Playout(
            self._clock,
            emit,
            settings.playout,
            on_first_played=self._on_first_played,
            on_frame_sent=self._on_frame_sent,
            own_response_ids=frozenset({GOODBYE_RESPONSE_ID}),
        )
        self._bargein = BargeInController(
            BargeInDetector(settings.barge_in),
            self._playout,
            self._clock,
            send_clear=lambda: emit(media_pb2.CallResponse(clear=media_pb2.ClearAudio())),
            tell_agent=self._tell_interrupted,
            reset_audio=self._reset_agent_audio,
        )
        # Maps the call's media timeline (Twilio ms) to this clock: clock time = offset + ms / 1000.
        self._timeline_offset: float | None = None
        self._speech_ended_at: float | None = None  # clock time the caller last stopped talking
        self._pre_ready = PreReadyBuffer(settings.pre_ready_buffer_ms)
        self._stop_requested = asyncio.Event()
        self._stop_reason = (common_pb2.END_REASON_SHUTDOWN, "")
        self._goodbye = False  # saying goodbye (drain deadline): the agent is not heard any more
        self._edge_lost = False  # the edge's stream ended without stop: the call may come back
        self._holdable = False  # the call has a secret: the agent can hold it for a re-attach
        self.call_sid = ""

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self, requests: AsyncIterator[media_pb2.CallRequest]) -> common_pb2.CallEnd:
        """Serve the call until it ends; returns why. Never raises for call-level problems."""
        requests = aiter(requests)
        try:
            first = await asyncio.wait_for(anext(requests), FIRST_MESSAGE_TIMEOUT_S)
        except (StopAsyncIteration, TimeoutError):
            return await self._finish(common_pb2.END_REASON_PROTOCOL_ERROR, "no CallStart received")
        if first.WhichOneof("event") != "start":
            return await self._finish(
                common_pb2.END_REASON_PROTOCOL_ERROR,
                f"the first message must be start, got {first.WhichOneof('event')}",
            )
        self.call_sid = first.start.call.call_sid
        with call_context(self.call_sid):
            return await self._serve(first.start, requests)

    async def _serve(
        self, call_start: media_pb2.CallStart, requests: AsyncIterator[media_pb2.CallRequest]
    ) -> common_pb2.CallEnd:
        call = call_start.call
        log.info("call started (stream %s)", call.stream_sid)
        offered = [f.to_proto() for f in SUPPORTED_FORMATS]
        self._holdable = bool(call_start.call_secret)
        start = agent_pb2.SessionStart(
            call=call, input_formats=offered, output_formats=offered, call_secret=call_start.call_secret
        )
        attach = None
        if call_start.HasField("reattach"):  # the call continues: take over its agent conversation
            attach = agent_pb2.SessionAttach()
            if call_start.reattach.HasField("sent"):
                sent = call_start.reattach.sent
                attach.resume_from.CopyFrom(sent)
                self._playout.continue_reply(sent.response_id, sent.offset_us)
            log.info("call re-opened: taking over its agent conversation")
        self._agent.open(start, attach)
        tasks = {
            asyncio.create_task(self._read_edge(requests), name="edge-reader"),
            asyncio.create_task(self._read_agent(), name="agent-reader"),
            asyncio.create_task(self._playout.run(), name="pacer"),
            asyncio.create_task(self._wait_stop(), name="stop-watch"),
        }
        # If this task is cancelled (the edge cancelled its stream, or the stream was lost), the
        # agent's session must still be ended: `_finish` runs in the finally either way.
        reason, detail = common_pb2.END_REASON_CALLER_HANGUP, "the edge's stream was cancelled"
        try:
            reason, detail = await self._until_ended(tasks)
        except asyncio.CancelledError:
            self._edge_lost = True  # the edge cancelled its stream, or it was lost: no stop
            raise
        finally:
            await cancel_and_wait(tasks)
            end = await self._finish(reason, detail)
        return end

    @staticmethod
    async def _until_ended(tasks: set[asyncio.Task]) -> tuple[int, str]:
        """Why the call ended: the first of its tasks to finish says so."""
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if isinstance(exc, CallEnded):
                return exc.reason, exc.detail
            if exc is not None:
                log.error("call task %s failed", task.get_name(), exc_info=exc)
                return common_pb2.END_REASON_UNSPECIFIED, f"internal error: {exc!r}"
        return common_pb2.END_REASON_CALLER_HANGUP, "caller stream closed"

    def request_stop(self, reason: int, detail: str, goodbye: bool = False) -> None:
        """End the call from outside (service shutdown); with `goodbye`, the caller first hears the
        goodbye prompt and is hung up (the edge ends the Twilio call)."""
        self._stop_reason = (reason, detail)
        self._goodbye = self._goodbye or goodbye
        self._stop_requested.set()

    async def _wait_stop(self) -> None:
        await self._stop_requested.wait()
        if self._goodbye:
            await self._say_goodbye()
        raise CallEnded(*self._stop_reason)

    async def _say_goodbye(self) -> None:
        """Cut the agent off (clear), play the goodbye, wait until it has been heard, hang up."""
        self._phase = _Phase.ENDING  # no barge-in from here: nothing the caller says changes this
        if self._playout.is_playing or self._playout.is_held:
            self._playout.clear()
            await self._emit(media_pb2.CallResponse(clear=media_pb2.ClearAudio()))
        self._playout.enqueue(GOODBYE, GOODBYE_RESPONSE_ID)
        reason, detail = self._stop_reason
        await self._after_playout(
            media_pb2.CallResponse(hangup=common_pb2.HangUp(reason=detail, end_reason=reason))
        )

    async def _finish(self, reason: int, detail: str) -> common_pb2.CallEnd:
        end = common_pb2.CallEnd(reason=reason, detail=detail)
        if self._edge_lost and self._holdable:
            # No stop from the edge: the call may come back on another stream (media or edge died),
            # so the agent holds the conversation, told what the caller had heard.
            log.info("edge stream lost: the agent holds the conversation for the call to re-attach")
            await self._agent.detach(self._heard())
        else:
            await self._agent.close(_caller_end(reason, detail))
        name = common_pb2.EndReason.Name(reason)
        log.info("call ended: %s %s", name, end_detail(reason, detail))  # the agent's words stay out
        return end

    def _heard(self) -> common_pb2.PlaybackPosition:
        """Where the caller's agent audio stopped: at the last mark Twilio echoed (reply 0: none)."""
        heard = self._playout.heard_position
        if heard is None:
            return common_pb2.PlaybackPosition()
        return common_pb2.PlaybackPosition(response_id=heard[0], offset_us=heard[1])

    # -- edge -> agent ------------------------------------------------------------------------

    async def _read_edge(self, requests: AsyncIterator[media_pb2.CallRequest]) -> None:
        async for request in requests:
            kind = request.WhichOneof("event")
            if kind == "audio":
                await self._on_caller_audio(request.audio)
            elif kind == "mark":
                self._playout.on_mark(request.mark.name)
            elif kind == "dtmf":
                self._send_control(agent_pb2.ConverseRequest(dtmf=request.dtmf))
            elif kind == "transfer_result":
                if not request.transfer_result.transferred and self._phase is _Phase.ENDING:
                    self._phase = _Phase.TALKING  # the transfer did not happen: the call goes on
                self._send_control(agent_pb2.ConverseRequest(transfer_result=request.transfer_result))
            elif kind == "stop" and request.stop.reason == common_pb2.END_REASON_SHUTDOWN:
                # The edge is draining past its deadline (media.proto): goodbye, then the hang-up.
                self.request_stop(common_pb2.END_REASON_SHUTDOWN, request.stop.detail, goodbye=True)
            elif kind == "stop":
                raise CallEnded(
                    request.stop.reason or common_pb2.END_REASON_CALLER_HANGUP, request.stop.detail
                )
            else:
                raise CallEnded(common_pb2.END_REASON_PROTOCOL_ERROR, f"unexpected {kind} from the edge")
        # The edge ends a call with stop; a stream that ends without one broke (on gRPC a lost stream
        # reads as a half-close): the edge died, or it lost us.
        self._edge_lost = True
        raise CallEnded(common_pb2.END_REASON_CALLER_HANGUP, "edge closed the stream")

    def _send_control(self, message: agent_pb2.ConverseRequest) -> None:
        self._agent.send_control(message)

    async def _on_caller_audio(self, audio: media_pb2.CallerAudio) -> None:
        _FRAMES_CALLER_IN.inc()
        begin = time.perf_counter()
        self._timeline_offset = self._clock.now() - (audio.timestamp_ms + len(audio.payload) / 8) / 1000.0
        pcm = ulaw_decode(audio.payload)
        for event in self._vad.feed(pcm, audio.timestamp_ms):
            await self._on_vad(event)
        if self._phase is _Phase.TALKING:
            start = self._timeline_to_clock(audio.timestamp_ms)
            await self._bargein.caller_audio(pcm, start)
        if self._phase is _Phase.CONNECTING:
            self._pre_ready.hold(audio)
        else:
            self._forward(audio, pcm)
        _PROCESSING_IN.observe(time.perf_counter() - begin)

    def _forward(self, audio: media_pb2.CallerAudio, pcm: bytes | None) -> None:
        assert self._formats is not None
        assert self._agent.link is not None
        self._agent.link.send_audio(self._formats.caller_chunk(audio, pcm))
        self._agent.sent(audio)
        _FRAMES_AGENT_OUT.inc()

    def _timeline_to_clock(self, timestamp_ms: int) -> float:
        offset = self._timeline_offset if self._timeline_offset is not None else self._clock.now()
        return offset + timestamp_ms / 1000.0

    def _on_first_played(self, response_id: int, now: float) -> None:
        """The first audio of a response has been heard: that closes a turn, if the caller spoke."""
        if self._speech_ended_at is not None and self._bargein.accepts(response_id):
            HEARD_TURN_LATENCY.observe(max(0.0, now - self._speech_ended_at))
            self._speech_ended_at = None

    async def _on_vad(self, event: VadEvent) -> None:
        VAD_EVENTS.labels(event.kind).inc()
        if event.kind == "start":
            self._speech_ended_at = None
        else:
            self._speech_ended_at = self._timeline_to_clock(event.timestamp_ms)
        kind = (
            agent_pb2.VoiceActivity.KIND_SPEECH_STARTED
            if event.kind == "start"
            else agent_pb2.VoiceActivity.KIND_SPEECH_ENDED
        )
        self._send_control(
            agent_pb2.ConverseRequest(
                activity=agent_pb2.VoiceActivity(kind=kind, timestamp_ms=event.timestamp_ms)
            )
        )

    def _on_frame_sent(self, ulaw: bytes, plays_at: float) -> None:
        """The pacer sent agent audio: the barge-in echo gate needs to know what plays when."""
        if self._settings.barge_in.enabled:
            self._bargein.detector.played(ulaw_decode(ulaw), plays_at)

    def _reset_agent_audio(self) -> None:
        """After a clear: forget resampler history so nothing of the cut-off reply leaks out."""
        if self._formats is not None:
            self._formats.reset_agent()

    # -- agent -> edge ------------------------------------------------------------------------

    async def _read_agent(self) -> None:
        while True:
            assert self._agent.link is not None
            try:
                message = await self._agent.link.read()
            except grpc.aio.AioRpcError as exc:
                if await self._reopen_agent(exc.code().name):
                    continue
                raise CallEnded(
                    common_pb2.END_REASON_AGENT_ERROR, f"agent stream failed: {exc.code().name}"
                ) from None
            if message is None:
                raise CallEnded(
                    common_pb2.END_REASON_AGENT_ERROR, "agent stream ended without an end message"
                )
            kind = message.WhichOneof("event")
            if kind == "audio":
                self._on_agent_audio(message.audio)
            elif kind == "ready":
                self._agent.ready(message.ready)
                self._on_ready(message.ready)
            elif kind == "interruption" and not self._goodbye:
                await self._bargein.agent_interrupted(message.interruption.response_id)
            elif kind == "transcript":
                self._agent.note_transcript(message.transcript)
                await self._emit(media_pb2.CallResponse(transcript=message.transcript))
            elif kind == "hangup":
                await self._after_playout(media_pb2.CallResponse(hangup=message.hangup))
            elif kind == "transfer":
                await self._after_playout(media_pb2.CallResponse(transfer=message.transfer))
            elif kind == "error" and self._agent.attaching and message.error.code in _ATTACH_FAILED:
                # No replica holds the conversation, or it will not hand it over: a new one.
                await self._agent.start_afresh(
                    _ATTACH_FAILED[message.error.code], lambda rid: self._bargein.words.heard(rid, 2**31)
                )
            elif kind == "error":
                log.warning(
                    "agent reported %s: %s",
                    common_pb2.ErrorCode.Name(message.error.code),
                    message.error.message,
                )
            elif kind == "end":
                reason, detail = message.end.reason, message.end.detail
                await self._after_playout(
                    media_pb2.CallResponse(
                        hangup=common_pb2.HangUp(
                            reason=f"{common_pb2.EndReason.Name(reason)}: {detail}", end_reason=reason
                        )
                    )
                )
                raise CallEnded(reason, detail)

    def _tell_interrupted(self, interrupted: agent_pb2.CallerInterrupted) -> None:
        self._agent.transcript.note_cut(interrupted.response_id, interrupted.heard_text)
        self._send_control(agent_pb2.ConverseRequest(interrupted=interrupted))

    async def _reopen_agent(self, why: str) -> bool:
        """A new agent session for a call in progress (`AgentSessions.reopen`); caller audio waits in the
        pre-ready buffer until it is ready. Only while talking: not before the first is ready, nor ending."""
        if self._phase is not _Phase.TALKING or not self._agent.can_reopen():
            return False
        self._phase = _Phase.CONNECTING
        await self._agent.reopen(why, lambda rid: self._bargein.words.heard(rid, 2**31))
        return True

    def _on_ready(self, ready: agent_pb2.SessionReady) -> None:
        try:
            fmt = self._formats = AgentFormats(ready)
        except (UnsupportedFormatError, ValueError) as exc:
            raise CallEnded(
                common_pb2.END_REASON_UNSUPPORTED_FORMAT, f"agent chose an unusable format: {exc}"
            ) from exc
        log.info("agent ready: caller audio as %s, agent audio as %s", fmt.caller.name, fmt.agent.name)
        self._phase = _Phase.TALKING
        # A new session after the agent died: first the words the lost one never answered, then what
        # the caller said while this one connected, in order, each once.
        for audio in self._agent.take_replay() + self._pre_ready.take():
            self._forward(audio, None)

    def _on_agent_audio(self, chunk: agent_pb2.AudioChunk) -> None:
        _FRAMES_AGENT_IN.inc()
        if self._goodbye:
            return  # the goodbye is playing: the agent has been cut off
        if self._formats is None:
            raise CallEnded(common_pb2.END_REASON_PROTOCOL_ERROR, "agent sent audio before SessionReady")
        if not self._bargein.accepts(chunk.response_id):
            FRAMES_DROPPED.labels("interrupted").inc()
            return
        self._bargein.words.note(chunk, self._formats.agent_ms(chunk))
        self._agent.transcript.note_audio(chunk.response_id)
        begin = time.perf_counter()
        ulaw = self._formats.agent_ulaw(chunk.data)
        _PROCESSING_OUT.observe(time.perf_counter() - begin)
        if not self._playout.enqueue(ulaw, chunk.response_id, chunk.received_unix_nanos):
            FRAMES_DROPPED.labels("playout_full").inc()

    async def _after_playout(self, message: media_pb2.CallResponse) -> None:
        """Carry out a hang-up or transfer once the agent's last words have been heard."""
        self._phase = _Phase.ENDING
        try:
            await asyncio.wait_for(self._playout.drained(), self._settings.drain_timeout_s)
        except TimeoutError:
            log.warning("playback did not drain within %.0fs; going ahead", self._settings.drain_timeout_s)
        await self._emit(message)
