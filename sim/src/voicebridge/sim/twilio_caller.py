"""A simulated Twilio caller: opens a Media Streams WebSocket exactly as Twilio does for <Connect><Stream>.

An independent peer (it never imports ``voicebridge.edge``) that writes Twilio's side of the protocol
itself (https://www.twilio.com/docs/voice/media-streams/websocket-messages):

- sends ``connected``, then ``start`` (``sequenceNumber`` "1"), then one ``media`` frame every
  ``frame_ms`` against an absolute monotonic clock: caller voice queued by :meth:`TwilioCaller.speak`,
  μ-law silence (0xFF) otherwise. Numeric fields are JSON strings; ``chunk`` counts from "1";
  ``timestamp`` is ms since the stream started.
- plays what the server sends like Twilio's playout buffer: ``media`` payloads of any size go into a
  FIFO played at exactly 8000 samples/s in real time; a ``mark`` is echoed once the audio queued before
  it has played (at once if nothing is buffered); ``clear`` drops buffered audio and echoes every
  pending mark at once.
- validates the server: text frames only (else 31950) holding ``media``/``mark``/``clear`` with the
  right ``streamSid``, valid base64, a ``mark.name`` and no extra fields (else 31951). Invalid messages
  are recorded in :attr:`TwilioCaller.violations` and ignored, not played.

Time is kept in samples since the stream started (the ``start`` message), so the heard timeline is exact.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import contextlib
import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicebridge.sim.voice import speech_like
from voicebridge.sim.wav import read_wav_as_ulaw, write_wav

__all__ = ["CallerConfig", "TwilioCaller", "main", "read_wav_as_ulaw", "stream_from_twiml", "write_wav"]

RATE = 8000
SILENCE = b"\xff"
TURN_GAP_S = 0.3
GREETING_QUIET_S = 0.6  # --wait-greeting: the greeting is over once nothing has played for this long

_ALLOWED_KEYS = {
    "media": ({"event", "streamSid", "media"}, {"payload"}),
    "mark": ({"event", "streamSid", "mark"}, {"name"}),
    "clear": ({"event", "streamSid"}, None),
}


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass
class CallerConfig:
    """One simulated call. ``from_number``/``to_number`` are not part of the stream (Twilio's ``start``
    carries no numbers); they feed :meth:`voice_webhook_form`, the form Twilio POSTs to the Voice URL."""

    url: str
    call_sid: str = field(default_factory=lambda: _sid("CA"))
    stream_sid: str = field(default_factory=lambda: _sid("MZ"))
    account_sid: str = field(default_factory=lambda: _sid("AC"))
    from_number: str = "+15550001111"
    to_number: str = "+15550002222"
    custom_parameters: dict[str, str] = field(default_factory=dict)
    auth_token: str | None = None
    signature_url: str | None = None
    frame_ms: int = 20
    open_timeout: float = 10.0

    def public_url(self) -> str:
        """The URL Twilio signs: ``signature_url``, else ``url`` with ws→wss (Twilio only dials wss)."""
        if self.signature_url:
            return self.signature_url
        return "wss://" + self.url.removeprefix("ws://") if self.url.startswith("ws://") else self.url

    def signature(self) -> str | None:
        """``X-Twilio-Signature`` for the upgrade: HMAC-SHA1 of the public URL with no params."""
        if self.auth_token is None:
            return None
        from twilio.request_validator import RequestValidator

        return RequestValidator(self.auth_token).compute_signature(self.public_url(), {})

    def voice_webhook_form(self, call_status: str = "ringing") -> dict[str, str]:
        """The standard parameters Twilio POSTs to the number's Voice URL for this inbound call."""
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": call_status,
            "Called": self.to_number,
            "Caller": self.from_number,
            "Direction": "inbound",
            "From": self.from_number,
            "To": self.to_number,
        }


