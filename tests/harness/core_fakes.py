"""In-memory neighbours of the services' cores, for tests on a virtual clock.

* `FakeTwilioSocket`: the Starlette WebSocket the edge's `MediaStreamSession` reads and writes, with
  Twilio's side (connected, start, media, mark, dtmf, stop, a dropped socket) driven by the test.
  It behaves as Starlette does once the peer has gone: `receive` reports the disconnect, `send_text`
  raises WebSocketDisconnect(1006).
* `FakeCallControl`: Twilio's REST API as `TwilioActions` uses it; a hook runs when a hang-up or
  transfer lands (real Twilio closes the stream's socket then).
* `ScriptedBackend` / `ScriptedSession`: an agent backend (`agent/backends/base.py`) whose agent the
  test scripts: say, hang up, transfer, end, fail. It records what media sent and how it was closed.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocketDisconnect, WebSocketState

from voicebridge.agent.backends.base import (
    AgentBackend,
    AgentSession,
    Outbox,
    SessionEndInfo,
    SessionRefused,
)
from voicebridge.v1 import agent_pb2, common_pb2

ULAW_8K = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)
FRAME = 160  # 20 ms of 8 kHz μ-law


def speech(ms: int) -> bytes:
    """Loud μ-law (a square wave), which the VADs take as speech."""
    return b"\x10\x90" * (4 * ms)


# -- Twilio's side of the Media Streams socket ----------------------------------------------------


class FakeTwilioSocket:
    def __init__(self, stream_sid: str = "MZ0001", call_sid: str = "CA0001") -> None:
        self.stream_sid, self.call_sid = stream_sid, call_sid
        self.application_state = WebSocketState.CONNECTED
        self._incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.closed_with: tuple[int, str] | None = None
        self.peer_gone = False
        self.echo_marks = True  # Twilio echoes each mark once the audio before it has played
        self._seq = 0
        self.server_closed = asyncio.Event()

    # Starlette's WebSocket, as MediaStreamSession uses it
    async def receive(self) -> dict[str, Any]:
        return await self._incoming.get()

    async def send_text(self, text: str) -> None:
        if self.peer_gone:
            self.application_state = WebSocketState.DISCONNECTED
            raise WebSocketDisconnect(code=1006)
        message = json.loads(text)
        self.sent.append(message)
        if self.echo_marks and message.get("event") == "mark":
            self.mark(message["mark"]["name"])

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.application_state = WebSocketState.DISCONNECTED
        self.closed_with = (code, reason or "")
        self.server_closed.set()

    # Twilio's messages
    def _send(self, event: str, **fields: Any) -> None:
        self._seq += 1
        message = {"event": event, "sequenceNumber": str(self._seq), "streamSid": self.stream_sid, **fields}
        self._incoming.put_nowait({"type": "websocket.receive", "text": json.dumps(message)})

    def raw(self, text: str) -> None:
        self._incoming.put_nowait({"type": "websocket.receive", "text": text})

    def connect(self, custom_parameters: dict[str, str] | None = None) -> None:
        connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        self._incoming.put_nowait({"type": "websocket.receive", "text": json.dumps(connected)})
        start = {
            "accountSid": "AC0001",
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": custom_parameters or {},
        }
        self._send("start", start=start)

    def media(self, payload: bytes, timestamp_ms: int) -> None:
        media = {"track": "inbound", "chunk": "1", "timestamp": str(timestamp_ms)}
        media["payload"] = base64.b64encode(payload).decode()
        self._send("media", media=media)

    def mark(self, name: str) -> None:
        self._send("mark", mark={"name": name})

    def dtmf(self, digit: str) -> None:
        self._send("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    def stop(self) -> None:
        self._send("stop", stop={"accountSid": "AC0001", "callSid": self.call_sid})

    def drop(self, code: int = 1000) -> None:
        """The socket closes from Twilio's side (after stop, after a REST hang-up, or lost)."""
        self.peer_gone = True
        self._incoming.put_nowait({"type": "websocket.disconnect", "code": code})

    # what the edge sent
    def events(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("event") == kind]

    def heard_bytes(self) -> int:
        return sum(len(base64.b64decode(m["media"]["payload"])) for m in self.events("media"))


