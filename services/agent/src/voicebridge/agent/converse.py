"""The AgentService.Converse servicer: one backend session per stream, the contract's rules enforced.

The data flow of one call, on the agent side:

    media --ConverseRequest--> _pump_requests --> session.handle()      (caller audio, VAD, DTMF)
    media <--ConverseResponse-- Outbox <-- session.run()                 (agent audio, control)

The servicer owns both tasks and the session: whatever way the call ends (the backend ends it, media
ends it, media disappears, the process shuts down) the tasks are cancelled and the session closed.
When the backend refuses a call it is busy, broken or too slow, the caller still hears a short
spoken "busy" message instead of dead air.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator

import grpc

from voicebridge.runtime.clock import Clock
from voicebridge.runtime.drain import Drain
from voicebridge.runtime.logs import call_context
from voicebridge.runtime.mux import agent_servers
from voicebridge.runtime.privacy import end_detail
from voicebridge.runtime.tasks import cancel_and_wait
from voicebridge.v1 import agent_pb2, agent_pb2_grpc, common_pb2

from .backends.base import AgentBackend, AgentSession, Outbox, SessionEndInfo, SessionRefused
from .conversation import Conversation, secret_matches
from .formats import format_name, offered
from .holds import Holds, HoldSettings
from .metrics import (
    ATTACHES,
    FRAMES,
    INBOUND_ADDED_LATENCY,
    SESSION_ENDS,
    SESSION_OPEN_SECONDS,
    SESSIONS_ACTIVE,
)
from .prompts import load_prompt
from .replay_log import Point, ReplayLog, Resend, us_to_bytes

log = logging.getLogger(__name__)
_FRAMES_IN = FRAMES.labels("in")
_FRAMES_OUT = FRAMES.labels("out")

ULAW_8000 = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)
FIRST_MESSAGE_TIMEOUT_S = 5.0
# The goodbye at the drain deadline is a response of its own, numbered above any the backend uses.
GOODBYE_RESPONSE_ID = 2**31 - 1
# Refusals the caller should hear as "busy, call again" rather than silence.
_SPOKEN_REFUSALS = {
    common_pb2.END_REASON_AGENT_BUSY,
    common_pb2.END_REASON_AGENT_TIMEOUT,
    common_pb2.END_REASON_UNAVAILABLE,
    common_pb2.END_REASON_AGENT_ERROR,
}


# What `_pump_requests` tells the stream it serves (never sent): media detached; the stream broke;
# another stream took the conversation over.
_DETACHED = agent_pb2.ConverseResponse()
_BROKEN = agent_pb2.ConverseResponse()
_TAKEN = agent_pb2.ConverseResponse()
_CANCELLED = common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP, detail="stream cancelled")


def _end(reason: int, detail: str) -> agent_pb2.ConverseResponse:
    return agent_pb2.ConverseResponse(end=common_pb2.CallEnd(reason=reason, detail=detail))


def _error(code: int, message: str, fatal: bool = True) -> agent_pb2.ConverseResponse:
    return agent_pb2.ConverseResponse(error=common_pb2.Error(code=code, message=message, fatal=fatal))


def _reason_name(reason: int) -> str:
    return common_pb2.EndReason.Name(reason).removeprefix("END_REASON_").lower()


def _prompt_audio(
    name: str, fmt: common_pb2.AudioFormat, response_id: int
) -> list[agent_pb2.ConverseResponse]:
    """A bundled prompt as 200 ms audio messages in `fmt`."""
    prompt = load_prompt(name, fmt.encoding, fmt.sample_rate_hz)
    step = fmt.sample_rate_hz // 5 * (1 if fmt.encoding == common_pb2.AUDIO_ENCODING_MULAW else 2)
    return [
        agent_pb2.ConverseResponse(
            audio=agent_pb2.AudioChunk(data=prompt[i : i + step], format=fmt, response_id=response_id)
        )
        for i in range(0, len(prompt), step)
    ]


class _LiveCall:
    """A call in progress, as the drain sees it: its conversation, and the stream attached now."""

    def __init__(self) -> None:
        self.conversation: Conversation | None = None
        self.goodbye: asyncio.Task | None = None  # cancelled when the conversation closes
        self.done = False
        self.active = True  # counted in agent_sessions_active: a stream serves it (not held)

    def say_goodbye(self) -> None:
        """The drain deadline: the backend stops talking, the caller hears goodbye, the call ends."""
        conversation = self.conversation
        if conversation is None:
            return
        if conversation.backend is not None:
            conversation.backend.cancel()
        conversation.outbox.drop_audio()  # what the backend had queued: cut off, the goodbye comes now
        stream = conversation.stream
        if stream is not None:
            stream.drop_audio()
            if stream.last_response_sent is not None:  # and what media still plays of it is cleared
                stream.put_control(
                    agent_pb2.ConverseResponse(
                        interruption=agent_pb2.Interruption(response_id=stream.last_response_sent)
                    )
                )
        self.goodbye = asyncio.get_running_loop().create_task(self._goodbye(), name="agent-goodbye")

    async def _goodbye(self) -> None:
        assert self.conversation is not None
        outbox = self.conversation.outbox
        for message in _prompt_audio("goodbye", self.conversation.ready.output_format, GOODBYE_RESPONSE_ID):
            await outbox.put_audio(message)
        outbox.put_control(_end(common_pb2.END_REASON_SHUTDOWN, "agent service drain deadline"))


class ConverseServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        backend: AgentBackend,
        open_timeout_s: float = 10.0,
        hold: HoldSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._backend = backend
        self._batch, self._many = agent_servers(self.Converse)
        self._open_timeout_s = open_timeout_s
        self._drain = Drain("agent")
        self.holds = Holds(hold or HoldSettings(), clock)

    @property
    def sessions_in_progress(self) -> int:
        return len(self._drain)

    async def drain(self, deadline_s: float = 0.0) -> None:
        """Process shutdown (runtime/drain.py): new calls are refused, held ones end now (nobody is
        listening); calls in progress go on for up to `deadline_s`, then the backend is stopped and
        the caller hears the goodbye prompt."""
        self._drain.draining = True
        await self.holds.close_all()
        await self._drain.run(deadline_s, _LiveCall.say_goodbye)

    async def ConverseBatch(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[agent_pb2.ConverseBatchRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_pb2.ConverseBatchResponse]:
        """Many calls on one stream, audio as columns (runtime/mux/): each served by `Converse`."""
        async for batch in self._batch.serve(request_iterator, context):
            yield batch

    async def ConverseMany(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[agent_pb2.ConverseManyRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_pb2.ConverseManyResponse]:
        """Many calls on one stream (runtime/mux/): each served by `Converse`, as if on its own stream."""
        async for batch in self._many.serve(request_iterator, context):
            yield batch

    async def Converse(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[agent_pb2.ConverseRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.ConverseResponse]:
        requests = aiter(request_iterator)
        try:
            first = await asyncio.wait_for(anext(requests), FIRST_MESSAGE_TIMEOUT_S)
        except (StopAsyncIteration, TimeoutError):
            yield _error(common_pb2.ERROR_CODE_INVALID_ARGUMENT, "no SessionStart received")
            yield _end(common_pb2.END_REASON_PROTOCOL_ERROR, "no SessionStart received")
            return
        if first.WhichOneof("event") != "start":
            detail = f"the first message must be start, got {first.WhichOneof('event')}"
            yield _error(common_pb2.ERROR_CODE_INVALID_ARGUMENT, detail)
            yield _end(common_pb2.END_REASON_PROTOCOL_ERROR, detail)
            return
        if self._drain.draining:  # media places the call on another replica (runtime/replicas.py)
            yield _end(common_pb2.END_REASON_SHUTDOWN, "draining: this agent replica takes no new calls")
            return
        with call_context(first.start.call.call_sid):
            if first.start.HasField("attach"):
                async for message in self._attach(first.start, requests):
                    yield message
                return
            async for message in self._converse(first.start, requests):
                yield message

    async def _converse(
        self,
        start: agent_pb2.SessionStart,
        requests: AsyncIterator[agent_pb2.ConverseRequest],
    ) -> AsyncIterator[agent_pb2.ConverseResponse]:
        live = _LiveCall()
        self._drain.add(live)
        SESSIONS_ACTIVE.inc()
        conversation: Conversation | None = None
        refused = common_pb2.END_REASON_CALLER_HANGUP  # the books' reason if it never opens
        try:
            begin = time.monotonic()
            try:
                session = await asyncio.wait_for(self._backend.open(start), self._open_timeout_s)
            except TimeoutError:
                refusal = SessionRefused(
                    common_pb2.END_REASON_AGENT_TIMEOUT,
                    f"{self._backend.name} backend not ready within {self._open_timeout_s:.0f}s",
                    common_pb2.ERROR_CODE_DEADLINE_EXCEEDED,
                )
                refused = refusal.reason
                async for message in self._refuse(start, refusal):
                    yield message
                return
            except SessionRefused as refusal:
                refused = refusal.reason
                async for message in self._refuse(start, refusal):
                    yield message
                return
            SESSION_OPEN_SECONDS.observe(time.monotonic() - begin)
            log.info("session ready: conversation %s", session.ready.conversation_id or "-")
            holdable = bool(start.call_secret) and self.holds.enabled
            replay_log = (
                ReplayLog(session.ready.output_format, self.holds.settings.buffer_s) if holdable else None
            )
            conversation = Conversation(start.call.call_sid, start.call_secret, session, Outbox(), replay_log)
            live.conversation = conversation
            conversation.live = live
            conversation.on_closed = lambda reason: self._ended(live, reason)
            if holdable:
                await self.holds.register(conversation)
            yield agent_pb2.ConverseResponse(ready=session.ready)
            conversation.backend = asyncio.create_task(
                self._run(session, conversation.outbox), name="agent-run"
            )
            stream = Outbox()
            await conversation.switch_to(stream)
            async for message in self._stream(conversation, stream, requests, []):
                yield message
        finally:
            if conversation is None:
                self._ended(live, refused)  # refused, or cancelled while opening
            elif (
                not conversation.closed
                and conversation.stream is None
                and not self.holds.is_held(conversation)
            ):
                await conversation.close(_CANCELLED)  # cancelled before its stream was served

    @staticmethod
    def _set_active(live: _LiveCall, active: bool) -> None:
        """agent_sessions_active counts conversations a stream serves; held ones are counted apart
        (agent_conversations_held), so the gauge still means calls in progress."""
        if live.active != active:
            live.active = active
            if active:
                SESSIONS_ACTIVE.inc()
            else:
                SESSIONS_ACTIVE.dec()

    def _ended(self, live: _LiveCall, reason: int) -> None:
        """The books when a conversation (or a refused start) is over; once per `live`."""
        if live.done:
            return
        live.done = True
        SESSION_ENDS.labels(_reason_name(reason or common_pb2.END_REASON_CALLER_HANGUP)).inc()
        self._set_active(live, False)
        self._drain.discard(live)
        if live.goodbye is not None:
            live.goodbye.cancel()
        if live.conversation is not None:
            self.holds.forget(live.conversation)

    async def _refuse(
        self, start: agent_pb2.SessionStart, refusal: SessionRefused
    ) -> AsyncIterator[agent_pb2.ConverseResponse]:
        """Tell media why, and when it makes sense let the caller hear a short busy message first."""
        log.warning("%s backend refused the call: %s", self._backend.name, refusal.detail)
        yield _error(refusal.code, refusal.detail)
        if refusal.reason in _SPOKEN_REFUSALS and offered(ULAW_8000, list(start.output_formats)):
            yield agent_pb2.ConverseResponse(
                ready=agent_pb2.SessionReady(input_format=ULAW_8000, output_format=ULAW_8000)
            )
            for message in _prompt_audio("busy", ULAW_8000, response_id=1):
                yield message
        yield _end(refusal.reason, refusal.detail)

    async def _run(self, session: AgentSession, outbox: Outbox) -> None:
        try:
            info = await session.run(outbox)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s session failed", self._backend.name)
            info = SessionEndInfo(common_pb2.END_REASON_AGENT_ERROR, f"{type(exc).__name__}: {exc}")
        log.info(
            "backend ended the conversation: %s %s",
            _reason_name(info.reason),
            end_detail(info.reason, info.detail),
        )
        outbox.put_control(_end(info.reason, info.detail))

    async def _attach(
        self,
        start: agent_pb2.SessionStart,
        requests: AsyncIterator[agent_pb2.ConverseRequest],
    ) -> AsyncIterator[agent_pb2.ConverseResponse]:
        """Take over the conversation held (or still streamed) for this call, if the secret matches."""
        conversation = self.holds.find(start.call.call_sid)
        if conversation is None or conversation.closed or conversation.log is None:
            ATTACHES.labels("not_found").inc()
            log.info("attach refused: no conversation held for this call here")
            yield _error(common_pb2.ERROR_CODE_NOT_FOUND, "no conversation is held for this call here")
            yield _end(common_pb2.END_REASON_UNAVAILABLE, "no conversation held for this call")
            return
        if not secret_matches(conversation.secret_hash, start.call_secret):
            ATTACHES.labels("denied").inc()
            log.warning("attach refused: the call secret does not match (the conversation stays held)")
            yield _error(common_pb2.ERROR_CODE_PERMISSION_DENIED, "the call secret does not match")
            yield _end(common_pb2.END_REASON_UNAUTHENTICATED, "call secret does not match")
            return
        ready = conversation.ready
        if not (
            offered(ready.input_format, list(start.input_formats))
            and offered(ready.output_format, list(start.output_formats))
        ):
            detail = (
                f"the conversation speaks {format_name(ready.input_format)} in and "
                f"{format_name(ready.output_format)} out, which this stream did not offer"
            )
            yield _error(common_pb2.ERROR_CODE_FAILED_PRECONDITION, detail)
            yield _end(common_pb2.END_REASON_UNSUPPORTED_FORMAT, detail)
            return
        assert conversation.log is not None
        was_held = self.holds.is_held(conversation)
        self.holds.take(conversation)
        if isinstance(conversation.live, _LiveCall) and not conversation.live.done:
            self._set_active(conversation.live, True)
        ATTACHES.labels("attached").inc()
        if start.attach.HasField("resume_from"):
            point: Point | None = Point(
                start.attach.resume_from.response_id,
                us_to_bytes(start.attach.resume_from.offset_us, ready.output_format),
            )
        else:
            point = conversation.resume_point()
        old_stream, old_pump = conversation.stream, conversation.pump
        stream = Outbox()
        replay = await conversation.switch_to(stream, point)  # the old stream is out from here on
        conversation.heard = None
        if not was_held:
            log.info("attach: taking the conversation over from a stream still open")
            if old_pump is not None:
                await cancel_and_wait([old_pump])
            if old_stream is not None:
                old_stream.put_control(_TAKEN)
        log.info("conversation re-attached; %d messages resent", len(replay))
        attached = agent_pb2.SessionReady()
        attached.CopyFrom(ready)
        attached.attached = True
        yield agent_pb2.ConverseResponse(ready=attached)
        async for message in self._stream(conversation, stream, requests, replay):
            yield message

    async def _stream(
        self,
        conversation: Conversation,
        stream: Outbox,
        requests: AsyncIterator[agent_pb2.ConverseRequest],
        replay: list[Resend],
    ) -> AsyncIterator[agent_pb2.ConverseResponse]:
        """Serve `conversation` on this stream until it ends, or the stream detaches, breaks or is taken
        over; then close the conversation or hold it."""
        pump = conversation.pump = asyncio.create_task(
            self._pump_requests(requests, conversation, stream), name="agent-pump"
        )
        left = "broken"  # cancelled, or the generator closed: the stream broke
        end = common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP, detail="media stream lost")
        resend = collections.deque(replay)  # what the held conversation owes this stream, first
        try:
            while True:
                if resend:
                    message, original = resend.popleft()  # original: the untrimmed chunk it came from
                else:
                    message = original = await stream.get()
                    if message is _DETACHED or message is _BROKEN or message is _TAKEN:
                        left = "detached" if message is _DETACHED else "broken"
                        break
                kind = message.WhichOneof("event")
                if kind == "audio":
                    _FRAMES_OUT.inc()
                yield message
                if kind == "audio":
                    conversation.last_sent = original
                elif kind == "end":
                    left, end = "ended", message.end
                    break
        finally:
            if conversation.stream is not stream:
                pass  # taken over by another stream: the conversation is its now
            elif left != "ended" and conversation.holdable and self.holds.enabled:
                await cancel_and_wait([pump])
                if conversation.stream is stream:  # not taken over while the pump stopped
                    log.info("media stream %s: holding the conversation", left)
                    await self.holds.hold(conversation)
                    if isinstance(conversation.live, _LiveCall):
                        self._set_active(conversation.live, False)
            else:
                await conversation.close(end)

    async def _pump_requests(
        self,
        requests: AsyncIterator[agent_pb2.ConverseRequest],
        conversation: Conversation,
        stream: Outbox,
    ) -> None:
        """Feed media's messages to the session; when media is done, end the conversation; when media
        detaches or its stream breaks, tell `_stream` (which holds the conversation if it can)."""
        session = conversation.session
        detail = "media closed the stream"
        reason = common_pb2.END_REASON_CALLER_HANGUP
        try:
            async for request in requests:
                kind = request.WhichOneof("event")
                if kind == "end":
                    reason, detail = request.end.reason, request.end.detail or "call ended"
                    break
                if kind == "detach":
                    heard = request.detach.heard if request.detach.HasField("heard") else None
                    fmt = conversation.ready.output_format
                    conversation.heard = (
                        Point(heard.response_id, us_to_bytes(heard.offset_us, fmt)) if heard else None
                    )
                    stream.put_control(_DETACHED)
                    return
                if kind == "start":
                    stream.put_control(
                        _error(common_pb2.ERROR_CODE_INVALID_ARGUMENT, "duplicate start", fatal=False)
                    )
                    continue
                if kind == "audio":
                    _FRAMES_IN.inc()
                    if request.audio.received_unix_nanos:
                        INBOUND_ADDED_LATENCY.observe(
                            max(0.0, (time.time_ns() - request.audio.received_unix_nanos) / 1e9)
                        )
                elif kind == "interrupted":
                    conversation.cut(request.interrupted.response_id)
                try:
                    await session.handle(request)
                except Exception as exc:
                    log.exception("%s session failed to handle a message", self._backend.name)
                    reason, detail = common_pb2.END_REASON_AGENT_ERROR, f"{type(exc).__name__}: {exc}"
                    break
            else:
                # No CallEnd: on gRPC a stream that breaks (media cancelled it or died, the shared
                # ConverseMany stream under it was lost) reads here exactly like a half-close, so a
                # conversation that can be held is held; media ends a call with CallEnd.
                if conversation.holdable:
                    stream.put_control(_BROKEN)
                    return
        except (grpc.aio.AioRpcError, grpc.aio.AbortError, ConnectionError):  # media vanished
            stream.put_control(_BROKEN)
            return
        await session.aclose(common_pb2.CallEnd(reason=reason, detail=detail))
        stream.put_control(_end(reason, detail))
