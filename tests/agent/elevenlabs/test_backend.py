"""The elevenlabs backend against the ConvAI emulator over a real WebSocket, through base.py's interface."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY

from voicebridge.agent.backends.base import AgentSession, Outbox, SessionEndInfo, SessionRefused
from voicebridge.agent.backends.elevenlabs import ElevenLabsBackend
from voicebridge.agent.prompts import load_prompt
from voicebridge.sim.convai_emulator import OMIT, AgentScript, ConvAIEmulator, EmulatedSession
from voicebridge.v1 import agent_pb2, common_pb2

Factory = Callable[..., ElevenLabsBackend]
ULAW = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)
PCM16 = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16000)


async def idle(session: EmulatedSession) -> None:
    """Scenario that leaves the driving to the test."""


def make_start(
    custom: dict[str, str] | None = None,
    input_formats: tuple[common_pb2.AudioFormat, ...] = (ULAW, PCM16),
    output_formats: tuple[common_pb2.AudioFormat, ...] = (ULAW, PCM16),
) -> agent_pb2.SessionStart:
    return agent_pb2.SessionStart(
        call=common_pb2.CallInfo(
            call_sid="CA00000000000000000000000000000001",
            stream_sid="MZ00000000000000000000000000000001",
            account_sid="AC00000000000000000000000000000001",
            from_number="+15550100",
            to_number="+15550199",
            direction=common_pb2.CALL_DIRECTION_INBOUND,
            custom_parameters=custom or {},
        ),
        input_formats=list(input_formats),
        output_formats=list(output_formats),
    )


async def next_message(
    outbox: Outbox, kind: str | Callable[[agent_pb2.ConverseResponse], bool], timeout: float = 5.0
) -> tuple[agent_pb2.ConverseResponse, list[agent_pb2.ConverseResponse]]:
    """Take messages until one matches; returns it and every message taken before it."""
    seen: list[agent_pb2.ConverseResponse] = []
    matches = (lambda m: m.WhichOneof("event") == kind) if isinstance(kind, str) else kind
    async with asyncio.timeout(timeout):
        while True:
            message = await outbox.get()
            if matches(message):
                return message, seen
            seen.append(message)


@dataclass
class Call:
    session: AgentSession
    remote: EmulatedSession
    outbox: Outbox
    run: asyncio.Task[SessionEndInfo]


@contextlib.asynccontextmanager
async def call(
    emu: ConvAIEmulator, backend: ElevenLabsBackend, outbox: Outbox | None = None, **start_kw: object
) -> AsyncIterator[Call]:
    session = await backend.open(make_start(**start_kw))  # type: ignore[arg-type]
    remote = await emu.wait_for_session()
    box = outbox or Outbox()
    run = asyncio.create_task(session.run(box))
    try:
        yield Call(session, remote, box, run)
    finally:
        await session.aclose(common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(run, 5)


def ulaw_agent(**kw: object) -> AgentScript:
    return AgentScript("ulaw_8000", "ulaw_8000", scenario=idle, **kw)  # type: ignore[arg-type]


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


# --- agent events -------------------------------------------------------------------------------------


async def test_audio_reaches_the_outbox_with_format_and_response_id(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    async with call(emu, make_backend()) as c:
        rid = await c.remote.send_audio(b"\x55" * 800, chunk_ms=50)
        first, _ = await next_message(c.outbox, "audio")
        second, _ = await next_message(c.outbox, "audio")
    assert first.audio.data + second.audio.data == b"\x55" * 800
    assert first.audio.response_id == rid == 1
    assert first.audio.format == ULAW
    assert first.audio.received_unix_nanos > 0


NUMBERINGS = ["per_reply", "per_chunk"]  # how the server numbers audio event ids (docs/elevenlabs.md)


def _text(text: str) -> dict[str, object]:
    return {"type": "agent_response", "agent_response_event": {"agent_response": text, "event_id": 0}}


def _caller_said(text: str) -> dict[str, object]:
    return {"type": "user_transcript", "user_transcription_event": {"user_transcript": text, "event_id": 0}}


async def _audio_until(outbox: Outbox, data: bytes) -> list[agent_pb2.ConverseResponse]:
    """Every message up to and including the first audio chunk holding `data`."""
    last, seen = await next_message(
        outbox, lambda m: m.WhichOneof("event") == "audio" and m.audio.data == data
    )
    return [*seen, last]


@pytest.mark.parametrize("numbering", NUMBERINGS)
async def test_interruption_drops_the_rest_of_the_reply_and_late_chunks_and_keeps_the_next(
    emu: ConvAIEmulator, make_backend: Factory, numbering: str
) -> None:
    emu.add_agent("agent_x", ulaw_agent(event_ids=numbering))
    async with call(emu, make_backend()) as c:
        await c.remote.send_event(_text("Your order shipped"))
        first = await c.remote.send_audio(b"\x01" * 160, chunk_ms=20)
        reply, _ = await next_message(c.outbox, "audio")
        last = await c.remote.send_audio(b"\x02" * 480, chunk_ms=20, event_id=first)  # still the reply
        await c.remote.send_event({"type": "interruption", "interruption_event": {"event_id": last}})
        late = {"audio_base_64": base64.b64encode(b"\x22" * 160).decode(), "event_id": last}
        await c.remote.send_event({"type": "audio", "audio_event": late})  # a chunk with the interrupted id
        await c.remote.send_event(_caller_said("wait"))
        await c.remote.send_event(_text("Yes?"))
        await c.remote.send_audio(b"\x03" * 160)
        got = await _audio_until(c.outbox, b"\x03" * 160)
    rid = reply.audio.response_id
    assert [m.interruption.response_id for m in got if m.WhichOneof("event") == "interruption"] == [rid]
    played = [m.audio for m in got if m.WhichOneof("event") == "audio"]
    assert b"\x22" not in b"".join(a.data for a in played)
    assert all(a.response_id == rid for a in played[:-1])  # what got through before the cut: the reply
    assert played[-1].response_id > rid


@pytest.mark.parametrize("numbering", NUMBERINGS)
async def test_after_a_local_barge_in_the_rest_of_the_reply_never_reaches_media_and_the_next_does(
    emu: ConvAIEmulator, make_backend: Factory, numbering: str
) -> None:
    emu.add_agent("agent_x", ulaw_agent(event_ids=numbering))
    async with call(emu, make_backend()) as c:
        await c.remote.send_event(_text("Your order ships on Friday"))
        first = await c.remote.send_audio(b"\x01" * 320, chunk_ms=20)
        played, _ = await next_message(c.outbox, "audio")
        rid = played.audio.response_id
        interrupted = agent_pb2.CallerInterrupted(response_id=rid, heard_ms=1234, heard_text="Your order")
        await c.session.handle(agent_pb2.ConverseRequest(interrupted=interrupted))
        update = await c.remote.wait_for_message("contextual_update")
        # ElevenLabs goes on streaming the reply (it has not decided on an interruption itself).
        await c.remote.send_audio(b"\x02" * 800, chunk_ms=20, event_id=first)
        await c.remote.send_event(_caller_said("hold on"))
        await c.remote.send_event(_text("Sure."))
        await c.remote.send_audio(b"\x03" * 160)
        got = await _audio_until(c.outbox, b"\x03" * 160)
    assert "1.23 seconds" in update["text"]
    assert '"Your order"' in update["text"]
    audio = [m.audio for m in got if m.WhichOneof("event") == "audio"]
    assert b"\x02" not in b"".join(a.data for a in audio)
    assert audio[-1].response_id > rid


async def test_transcripts_are_forwarded(emu: ConvAIEmulator, make_backend: Factory) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    events = [
        {
            "type": "tentative_user_transcript",
            "tentative_user_transcription_event": {"user_transcript": "I ne"},
        },
        {
            "type": "user_transcript",
            "user_transcription_event": {"user_transcript": "I need help", "event_id": 4},
        },
        {
            "type": "agent_response",
            "agent_response_event": {"agent_response": "Sure, what with?", "event_id": 5},
        },
        {
            "type": "agent_response_correction",
            "agent_response_correction_event": {
                "original_agent_response": "Sure, what with?",
                "corrected_agent_response": "Sure,",
                "event_id": 5,
            },
        },
    ]
    async with call(emu, make_backend()) as c:
        for event in events:
            await c.remote.send_event(event)
        got = [(await next_message(c.outbox, "transcript"))[0].transcript for _ in events]
    role = common_pb2.Transcript
    assert [(t.role, t.text, t.final, t.correction, t.response_id) for t in got] == [
        (role.ROLE_CALLER, "I ne", False, False, 0),
        (role.ROLE_CALLER, "I need help", True, False, 0),
        (role.ROLE_AGENT, "Sure, what with?", True, False, 5),
        (role.ROLE_AGENT, "Sure,", True, True, 5),
    ]


def _tool_call(name: str, call_id: str, **params: str) -> dict[str, object]:
    return {
        "type": "client_tool_call",
        "client_tool_call": {"tool_name": name, "tool_call_id": call_id, "parameters": params, "event_id": 9},
    }


async def test_end_call_tool_answers_and_hangs_up_after_the_audio(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    async with call(emu, make_backend()) as c:
        await c.remote.send_audio(b"\x10" * 160)
        await c.remote.send_event(_tool_call("end_call", "tc1", reason="caller said bye"))
        result = await c.remote.wait_for_message("client_tool_result")
        hangup, before = await next_message(c.outbox, "hangup")
    assert result == {
        "type": "client_tool_result",
        "tool_call_id": "tc1",
        "result": "Call will end after the current message.",
        "is_error": False,
    }
    assert hangup.hangup.reason == "caller said bye"
    assert [m.WhichOneof("event") for m in before] == ["audio"]


def _transfer_result(destination: str, transferred: bool, detail: str = "") -> agent_pb2.ConverseRequest:
    outcome = common_pb2.TransferResult(destination=destination, transferred=transferred, detail=detail)
    return agent_pb2.ConverseRequest(transfer_result=outcome)


async def test_transfer_tool_is_answered_with_what_the_edge_did(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    async with call(emu, make_backend()) as c:
        await c.remote.send_event(
            _tool_call("transfer_call", "tc2", phone_number="+15550123", reason="billing")
        )
        transfer, _ = await next_message(c.outbox, "transfer")
        assert not any(m.get("type") == "client_tool_result" for m in c.remote.received)  # not yet done
        await c.session.handle(_transfer_result("+15550123", True))
        result = await c.remote.wait_for_message("client_tool_result")
    assert transfer.transfer.destination == "+15550123"
    assert transfer.transfer.reason == "billing"
    assert result == {
        "type": "client_tool_result",
        "tool_call_id": "tc2",
        "result": "The call is being transferred to +15550123.",
        "is_error": False,
    }


async def test_refused_transfer_is_an_error_result_and_the_conversation_goes_on(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    async with call(emu, make_backend()) as c:
        await c.remote.send_event(_tool_call("transfer_to_number", "tc4", phone_number="+19005550123"))
        await next_message(c.outbox, "transfer")
        await c.session.handle(_transfer_result("+19005550123", False, "destination not allowed"))
        result = await c.remote.wait_for_message("client_tool_result")
        await c.remote.send_audio(b"\x42" * 160, event_id=3)  # the agent tells the caller, and goes on
        audio, _ = await next_message(c.outbox, "audio")
        assert not c.run.done()
    assert result["tool_call_id"] == "tc4"
    assert result["is_error"] is True
    assert "destination not allowed" in result["result"]
    assert audio.audio.data == b"\x42" * 160


async def test_unknown_tool_is_answered_with_is_error(emu: ConvAIEmulator, make_backend: Factory) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    async with call(emu, make_backend()) as c:
        await c.remote.send_event(_tool_call("book_table", "tc3", party="4"))
        result = await c.remote.wait_for_message("client_tool_result")
        assert not c.run.done()
    assert result == {
        "type": "client_tool_result",
        "tool_call_id": "tc3",
        "result": "Unknown client tool: book_table",
        "is_error": True,
    }


async def test_unknown_and_malformed_frames_do_not_end_the_call(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    async with call(emu, make_backend()) as c:
        await c.remote.send_event({"type": "brand_new_event", "brand_new_event": {"x": 1}})
        await c.remote.send_raw("{this is not json")
        await c.remote.send_event({"type": "audio", "audio_event": {"audio_base_64": "%%%", "event_id": 1}})
        await c.remote.send_event({"type": "ping", "ping_event": {}})
        await c.remote.send_event({"type": "vad_score", "vad_score_event": {"vad_score": 0.5}})
        await c.remote.send_audio(b"\x42" * 160, event_id=2)
        audio, _ = await next_message(c.outbox, "audio")
        pong = await c.remote.ping()
        assert not c.remote.closed
    assert audio.audio.data == b"\x42" * 160
    assert pong["type"] == "pong"


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


# --- endings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_type", "reason", "apology"),
    [
        (1000, None, common_pb2.END_REASON_AGENT_ENDED, False),
        (1000, "max_duration_exceeded", common_pb2.END_REASON_AGENT_ENDED, False),
        (1002, "llm_timeout", common_pb2.END_REASON_AGENT_ERROR, True),
        (1011, "unknown_websocket_crash", common_pb2.END_REASON_AGENT_ERROR, True),
        (1008, "missing_dynamic_variable", common_pb2.END_REASON_PROTOCOL_ERROR, True),
    ],
)
async def test_close_codes_map_to_end_reasons(
    emu: ConvAIEmulator, make_backend: Factory, code: int, error_type: str | None, reason: int, apology: bool
) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    async with call(emu, make_backend(resume=False)) as c:  # resumed: tests/agent/elevenlabs/test_resume.py
        await c.remote.send_audio(b"\x11" * 160)
        if error_type:
            await c.remote.fail(code, error_type, f"{error_type} happened")
        else:
            await c.remote.close(code, "bye")
        end = await asyncio.wait_for(c.run, 5)
    assert end.reason == reason
    assert end.extra["close_code"] == str(code)
    if error_type:
        assert error_type in end.detail
        assert end.extra["error_type"] == error_type
    audio = []
    while not c.outbox._queue.empty():
        message = await c.outbox.get()
        audio.append(message.audio.data)
    expected = [b"\x11" * 160] + (
        [load_prompt("apology", common_pb2.AUDIO_ENCODING_MULAW, 8000)] if apology else []
    )
    assert audio == expected


async def test_apology_is_rendered_in_the_negotiated_pcm_format(
    emu: ConvAIEmulator, make_backend: Factory
) -> None:
    emu.add_agent("agent_x", AgentScript("pcm_16000", "pcm_16000", scenario=idle))
    async with call(emu, make_backend(resume=False)) as c:
        await c.remote.close(1011, "internal")
        end = await asyncio.wait_for(c.run, 5)
        apology, _ = await next_message(c.outbox, "audio")
    assert end.reason == common_pb2.END_REASON_AGENT_ERROR
    assert apology.audio.format == PCM16
    assert apology.audio.data == load_prompt("apology", common_pb2.AUDIO_ENCODING_PCM_S16LE, 16000)


async def test_aclose_closes_with_1000_and_is_idempotent(emu: ConvAIEmulator, make_backend: Factory) -> None:
    emu.add_agent("agent_x", ulaw_agent())
    session = await make_backend().open(make_start())
    remote = await emu.wait_for_session()
    run = asyncio.create_task(session.run(Outbox()))
    end = common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP, detail="caller hung up")
    await session.aclose(end)
    await session.aclose(end)
    info = await asyncio.wait_for(run, 5)
    assert await remote.wait_closed() == (1000, "call ended")
    assert remote.closed_by_client
    assert info.reason == common_pb2.END_REASON_CALLER_HANGUP
