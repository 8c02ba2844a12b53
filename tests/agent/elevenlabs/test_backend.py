"""The elevenlabs backend against the ConvAI emulator over a real WebSocket, through base.py's interface:
the handshake and its refusals, ping/pong, what media sends. Agent events: test_backend_events.py; endings:
test_backend_closes.py."""

from __future__ import annotations

import asyncio
import logging

import pytest
from harness.elevenlabs_calls import (
    PCM16,
    ULAW,
    Factory,
    call,
    idle,
    make_start,
    ulaw_agent,
)
from prometheus_client import REGISTRY

from voicebridge.agent.backends.base import Outbox, SessionRefused
from voicebridge.sim.convai_emulator import OMIT, AgentScript, ConvAIEmulator
from voicebridge.v1 import agent_pb2, common_pb2

# --- handshake --------------------------------------------------------------------------------------


async def test_init_carries_dynamic_variables_and_custom_parameters(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    backend = make_backend(
        config_override={"agent": {"first_message": "Hi"}}, extra_dynamic_variables={"shop": "Main St"}
    )
    custom = {"customer_tier": "gold", "system__call_sid": "forged", "call_sid": "forged"}
    async with call(emu, backend, custom=custom) as c:
        init = c.remote.init
        assert c.session.ready.conversation_id == c.remote.conversation_id
        assert c.session.ready.input_format == ULAW
        assert c.session.ready.output_format == ULAW
    assert init is not None
    assert init["type"] == "conversation_initiation_client_data"
    assert init["conversation_config_override"] == {"agent": {"first_message": "Hi"}}
    assert init["dynamic_variables"] == {
        "shop": "Main St",
        "customer_tier": "gold",
        "call_sid": "CA00000000000000000000000000000001",
        "stream_sid": "MZ00000000000000000000000000000001",
        "account_sid": "AC00000000000000000000000000000001",
        "caller_number": "+15550100",
        "called_number": "+15550199",
        "call_direction": "inbound",
        "resumed": False,  # the resume variables are always present (docs/elevenlabs.md#resume)
        "conversation_so_far": "",
        "last_heard": "",
    }
    assert c.remote.received[0] is init


async def test_agent_id_custom_parameter_picks_the_agent_only_when_allowed(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    emu.add_agent("agent_sales", ulaw_agent())
    emu.add_agent("agent_default", ulaw_agent())
    allowed = make_backend("agent_default", allow_agent_override=True)
    async with call(emu, allowed, custom={"agent_id": "agent_sales"}) as c:
        assert c.remote.agent_id == "agent_sales"
    async with call(emu, make_backend("agent_default"), custom={"agent_id": "agent_sales"}) as c:
        assert c.remote.agent_id == "agent_default"  # off by default: the parameter is ignored


async def test_pcm_formats_map_to_the_contract(emu: ConvAIEmulator, make_backend: Factory) -> None:
    emu.add_agent("agent_x", AgentScript("pcm_16000", "pcm_16000", scenario=idle))
    async with call(emu, make_backend()) as c:
        assert c.session.ready.input_format == PCM16
        assert c.session.ready.output_format == PCM16


async def test_caller_audio_is_held_until_metadata_then_released_in_order(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    gate = asyncio.Event()
    emu.add_agent("agent_x", ulaw_agent(metadata_gate=gate))
    backend = make_backend()
    session = await backend.connect(make_start())
    remote = await emu.wait_for_session()
    for chunk in (b"\x01" * 160, b"\x02" * 160):
        await session.handle(agent_pb2.ConverseRequest(audio=agent_pb2.AudioChunk(data=chunk)))
    handshake = asyncio.create_task(backend.handshake(session))
    await remote.wait_for_message("conversation_initiation_client_data")
    gate.set()
    await handshake
    await session.handle(agent_pb2.ConverseRequest(audio=agent_pb2.AudioChunk(data=b"\x03" * 160)))
    audio = await remote.wait_for_audio(480)
    await session.aclose()
    assert audio == b"\x01" * 160 + b"\x02" * 160 + b"\x03" * 160
    assert remote.early_audio == b""  # nothing reached the server before its metadata


async def test_held_audio_is_bounded(emu: ConvAIEmulator, make_backend: Factory) -> None:
    gate = asyncio.Event()
    emu.add_agent("agent_x", ulaw_agent(metadata_gate=gate))
    backend = make_backend(max_buffered_audio_s=0.1)  # 0.1 s of the largest offered format (pcm 16 kHz)
    session = await backend.connect(make_start())
    remote = await emu.wait_for_session()
    for i in range(20):
        await session.handle(agent_pb2.ConverseRequest(audio=agent_pb2.AudioChunk(data=bytes([i]) * 320)))
    gate.set()
    await backend.handshake(session)
    await remote.wait_for_audio(3200)
    await remote.ping()  # every audio frame sent before the pong has arrived
    await session.aclose()
    assert bytes(remote.received_audio) == b"".join(bytes([i]) * 320 for i in range(10, 20))


async def test_unsupported_format_is_refused_naming_both_formats(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    emu.add_agent("agent_x", AgentScript("pcm_44100", "pcm_22050", scenario=idle))
    with pytest.raises(SessionRefused) as refused:
        await make_backend().open(make_start())
    assert refused.value.reason == common_pb2.END_REASON_UNSUPPORTED_FORMAT
    assert refused.value.code == common_pb2.ERROR_CODE_FAILED_PRECONDITION
    assert "pcm_44100" in refused.value.detail
    assert "pcm_22050" in refused.value.detail
    remote = await emu.wait_for_session()
    assert await remote.wait_closed() == (1000, "call ended")


async def test_handshake_timeout_is_refused_as_agent_timeout(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    emu.add_agent("agent_x", ulaw_agent(send_metadata=False))
    with pytest.raises(SessionRefused) as refused:
        await make_backend(handshake_timeout_s=0.3).open(make_start())
    assert refused.value.reason == common_pb2.END_REASON_AGENT_TIMEOUT
    assert refused.value.code == common_pb2.ERROR_CODE_DEADLINE_EXCEEDED
    remote = await emu.wait_for_session()
    code, _ = await remote.wait_closed()
    assert code == 1000
    assert remote.closed_by_client


@pytest.mark.parametrize("mode", ["error_event", "http_429"])
async def test_busy_refusal_is_agent_busy(emu: ConvAIEmulator, make_backend: Factory, mode: str) -> None:
    emu.add_agent("agent_x", AgentScript(busy=mode))  # type: ignore[arg-type]
    with pytest.raises(SessionRefused) as refused:
        await make_backend().open(make_start())
    assert refused.value.reason == common_pb2.END_REASON_AGENT_BUSY
    assert refused.value.code == common_pb2.ERROR_CODE_RESOURCE_EXHAUSTED


async def test_unknown_agent_is_refused_as_protocol_error(emu: ConvAIEmulator, make_backend: Factory) -> None:
    with pytest.raises(SessionRefused) as refused:
        await make_backend("agent_missing").open(make_start())
    assert refused.value.reason == common_pb2.END_REASON_PROTOCOL_ERROR
    assert "1008" in refused.value.detail


async def test_private_agent_uses_a_signed_url_and_never_logs_the_key(
    emu: ConvAIEmulator, make_backend: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emu.add_agent("agent_private", ulaw_agent(requires_auth=True))
    backend = make_backend("agent_private", api_key=emu.api_key, requires_auth=True)
    async with call(emu, backend) as c:
        assert c.session.ready.conversation_id
        request_path = c.remote.request_path
        ws_headers = c.remote.request_headers
    (http_request,) = emu.signed_url_requests
    assert http_request.headers["xi-api-key"] == emu.api_key
    assert "conversation_signature=" in request_path
    assert emu.api_key not in request_path
    assert "xi-api-key" not in ws_headers
    # websockets.server is the emulator, i.e. ElevenLabs' side, which does see the key.
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")]
    assert ours
    assert not [line for line in ours if emu.api_key in line]
    assert emu.api_key not in repr(backend.settings)


async def test_wrong_api_key_is_refused(emu: ConvAIEmulator, make_backend: Factory) -> None:
    emu.add_agent("agent_private", ulaw_agent(requires_auth=True))
    with pytest.raises(SessionRefused) as refused:
        await make_backend("agent_private", api_key="xi-wrong-key-000", requires_auth=True).open(make_start())
    assert refused.value.code == common_pb2.ERROR_CODE_UNAUTHENTICATED


# --- ping/pong ----------------------------------------------------------------------------------------


def _rtt_sum() -> float:
    return REGISTRY.get_sample_value("agent_elevenlabs_ping_rtt_seconds_sum") or 0.0


@pytest.mark.parametrize("ping_ms", [42, None, OMIT])
async def test_every_ping_gets_its_pong(emu: ConvAIEmulator, make_backend: Factory, ping_ms: object) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    before = _rtt_sum()
    async with call(emu, make_backend()) as c:
        pong = await c.remote.ping(ping_ms=ping_ms)  # type: ignore[arg-type]
        second = await c.remote.ping(ping_ms=ping_ms)  # type: ignore[arg-type]
    assert pong == {"type": "pong", "event_id": 1}
    assert second == {"type": "pong", "event_id": 2}
    expected = 2 * 0.042 if ping_ms == 42 else 0.0
    assert _rtt_sum() - before == pytest.approx(expected)


async def test_pong_is_not_blocked_by_audio_backpressure(emu: ConvAIEmulator, make_backend: Factory) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    outbox = Outbox(max_audio=2)  # nobody reads it: media is stalled
    async with call(emu, make_backend(), outbox=outbox) as c:
        await c.remote.send_audio(b"\x7f" * 8000, chunk_ms=20)  # 50 chunks, 48 of them cannot fit
        pong = await c.remote.ping(ping_ms=10, timeout=2)
        assert pong["event_id"] == 1
        assert not c.run.done()
        c.run.cancel()  # the servicer cancels run() when it tears a call down


# --- what media sends -----------------------------------------------------------------------------------


async def test_dtmf_is_user_activity_then_contextual_update(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    async with call(emu, make_backend()) as c:
        await c.session.handle(agent_pb2.ConverseRequest(dtmf=common_pb2.DtmfDigit(digit="5")))
        update = await c.remote.wait_for_message("contextual_update")
    kinds = [m.get("type") for m in c.remote.received]
    assert kinds.index("user_activity") < kinds.index("contextual_update")
    assert "5" in update["text"]
