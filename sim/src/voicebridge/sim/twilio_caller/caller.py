"""One simulated call on a Media Streams WebSocket: the socket, the 20 ms media clock, the mark
echoes, and waiting on what the server does. The messages are built and checked in `wire`; what the
caller hears is kept in `playout`.

With a `<Connect action>` (`CallerConfig.action_url`), a stream that closes without the caller hanging
up does not end the call: like Twilio, the caller POSTs the action URL (signed, the standard
parameters) and follows the TwiML it gets. `<Connect><Stream>` opens a new socket for the same call (a
new StreamSid, `connected` and `start` again, the caller's voice going on where the clock is: what
was said while no stream was open is lost, as on a real line); `<Hangup/>` or no verb ends the call.
The audio Twilio had buffered for the broken stream is dropped and its marks never echoed. The heard
timeline is the call's, across streams."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from . import wire
from .config import CallerConfig, twiml_instruction
from .playout import TURN_GAP_S, Playout, turns
from .wire import RATE, SILENCE

# A failure detector for a server whose every answer is another stream that fails: the edge's own
# EDGE_MAX_STREAM_REOPENS ends a call long before.
MAX_ACTIONS = 20


class TwilioCaller:
    """One simulated phone call on a Media Streams WebSocket: ``async with TwilioCaller(cfg) as call``."""

    def __init__(self, cfg: CallerConfig) -> None:
        self.cfg = cfg
        self.received: list[tuple[float, Any]] = []
        self.violations: list[str] = []
        self.sent: list[tuple[float, dict[str, Any]]] = []
        self.echoes: list[tuple[int, str, bool]] = []  # (heard sample index, mark name, flushed by clear)
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed_by: str | None = None  # "caller" or "server"
        self.media_frames_sent = 0
        self.media_bytes_received = 0  # agent audio payload bytes, kept or not (`keep_media`)
        self.clears_received = 0
        self.clears_at: list[int] = []  # heard sample index at which each clear took effect
        self._ws: ClientConnection | None = None
        self._t0 = 0.0
        self._t_end: float | None = None
        self._seq = 0
        self._send_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._voice = bytearray()
        self._voice_queued = 0
        self._voice_sent = 0
        self._speech_ends: list[int] = []  # sample index at which each speak() finished being sent
        self._playout = Playout()
        self._tasks: list[asyncio.Task[None]] = []
        self._stream_tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()
        self._chunk = 0  # media chunks sent on the current stream
        self.stream_sids: list[str] = []  # every stream of this call, in order
        self.actions: list[tuple[str, int, str]] = []  # (action url, HTTP status, what followed)

    # --- lifecycle

    async def __aenter__(self) -> TwilioCaller:
        if not self._tasks:  # not placed through dial() already
            await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._closed.is_set():
            await self.hangup()
        await self._stop_tasks()

    async def connect(self) -> None:
        """Open the WebSocket like Twilio (signed if configured), then send ``connected`` and ``start``."""
        await self._open_stream()
        self._tasks = [
            asyncio.create_task(self._media_loop(), name="caller-media"),
            asyncio.create_task(self._mark_loop(), name="caller-marks"),
        ]

    async def dial(self, voice_url: str) -> None:
        """An inbound call as Twilio places it: POST the number's Voice URL (signed), then follow the
        TwiML it answers (`<Connect><Stream>`: the stream opens; anything else: the call ends)."""
        form = self.cfg.voice_webhook_form()
        headers = {"X-Twilio-Signature": self._sign(voice_url, form)} if self.cfg.auth_token else {}
        status, text = await self._post(voice_url, form, headers)
        if status != 200:
            raise RuntimeError(f"voice webhook answered {status}: {text[:200]}")
        step = twiml_instruction(text)
        if step.stream_url is None:
            raise RuntimeError("voice webhook answered no <Connect><Stream>")
        self.cfg = dataclasses.replace(
            self.cfg,
            url=step.stream_url,
            signature_url=step.stream_url,
            custom_parameters=step.parameters,
            action_url=step.action,
        )
        await self.connect()

    async def _open_stream(self) -> None:
        headers = {}
        sig = self.cfg.signature()
        if sig is not None:
            headers["X-Twilio-Signature"] = sig

        async def dial(url: str) -> ClientConnection:
            return await connect(
                url,
                additional_headers=headers,
                user_agent_header="Twilio.TmeWs/1.0",
                compression=None,
                proxy=None,
                ping_interval=None,
                max_size=None,
                open_timeout=self.cfg.open_timeout,
            )

        pool = self.cfg.edges
        ws = await (dial(self.cfg.url) if pool is None else pool.reach(self.cfg.url, dial))
        self._seq, self._chunk = 0, 0
        await ws.send(orjson.dumps(wire.connected()).decode())
        if not self.stream_sids:
            self._t0 = time.monotonic()  # the call's timeline: from its first stream's start
        self.stream_sids.append(self.cfg.stream_sid)
        self._ws = ws
        await self._send(wire.start(self.cfg, self._next_seq()))
        self._stream_tasks = [asyncio.create_task(self._receive_loop(ws), name="caller-receive")]
        self._notify()

    async def hangup(self) -> None:
        """The caller hangs up: Twilio sends ``stop`` and closes the socket (if a stream is open)."""
        if self._closed.is_set() or not self._tasks:
            return
        self._end("caller")
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._send(wire.stop(self.cfg, self._next_seq()))
            await ws.close(1000, "")
            self.close_code, self.close_reason = ws.close_code, ws.close_reason
        await self._stop_tasks()

    async def close_abruptly(self) -> None:
        """Drop the TCP connection without ``stop`` or a close frame (network loss, Twilio crash)."""
        if self._closed.is_set() or not self._tasks:
            return
        self._end("caller")
        ws = self._ws
        if ws is not None:
            ws.transport.abort()
        await self._stop_tasks()
        if ws is not None:
            self.close_code, self.close_reason = ws.close_code, ws.close_reason

    async def wait_closed(self, timeout: float) -> None:
        """Until the call is over (the server closed the socket, or we hung up)."""
        async with asyncio.timeout(timeout):
            await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def reopens(self) -> int:
        """How many new streams the call's `<Connect action>` answers opened."""
        return max(0, len(self.stream_sids) - 1)

    # --- caller side

    async def speak(self, ulaw: bytes) -> None:
        """Queue caller voice (8 kHz μ-law); returns when all of it has been sent."""
        self._voice += ulaw
        self._voice_queued += len(ulaw)
        target = self._voice_queued
        await self._wait_until(lambda: self._voice_sent >= target or self.closed, None)

    async def send_dtmf(self, digit: str) -> None:
        """The caller presses a key (bidirectional streams only; track is always ``inbound_track``)."""
        await self._send(wire.dtmf(self.cfg.stream_sid, self._next_seq(), digit))

    async def send_raw(self, text: str) -> None:
        """Send one text frame verbatim (what a broken or hostile peer would send)."""
        assert self._ws is not None
        async with self._send_lock:
            await self._ws.send(text)

    # --- waiting on what the server does

    async def wait_heard(self, seconds: float, timeout: float) -> None:
        """Until at least ``seconds`` of agent audio has been *played* to the caller."""
        target = round(seconds * RATE)

        def wake_in() -> float | None:
            # The playout clock itself is the event: sleep until buffered audio would reach the target.
            # While audio is buffered, time alone makes progress: sleep until the target or the buffer's
            # end, whichever comes first (two clock reads here can differ by a sample, so never "wait
            # for a message" while something is still playing: none may come).
            missing = target - self.samples_heard()
            ahead = self._playout.buffer_end - self._now_sample()
            if ahead > 0:
                return max(1, min(missing, ahead)) / RATE
            return None

        await self._wait_until(lambda: self.samples_heard() >= target, timeout, wake_in)

    async def wait_agent_quiet(
        self, quiet_s: float, timeout: float | None, *, require_audio: bool = True
    ) -> None:
        """Until nothing has played for ``quiet_s``: since the last agent audio, which must exist when
        ``require_audio``; otherwise since the later of the last agent audio and this call."""
        need = round(quiet_s * RATE)
        floor = 0 if require_audio else self._now_sample()

        def quiet_for() -> int | None:
            if require_audio and not self._playout.has_audio:
                return None
            return self._now_sample() - max(self._playout.buffer_end, floor)

        def wake_in() -> float | None:
            gap = quiet_for()
            return None if gap is None else max(need - gap, 1) / RATE

        await self._wait_until(lambda: self.closed or (quiet_for() or 0) >= need, timeout, wake_in)

    async def wait_for_event(self, event: str, timeout: float, count: int = 1) -> dict[str, Any]:
        """Until the server has sent ``count`` messages with this ``event`` in total; returns the count-th."""

        def found() -> dict[str, Any] | None:
            seen = [m for _, m in self.received if isinstance(m, dict) and m.get("event") == event]
            return seen[count - 1] if len(seen) >= count else None

        result = await self._wait_until(found, timeout)
        assert result is not None
        return result

    # --- what the caller heard

    def samples_heard(self, before: int | None = None) -> int:
        """Agent audio samples played so far (cleared audio never counts); with `before` (a sample
        index on the caller's timeline, such as one of `clears_at`), only those played before it."""
        end = self._heard_end() if before is None else min(before, self._heard_end())
        return self._playout.samples_heard(end)

    @property
    def heard_ulaw(self) -> bytes:
        """What the caller heard from stream start to now (or hang-up): agent audio as played, else 0xFF."""
        return self._playout.heard_ulaw(self._heard_end())

    def heard_spans(self) -> list[tuple[int, int]]:
        """Sample ranges [start, end) during which agent audio was playing, merged where they touch."""
        return self._playout.heard_spans(self._heard_end())

    @property
    def speech_ends(self) -> list[int]:
        """Sample index at which each ``speak()`` finished being sent: the caller's own record, not
        when the awaiting coroutine got to run again."""
        return list(self._speech_ends)

    def turns(self, gap_s: float = TURN_GAP_S) -> list[tuple[float, float]]:
        """Runs of heard audio split by ≥ ``gap_s`` of nothing playing: (start_s, end_s) from stream start."""
        return turns(self.heard_spans(), gap_s)

    def summary(self) -> dict[str, Any]:
        spans = self.heard_spans()
        heard_turns = self.turns()
        latencies = []
        for speech_end in self._speech_ends:
            nxt = next((a for a, _ in heard_turns if a * RATE >= speech_end), None)
            if nxt is not None:
                latencies.append(round(nxt - speech_end / RATE, 3))
        return {
            "call_sid": self.cfg.call_sid,
            "stream_sid": self.cfg.stream_sid,
            "duration_s": round(self._heard_end() / RATE, 3),
            "time_to_first_agent_audio_s": round(spans[0][0] / RATE, 3) if spans else None,
            "turns": [{"start_s": round(a, 3), "end_s": round(b, 3)} for a, b in heard_turns],
            "response_latencies_s": latencies,
            "clears_received": self.clears_received,
            "marks_echoed": len(self.echoes),
            "marks_flushed_by_clear": sum(1 for e in self.echoes if e[2]),
            "media_frames_sent": self.media_frames_sent,
            "streams": len(self.stream_sids),
            "bytes_heard": self.samples_heard(),
            "violations": list(self.violations),
            "closed_by": self.closed_by,
            "close_code": self.close_code,
            "close_reason": self.close_reason,
        }

    # --- internals

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    def _now_sample(self) -> int:
        return int((time.monotonic() - self._t0) * RATE)

    def _heard_end(self) -> int:
        t = self._t_end if self._t_end is not None else time.monotonic()
        return max(0, int((t - self._t0) * RATE))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _end(self, by: str) -> None:
        if self._closed.is_set():
            return
        self._t_end = time.monotonic()
        self.closed_by = by
        self._closed.set()
        self._notify()

    async def _wait_until(
        self,
        pred: Callable[[], Any],
        timeout: float | None,
        wake_in: Callable[[], float | None] | None = None,
    ) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed
                result = pred()
                if result:
                    return result
                delay = wake_in() if wake_in else None
                if delay is None:
                    await changed.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), delay)

    async def _send(self, msg: dict[str, Any]) -> bool:
        """Send on the current stream; False when there is none (between streams: nothing to send on)."""
        ws = self._ws
        if ws is None:
            return False
        try:
            async with self._send_lock:
                await ws.send(orjson.dumps(msg).decode())
        except ConnectionClosed:
            self._lost(ws)
            raise
        if self.cfg.keep_media or msg.get("event") != "media":
            self.sent.append((time.monotonic(), msg))
        return True

    async def _stop_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [*self._tasks, *self._stream_tasks]
        for task in tasks:
            if task is not current:
                task.cancel()
        for task in tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # --- a stream that broke: Twilio's <Connect action>

    def _lost(self, ws: ClientConnection) -> None:
        """The server side of `ws` is gone. Without an action the call is over; with one, Twilio
        requests it (once per stream) and follows its answer."""
        if ws is not self._ws or self._closed.is_set():
            return
        self._ws = None
        self.close_code, self.close_reason = ws.close_code, ws.close_reason
        if self.cfg.action_url is None:
            self._end("server")
            return
        now = self._now_sample()
        self._playout.clear(now)  # the broken stream's buffered audio is gone, its marks never echoed
        self._playout.pending_marks.clear()
        self._tasks.append(asyncio.create_task(self._follow_action(), name="caller-action"))
        self._notify()

    async def _follow_action(self) -> None:
        """POST the `<Connect action>` and do what its TwiML says, until a stream is open or the call ends."""
        while not self._closed.is_set():
            url = self.cfg.action_url
            if url is None or len(self.actions) >= MAX_ACTIONS:
                self._end("server")
                return
            form = self.cfg.action_form()
            headers = {"X-Twilio-Signature": self._sign(url, form)} if self.cfg.auth_token else {}
            try:
                status, text = await self._post(url, form, headers)
                step = twiml_instruction(text) if status == 200 else None
            except (OSError, httpx.HTTPError, ValueError) as exc:  # Twilio: an application error, call over
                self.actions.append((url, 0, f"failed: {type(exc).__name__}"))
                self._end("server")
                return
            if step is None or step.stream_url is None:
                self.actions.append((url, status, "hangup"))
                self._end("server")
                return
            self.actions.append((url, status, "stream"))
            self.cfg = dataclasses.replace(
                self.cfg,
                url=step.stream_url,
                signature_url=step.stream_url,  # Twilio signs the stream URL as the TwiML writes it
                stream_sid="MZ" + secrets.token_hex(16),
                custom_parameters=step.parameters,
                action_url=step.action,
            )
            try:
                await self._open_stream()
                return
            except (
                OSError,
                InvalidHandshake,
            ):  # the stream failed to open: its <Connect> ends, on to its action
                continue

    def _sign(self, url: str, form: dict[str, str]) -> str:
        from twilio.request_validator import RequestValidator

        return RequestValidator(self.cfg.auth_token or "").compute_signature(url, form)

    async def _post(self, url: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        """POST a form as Twilio does (to the edges behind the public URL, when there is a pool)."""

        async def post(target: str) -> tuple[int, str]:
            try:
                async with httpx.AsyncClient(timeout=self.cfg.open_timeout, trust_env=False) as client:
                    reply = await client.post(
                        target, data=form, headers={**headers, "User-Agent": "TwilioProxy/1.1"}
                    )
            except httpx.ConnectError:
                raise ConnectionRefusedError(target) from None
            return reply.status_code, reply.text

        pool = self.cfg.edges
        return await (post(url) if pool is None else pool.reach(url, post))

    async def _media_loop(self) -> None:
        """The caller's 20 ms clock for the whole call; between streams its frames go nowhere."""
        frame_bytes = RATE * self.cfg.frame_ms // 1000
        frame_s = self.cfg.frame_ms / 1000
        k = 0
        while not self._closed.is_set():
            delay = self._t0 + k * frame_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._closed.is_set():
                return
            voice = bytes(self._voice[:frame_bytes])
            del self._voice[:frame_bytes]
            payload = voice + SILENCE * (frame_bytes - len(voice))
            k += 1
            if self._ws is not None:
                self._chunk += 1
                media = wire.media(
                    self.cfg.stream_sid, self._next_seq(), self._chunk, self.cfg.frame_ms, payload
                )
                with contextlib.suppress(ConnectionClosed):
                    if await self._send(media):
                        self.media_frames_sent += 1
            if voice:
                self._voice_sent += len(voice)
                if self._voice_sent == self._voice_queued:
                    self._speech_ends.append(k * frame_bytes)
                self._notify()

    async def _receive_loop(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                self._on_frame(frame)
                await self._flush_due_marks(force=False)
        self._lost(ws)
        self._notify()

    def _violation(self, code: int, detail: str) -> None:
        self.violations.append(f"{code}: {detail}")
        self._notify()

    def _on_frame(self, frame: str | bytes) -> None:
        msg, violation = wire.decode(frame, self.cfg.stream_sid)
        if violation is not None:
            self.received.append((time.monotonic(), msg))
            self._violation(*violation)
            return
        event = msg["event"]
        if self.cfg.keep_media or event != "media":
            self.received.append((time.monotonic(), msg))
        if event == "media":
            audio = wire.media_audio(msg)
            self.media_bytes_received += len(audio)
            self._playout.play(audio, self._now_sample())
        elif event == "mark":
            self._playout.mark(msg["mark"]["name"], self._now_sample())
        else:
            self.clears_received += 1
            now = self._now_sample()
            self.clears_at.append(now)
            self._playout.clear(now)
        self._notify()

    async def _flush_due_marks(self, *, force: bool) -> None:
        now = self._now_sample()
        while (due := self._playout.pop_due_mark(now, force=force)) is not None:
            name, flushed = due
            self.echoes.append((now, name, flushed))
            await self._send(wire.mark(self.cfg.stream_sid, self._next_seq(), name))
            self._notify()

    async def _mark_loop(self) -> None:
        while not self._closed.is_set():
            changed = self._changed
            with contextlib.suppress(ConnectionClosed):  # _send has handed the loss on (_lost)
                await self._flush_due_marks(force=False)
            due = self._playout.next_mark_due()
            if due is not None:
                delay = max(due - self._now_sample(), 1) / RATE
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), delay)
            else:
                await changed.wait()
