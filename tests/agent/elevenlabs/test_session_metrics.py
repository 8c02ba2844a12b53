"""The per-call observability the elevenlabs backend exports (docs/elevenlabs.md): time to the first
agent audio, turn latency (caller's final transcript → first audio of the next response), interruptions,
and seconds of audio each way at the negotiated rates."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from prometheus_client import REGISTRY

from voicebridge.agent.backends.base import Outbox
from voicebridge.agent.backends.elevenlabs import ElevenLabsBackend
from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession
from voicebridge.v1 import agent_pb2, common_pb2

PCM16 = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16000)
ULAW = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)


async def idle(session: EmulatedSession) -> None:
    """The test drives the agent's side."""


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def snapshot() -> dict[str, float]:
    return {
        "first": sample("agent_elevenlabs_first_audio_seconds_count"),
        "turns": sample("agent_elevenlabs_turn_seconds_count"),
        "interruptions": sample("agent_elevenlabs_interruptions_total"),
        "sent": sample("agent_elevenlabs_audio_seconds_total", direction="sent"),
        "received": sample("agent_elevenlabs_audio_seconds_total", direction="received"),
    }


async def test_first_audio_turn_latency_interruptions_and_audio_seconds_are_measured(
    emu: ConvAIEmulator, make_backend: Callable[..., ElevenLabsBackend]
) -> None:
    # Caller audio in PCM 16 kHz (32000 B/s), agent audio in μ-law (8000 B/s): each rate is used.
    emu.add_agent("agent_x", AgentScript("pcm_16000", "ulaw_8000", scenario=idle))
    start = agent_pb2.SessionStart(
        call=common_pb2.CallInfo(call_sid="CA0001"), input_formats=[PCM16, ULAW], output_formats=[ULAW]
    )
    before = snapshot()
    session = await make_backend().open(start)
    remote = await emu.wait_for_session()
    run = asyncio.create_task(session.run(Outbox()))
    try:
        await session.handle(agent_pb2.ConverseRequest(audio=agent_pb2.AudioChunk(data=bytes(3200))))
        await remote.wait_for_audio(3200)
        await remote.send_audio(b"\x7f" * 800, event_id=1)  # the greeting: 100 ms
        await remote.send_audio(b"\x7f" * 400, event_id=1)
        user_said = {"user_transcript": "hello", "event_id": 2}
        await remote.send_event({"type": "user_transcript", "user_transcription_event": user_said})
        await remote.send_audio(b"\x7f" * 400, event_id=1)  # still the greeting: not an answer
        await remote.ping()
        assert snapshot()["turns"] == before["turns"]
        await remote.send_audio(b"\x7f" * 800, event_id=2)  # the answer
        await remote.send_event({"type": "interruption", "interruption_event": {"event_id": 2}})
        await remote.ping()  # the reader has handled everything above
    finally:
        await session.aclose(common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(run, 5)

    after = snapshot()
    delta = {k: round(after[k] - before[k], 6) for k in after}
    assert delta == {"first": 1, "turns": 1, "interruptions": 1, "sent": 0.1, "received": 0.3}
