"""A loopback ElevenLabs Agents (ConvAI) server speaking the real WebSocket protocol, for tests and by hand.

Why: the agent service must be tested against every protocol corner (ping without `ping_ms`, late audio
after an interruption, each close code, signed URLs, busy refusals, audio ids per reply or per chunk)
with no network. Shapes follow docs/elevenlabs.md (from ElevenLabs' AsyncAPI spec of the protocol,
"the spec" below).

Endpoints, all on one port:
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

By hand (`voicebridge-convai-emulator --port 8765`): the default agent greets with two short beeps, then
echoes each caller utterance back (speech is detected by level; the echo starts after 700 ms of quiet)
with an `agent_response` "(echo N)", and pings every 5 s. Every agent id is accepted by hand unless
`--strict-agent` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from voicebridge.sim.wav import pcm16_to_ulaw, ulaw_to_pcm16

log = logging.getLogger(__name__)

CONVERSATION_PATH = "/v1/convai/conversation"
SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"
FORMATS = ("pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000", "ulaw_8000")

Scenario = Callable[["EmulatedSession"], Awaitable[None]]
Predicate = Callable[[dict[str, Any]], bool]


class _Omit:
    """Marker for "leave the key out" (a ping without `ping_ms`, which the docs call optional)."""


OMIT = _Omit()


# ---------------------------------------------------------------------------------------------------
# Audio helpers (formats are named as on the wire: pcm_N is s16le mono at N Hz, ulaw_8000 is G.711)


def bytes_per_ms(fmt: str) -> float:
    if fmt == "ulaw_8000":
        return 8.0
    if fmt.startswith("pcm_"):
        return int(fmt[4:]) * 2 / 1000
    raise ValueError(f"unknown audio format {fmt!r}")


def _sample_rate(fmt: str) -> int:
    return 8000 if fmt == "ulaw_8000" else int(fmt[4:])


def encode_pcm16(pcm: np.ndarray, fmt: str) -> bytes:
    """s16 samples at the format's rate → wire bytes."""
    return pcm16_to_ulaw(pcm) if fmt == "ulaw_8000" else pcm.astype("<i2").tobytes()


