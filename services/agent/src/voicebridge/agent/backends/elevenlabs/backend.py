"""The `elevenlabs` agent backend: one ElevenLabs Agents conversation per phone call.

Why our own WebSocket client, not the SDK's AsyncConversation (docs/elevenlabs.md#why-not-the-sdk): it polls
recv every 0.5 s, runs client tools on a thread of its own unless told otherwise, ignores the
negotiated audio formats, error events and close codes, and ends the session on one malformed frame.
Here: `websockets` directly, compression off, one loop, no thread per call. The SDK serves where it
fits: its async REST client fetches the signed URL of private agents (per call, since it expires in
15 minutes), on the event loop, with the API key only in its `xi-api-key` header. The signed URL and
its conversation signature are masked in logs for the session's life only (a `SecretScope` the session
closes on every path), so the process's redaction set does not grow with every call served.

Failures, chosen and tested end to end (tests/e2e/test_agent_failures.py, docs/agent-backend.md):
* Refused at connect (HTTP 429, or an error event naming a concurrency limit) → SessionRefused(AGENT_BUSY);
  the servicer plays the spoken "busy" prompt, then ends the call.
* Dropped mid-call with an error (1002, 1011, the TCP connection lost...) → a new conversation is opened
  and told the call so far, so the agent carries on instead of greeting again (resume.py,
  docs/elevenlabs.md#resume). When that is off (ELEVENLABS_RESUME=false), would only fail again (1008,
  a safety stop) or fails twice, the caller hears the bundled apology, then the session ends with
  AGENT_ERROR and media hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import httpx
from elevenlabs.client import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from voicebridge.runtime.redaction import SecretScope, redact, register_secret
from voicebridge.v1 import agent_pb2, common_pb2

from ..base import AgentBackend, SessionRefused
from . import protocol as p
from .connection import FastSendConnection
from .metrics import CONNECT_SECONDS
from .resume import ResumingSession, handover_text
from .session import Continuation, ElevenLabsSession
from .settings import ElevenLabsSettings
from .transcript import ConversationLog

log = logging.getLogger(__name__)

RESERVED_PREFIX = "system__"
AGENT_OVERRIDE_PARAM = "agent_id"
MAX_FRAME_BYTES = 16 * 2**20
_DIRECTIONS = {common_pb2.CALL_DIRECTION_INBOUND: "inbound", common_pb2.CALL_DIRECTION_OUTBOUND: "outbound"}


def dynamic_variables(
    call: common_pb2.CallInfo, extra: dict[str, Any] | None = None, history: ConversationLog | None = None
) -> dict[str, p.DynamicValue]:
    """What the agent's prompt can use as {{name}}: configured defaults, then every Twilio <Parameter>,
    then the call's facts (authoritative). The reserved `system__` prefix is never sent (docs/elevenlabs.md).
    Every name is always present, empty when unknown: a variable the agent defines but the init lacks
    closes the conversation with 1008 missing_dynamic_variable. `history`: this conversation continues a
    call (resume.py): `resumed` is true and `conversation_so_far` / `last_heard` carry the call so far.
    """
    variables: dict[str, p.DynamicValue] = dict(extra or {})
    variables.update(call.custom_parameters)
    variables.update(
        {
            "call_sid": call.call_sid,
            "stream_sid": call.stream_sid,
            "account_sid": call.account_sid,
            "caller_number": call.from_number,
            "called_number": call.to_number,
            "call_direction": _DIRECTIONS.get(call.direction, "unknown"),
            "resumed": history is not None,
            "conversation_so_far": history.render() if history else "",
            "last_heard": history.last_heard() if history else "",
        }
    )
    return {k: v for k, v in variables.items() if not k.startswith(RESERVED_PREFIX)}


class ElevenLabsBackend(AgentBackend):
    name = "elevenlabs"

    def __init__(self, settings: ElevenLabsSettings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        register_secret(settings.api_key)
        self._http = http
        self._owns_http = http is None
        self._sdk: AsyncElevenLabs | None = None

    def agent_for(self, call: common_pb2.CallInfo) -> str:
        override = call.custom_parameters.get(AGENT_OVERRIDE_PARAM, "")
        return override if (override and self.settings.allow_agent_override) else self.settings.agent_id

    def init_frame(self, call: common_pb2.CallInfo, history: ConversationLog | None = None) -> str:
        s = self.settings
        override = s.config_override
        if history is not None and s.resume_first_message:
            override = _with_first_message(override, s.resume_first_message)
        return p.encode_init(
            dynamic_variables=dynamic_variables(call, dict(s.extra_dynamic_variables), history),
            conversation_config_override=override,
        )

    async def open(self, start: agent_pb2.SessionStart) -> ResumingSession:
        if start.HasField("resume") and self.settings.resume:
            return await self._open_continued(start)
        session = await self.connect(start)
        await self.handshake(session)
        return ResumingSession(self, session, self.settings)

    async def _open_continued(self, start: agent_pb2.SessionStart) -> ResumingSession:
        """A call whose agent process died: media gives the call so far (SessionStart.resume), and the
        conversation is opened as a continuation of it, as after an error close (resume.py)."""
        history = ConversationLog()
        for turn in start.resume.turns:
            history.heard(
                "caller" if turn.role == common_pb2.Transcript.ROLE_CALLER else "agent",
                turn.text,
                turn.response_id,
            )
        context, unanswered = handover_text(history, self.settings)
        session = await self.continuation(start, history, start.resume.response_floor)
        resuming = ResumingSession(self, session, self.settings)
        await resuming.begin_continued(context, unanswered)
        return resuming

    async def continuation(
        self, start: agent_pb2.SessionStart, history: ConversationLog, reply_floor: int
    ) -> ElevenLabsSession:
        """A new conversation continuing a call (resume.py): told the call so far in its init, numbering
        its replies above `reply_floor`, its greeting dropped unless a first message replaces it."""
        continues = Continuation(reply_floor, drop_greeting=not self.settings.resume_first_message)
        session = await self.connect(start, history, continues)
        await self.handshake(session)
        return session

    async def connect(
        self,
        start: agent_pb2.SessionStart,
        history: ConversationLog | None = None,
        continues: Continuation | None = None,
    ) -> ElevenLabsSession:
        """Connect and start the conversation's reader; the session is ready only after `handshake()`.

        Split from open() so caller audio can reach the session before the metadata arrives (it is
        held, bounded, and released after it).
        """
        started = time.perf_counter()
        agent_id = self.agent_for(start.call)
        secrets = SecretScope()
        try:
            ws = await self._connect_ws(agent_id, started, secrets)
        except SessionRefused as refusal:
            refusal.detail = redact(refusal.detail)  # logged by the servicer once the scope is gone
            secrets.close()
            raise
        except BaseException:
            secrets.close()
            raise
        session = ElevenLabsSession(
            ws,
            start,
            agent_id,
            self.settings.max_buffered_audio_s,
            self.settings.max_pending_audio_s,
            secrets=secrets,
            history=history,
            continues=continues,
        )
        session.connect_started = started
        return session

    async def handshake(self, session: ElevenLabsSession) -> None:
        """Init → metadata → format check, within what is left of the handshake timeout."""
        try:
            async with asyncio.timeout(self._remaining(session.connect_started)):
                history = session.history if session.continues else None
                await session.handshake(self.init_frame(session.start.call, history))
        except TimeoutError:
            await session.aclose()
            raise SessionRefused(
                common_pb2.END_REASON_AGENT_TIMEOUT,
                f"ElevenLabs sent no metadata within {self.settings.handshake_timeout_s:g} s",
                common_pb2.ERROR_CODE_DEADLINE_EXCEEDED,
            ) from None
        except ConnectionError:
            refusal = await session.refused()
            await session.aclose()
            raise refusal from None
        except BaseException:
            await session.aclose()
            raise
        CONNECT_SECONDS.observe(time.perf_counter() - session.connect_started)

    def _remaining(self, started: float) -> float:
        return max(0.0, self.settings.handshake_timeout_s - (time.perf_counter() - started))

    async def _connect_ws(self, agent_id: str, started: float, secrets: SecretScope) -> ClientConnection:
        url = (
            await self._signed_url(agent_id, secrets)
            if self.settings.requires_auth
            else self.settings.conversation_url(agent_id)
        )
        try:
            return await connect(
                url,
                compression=None,
                open_timeout=max(0.1, self._remaining(started)),
                max_size=MAX_FRAME_BYTES,
                close_timeout=2,
                create_connection=FastSendConnection,  # audio frames without send()'s context manager
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 429:
                raise SessionRefused(
                    common_pb2.END_REASON_AGENT_BUSY,
                    "ElevenLabs refused the conversation: HTTP 429 (concurrency limit)",
                    common_pb2.ERROR_CODE_RESOURCE_EXHAUSTED,
                ) from None
            code = (
                common_pb2.ERROR_CODE_UNAUTHENTICATED
                if status in (401, 403)
                else common_pb2.ERROR_CODE_UNAVAILABLE
            )
            raise SessionRefused(
                common_pb2.END_REASON_UNAVAILABLE, f"ElevenLabs refused the WebSocket: HTTP {status}", code
            ) from None
        except TimeoutError:
            raise SessionRefused(
                common_pb2.END_REASON_AGENT_TIMEOUT,
                f"ElevenLabs WebSocket not open within {self.settings.handshake_timeout_s:g} s",
                common_pb2.ERROR_CODE_DEADLINE_EXCEEDED,
            ) from None
        except (OSError, InvalidHandshake) as exc:
            raise SessionRefused(
                common_pb2.END_REASON_UNAVAILABLE, f"cannot reach ElevenLabs at {self._host()}: {exc}"
            ) from None

    def _host(self) -> str:
        return urllib.parse.urlsplit(self.settings.base_url).netloc

    def _rest(self) -> AsyncElevenLabs:
        """The SDK's async client, on our own httpx client (closed in `aclose`)."""
        if self._sdk is None:
            if self._http is None:
                self._http = httpx.AsyncClient()
            self._sdk = AsyncElevenLabs(
                api_key=self.settings.api_key,
                base_url=self.settings.http_base,
                timeout=self.settings.handshake_timeout_s,
                httpx_client=self._http,
            )
        return self._sdk

    async def _signed_url(self, agent_id: str, secrets: SecretScope) -> str:
        """A signed conversation URL for a private agent, masked in logs while `secrets` is open; the
        key goes only in the request header."""
        try:
            reply = await self._rest().conversational_ai.conversations.get_signed_url(agent_id=agent_id)
        except httpx.TimeoutException:
            raise SessionRefused(
                common_pb2.END_REASON_AGENT_TIMEOUT,
                "ElevenLabs signed URL request timed out",
                common_pb2.ERROR_CODE_DEADLINE_EXCEEDED,
            ) from None
        except ApiError as exc:
            if exc.status_code == 429:
                raise SessionRefused(
                    common_pb2.END_REASON_AGENT_BUSY,
                    "ElevenLabs signed URL refused: HTTP 429",
                    common_pb2.ERROR_CODE_RESOURCE_EXHAUSTED,
                ) from None
            code = (
                common_pb2.ERROR_CODE_UNAUTHENTICATED
                if exc.status_code in (401, 403)
                else common_pb2.ERROR_CODE_UNAVAILABLE
            )
            raise SessionRefused(
                common_pb2.END_REASON_AGENT_ERROR,
                f"ElevenLabs signed URL for agent {agent_id} failed: HTTP {exc.status_code}",
                code,
            ) from None
        except httpx.HTTPError as exc:
            raise SessionRefused(
                common_pb2.END_REASON_UNAVAILABLE, f"cannot reach ElevenLabs at {self._host()}: {exc}"
            ) from None
        except (ValueError, TypeError):  # a reply the SDK could not parse
            raise SessionRefused(
                common_pb2.END_REASON_AGENT_ERROR, "ElevenLabs signed URL response has no signed_url"
            ) from None
        signed_url = str(reply.signed_url)
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(signed_url).query))
        secrets.add(query.get("conversation_signature"))
        secrets.add(signed_url)
        return signed_url

    async def aclose(self) -> None:
        self._sdk = None
        if self._http is not None and self._owns_http:
            with contextlib.suppress(Exception):
                await self._http.aclose()
            self._http = None


def _with_first_message(override: Mapping[str, Any] | None, first_message: str) -> dict[str, Any]:
    """The configured override with `agent.first_message` set (the rest of it kept)."""
    merged = dict(override or {})
    merged["agent"] = {**dict(merged.get("agent") or {}), "first_message": first_message}
    return merged