class FakeCallControl:
    """Twilio's REST API for one edge; `on_action` runs when a hang-up or transfer lands."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, str]] = []
        self.on_action: Callable[[str], None] | None = None
        self.gate: asyncio.Event | None = None  # when set, each request waits for it (a slow API)

    async def _act(self, what: str, call_sid: str) -> bool:
        if self.gate is not None:
            await self.gate.wait()
        self.actions.append((what, call_sid))
        if self.on_action is not None:
            self.on_action(what)
        return True

    async def hang_up(self, call_sid: str) -> bool:
        return await self._act("hangup", call_sid)

    async def transfer(self, call_sid: str, destination: str) -> bool:
        return await self._act(f"transfer {destination}", call_sid)


# -- the agent ------------------------------------------------------------------------------------


class ScriptedSession(AgentSession):
    def __init__(self, start: agent_pb2.SessionStart, number: int) -> None:
        self.start = start
        self.ready = agent_pb2.SessionReady(
            input_format=ULAW_8K, output_format=ULAW_8K, conversation_id=f"conv_fake_{number}"
        )
        self.received: list[agent_pb2.ConverseRequest] = []
        self.closed_with: common_pb2.CallEnd | None = None
        self.closes = 0
        self.fail_on_handle: Exception | None = None
        self.running = False
        self.got_request = asyncio.Event()
        self._next: asyncio.Queue[Any] = asyncio.Queue()
        self._response_id = 0

    # the agent's side, driven by the test
    def say(self, ms: int, pattern: bytes = b"\x10\x90") -> int:
        """One reply of `ms` of audio (a square wave of μ-law `pattern`, loud by default) in 20 ms
        chunks; returns its response id."""
        self._response_id += 1
        data = pattern * (4 * ms)
        for offset in range(0, len(data), FRAME):
            chunk = agent_pb2.AudioChunk(
                data=data[offset : offset + FRAME], format=ULAW_8K, response_id=self._response_id
            )
            self._next.put_nowait(agent_pb2.ConverseResponse(audio=chunk))
        return self._response_id

    def interrupt(self) -> None:
        interruption = agent_pb2.Interruption(response_id=self._response_id)
        self._next.put_nowait(agent_pb2.ConverseResponse(interruption=interruption))

    def hang_up(self, reason: str = "end_call") -> None:
        self._next.put_nowait(agent_pb2.ConverseResponse(hangup=common_pb2.HangUp(reason=reason)))

    def transfer(self, destination: str) -> None:
        transfer = common_pb2.TransferCall(destination=destination, reason="asked for sales")
        self._next.put_nowait(agent_pb2.ConverseResponse(transfer=transfer))

    def end(self, reason: int, detail: str) -> None:
        """The backend ends the conversation (ElevenLabs closed the socket)."""
        self._next.put_nowait(SessionEndInfo(reason, detail))

    def fail(self, exc: Exception) -> None:
        """The backend breaks mid-call (run() raises)."""
        self._next.put_nowait(exc)

    @property
    def closed(self) -> bool:
        return self.closed_with is not None

    def received_kinds(self) -> list[str]:
        return [r.WhichOneof("event") for r in self.received]

    # the AgentSession interface
    async def run(self, outbox: Outbox) -> SessionEndInfo:
        self.running = True
        try:
            while True:
                item = await self._next.get()
                if isinstance(item, SessionEndInfo):
                    return item
                if isinstance(item, Exception):
                    raise item
                if item.WhichOneof("event") == "audio":
                    await outbox.put_audio(item)
                else:
                    outbox.put_control(item)
        finally:
            self.running = False

    async def handle(self, request: agent_pb2.ConverseRequest) -> None:
        self.received.append(request)
        self.got_request.set()
        if self.fail_on_handle is not None:
            raise self.fail_on_handle

    async def aclose(self, end: common_pb2.CallEnd) -> None:
        self.closes += 1
        if self.closed_with is None:
            self.closed_with = end
            reason = end.reason or common_pb2.END_REASON_CALLER_HANGUP
            self._next.put_nowait(SessionEndInfo(reason, end.detail))


class ScriptedBackend(AgentBackend):
    name = "scripted"

    def __init__(self) -> None:
        self.sessions: list[ScriptedSession] = []
        self.refusal: SessionRefused | None = None
        self._opened: asyncio.Queue[ScriptedSession] = asyncio.Queue()

    async def open(self, start: agent_pb2.SessionStart) -> ScriptedSession:
        if self.refusal is not None:
            raise self.refusal
        session = ScriptedSession(start, len(self.sessions) + 1)
        self.sessions.append(session)
        self._opened.put_nowait(session)
        return session

    async def next_session(self) -> ScriptedSession:
        return await self._opened.get()

    def open_sessions(self) -> list[ScriptedSession]:
        return [s for s in self.sessions if not s.closed]