def decode_to_pcm16(data: bytes, fmt: str) -> np.ndarray:
    return ulaw_to_pcm16(data) if fmt == "ulaw_8000" else np.frombuffer(data[: len(data) // 2 * 2], "<i2")


_ULAW_SQUARES = ulaw_to_pcm16(bytes(range(256))).astype(np.float64) ** 2


def rms(data: bytes, fmt: str) -> float:
    """RMS level of a frame in its wire format (μ-law by table: this runs for every caller frame)."""
    if fmt == "ulaw_8000":
        return float(np.sqrt(_ULAW_SQUARES[np.frombuffer(data, np.uint8)].mean()))
    return float(np.sqrt(np.mean(decode_to_pcm16(data, fmt).astype(np.float64) ** 2)))


def tone(fmt: str, freq_hz: float, ms: int, level: float = 0.3) -> bytes:
    rate = _sample_rate(fmt)
    t = np.arange(rate * ms // 1000) / rate
    return encode_pcm16((np.sin(2 * np.pi * freq_hz * t) * level * 32767).astype(np.int16), fmt)


def silence(fmt: str, ms: int) -> bytes:
    n = _sample_rate(fmt) * ms // 1000
    return encode_pcm16(np.zeros(n, dtype=np.int16), fmt)


# ---------------------------------------------------------------------------------------------------


def chunk_alignment(alignment: dict[str, Any], start_ms: float, end_ms: float, last: bool) -> dict[str, Any]:
    """The part of a reply's character timing that starts within [start_ms, end_ms) of it (anything
    later too, for the last chunk), timed from `start_ms`. Keys missing from `alignment` stay missing."""
    chars = list(alignment.get("chars") or [])
    starts = list(alignment.get("char_start_times_ms") or [])
    durations = list(alignment.get("char_durations_ms") or [])
    if len(starts) != len(chars):  # not a timing the emulator can split: send it as given
        return alignment
    keep = [i for i, t in enumerate(starts) if start_ms <= t and (t < end_ms or last)]
    part: dict[str, Any] = {
        "chars": [chars[i] for i in keep],
        "char_start_times_ms": [round(starts[i] - start_ms) for i in keep],
    }
    if "char_durations_ms" in alignment:
        part["char_durations_ms"] = [durations[i] for i in keep if i < len(durations)]
    return part


def message_kind(message: dict[str, Any]) -> str:
    """The client message's type; audio chunks carry none on the wire ("for performance")."""
    if "user_audio_chunk" in message and "type" not in message:
        return "user_audio_chunk"
    return str(message.get("type", "unknown"))


def error_event(
    code: int,
    message: str,
    error_type: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An `error` event exactly as the spec's `ErrorPayload` describes it."""
    data: dict[str, Any] = {"code": code, "message": message, "error_type": error_type, "reason": reason}
    if details is not None:
        data["details"] = details
    return {"type": "error", "error_event": data}


@dataclass
class AgentScript:
    """How one emulated agent behaves. Formats are the agent's settings (no client override exists)."""

    input_format: str = "pcm_16000"
    output_format: str = "pcm_16000"
    requires_auth: bool = False
    scenario: Scenario | None = None  # None → the greeting + echo behaviour (see module docstring)
    busy: Literal["no", "error_event", "http_429"] = "no"
    close_on_early_audio: bool = False
    send_metadata: bool = True  # False: never answer the init (handshake timeouts)
    metadata_delay_s: float = 0.0
    metadata_gate: asyncio.Event | None = None  # when set, the metadata waits for this event
    conversation_id_prefix: str = "conv_emu_"
    # How audio `event_id`s are numbered. ElevenLabs documents the id as a "sequential identifier for
    # the audio chunk" without saying whether one reply's chunks share it (docs/elevenlabs.md):
    # "per_reply" gives every chunk of one send_audio() the same id, "per_chunk" a new id per chunk.
    event_ids: Literal["per_reply", "per_chunk"] = "per_reply"

    def __post_init__(self) -> None:
        for fmt in (self.input_format, self.output_format):
            if fmt not in FORMATS:
                raise ValueError(f"unknown audio format {fmt!r}; one of {', '.join(FORMATS)}")
        if self.event_ids not in ("per_reply", "per_chunk"):
            raise ValueError(f"event_ids must be per_reply or per_chunk, not {self.event_ids!r}")


class SessionClosedError(ConnectionError):
    """The conversation closed while a test or scenario was waiting for something that never came."""


@dataclass
class _Waiter:
    predicate: Callable[[], bool]
    future: asyncio.Future[None]


class EmulatedSession:
    """One conversation as the emulator sees it; tests drive the agent's side through it."""

    def __init__(
        self, ws: ServerConnection, agent_id: str, script: AgentScript, conversation_id: str
    ) -> None:
        self.ws = ws
        self.agent_id = agent_id
        self.script = script
        self.conversation_id = conversation_id
        self.request_path: str = ws.request.path if ws.request else ""
        self.request_headers: Headers = ws.request.headers if ws.request else Headers()
        self.init: dict[str, Any] | None = None
        self.received: list[dict[str, Any]] = []
        self.received_audio = bytearray()
        self.early_audio = bytearray()  # user_audio_chunk bytes that arrived before the metadata
        self.pongs: list[dict[str, Any]] = []
        self.metadata_sent = False
        self.closed_by_client = False
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.malformed: list[str] = []
        self._event_id = 0
        self._ping_id = 0
        self._tool_calls = 0
        self._waiters: list[_Waiter] = []
        self._closed = asyncio.Event()
        self._we_closed = False

    # --- sending -------------------------------------------------------------------------------------

    def next_event_id(self) -> int:
        self._event_id += 1
        return self._event_id

    async def send_event(self, event: dict[str, Any]) -> None:
        """Send any raw server event as one JSON text frame."""
        await self.ws.send(orjson.dumps(event).decode())

    async def send_raw(self, frame: str | bytes) -> None:
        """Send a frame verbatim (malformed JSON, binary frames)."""
        await self.ws.send(frame)

    async def send_audio(
        self,
        raw: bytes,
        chunk_ms: int = 100,
        event_id: int | None = None,
        alignment: dict[str, Any] | None = None,
    ) -> int:
        """Send `raw` (in the agent's output format) as one reply's `audio` events; returns the last
        event_id used.

        Ids never decrease. With `event_ids="per_reply"` every chunk carries `event_id` (default: the
        next id; pass the previous return value to go on with the same reply); with "per_chunk" each
        chunk takes the next id (`event_id` only raises the first one).
        `alignment` (chars, char_start_times_ms, char_durations_ms) describes the whole of `raw`; each
        chunk carries the characters that start in it, timed from the chunk's first sample, as
        ElevenLabs sends them.
        """
        per_chunk = self.script.event_ids == "per_chunk"
        if event_id is None or (per_chunk and event_id <= self._event_id):
            event_id = self.next_event_id()  # per chunk, an id is never used twice
        else:
            self._event_id = max(self._event_id, event_id)
        step = max(1, int(bytes_per_ms(self.script.output_format) * chunk_ms))
        if self.script.output_format != "ulaw_8000":
            step -= step % 2
        per_ms = bytes_per_ms(self.script.output_format)
        for n, offset in enumerate(range(0, max(len(raw), 1), step)):
            if per_chunk and n:
                event_id = self.next_event_id()
            data = raw[offset : offset + step]
            audio_event: dict[str, Any] = {
                "audio_base_64": base64.b64encode(data).decode(),
                "event_id": event_id,
            }
            if alignment is not None:
                audio_event["alignment"] = chunk_alignment(
                    alignment, offset / per_ms, (offset + len(data)) / per_ms, last=offset + step >= len(raw)
                )
            await self.send_event({"type": "audio", "audio_event": audio_event})
        return event_id

    async def send_error(
        self,
        code: int,
        message: str,
        error_type: str | None = None,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await self.send_event(error_event(code, message, error_type, reason, details))

    async def ping(self, ping_ms: int | _Omit | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Send `ping` (with `ping_ms` int, null, or OMIT for absent) and wait for the matching pong."""
        self._ping_id += 1
        event_id = self._ping_id
        ping_event: dict[str, Any] = {"event_id": event_id}
        if not isinstance(ping_ms, _Omit):
            ping_event["ping_ms"] = ping_ms
        await self.send_event({"type": "ping", "ping_event": ping_event})
        return await self.wait_for_message(
            lambda m: m.get("type") == "pong" and m.get("event_id") == event_id, timeout
        )

    async def call_tool(self, tool_name: str, parameters: dict[str, Any] | None = None) -> str:
        """The agent calls a client tool (`end_call`, `transfer_to_number`, ...); returns its call id.
        Shape: docs/elevenlabs.md#client-tools."""
        self._tool_calls += 1
        tool_call_id = f"tool_{self._tool_calls}"
        await self.send_event(
            {
                "type": "client_tool_call",
                "client_tool_call": {
                    "tool_name": tool_name,
                    "tool_call_id": tool_call_id,
                    "parameters": parameters or {},
                    "event_id": self.next_event_id(),
                },
            }
        )
        return tool_call_id

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._we_closed = True
        await self.ws.close(code, reason)

    async def fail(self, code: int, error_type: str | None, message: str, reason: str = "") -> None:
        """Close like the service does on an error: an `error` event, then the close frame."""
        with contextlib.suppress(ConnectionClosed):
            await self.send_error(code, message, error_type, reason or None)
        await self.close(code, reason or message[:100])

    # --- waiting -------------------------------------------------------------------------------------

    async def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        if predicate():
            return
        if self._closed.is_set():
            raise SessionClosedError(f"emulator: the session is closed; no {what}")
        waiter = _Waiter(predicate, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            raise TimeoutError(f"emulator: timed out after {timeout}s waiting for {what}") from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _notify(self) -> None:
        for waiter in list(self._waiters):
            if waiter.future.done():
                continue
            if waiter.predicate():
                waiter.future.set_result(None)
            elif self._closed.is_set():
                waiter.future.set_exception(SessionClosedError("emulator: the session closed while waiting"))

    async def wait_for_audio(self, n_bytes: int, timeout: float = 5.0) -> bytes:
        await self.wait_for_audio_length(n_bytes, timeout)
        return bytes(self.received_audio)

    async def wait_for_audio_length(self, n_bytes: int, timeout: float = 5.0) -> None:
        """Like wait_for_audio, without copying what was received (per frame, under load)."""
        await self._wait(lambda: len(self.received_audio) >= n_bytes, timeout, f"{n_bytes} audio bytes")

    async def wait_for_message(
        self, type_or_predicate: str | Predicate, timeout: float = 5.0
    ) -> dict[str, Any]:
        """The first received message (already received or future) matching a type or predicate."""
        if isinstance(type_or_predicate, str):
            kind = type_or_predicate

            def matches(m: dict[str, Any]) -> bool:
                return message_kind(m) == kind
        else:
            matches = type_or_predicate
        found: list[dict[str, Any]] = []

        def check() -> bool:
            for m in self.received:
                if matches(m):
                    found.append(m)
                    return True
            return False

        await self._wait(check, timeout, f"message {type_or_predicate!r}")
        return found[0]

    async def wait_closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """(code, reason) of the close frame: the client's if it closed first, else the one we sent."""
        try:
            await asyncio.wait_for(self._closed.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"emulator: session not closed after {timeout}s") from None
        return self.close_code, self.close_reason

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # --- receiving (called by the emulator) ------------------------------------------------------------

    def _record(self, message: dict[str, Any]) -> None:
        self.received.append(message)
        kind = message_kind(message)
        if kind == "user_audio_chunk":
            chunk = base64.b64decode(message["user_audio_chunk"])
            self.received_audio += chunk
            if not self.metadata_sent:
                self.early_audio += chunk
        elif kind == "pong":
            self.pongs.append(message)
        self._notify()

    def _mark_closed(self) -> None:
        protocol = self.ws.protocol
        self.closed_by_client = not self._we_closed and protocol.close_rcvd is not None
        use_rcvd = self.closed_by_client or protocol.close_sent is None
        frame = protocol.close_rcvd if use_rcvd else protocol.close_sent
        if frame is not None:
            self.close_code, self.close_reason = frame.code, frame.reason
        else:
            self.close_code, self.close_reason = 1006, ""
        self._closed.set()
        self._notify()


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


# ---------------------------------------------------------------------------------------------------
# The default behaviour: greeting beeps, then echo each utterance back.


async def default_scenario(session: EmulatedSession, ping_every_s: float = 5.0) -> None:
    """Beep twice, then echo the caller's speech after they pause; ping now and then."""
    out_fmt, in_fmt = session.script.output_format, session.script.input_format
    greeting = tone(out_fmt, 880, 150) + silence(out_fmt, 100) + tone(out_fmt, 660, 150)
    await session.send_event(
        {"type": "agent_response", "agent_response_event": {"agent_response": "(beep beep)"}}
    )
    await session.send_audio(greeting)

    async def pinger() -> None:
        with contextlib.suppress(ConnectionClosed, SessionClosedError):
            while True:
                await asyncio.sleep(ping_every_s)
                with contextlib.suppress(TimeoutError):
                    await session.ping(ping_ms=20)

    ping_task = asyncio.create_task(pinger())
    try:
        await _echo(session, in_fmt, out_fmt)
    finally:
        ping_task.cancel()


async def _echo(session: EmulatedSession, in_fmt: str, out_fmt: str) -> None:
    frame_bytes = int(bytes_per_ms(in_fmt) * 20)
    threshold = 0.02 * 32767
    pos, utterance, quiet_ms, speaking, turns = 0, bytearray(), 0, False, 0
    while not session.closed:
        try:
            await session.wait_for_audio_length(pos + frame_bytes, timeout=3600)
        except TimeoutError:
            continue
        frame = bytes(session.received_audio[pos : pos + frame_bytes])
        pos += frame_bytes
        level = rms(frame, in_fmt)
        if level > threshold:
            speaking, quiet_ms = True, 0
        elif speaking:
            quiet_ms += 20
        if speaking:
            utterance += frame
        if speaking and quiet_ms >= 700:
            turns += 1
            pcm = decode_to_pcm16(bytes(utterance), in_fmt)
            pcm = _resample(pcm, _sample_rate(in_fmt), _sample_rate(out_fmt))
            event_id = session.next_event_id()
            await session.send_event(
                {
                    "type": "agent_response",
                    "agent_response_event": {"agent_response": f"(echo {turns})", "event_id": event_id},
                }
            )
            await session.send_audio(encode_pcm16(pcm, out_fmt), event_id=event_id)
            utterance.clear()
            speaking, quiet_ms = False, 0


def _resample(pcm: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Linear interpolation; plenty for an echo heard by a person testing by hand."""
    if src == dst or len(pcm) == 0:
        return pcm
    n = int(len(pcm) * dst / src)
    return np.interp(np.linspace(0, len(pcm) - 1, n), np.arange(len(pcm)), pcm).astype(np.int16)


# ---------------------------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="voicebridge-convai-emulator",
        description=(
            "Loopback ElevenLabs Agents (ConvAI) server. The default agent beeps twice as a greeting,"
            " then echoes each caller utterance back after 700 ms of quiet, and pings every 5 s."
            " Point the agent service at it with ELEVENLABS_BASE_URL=http://HOST:PORT."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--agent-id", default="agent_emulator", help="the agent id registered")
    parser.add_argument("--strict-agent", action="store_true", help="refuse (1008) other agent ids")
    parser.add_argument("--input-format", default="pcm_16000", choices=FORMATS)
    parser.add_argument("--output-format", default="pcm_16000", choices=FORMATS)
    parser.add_argument("--requires-auth", action="store_true", help="private agent: signed URL needed")
    parser.add_argument("--api-key", default=None, help="the only xi-api-key accepted (default: any)")
    return parser.parse_args(argv)


async def _serve_forever(args: argparse.Namespace) -> None:
    script = AgentScript(args.input_format, args.output_format, requires_auth=args.requires_auth)
    emulator = ConvAIEmulator(args.host, args.port, args.api_key, None if args.strict_agent else script)
    emulator.add_agent(args.agent_id, script)
    await emulator.start()
    log.info("ConvAI emulator on %s (agent %s, in %s, out %s)", emulator.base_url, args.agent_id,
             args.input_format, args.output_format)  # fmt: skip
    try:
        await asyncio.Future()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args))


if __name__ == "__main__":
    main()
