"""One conversation as the emulator sees it: what the client sent (recorded, waitable) and the agent's
side (send audio, ping, call tools, fail with a close code), for tests and scenarios to drive.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed

from .audio import bytes_per_ms
from .script import AgentScript, Predicate
from .wire import Omit, chunk_alignment, error_event, message_kind


@dataclass(frozen=True)
class ContextReceived:
    """The context a conversation received: its init's dynamic variables (`resumed` true when the client
    continues a call), `contextual_update` and `user_message` texts in order, any first-message override."""

    resumed: bool
    dynamic_variables: dict[str, Any]
    contextual_updates: list[str]
    user_messages: list[str]
    first_message: str | None


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

    async def ping(self, ping_ms: int | Omit | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Send `ping` (with `ping_ms` int, null, or OMIT for absent) and wait for the matching pong."""
        self._ping_id += 1
        event_id = self._ping_id
        ping_event: dict[str, Any] = {"event_id": event_id}
        if not isinstance(ping_ms, Omit):
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
        matches: Predicate
        if isinstance(type_or_predicate, str):
            kind = type_or_predicate
            matches = lambda m: message_kind(m) == kind  # noqa: E731 - one line, typed above
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

    @property
    def context(self) -> ContextReceived:
        """What the client told this conversation about the call so far (a resumed call's context)."""
        init = self.init or {}
        variables = init.get("dynamic_variables") or {}
        override = init.get("conversation_config_override") or {}
        first_message = (override.get("agent") or {}).get("first_message")
        return ContextReceived(
            resumed=variables.get("resumed") is True,
            dynamic_variables=dict(variables),
            contextual_updates=[
                str(m.get("text", "")) for m in self.received if m.get("type") == "contextual_update"
            ],
            user_messages=[str(m.get("text", "")) for m in self.received if m.get("type") == "user_message"],
            first_message=first_message if isinstance(first_message, str) else None,
        )

    # --- receiving (called by the emulator) ------------------------------------------------------------

    def _record(self, message: dict[str, Any]) -> None:
        kind = message_kind(message)
        if kind != "user_audio_chunk" or self.script.keep_audio_messages:
            self.received.append(message)
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
