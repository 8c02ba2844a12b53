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
import logging
import time
from collections.abc import AsyncIterator

import grpc

from voicebridge.runtime.drain import Drain
from voicebridge.runtime.logs import call_context
from voicebridge.runtime.mux import agent_servers
from voicebridge.runtime.privacy import end_detail
from voicebridge.runtime.tasks import cancel_and_wait
from voicebridge.v1 import agent_pb2, agent_pb2_grpc, common_pb2

from .backends.base import AgentBackend, AgentSession, Outbox, SessionEndInfo, SessionRefused
from .formats import offered
from .metrics import FRAMES, INBOUND_ADDED_LATENCY, SESSION_ENDS, SESSION_OPEN_SECONDS, SESSIONS_ACTIVE
from .prompts import load_prompt

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
    """A call in progress, as the drain sees it: its outbox, and the backend task it may stop."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.output_format: common_pb2.AudioFormat | None = None
        self.backend: asyncio.Task | None = None
        self.goodbye: asyncio.Task | None = None  # cancelled with the call's other tasks

    def say_goodbye(self) -> None:
        """The drain deadline: the backend stops talking, the caller hears goodbye, the call ends."""
        if self.backend is not None:
            self.backend.cancel()
        self.outbox.drop_audio()  # what the backend had queued: it is cut off, the goodbye comes now
        if self.outbox.last_response_sent is not None:  # and what media still plays of it is cleared
            self.outbox.put_control(
                agent_pb2.ConverseResponse(
                    interruption=agent_pb2.Interruption(response_id=self.outbox.last_response_sent)
                )
            )
        self.goodbye = asyncio.get_running_loop().create_task(self._goodbye(), name="agent-goodbye")

    async def _goodbye(self) -> None:
        if self.output_format is not None:
            for message in _prompt_audio("goodbye", self.output_format, GOODBYE_RESPONSE_ID):
                await self.outbox.put_audio(message)
        self.outbox.put_control(_end(common_pb2.END_REASON_SHUTDOWN, "agent service drain deadline"))


class ConverseServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, backend: AgentBackend, open_timeout_s: float = 10.0) -> None:
        self._backend = backend
        self._batch, self._many = agent_servers(self.Converse)
        self._open_timeout_s = open_timeout_s
        self._drain = Drain("agent")

    @property
    def sessions_in_progress(self) -> int:
        return len(self._drain)

    async def drain(self, deadline_s: float = 0.0) -> None:
        """Process shutdown (runtime/drain.py): new calls are refused; calls in progress go on for up
        to `deadline_s`, then the backend is stopped and the caller hears the goodbye prompt."""
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
            async for message in self._converse(first.start, requests):
                yield message

    async def _converse(
        self, start: agent_pb2.SessionStart, requests: AsyncIterator[agent_pb2.ConverseRequest]
    ) -> AsyncIterator[agent_pb2.ConverseResponse]:
        outbox = Outbox()
        live = _LiveCall(outbox)
        self._drain.add(live)
        SESSIONS_ACTIVE.inc()
        session: AgentSession | None = None
        tasks: list[asyncio.Task] = []
        end_reason = common_pb2.END_REASON_UNSPECIFIED
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
                end_reason = refusal.reason
                async for message in self._refuse(start, refusal):
                    yield message
                return
            except SessionRefused as refusal:
                end_reason = refusal.reason
                async for message in self._refuse(start, refusal):
                    yield message
                return
            SESSION_OPEN_SECONDS.observe(time.monotonic() - begin)
            log.info("session ready: conversation %s", session.ready.conversation_id or "-")
            yield agent_pb2.ConverseResponse(ready=session.ready)

            live.output_format = session.ready.output_format
            live.backend = asyncio.create_task(self._run(session, outbox), name="agent-run")
            tasks.append(live.backend)
            tasks.append(
                asyncio.create_task(self._pump_requests(requests, session, outbox), name="agent-pump")
            )
            while True:
                message = await outbox.get()
                if message.WhichOneof("event") == "audio":
                    _FRAMES_OUT.inc()
                yield message
                if message.WhichOneof("event") == "end":
                    end_reason = message.end.reason
                    break
        finally:
            await cancel_and_wait([*tasks, *([live.goodbye] if live.goodbye else [])])
            if session is not None:
                try:
                    await session.aclose(
                        common_pb2.CallEnd(reason=end_reason or common_pb2.END_REASON_CALLER_HANGUP)
                    )
                except Exception:
                    log.exception("closing the %s session failed", self._backend.name)
            SESSION_ENDS.labels(_reason_name(end_reason or common_pb2.END_REASON_CALLER_HANGUP)).inc()
            SESSIONS_ACTIVE.dec()
            self._drain.discard(live)

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

    async def _pump_requests(
        self, requests: AsyncIterator[agent_pb2.ConverseRequest], session: AgentSession, outbox: Outbox
    ) -> None:
        """Feed media's messages to the session; when media is done, end the conversation."""
        detail = "media closed the stream"
        reason = common_pb2.END_REASON_CALLER_HANGUP
        try:
            async for request in requests:
                kind = request.WhichOneof("event")
                if kind == "end":
                    reason, detail = request.end.reason, request.end.detail or "call ended"
                    break
                if kind == "start":
                    outbox.put_control(
                        _error(common_pb2.ERROR_CODE_INVALID_ARGUMENT, "duplicate start", fatal=False)
                    )
                    continue
                if kind == "audio":
                    _FRAMES_IN.inc()
                    if request.audio.received_unix_nanos:
                        INBOUND_ADDED_LATENCY.observe(
                            max(0.0, (time.time_ns() - request.audio.received_unix_nanos) / 1e9)
                        )
                await session.handle(request)
        except grpc.aio.AioRpcError as exc:  # pragma: no cover - media vanished
            reason, detail = common_pb2.END_REASON_UNAVAILABLE, f"media stream failed: {exc.code().name}"
        except Exception as exc:
            log.exception("%s session failed to handle a message", self._backend.name)
            reason, detail = common_pb2.END_REASON_AGENT_ERROR, f"{type(exc).__name__}: {exc}"
        await session.aclose(common_pb2.CallEnd(reason=reason, detail=detail))
        outbox.put_control(_end(reason, detail))
