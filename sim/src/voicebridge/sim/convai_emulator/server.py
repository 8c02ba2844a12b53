"""The emulator's server: the conversation WebSocket and the signed-URL endpoint, on one port.

Endpoints:
* `GET /v1/convai/conversation?agent_id=...[&conversation_signature=...]` (WebSocket). The client sends
  `conversation_initiation_client_data`; the server answers `conversation_initiation_metadata` with the
  agent's formats, then runs the agent's scenario.
* `GET /v1/convai/conversation/get-signed-url?agent_id=...` with `xi-api-key` (plain HTTP) returns
  `{"signed_url": "ws://HOST:PORT/v1/convai/conversation?agent_id=...&conversation_signature=..."}`.

Refusals, as the real service does them (the spec's `ErrorData`/`WebSocketCloseCode`): an `error` event
`{"type":"error","error_event":{"code":...,"message":...,"error_type":...,"reason":...}}` then the close.
* Unknown agent, or a private agent without a valid signature: code 1008 (the spec: "auth/validation
  errors"). Whether the live service refuses at the upgrade or after it is not documented; the
  emulator accepts the upgrade and closes 1008, the path a client must handle anyway.
* Busy (workspace concurrency limit, docs/elevenlabs.md#capacity): no error_type for it is
  documented; the closest one is `http_exception` ("HTTP exception converted to WebSocket error",
  code 1002), so `busy="error_event"` sends that with `details.status_code=429` and closes 1002.
  `busy="http_429"` instead rejects the upgrade with HTTP 429, the other plausible shape.
* Audio before the metadata is recorded (`early_audio`); with `close_on_early_audio` it is answered
  with 1008 "Invalid message received" (reported by a third party). Malformed JSON → 1008 `invalid_message`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import urllib.parse
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .scenarios import default_scenario
from .script import AgentScript
from .session import EmulatedSession, SessionClosedError
from .wire import CONVERSATION_PATH, SIGNED_URL_PATH, error_event, message_kind


class ConvAIEmulator:
    """The server: agents registered with `add_agent`, one `EmulatedSession` per accepted conversation."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        accept_any_agent: AgentScript | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key  # None: any non-empty xi-api-key is accepted
        self.accept_any_agent = accept_any_agent
        self.agents: dict[str, AgentScript] = {}
        self.sessions: list[EmulatedSession] = []
        self.signed_url_requests: list[Request] = []
        self.rejected: list[tuple[str, int, str]] = []  # (agent_id, close code, reason) of refusals
        self._signatures: dict[str, str] = {}
        self._server: Server | None = None
        self._session_added = asyncio.Event()
        self._handed_out = 0
        self._handlers: set[asyncio.Task[Any]] = set()

    def add_agent(self, agent_id: str, script: AgentScript | None = None) -> AgentScript:
        self.agents[agent_id] = script or AgentScript()
        return self.agents[agent_id]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        """WebSockets still being served (accepted conversations and refusals alike): 0 once every client
        has closed its socket, which is how leak tests see that nothing is left open."""
        return len(self._handlers)

    @property
    def open_conversations(self) -> int:
        """Conversations accepted and not closed yet: what a leak would keep billing on the real service."""
        return sum(1 for session in self.sessions if not session.closed)

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=None,
            max_size=16 * 2**20,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ConvAIEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for_session(self, timeout: float = 5.0) -> EmulatedSession:
        """The next session this method has not returned yet, waiting for it to connect."""
        want = self._handed_out
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.sessions) <= want:
            self._session_added.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"emulator: no session #{want} after {timeout}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._session_added.wait(), remaining)
        self._handed_out = want + 1
        return self.sessions[want]

    def sign(self, agent_id: str) -> str:
        signature = secrets.token_urlsafe(24)
        self._signatures[signature] = agent_id
        return signature

    def signed_url(self, agent_id: str) -> str:
        query = urllib.parse.urlencode({"agent_id": agent_id, "conversation_signature": self.sign(agent_id)})
        return f"{self.ws_url}{CONVERSATION_PATH}?{query}"

    def _script(self, agent_id: str) -> AgentScript | None:
        return self.agents.get(agent_id) or self.accept_any_agent

    # --- HTTP ----------------------------------------------------------------------------------------

    @staticmethod
    def _json(status: int, reason: str, body: dict[str, Any]) -> Response:
        data = orjson.dumps(body)
        headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return Response(status, reason, headers, data)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        agent_id = query.get("agent_id", "")
        if url.path == SIGNED_URL_PATH:
            self.signed_url_requests.append(request)
            key = request.headers.get("xi-api-key")
            if not key or (self.api_key is not None and key != self.api_key):
                return self._json(401, "Unauthorized", {"detail": {"status": "invalid_api_key"}})
            if self._script(agent_id) is None:
                return self._json(404, "Not Found", {"detail": {"status": "agent_not_found"}})
            return self._json(200, "OK", {"signed_url": self.signed_url(agent_id)})
        if url.path != CONVERSATION_PATH:
            return self._json(404, "Not Found", {"detail": "Not Found"})
        script = self._script(agent_id)
        if script is not None and script.busy == "http_429":
            self.rejected.append((agent_id, 429, "busy"))
            return self._json(
                429, "Too Many Requests", {"detail": {"status": "too_many_concurrent_requests"}}
            )
        return None

    # --- WebSocket -----------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await self._conversation(ws)
        except ConnectionClosed:
            pass
        finally:
            if task is not None:
                self._handlers.discard(task)

    async def _refuse(
        self, ws: ServerConnection, agent_id: str, code: int, error_type: str, message: str
    ) -> None:
        self.rejected.append((agent_id, code, error_type))
        with contextlib.suppress(ConnectionClosed):
            await ws.send(orjson.dumps(error_event(code, message, error_type, message)).decode())
        await ws.close(code, message[:100])

    async def _conversation(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(ws.request.path).query))
        agent_id = query.get("agent_id", "")
        script = self._script(agent_id)
        if script is None:
            await self._refuse(ws, agent_id, 1008, "value_error", f"Agent {agent_id!r} not found")
            return
        if script.requires_auth:
            signature = query.get("conversation_signature", "")
            if self._signatures.get(signature) != agent_id:
                await self._refuse(
                    ws, agent_id, 1008, "value_error", "Authentication required: invalid signature"
                )
                return
        if script.busy == "error_event":
            self.rejected.append((agent_id, 1002, "http_exception"))
            with contextlib.suppress(ConnectionClosed):
                await ws.send(
                    orjson.dumps(
                        error_event(
                            1002,
                            "Too many concurrent conversations: workspace concurrency limit reached",
                            "http_exception",
                            "Concurrency limit exceeded",
                            {"status_code": 429},
                        )
                    ).decode()
                )
            await ws.close(1002, "Concurrency limit exceeded")
            return

        session = EmulatedSession(ws, agent_id, script, script.conversation_id_prefix + secrets.token_hex(8))
        self.sessions.append(session)
        self._session_added.set()
        init_seen = asyncio.Event()
        reader = asyncio.create_task(self._read(session, init_seen))
        try:
            await init_seen.wait()
            if ws.state.name != "OPEN":
                return
            if not script.send_metadata:
                await reader
                return
            if script.metadata_gate is not None:
                gate = asyncio.create_task(script.metadata_gate.wait())
                await asyncio.wait([gate, reader], return_when=asyncio.FIRST_COMPLETED)
                gate.cancel()
                if reader.done():
                    return
            if script.metadata_delay_s:
                await asyncio.sleep(script.metadata_delay_s)
            await session.send_event(
                {
                    "type": "conversation_initiation_metadata",
                    "conversation_initiation_metadata_event": {
                        "conversation_id": session.conversation_id,
                        "agent_output_audio_format": script.output_format,
                        "user_input_audio_format": script.input_format,
                    },
                }
            )
            session.metadata_sent = True
            scenario = script.scenario or default_scenario
            with contextlib.suppress(ConnectionClosed, SessionClosedError):
                await scenario(session)
            await reader
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await reader
            await ws.wait_closed()
            if not session.closed:
                session._mark_closed()

    async def _read(self, session: EmulatedSession, init_seen: asyncio.Event) -> None:
        ws = session.ws
        try:
            async for frame in ws:
                try:
                    message = orjson.loads(frame)
                    if not isinstance(message, dict):
                        raise ValueError("not an object")
                except (orjson.JSONDecodeError, ValueError):
                    session.malformed.append(frame if isinstance(frame, str) else repr(frame))
                    await session.fail(1008, "invalid_message", "Invalid message received")
                    break
                kind = message_kind(message)
                if kind == "conversation_initiation_client_data" and session.init is None:
                    session.init = message
                    session._record(message)
                    init_seen.set()
                    continue
                session._record(message)
                if (
                    kind == "user_audio_chunk"
                    and not session.metadata_sent
                    and session.script.close_on_early_audio
                ):
                    await session.fail(1008, "invalid_message", "Invalid message received")
                    break
        except ConnectionClosed:
            pass
        finally:
            init_seen.set()
            await ws.wait_closed()
            session._mark_closed()