def stream_from_twiml(twiml: str) -> tuple[str, dict[str, str]]:
    """The ``<Connect><Stream>`` url and ``<Parameter>`` values of a TwiML document, as Twilio uses them."""
    root = ElementTree.fromstring(twiml)  # noqa: S314 (TwiML from our own server under test)
    stream = root.find("./Connect/Stream")
    if stream is None or not stream.get("url"):
        raise ValueError("TwiML has no <Connect><Stream url=...>")
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return stream.get("url", ""), params


@dataclass
class _Segment:
    start: int  # sample index on the heard timeline
    audio: bytearray


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
        self._segments: list[_Segment] = []
        self._buffer_end = 0  # sample index at which everything buffered will have played
        self._pending_marks: list[tuple[int, str]] = []  # (due sample index, name), FIFO
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()

    # --- lifecycle

    async def __aenter__(self) -> TwilioCaller:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._closed.is_set():
            await self.hangup()
        await self._stop_tasks()

    async def connect(self) -> None:
        """Open the WebSocket like Twilio (signed if configured), then send ``connected`` and ``start``."""
        headers = {}
        sig = self.cfg.signature()
        if sig is not None:
            headers["X-Twilio-Signature"] = sig
        self._ws = await connect(
            self.cfg.url,
            additional_headers=headers,
            user_agent_header="Twilio.TmeWs/1.0",
            compression=None,
            proxy=None,
            ping_interval=None,
            max_size=None,
            open_timeout=self.cfg.open_timeout,
        )
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self._t0 = time.monotonic()
        await self._send(
            {
                "event": "start",
                "sequenceNumber": self._next_seq(),
                "start": {
                    "accountSid": self.cfg.account_sid,
                    "streamSid": self.cfg.stream_sid,
                    "callSid": self.cfg.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
                    "customParameters": dict(self.cfg.custom_parameters),
                },
                "streamSid": self.cfg.stream_sid,
            }
        )
        self._tasks = [
            asyncio.create_task(self._media_loop(), name="caller-media"),
            asyncio.create_task(self._receive_loop(), name="caller-receive"),
            asyncio.create_task(self._mark_loop(), name="caller-marks"),
        ]

    async def hangup(self) -> None:
        """The caller hangs up: Twilio sends ``stop`` and closes the socket."""
        if self._closed.is_set() or self._ws is None:
            return
        self._end("caller")
        with contextlib.suppress(ConnectionClosed):
            await self._send(
                {
                    "event": "stop",
                    "sequenceNumber": self._next_seq(),
                    "stop": {"accountSid": self.cfg.account_sid, "callSid": self.cfg.call_sid},
                    "streamSid": self.cfg.stream_sid,
                }
            )
        await self._ws.close(1000, "")
        self.close_code, self.close_reason = self._ws.close_code, self._ws.close_reason
        await self._stop_tasks()

    async def close_abruptly(self) -> None:
        """Drop the TCP connection without ``stop`` or a close frame (network loss, Twilio crash)."""
        if self._closed.is_set() or self._ws is None:
            return
        self._end("caller")
        self._ws.transport.abort()
        await self._stop_tasks()
        self.close_code, self.close_reason = self._ws.close_code, self._ws.close_reason

    async def wait_closed(self, timeout: float) -> None:
        """Until the call is over (the server closed the socket, or we hung up)."""
        async with asyncio.timeout(timeout):
            await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # --- caller side

    async def speak(self, ulaw: bytes) -> None:
        """Queue caller voice (8 kHz μ-law); returns when all of it has been sent."""
        self._voice += ulaw
        self._voice_queued += len(ulaw)
        target = self._voice_queued
        await self._wait_until(lambda: self._voice_sent >= target or self.closed, None)

    async def send_dtmf(self, digit: str) -> None:
        """The caller presses a key (bidirectional streams only; track is always ``inbound_track``)."""
        await self._send(
            {
                "event": "dtmf",
                "streamSid": self.cfg.stream_sid,
                "sequenceNumber": self._next_seq(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    # --- waiting on what the server does

    async def wait_heard(self, seconds: float, timeout: float) -> None:
        """Until at least ``seconds`` of agent audio has been *played* to the caller."""
        target = round(seconds * RATE)

        def wake_in() -> float | None:
            # The playout clock itself is the event: sleep until buffered audio would reach the target.
            missing = target - self.samples_heard()
            end = self._buffer_end
            now = self._now_sample()
            if end - now >= missing:
                return missing / RATE
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
            if require_audio and not self._segments:
                return None
            return self._now_sample() - max(self._buffer_end, floor)

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
        return sum(max(0, min(s.start + len(s.audio), end) - s.start) for s in self._segments)

    @property
    def heard_ulaw(self) -> bytes:
        """What the caller heard from stream start to now (or hang-up): agent audio as played, else 0xFF."""
        end = self._heard_end()
        out = bytearray(SILENCE * end)
        for s in self._segments:
            stop = min(s.start + len(s.audio), end)
            if stop > s.start:
                out[s.start : stop] = s.audio[: stop - s.start]
        return bytes(out)

    def heard_spans(self) -> list[tuple[int, int]]:
        """Sample ranges [start, end) during which agent audio was playing, merged where they touch."""
        end = self._heard_end()
        spans: list[tuple[int, int]] = []
        for s in self._segments:
            a, b = s.start, min(s.start + len(s.audio), end)
            if b <= a:
                continue
            if spans and spans[-1][1] >= a:
                spans[-1] = (spans[-1][0], max(spans[-1][1], b))
            else:
                spans.append((a, b))
        return spans

    def turns(self, gap_s: float = TURN_GAP_S) -> list[tuple[float, float]]:
        """Runs of heard audio split by ≥ ``gap_s`` of nothing playing: (start_s, end_s) from stream start."""
        gap = round(gap_s * RATE)
        runs: list[list[int]] = []
        for a, b in self.heard_spans():
            if runs and a - runs[-1][1] < gap:
                runs[-1][1] = b
            else:
                runs.append([a, b])
        return [(a / RATE, b / RATE) for a, b in runs]

    def summary(self) -> dict[str, Any]:
        spans = self.heard_spans()
        turns = self.turns()
        latencies = []
        for speech_end in self._speech_ends:
            nxt = next((a for a, _ in turns if a * RATE >= speech_end), None)
            if nxt is not None:
                latencies.append(round(nxt - speech_end / RATE, 3))
        return {
            "call_sid": self.cfg.call_sid,
            "stream_sid": self.cfg.stream_sid,
            "duration_s": round(self._heard_end() / RATE, 3),
            "time_to_first_agent_audio_s": round(spans[0][0] / RATE, 3) if spans else None,
            "turns": [{"start_s": round(a, 3), "end_s": round(b, 3)} for a, b in turns],
            "response_latencies_s": latencies,
            "clears_received": self.clears_received,
            "marks_echoed": len(self.echoes),
            "marks_flushed_by_clear": sum(1 for e in self.echoes if e[2]),
            "media_frames_sent": self.media_frames_sent,
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

    async def send_raw(self, text: str) -> None:
        """Send one text frame verbatim (what a broken or hostile peer would send)."""
        assert self._ws is not None
        async with self._send_lock:
            await self._ws.send(text)

    async def _send(self, msg: dict[str, Any]) -> None:
        assert self._ws is not None
        async with self._send_lock:
            await self._ws.send(orjson.dumps(msg).decode())
        self.sent.append((time.monotonic(), msg))

    async def _stop_tasks(self) -> None:
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        for task in self._tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _media_loop(self) -> None:
        frame_bytes = RATE * self.cfg.frame_ms // 1000
        frame_s = self.cfg.frame_ms / 1000
        k = 0
        try:
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
                await self._send(
                    {
                        "event": "media",
                        "sequenceNumber": self._next_seq(),
                        "media": {
                            "track": "inbound",
                            "chunk": str(k),
                            "timestamp": str((k - 1) * self.cfg.frame_ms),
                            "payload": binascii.b2a_base64(payload, newline=False).decode(),
                        },
                        "streamSid": self.cfg.stream_sid,
                    }
                )
                self.media_frames_sent += 1
                if voice:
                    self._voice_sent += len(voice)
                    if self._voice_sent == self._voice_queued:
                        self._speech_ends.append(k * frame_bytes)
                    self._notify()
        except ConnectionClosed:
            self._on_closed()

    async def _receive_loop(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                self._on_frame(frame)
                await self._flush_due_marks(force=False)
        except ConnectionClosed as exc:
            if exc.rcvd is not None and self.close_code is None:
                self.close_code, self.close_reason = exc.rcvd.code, exc.rcvd.reason
        self._on_closed()

    def _on_closed(self) -> None:
        if self._ws is not None and not self._closed.is_set():
            self._end("server")
        if self._ws is not None and self.close_code is None:
            self.close_code, self.close_reason = self._ws.close_code, self._ws.close_reason
        self._notify()

    def _violation(self, code: int, detail: str) -> None:
        self.violations.append(f"{code}: {detail}")
        self._notify()

    def _on_frame(self, frame: str | bytes) -> None:
        now = time.monotonic()
        if isinstance(frame, bytes):
            self.received.append((now, frame))
            self._violation(31950, "binary frame")
            return
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError:
            self.received.append((now, frame))
            self._violation(31951, f"not JSON: {frame[:60]!r}")
            return
        self.received.append((now, msg))
        problem = self._check(msg)
        if problem:
            self._violation(31951, problem)
            return
        event = msg["event"]
        if event == "media":
            self._play(binascii.a2b_base64(msg["media"]["payload"], strict_mode=True))
        elif event == "mark":
            self._mark(msg["mark"]["name"])
        else:
            self._clear()
        self._notify()

    def _check(self, msg: Any) -> str | None:
        if not isinstance(msg, dict):
            return "message is not a JSON object"
        event = msg.get("event")
        if event not in _ALLOWED_KEYS:
            return f"event {event!r} is not media, mark or clear"
        top, inner = _ALLOWED_KEYS[event]
        if set(msg) != top:
            return f"{event}: fields {sorted(msg)} (expected {sorted(top)})"
        if msg["streamSid"] != self.cfg.stream_sid:
            return f"{event}: wrong streamSid {msg['streamSid']!r}"
        if inner is None:
            return None
        body = msg[event]
        if not isinstance(body, dict) or set(body) != inner:
            return f"{event}.{event} must be an object with exactly {sorted(inner)}"
        value = body[next(iter(inner))]
        if not isinstance(value, str):
            return f"{event}: {next(iter(inner))} must be a string"
        if event == "media":
            try:
                binascii.a2b_base64(value, strict_mode=True)
            except (binascii.Error, ValueError):
                return "media: payload is not valid base64"
        return None

    def _play(self, audio: bytes) -> None:
        if not audio:
            return
        start = max(self._now_sample(), self._buffer_end)
        last = self._segments[-1] if self._segments else None
        if last is not None and last.start + len(last.audio) == start:
            last.audio += audio
        else:
            self._segments.append(_Segment(start, bytearray(audio)))
        self._buffer_end = start + len(audio)

    def _mark(self, name: str) -> None:
        self._pending_marks.append((max(self._now_sample(), self._buffer_end), name))

    def _clear(self) -> None:
        self.clears_received += 1
        now = self._now_sample()
        self.clears_at.append(now)
        kept = []
        for s in self._segments:
            if s.start >= now:
                continue
            del s.audio[now - s.start :]
            kept.append(s)
        self._segments = kept
        self._buffer_end = min(self._buffer_end, now)
        for i, (_, name) in enumerate(self._pending_marks):
            self._pending_marks[i] = (-1, name)  # flushed: due at once

    async def _flush_due_marks(self, *, force: bool) -> None:
        now = self._now_sample()
        while self._pending_marks and (self._pending_marks[0][0] <= now or force):
            due, name = self._pending_marks.pop(0)
            self.echoes.append((now, name, due < 0))
            await self._send(
                {
                    "event": "mark",
                    "sequenceNumber": self._next_seq(),
                    "streamSid": self.cfg.stream_sid,
                    "mark": {"name": name},
                }
            )
            self._notify()

    async def _mark_loop(self) -> None:
        try:
            while not self._closed.is_set():
                changed = self._changed
                await self._flush_due_marks(force=False)
                if self._pending_marks:
                    delay = max(self._pending_marks[0][0] - self._now_sample(), 1) / RATE
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), delay)
                else:
                    await changed.wait()
        except ConnectionClosed:
            self._on_closed()


# --- CLI


def _parse_params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--param needs key=value, got {item!r}")
        params[key] = value
    return params


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = CallerConfig(
        url=args.url,
        custom_parameters=_parse_params(args.param),
        auth_token=args.auth_token,
        signature_url=args.signature_url,
    )
    voice = read_wav_as_ulaw(args.play) if args.play else (speech_like() if args.speak else b"")
    call = TwilioCaller(cfg)
    async with call:
        try:
            async with asyncio.timeout(args.seconds):
                if args.wait_greeting:  # speaking at once would barge in on the greeting
                    await call.wait_agent_quiet(GREETING_QUIET_S, None)
                await call.speak(voice)
                if args.hangup_after_silence is not None:
                    await call.wait_agent_quiet(args.hangup_after_silence, None, require_audio=False)
                else:
                    await call.wait_closed(args.seconds)
        except TimeoutError:
            pass
        await call.hangup()
    if args.record:
        Path(args.record).parent.mkdir(parents=True, exist_ok=True)
        write_wav(args.record, call.heard_ulaw)
    return call.summary()


def main(argv: list[str] | None = None) -> int:
    """``voicebridge-caller``: place one simulated Twilio call against a Media Streams endpoint."""
    parser = argparse.ArgumentParser(prog="voicebridge-caller", description=main.__doc__)
    parser.add_argument("--url", required=True, help="media WebSocket, e.g. ws://127.0.0.1:8000/twilio/media")
    voice = parser.add_mutually_exclusive_group()
    voice.add_argument("--play", help="WAV to speak as the caller, in real time")
    voice.add_argument(
        "--speak", action="store_true", help="speak a built-in 1.2 s speech-like phrase (no WAV needed)"
    )
    parser.add_argument(
        "--wait-greeting",
        action="store_true",
        help=f"speak only once the agent's greeting has played ({GREETING_QUIET_S:g} s of quiet after it)",
    )
    parser.add_argument("--record", help="write what the caller heard to this WAV (8 kHz, 16-bit)")
    parser.add_argument("--seconds", type=float, default=20.0, help="longest call duration (default 20)")
    parser.add_argument(
        "--hangup-after-silence",
        type=float,
        metavar="S",
        help="after speaking, hang up once no agent audio has played for S seconds",
    )
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="<Parameter>")
    parser.add_argument("--auth-token", help="sign the upgrade with X-Twilio-Signature")
    parser.add_argument("--signature-url", help="public wss URL to sign (default: --url with ws→wss)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    summary = asyncio.run(_run(args))
    if args.json:
        print(json.dumps(summary))
    else:
        first = summary["time_to_first_agent_audio_s"]
        print(f"call {summary['call_sid']}: {summary['duration_s']} s, closed by {summary['closed_by']}")
        print(f"time to first agent audio: {'-' if first is None else f'{first:.3f} s'}")
        spans = " ".join(f"[{t['start_s']}–{t['end_s']}]" for t in summary["turns"])
        print(f"agent turns: {len(summary['turns'])} {spans}")
        print(f"response latencies: {summary['response_latencies_s']}")
        print(f"clears received: {summary['clears_received']}, marks echoed: {summary['marks_echoed']}")
        if summary["violations"]:
            print("protocol violations:", *summary["violations"], sep="\n  ")
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
