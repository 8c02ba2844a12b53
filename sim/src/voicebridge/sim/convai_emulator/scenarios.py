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
            pcm = resample(pcm, sample_rate(in_fmt), sample_rate(out_fmt))
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
