"""The elevenlabs backend against the ConvAI emulator: what the agent sends (audio, interruptions,
transcripts, tool calls, frames it does not know) and what reaches media's outbox."""

from __future__ import annotations

import base64

import pytest
from harness.elevenlabs_calls import (
    ULAW,
    Factory,
    call,
    next_message,
    ulaw_agent,
)

from voicebridge.agent.backends.base import Outbox
from voicebridge.sim.convai_emulator import ConvAIEmulator
from voicebridge.v1 import agent_pb2, common_pb2

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
