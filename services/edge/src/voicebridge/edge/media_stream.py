"""The Twilio Media Streams WebSocket: one call's bridge between Twilio and the media service.

    Twilio --media/mark/dtmf/stop--> _read_twilio --CallRequest--> media   (PriorityStreamWriter)
    Twilio <--media+mark/clear------ _read_media  <--CallResponse-- media

Nothing reaches the media service (and so no agent session, no cost) before the stream has proven
itself: the upgrade's X-Twilio-Signature, then a well-formed `start` with a valid per-call token.
Any malformed message ends *this* call with a logged reason; other calls never notice.

One file (~420 lines) because it is one object's life: admission (gate, `start`), the bridge, the two
readers and the race that decides the end all share the session's state; the wire codec it uses is
`twilio/media_streams.py`, the per-call parameters `call_params.py`, and the stream to media, opened
again on another replica when the one carrying the call dies, `media_link.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voicebridge.runtime.grpc_metrics import ClientStreamMetrics
from voicebridge.runtime.logs import call_context
from voicebridge.runtime.mux import CallerAudioFrame
from voicebridge.runtime.privacy import end_detail, mask_number
from voicebridge.runtime.replicas import Opener
from voicebridge.v1 import common_pb2, media_pb2

from . import call_params
from .call_secret import call_secret
from .config import EdgeSettings
from .media_link import MediaLink
from .metrics import (
    CALL_ENDS,
    CALLS_ACTIVE,
    FRAMES,
    FRAMES_DROPPED,
    OUTBOUND_ADDED_LATENCY,
    PROCESSING,
    PROTOCOL_ERRORS,
    STREAMS_REJECTED,
)
from .twilio import media_streams as ms
from .twilio_actions import TwilioActions

log = logging.getLogger(__name__)

# WebSocket close codes we use towards Twilio (Twilio logs any server close as 31921; the reason is
# for our own logs and for the simulated caller).
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 1002
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
# After the edge has sent `stop`, media ends the agent's session and then its own stream. The edge
# reads media's stream to its end before it drops the RPC: cancelling earlier can cut media off before
# it has told the agent (which then keeps a live, billed conversation). This bound only detects a
# media service that never answers.
MEDIA_END_TIMEOUT_S = 10.0
# How long a closed Twilio socket waits for an in-flight REST transfer to answer before it counts as the
# caller hanging up (Twilio closes the stream as soon as the transfer lands).
TRANSFER_ANSWER_TIMEOUT_S = 15.0
# After a media replica died, a hang-up or transfer from the new one waits this long at most for the
# dead one's audio still in Twilio's buffer to be heard (its marks to come back; media_link.py).
OLD_AUDIO_HEARD_TIMEOUT_S = 5.0


_PROCESSING_IN = PROCESSING.labels("inbound")
_PROCESSING_OUT = PROCESSING.labels("outbound")
_FRAMES_IN = FRAMES.labels("in")
_FRAMES_OUT = FRAMES.labels("out")


class StreamRejected(Exception):
    def __init__(self, kind: str, reason: str, close_code: int = CLOSE_POLICY) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.close_code = close_code


@dataclass
class StreamGate:
    """Counts streams that have not authenticated yet, to bound what an attacker can hold open."""

    limit: int
    pending: int = 0

    def try_enter(self) -> bool:
        if self.pending >= self.limit:
            return False
        self.pending += 1
        return True

    def leave(self) -> None:
        self.pending -= 1


class MediaStreamSession:
    """One accepted Twilio WebSocket, from `connected` to close."""

    def __init__(
        self,
        ws: WebSocket,
        settings: EdgeSettings,
        media: Opener,
        actions: TwilioActions,
        verify_start: Callable[[ms.Start], str | None],
    ) -> None:
        self._ws = ws
        self._settings = settings
        self._media = media
        self._actions = actions
        self._verify_start = verify_start
        self._stream_sid = ""
        self._call_sid = ""
        self._link: MediaLink | None = None
        self._close_code = CLOSE_NORMAL
        self._close_reason = ""
        self._send_lock = asyncio.Lock()
        # How the call ends, decided by whichever side ends it first (Twilio's side, or media's).
        self._decided: asyncio.Future[common_pb2.CallEnd] = asyncio.get_running_loop().create_future()
        self._transferring: asyncio.Future[None] | None = None  # a REST transfer awaiting its answer
        self._closing: asyncio.Task | None = None  # the drain closing a stream that never started

    def say_goodbye(self) -> None:
        """The edge's drain deadline: media plays its goodbye and hangs up (media.proto, stop); a
        stream that has not started yet is closed."""
        if self._link is not None:
            self._link.write_control(
                media_pb2.CallRequest(
                    stop=common_pb2.CallEnd(
                        reason=common_pb2.END_REASON_SHUTDOWN, detail="edge drain deadline"
                    )
                )
            )
        else:
            self._closing = asyncio.get_running_loop().create_task(
                self._close(CLOSE_NORMAL, "edge shutting down"), name="ws-close"
            )

    async def run(self, gate: StreamGate) -> None:
        if not gate.try_enter():
            STREAMS_REJECTED.labels("too_many_pending").inc()
            log.warning("refusing media stream: %d streams awaiting start", gate.pending)
            await self._ws.close(code=CLOSE_POLICY, reason="too many pending streams")
            return
        try:
            start = await asyncio.wait_for(self._await_start(), self._settings.start_timeout_s)
        except TimeoutError:
            await self._reject(StreamRejected("start_timeout", "no start message in time"))
            return
        except StreamRejected as rejected:
            await self._reject(rejected)
            return
        except WebSocketDisconnect:
            STREAMS_REJECTED.labels("closed_before_start").inc()
            return
        finally:
            gate.leave()
        with call_context(start.call_sid):
            await self._bridge(start)

    async def _reject(self, rejected: StreamRejected) -> None:
        STREAMS_REJECTED.labels(rejected.kind).inc()
        log.warning("media stream rejected before start (%s): %s", rejected.kind, rejected.reason)
        await self._close(rejected.close_code, rejected.reason)

    async def _receive(self) -> ms.Inbound | None:
        """The next decoded Twilio message; None when Twilio closed the socket."""
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            if message.get("code") == CLOSE_TOO_BIG:  # the server's frame-size limit tripped first
                raise StreamRejected("too_big", "message exceeds EDGE_MAX_MESSAGE_BYTES", CLOSE_TOO_BIG)
            return None
        text = message.get("text")
        if text is None:
            raise StreamRejected(
                "binary_frame", "binary frame received (Twilio sends only text)", CLOSE_PROTOCOL
            )
        if len(text) > self._settings.max_message_bytes:
            raise StreamRejected("too_big", f"message of {len(text)} bytes exceeds the limit", CLOSE_TOO_BIG)
        try:
            return ms.decode(text)
        except ms.MediaStreamsProtocolError as exc:
            raise StreamRejected("malformed", str(exc), CLOSE_PROTOCOL) from None

    async def _await_start(self) -> ms.Start:
        while True:
            message = await self._receive()
            if message is None:
                raise WebSocketDisconnect(CLOSE_NORMAL)
            if isinstance(message, ms.Connected):
                continue
            if isinstance(message, ms.Start):
                problem = self._verify_start(message)
                if problem is not None:
                    raise StreamRejected(
                        "bad_token", f"stream token {problem} for call {message.call_sid[:40]}"
                    )
                return message
            raise StreamRejected(
                "before_start", f"{type(message).__name__.lower()} before start", CLOSE_PROTOCOL
            )

    async def _bridge(self, start: ms.Start) -> None:
        self._stream_sid, self._call_sid = start.stream_sid, start.call_sid
        info = call_params.call_info(
            call_sid=start.call_sid,
            stream_sid=start.stream_sid,
            account_sid=start.account_sid,
            custom_parameters=start.custom_parameters,
        )
        reopen = start.custom_parameters.get(call_params.REOPEN, "")
        shown, again = mask_number(info.from_number), reopen and ", re-opened"
        log.info("media stream started (stream %s, from %s%s)", start.stream_sid, shown, again)
        CALLS_ACTIVE.inc()
        metrics = ClientStreamMetrics.for_method("/voicebridge.v1.MediaService/Call")
        metrics.started.inc()
        began = time.monotonic()
        secret = call_secret(self._settings.stream_token_secret, start.call_sid)
        # A stream the edge re-opened after the call's edge died: media reclaims the held conversation.
        reattach = media_pb2.CallReattach() if reopen else None
        self._link = link = MediaLink(
            self._media,
            media_pb2.CallStart(call=info, call_secret=secret, reattach=reattach),
            max(1, self._settings.media_queue_ms // 20),
            self._settings.media_reattach_max,
            metrics.sent.inc,
            FRAMES_DROPPED.labels("media_backpressure").inc,
        )
        media_task = asyncio.create_task(self._read_media(link), name="media-reader")
        media_task.add_done_callback(self._media_task_done)
        end = common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP, detail="stream closed")
        try:
            end = await self._race()
            if end.reason != common_pb2.END_REASON_CALLER_HANGUP:  # ended here: no re-open (stream_action)
                self._actions.ended.add(start.call_sid)
        finally:
            await link.close(media_pb2.CallRequest(stop=end))
            await self._await_media_end(media_task)
            call = link.call
            if not call.done():
                call.cancel()
            try:
                code = await asyncio.wait_for(call.code(), 1.0)
            except (TimeoutError, asyncio.CancelledError, grpc.RpcError):
                code = grpc.StatusCode.UNKNOWN
            metrics.handled(code, time.monotonic() - began)
            await self._close(self._close_code, self._close_reason or end.detail)
            CALLS_ACTIVE.dec()
            CALL_ENDS.labels(common_pb2.EndReason.Name(end.reason).removeprefix("END_REASON_").lower()).inc()
            log.info(
                "media stream ended: %s %s",
                common_pb2.EndReason.Name(end.reason),
                end_detail(end.reason, end.detail, self._settings.log_transcripts),
            )

    async def _await_media_end(self, media_task: asyncio.Task) -> None:
        """Read media's stream to its end (media has closed the agent's session by then), then stop.

        Media's own end message comes after it has ended the agent's session; an RPC cancelled before
        that can leave the session open in the agent (see MEDIA_END_TIMEOUT_S)."""
        with contextlib.suppress(asyncio.CancelledError):  # cleanup goes on if we are cancelled
            done, _ = await asyncio.wait({media_task}, timeout=MEDIA_END_TIMEOUT_S)
            if not done:
                log.warning("media did not end the call within %.0fs; dropping it", MEDIA_END_TIMEOUT_S)
        media_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await media_task

    def _media_task_done(self, media_task: asyncio.Task) -> None:
        """Media's stream ended (or failed) before it decided anything: that decides the call's end."""
        if self._decided.done() or media_task.cancelled():
            return
        if (exc := media_task.exception()) is not None:
            log.error("media stream failed: %s", exc)
            self._close_code, self._close_reason = CLOSE_INTERNAL, "media service unavailable"
            self._decide(common_pb2.CallEnd(reason=common_pb2.END_REASON_UNAVAILABLE, detail=str(exc)))
        else:
            self._decide(media_task.result())

    def _decide(self, end: common_pb2.CallEnd) -> None:
        if not self._decided.done():
            self._decided.set_result(end)

    async def _race(self) -> common_pb2.CallEnd:
        """Run the Twilio reader against media's decision; whichever ends the call first decides why."""
        reader = asyncio.create_task(self._read_twilio(), name="twilio-reader")
        try:
            done, _ = await asyncio.wait({reader, self._decided}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
        if reader in done and reader.exception() is not None and not self._decided.done():
            raise reader.exception()  # a bug, not bad input: let the caller's finally clean up
        if reader in done and reader.exception() is None:
            if self._transferring is not None:  # did the socket close because the transfer landed?
                await asyncio.wait({self._transferring}, timeout=TRANSFER_ANSWER_TIMEOUT_S)
            self._decide(reader.result())  # unless media decided first (Twilio closes on a REST hang-up)
        return self._decided.result()

    async def _read_twilio(self) -> common_pb2.CallEnd:
        """Forward Twilio's messages to media until the Twilio side ends; returns why it ended."""
        while True:
            try:
                message = await self._receive()
            except StreamRejected as bad:
                PROTOCOL_ERRORS.labels(bad.kind).inc()
                log.warning("ending call: %s", bad.reason)
                self._close_code, self._close_reason = bad.close_code, bad.reason
                return common_pb2.CallEnd(reason=common_pb2.END_REASON_PROTOCOL_ERROR, detail=bad.reason)
            except WebSocketDisconnect:
                message = None
            if message is None:
                return common_pb2.CallEnd(
                    reason=common_pb2.END_REASON_CALLER_HANGUP, detail="websocket closed"
                )
            end = self._forward(message)
            if end is not None:
                return end

    def _forward(self, message: ms.Inbound) -> common_pb2.CallEnd | None:
        assert self._link is not None
        sid = getattr(message, "stream_sid", self._stream_sid)
        if sid != self._stream_sid:
            PROTOCOL_ERRORS.labels("wrong_stream_sid").inc()
            self._close_code, self._close_reason = CLOSE_PROTOCOL, f"message for another stream {sid!r}"
            return common_pb2.CallEnd(reason=common_pb2.END_REASON_PROTOCOL_ERROR, detail=self._close_reason)
        if isinstance(message, ms.Media):
            _FRAMES_IN.inc()
            begin = time.perf_counter()
            # A CallRequest{audio} as a plain object: on a batch stream it becomes columns, no protobuf.
            self._link.write_audio(CallerAudioFrame(message.payload, message.timestamp_ms, time.time_ns()))
            _PROCESSING_IN.observe(time.perf_counter() - begin)
        elif isinstance(message, ms.Mark):
            self._link.mark_echoed(message.name)
        elif isinstance(message, ms.Dtmf):
            if self._settings.log_transcripts:  # the digits of a PIN or a card number are personal data
                log.info("caller pressed %s", message.digit)
            else:
                log.info("caller pressed a key")
            self._link.write_control(media_pb2.CallRequest(dtmf=common_pb2.DtmfDigit(digit=message.digit)))
        elif isinstance(message, ms.Stop):
            return common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP, detail="twilio sent stop")
        else:  # a second start or connected mid-call
            PROTOCOL_ERRORS.labels("out_of_order").inc()
            self._close_code, self._close_reason = (
                CLOSE_PROTOCOL,
                f"unexpected {type(message).__name__} mid-call",
            )
            return common_pb2.CallEnd(reason=common_pb2.END_REASON_PROTOCOL_ERROR, detail=self._close_reason)
        return None

    async def _read_media(self, link: MediaLink) -> common_pb2.CallEnd:
        """Carry out what media sends until its stream ends; returns media's end.

        A hang-up or transfer decides how the call ends at once (the first one only), but the stream
        is still read to its end: media closes the agent's session before it sends its own end. A
        media replica that dies mid-call is replaced underneath (`link.read`)."""
        metrics = ClientStreamMetrics.for_method("/voicebridge.v1.MediaService/Call")
        while True:
            try:
                response = await link.read()
            except grpc.aio.AioRpcError as exc:
                raise RuntimeError(f"media stream failed: {exc.code().name} {exc.details()}") from None
            if response is grpc.aio.EOF:
                return common_pb2.CallEnd(
                    reason=common_pb2.END_REASON_UNAVAILABLE, detail="media ended the stream"
                )
            metrics.received.inc()
            kind = response.WhichOneof("event")
            if kind == "audio":
                begin = time.perf_counter()
                await self._send(ms.encode_media(self._stream_sid, response.audio.payload))
                if response.audio.mark:
                    await self._send(ms.encode_mark(self._stream_sid, response.audio.mark))
                link.forwarded(response.audio)
                _FRAMES_OUT.inc()
                _PROCESSING_OUT.observe(time.perf_counter() - begin)
                if response.audio.source_unix_nanos:
                    OUTBOUND_ADDED_LATENCY.observe(
                        max(0.0, (time.time_ns() - response.audio.source_unix_nanos) / 1e9)
                    )
            elif kind == "clear":
                await self._send(ms.encode_clear(self._stream_sid))
            elif kind == "transcript":
                t = response.transcript
                who = "caller" if t.role == common_pb2.Transcript.ROLE_CALLER else "agent"
                if t.final and self._settings.log_transcripts:  # what people say is personal data
                    log.info("%s%s: %s", who, " (corrected)" if t.correction else "", t.text)
            elif kind == "hangup" and not self._decided.done():
                shown = end_detail(
                    common_pb2.END_REASON_AGENT_ENDED, response.hangup.reason, self._settings.log_transcripts
                )
                log.info("hanging up: %s", shown)
                await link.old_marks_heard(OLD_AUDIO_HEARD_TIMEOUT_S)
                self._close_reason = "agent hung up"
                self._decide(
                    common_pb2.CallEnd(
                        reason=response.hangup.end_reason or common_pb2.END_REASON_AGENT_ENDED,
                        detail=response.hangup.reason,
                    )
                )
                await self._actions.hang_up(self._call_sid)
            elif kind == "transfer" and not self._decided.done():
                log.info("transferring to %s", mask_number(response.transfer.destination))
                # Twilio closes the socket as soon as a REST transfer lands: until the REST answer is
                # in, a closed socket does not decide the call's end (see _race).
                self._transferring = asyncio.get_running_loop().create_future()
                try:
                    await link.old_marks_heard(OLD_AUDIO_HEARD_TIMEOUT_S)
                    result = await self._actions.transfer(self._call_sid, response.transfer.destination)
                    link.write_control(media_pb2.CallRequest(transfer_result=result))
                    if result.transferred:
                        self._decide(
                            common_pb2.CallEnd(
                                reason=common_pb2.END_REASON_TRANSFERRED, detail=response.transfer.reason
                            )
                        )
                finally:
                    self._transferring.set_result(None)
            elif kind == "error":
                log.warning("media reported %s", response.error.message)
            elif kind == "end":
                return response.end

    async def _send(self, text: str) -> None:
        """Send to Twilio, or drop the message once the socket is gone: the call is ending then, and
        media's stream must still be read to its end (Twilio closes the socket as soon as a REST
        hang-up lands, while media may still be sending)."""
        async with self._send_lock:
            if self._ws.application_state != WebSocketState.CONNECTED:
                return
            with contextlib.suppress(WebSocketDisconnect):  # Starlette's word for "the peer left"
                await self._ws.send_text(text)

    async def _close(self, code: int, reason: str) -> None:
        if self._ws.application_state == WebSocketState.DISCONNECTED:
            return
        with contextlib.suppress(Exception):
            async with self._send_lock:
                await self._ws.close(code=code, reason=reason[:120])
