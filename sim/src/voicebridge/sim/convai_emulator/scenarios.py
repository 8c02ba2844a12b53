"""Ready-made agent behaviours. The default (by hand, and when a script names none): greeting beeps,
then echo each caller utterance back (speech detected by level; the echo starts after 700 ms of quiet)
with an `agent_response` "(echo N)", and a ping every 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib

from websockets.exceptions import ConnectionClosed

from .audio import bytes_per_ms, decode_to_pcm16, encode_pcm16, resample, rms, sample_rate, silence, tone
from .session import EmulatedSession, SessionClosedError


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


class Utterances:
    """The caller's utterances in one conversation, told apart by level: speech (RMS above 2 % of full
    scale), then `quiet_ms` of quiet. Plenty for tones and voices sent by tests, and for a person."""

    def __init__(self, session: EmulatedSession, quiet_ms: int = 700) -> None:
        self._session = session
        self._fmt = session.script.input_format
        self._frame_bytes = int(bytes_per_ms(self._fmt) * 20)
        self._quiet_ms = quiet_ms
        self._pos = 0

    async def next(self) -> bytes:
        """The next whole utterance (wire bytes). Raises SessionClosedError when the conversation ends."""
        threshold = 0.02 * 32767
        utterance, quiet_ms, speaking = bytearray(), 0, False
        while True:
            if self._session.closed:
                raise SessionClosedError("emulator: the session closed while the caller was awaited")
            try:
                await self._session.wait_for_audio_length(self._pos + self._frame_bytes, timeout=3600)
            except TimeoutError:
                continue
            frame = bytes(self._session.received_audio[self._pos : self._pos + self._frame_bytes])
            self._pos += self._frame_bytes
            if rms(frame, self._fmt) > threshold:
                speaking, quiet_ms = True, 0
            elif speaking:
                quiet_ms += 20
            if speaking:
                utterance += frame
            if speaking and quiet_ms >= self._quiet_ms:
                return bytes(utterance)


async def _echo(session: EmulatedSession, in_fmt: str, out_fmt: str) -> None:
    utterances = Utterances(session)
    turns = 0
    while not session.closed:
        utterance = await utterances.next()
        turns += 1
        pcm = decode_to_pcm16(utterance, in_fmt)
        pcm = resample(pcm, sample_rate(in_fmt), sample_rate(out_fmt))
        event_id = session.next_event_id()
        await session.send_event(
            {
                "type": "agent_response",
                "agent_response_event": {"agent_response": f"(echo {turns})", "event_id": event_id},
            }
        )
        await session.send_audio(encode_pcm16(pcm, out_fmt), event_id=event_id)
