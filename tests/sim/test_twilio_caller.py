"""The simulated Twilio caller against a small scripted fake edge (a websockets server on loopback)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from twilio.request_validator import RequestValidator
from websockets.asyncio.server import ServerConnection, serve

from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller, stream_from_twiml

Script = Callable[["FakeEdge", ServerConnection], Awaitable[None]]


class FakeEdge:
    """Accepts one call, records everything the caller sends, and runs a test's script as the server."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script
        self.got: list[tuple[float, Any]] = []
        self.headers: dict[str, str] = {}
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._arrived = asyncio.Event()
        self.stream_sid = ""

    async def __aenter__(self) -> FakeEdge:
        self.server = await serve(self._handle, "127.0.0.1", 0, process_request=self._capture)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/twilio/media"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    def _capture(self, connection: ServerConnection, request: Any) -> None:
        self.headers = {k.lower(): v for k, v in request.headers.raw_items()}

    async def _handle(self, ws: ServerConnection) -> None:
        reader = asyncio.create_task(self._read(ws))
        if self.script is not None:
            first = await self.wait_count("start", 1)
            self.stream_sid = first["streamSid"]
            await self.script(self, ws)
        await reader

    async def _read(self, ws: ServerConnection) -> None:
        try:
            async for frame in ws:
                self.got.append((time.monotonic(), orjson.loads(frame)))
                self._arrived.set()
                self._arrived = asyncio.Event()
        finally:
            self.close_code = ws.close_code
            self.closed.set()
            self._arrived.set()

    def messages(self, event: str) -> list[dict[str, Any]]:
        return [m for _, m in self.got if m.get("event") == event]

    async def wait_count(self, event: str, count: int, timeout: float = 5.0) -> dict[str, Any]:
        """Until the caller has sent ``count`` messages of ``event``; returns the count-th."""
        async with asyncio.timeout(timeout):
            while len(self.messages(event)) < count:
                if self.closed.is_set():
                    raise AssertionError(f"closed before {count} {event}")
                await self._arrived.wait()
        return self.messages(event)[count - 1]

    async def send(self, ws: ServerConnection, msg: dict[str, Any]) -> float:
        await ws.send(json.dumps(msg))
        return time.monotonic()

    async def media(self, ws: ServerConnection, audio: bytes) -> float:
        payload = base64.b64encode(audio).decode()
        return await self.send(
            ws, {"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}}
        )

    async def mark(self, ws: ServerConnection, name: str) -> float:
        return await self.send(ws, {"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})


def _cfg(url: str, **kw: Any) -> CallerConfig:
    return CallerConfig(url=url, call_sid="CA1", stream_sid="MZ1", account_sid="AC1", **kw)


async def test_sends_connected_then_start_then_media_with_string_fields() -> None:
    async with FakeEdge() as edge:
        async with TwilioCaller(_cfg(edge.url, custom_parameters={"token": "t0k", "who": "Jane"})):
            await edge.wait_count("media", 5)
        await edge.closed.wait()
    msgs = [m for _, m in edge.got]
    assert msgs[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert msgs[1] == {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "AC1",
            "streamSid": "MZ1",
            "callSid": "CA1",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"token": "t0k", "who": "Jane"},
        },
        "streamSid": "MZ1",
    }
    media = edge.messages("media")
    for k, m in enumerate(media, start=1):
        assert m["sequenceNumber"] == str(k + 1)
        assert m["streamSid"] == "MZ1"
        assert m["media"]["track"] == "inbound"
        assert m["media"]["chunk"] == str(k)
        assert m["media"]["timestamp"] == str((k - 1) * 20)
        assert base64.b64decode(m["media"]["payload"]) == b"\xff" * 160
    stop = msgs[-1]
    assert stop == {
        "event": "stop",
        "sequenceNumber": str(len(media) + 2),
        "stop": {"accountSid": "AC1", "callSid": "CA1"},
        "streamSid": "MZ1",
    }
    assert edge.close_code == 1000


async def test_media_cadence_is_one_frame_per_20ms_and_never_ahead_of_real_time() -> None:
    async with FakeEdge() as edge, TwilioCaller(_cfg(edge.url)) as call:
        voice = bytes(range(256)) * 25  # 6400 B = 40 frames of 160 B
        await call.speak(voice)
        sent_media = [(t, m) for t, m in call.sent if m["event"] == "media"]
        t0 = next(t for t, m in call.sent if m["event"] == "start")
    voiced = [(t, m) for t, m in sent_media if base64.b64decode(m["media"]["payload"]) != b"\xff" * 160]
    assert len(voiced) == 40
    assert b"".join(base64.b64decode(m["media"]["payload"]) for _, m in voiced) == voice
    for t, m in sent_media:
        # Frame k is due k*20 ms after start: the clock is absolute, so no frame goes early.
        assert t - t0 >= int(m["media"]["timestamp"]) / 1000 - 0.001
        assert len(base64.b64decode(m["media"]["payload"])) == 160


async def test_last_voice_frame_is_padded_with_silence() -> None:
    async with FakeEdge() as edge, TwilioCaller(_cfg(edge.url)) as call:
        await call.speak(b"\x10" * 200)
        payloads = [base64.b64decode(m["media"]["payload"]) for _, m in call.sent if m["event"] == "media"]
    voiced = [p for p in payloads if p != b"\xff" * 160]
    assert voiced == [b"\x10" * 160, b"\x10" * 40 + b"\xff" * 120]


async def test_mark_is_echoed_only_after_the_audio_before_it_has_played() -> None:
    echo: dict[str, Any] = {}

    async def script(edge: FakeEdge, ws: ServerConnection) -> None:
        sent_at = await edge.media(ws, b"\x11" * 3200)  # 400 ms
        await edge.mark(ws, "after-audio")
        msg = await edge.wait_count("mark", 1)
        echo.update(msg=msg, latency=edge.got[-1][0] - sent_at)

    async with FakeEdge(script) as edge, TwilioCaller(_cfg(edge.url)) as call:
        await call.wait_for_event("mark", timeout=5)
        await edge.wait_count("mark", 1)
        heard = call.heard_ulaw
        (echo_sample, name, flushed) = call.echoes[0]
    assert echo["msg"]["mark"] == {"name": "after-audio"}
    assert echo["msg"]["streamSid"] == "MZ1"
    assert echo["msg"]["sequenceNumber"].isdigit()
    assert echo["latency"] >= 0.4  # playback takes at least the audio's duration
    assert (name, flushed) == ("after-audio", False)
    first = heard.index(b"\x11")
    assert heard[first : first + 3200] == b"\x11" * 3200
    assert echo_sample >= first + 3200
    assert call.violations == []


async def test_mark_with_nothing_buffered_is_echoed_at_once() -> None:
    async def script(edge: FakeEdge, ws: ServerConnection) -> None:
        await edge.mark(ws, "idle")
        await edge.wait_count("mark", 1)
        await edge.media(ws, b"\x22" * 160)
        await edge.mark(ws, "second")
        await edge.wait_count("mark", 2)

    async with FakeEdge(script) as edge, TwilioCaller(_cfg(edge.url)) as call:
        await edge.wait_count("mark", 2)
        assert [m["mark"]["name"] for m in edge.messages("mark")] == ["idle", "second"]
        assert call.heard_ulaw.count(b"\x22") == 160
        assert call.echoes[0][0] <= call.echoes[1][0]
        assert call.violations == []


async def test_clear_drops_buffered_audio_and_echoes_pending_marks_at_once() -> None:
    async def script(edge: FakeEdge, ws: ServerConnection) -> None:
        await edge.media(ws, b"\x33" * 40000)  # 5 s
        await edge.mark(ws, "m1")
        await edge.media(ws, b"\x34" * 8000)
        await edge.mark(ws, "m2")
        await edge.wait_count("media", len(edge.messages("media")) + 10)  # the caller's clock: 200 ms on
        await edge.send(ws, {"event": "clear", "streamSid": edge.stream_sid})
        await edge.wait_count("mark", 2)
        await edge.mark(ws, "after-clear")

    async with FakeEdge(script) as edge, TwilioCaller(_cfg(edge.url)) as call:
        await edge.wait_count("mark", 3)
        await call.wait_for_event("clear", timeout=5)
        names = [m["mark"]["name"] for m in edge.messages("mark")]
        heard_at_clear = call.samples_heard()
        echoes = list(call.echoes)
        heard = call.heard_ulaw
        summary = call.summary()
    assert names == ["m1", "m2", "after-clear"]
    assert [(n, f) for _, n, f in echoes] == [("m1", True), ("m2", True), ("after-clear", False)]
    assert 0 < heard_at_clear < 40000
    assert b"\x34" not in heard
    # Nothing plays after the clear: the heard audio is one run that ends where the clear landed.
    assert heard.count(b"\x33") == heard_at_clear
    first = heard.index(b"\x33")
    assert heard[first + heard_at_clear :].strip(b"\xff") == b""
    assert summary["clears_received"] == 1
    assert summary["marks_flushed_by_clear"] == 2
    assert call.violations == []


async def test_heard_timeline_plays_any_chunk_sizes_back_to_back_and_counts_turns() -> None:
    async def script(edge: FakeEdge, ws: ServerConnection) -> None:
        for size, byte in ((1000, 0x11), (601, 0x12), (1, 0x13), (798, 0x14)):  # 2400 B = 300 ms
            await edge.media(ws, bytes([byte]) * size)
        await edge.mark(ws, "turn1")
        await edge.wait_count("mark", 1)
        # 26 frames after the echo (the first may come at once): over 500 ms of nothing, whatever the phase
        await edge.wait_count("media", len(edge.messages("media")) + 26)
        await edge.media(ws, b"\x21" * 800)
        await edge.mark(ws, "turn2")
        await edge.wait_count("mark", 2)

    async with FakeEdge(script) as edge, TwilioCaller(_cfg(edge.url)) as call:
        await edge.wait_count("mark", 2)
        await call.wait_heard(0.4, timeout=5)
        heard = call.heard_ulaw
        summary = call.summary()
    first = heard.index(b"\x11")
    expected = b"\x11" * 1000 + b"\x12" * 601 + b"\x13" + b"\x14" * 798
    assert heard[first : first + 2400] == expected
    second = heard.index(b"\x21")
    assert second - (first + 2400) >= 4000
    assert heard[first + 2400 : second] == b"\xff" * (second - first - 2400)
    assert heard[second : second + 800] == b"\x21" * 800
    assert len(summary["turns"]) == 2
    assert summary["bytes_heard"] == 3200
    assert summary["time_to_first_agent_audio_s"] == round(first / 8000, 3)
    assert summary["marks_echoed"] == 2


async def test_without_keep_media_media_messages_are_counted_and_played_but_not_kept() -> None:
    async def script(edge: FakeEdge, ws: ServerConnection) -> None:
        await edge.media(ws, b"\x31" * 800)
        await edge.media(ws, b"\x32" * 400)
        await edge.mark(ws, "end")
        await edge.wait_count("mark", 1)

    async with FakeEdge(script) as edge, TwilioCaller(_cfg(edge.url, keep_media=False)) as call:
        await edge.wait_count("mark", 1)
        heard = call.heard_ulaw
        kept_in = [m["event"] for _, m in call.received]
        kept_out = [m["event"] for _, m in call.sent]
        frames_sent = call.media_frames_sent
    assert call.media_bytes_received == 1200
    first = heard.index(b"\x31")
    assert heard[first : first + 1200] == b"\x31" * 800 + b"\x32" * 400
    assert kept_in == ["mark"]
    assert frames_sent > 0
    assert "media" not in kept_out
    assert kept_out[0] == "start"  # connected is written to the socket directly
    assert "mark" in kept_out


async def test_wait_heard_returns_once_enough_audio_has_played() -> None:
    async def script(edge: FakeEdge, ws: ServerConnection) -> None:
        await edge.media(ws, b"\x44" * 4000)

    async with FakeEdge(script) as edge, TwilioCaller(_cfg(edge.url)) as call:
        await call.wait_heard(0.5, timeout=5)
        assert call.samples_heard() >= 4000
        assert call.heard_ulaw.count(b"\x44") == call.samples_heard()


async def test_invalid_server_messages_are_recorded_as_violations_and_not_played() -> None:
    async def script(edge: FakeEdge, ws: ServerConnection) -> None:
        sid = edge.stream_sid
        await ws.send(b"\x00\x01")
        await ws.send("not json")
        await edge.send(ws, {"event": "media", "streamSid": "MZwrong", "media": {"payload": "AAAA"}})
        await edge.send(ws, {"event": "media", "streamSid": sid, "media": {"payload": "!!!"}})
        await edge.send(ws, {"event": "mark", "streamSid": sid})
        await edge.send(ws, {"event": "mark", "streamSid": sid, "mark": {}})
        await edge.send(ws, {"event": "media", "streamSid": sid, "media": {"payload": "AAAA", "track": "x"}})
        await edge.send(ws, {"event": "hello", "streamSid": sid})
        await edge.send(ws, {"event": "clear"})
        await edge.mark(ws, "done")

    async with FakeEdge(script) as edge, TwilioCaller(_cfg(edge.url)) as call:
        await call.wait_for_event("mark", timeout=5)
        await edge.wait_count("mark", 1)
        violations = list(call.violations)
        summary = call.summary()
    assert [v.split(":")[0] for v in violations] == ["31950"] + ["31951"] * 8
    assert "wrong streamSid" in violations[2]
    assert "base64" in violations[3]
    assert summary["bytes_heard"] == 0
    assert summary["clears_received"] == 0
    assert [m["mark"]["name"] for m in edge.messages("mark")] == ["done"]


async def test_signs_the_upgrade_for_the_public_wss_url() -> None:
    async with FakeEdge() as edge:
        async with TwilioCaller(_cfg(edge.url, auth_token="secret-token")):
            await edge.wait_count("media", 1)
        sig = edge.headers["x-twilio-signature"]
        validator = RequestValidator("secret-token")
        assert validator.validate(edge.url.replace("ws://", "wss://"), {}, sig)
        assert not validator.validate(edge.url, {}, sig)
        assert not RequestValidator("other").validate(edge.url.replace("ws://", "wss://"), {}, sig)

        public = "wss://voice.example.com/twilio/media"
        async with TwilioCaller(_cfg(edge.url, auth_token="secret-token", signature_url=public)):
            await edge.wait_count("media", 1)
        assert validator.validate(public, {}, edge.headers["x-twilio-signature"])

        async with TwilioCaller(_cfg(edge.url)):
            await edge.wait_count("media", 1)
        assert "x-twilio-signature" not in edge.headers


async def test_server_close_ends_the_call_without_stop() -> None:
    async def script(edge: FakeEdge, ws: ServerConnection) -> None:
        await ws.close(1000, "agent hung up")

    async with FakeEdge(script) as edge, TwilioCaller(_cfg(edge.url)) as call:
        await call.wait_closed(timeout=5)
        assert call.closed_by == "server"
        assert (call.close_code, call.close_reason) == (1000, "agent hung up")
    assert edge.messages("stop") == []


async def test_close_abruptly_sends_no_stop_and_no_close_frame() -> None:
    async with FakeEdge() as edge:
        call = TwilioCaller(_cfg(edge.url))
        await call.connect()
        await edge.wait_count("media", 2)
        await call.close_abruptly()
        await edge.closed.wait()
        await call.hangup()  # a no-op once closed
    assert edge.messages("stop") == []
    assert edge.close_code == 1006
    assert call.closed_by == "caller"


async def test_dtmf_is_sent_as_twilio_does() -> None:
    async with FakeEdge() as edge, TwilioCaller(_cfg(edge.url)) as call:
        await call.send_dtmf("7")
        msg = await edge.wait_count("dtmf", 1)
    assert msg["dtmf"] == {"track": "inbound_track", "digit": "7"}
    assert msg["streamSid"] == "MZ1"
    assert msg["sequenceNumber"].isdigit()


def test_stream_from_twiml_reads_url_and_parameters() -> None:
    twiml = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://h/twilio/media">'
        '<Parameter name="token" value="abc" /><Parameter name="lang" value="en" /></Stream></Connect>'
        "<Hangup /></Response>"
    )
    assert stream_from_twiml(twiml) == ("wss://h/twilio/media", {"token": "abc", "lang": "en"})
    with pytest.raises(ValueError, match="no <Connect><Stream"):
        stream_from_twiml("<Response><Hangup/></Response>")


def test_voice_webhook_form_has_twilio_standard_fields() -> None:
    form = _cfg("ws://x").voice_webhook_form()
    assert form["CallSid"] == "CA1"
    assert form["From"] == "+15550001111"
    assert form["To"] == "+15550002222"
    assert form["Direction"] == "inbound"
