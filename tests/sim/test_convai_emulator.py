"""The ConvAI emulator speaks the ElevenLabs Agents protocol: checked with a raw websockets client."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voicebridge.sim.convai_emulator import OMIT, AgentScript, ConvAIEmulator, EmulatedSession

INIT = {"type": "conversation_initiation_client_data", "dynamic_variables": {"call_sid": "CA1"}}


async def _idle(session: EmulatedSession) -> None:
    """A scenario that does nothing: the test drives the session."""


@pytest.fixture
async def emu() -> AsyncIterator[ConvAIEmulator]:
    emulator = ConvAIEmulator(api_key="xi-test-key-123")
    emulator.add_agent("agent_x", AgentScript(scenario=_idle))
    emulator.add_agent("agent_ulaw", AgentScript("ulaw_8000", "ulaw_8000", scenario=_idle))
    emulator.add_agent("agent_private", AgentScript(requires_auth=True, scenario=_idle))
    emulator.add_agent("agent_busy", AgentScript(busy="error_event"))
    emulator.add_agent("agent_busy_http", AgentScript(busy="http_429"))
    emulator.add_agent(
        "agent_strict", AgentScript(close_on_early_audio=True, metadata_delay_s=0.2, scenario=_idle)
    )
    await emulator.start()
    yield emulator
    await emulator.stop()


def _url(emu: ConvAIEmulator, agent_id: str) -> str:
    return f"{emu.ws_url}/v1/convai/conversation?agent_id={agent_id}"


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    return orjson.loads(await ws.recv())


async def _handshake(ws: ClientConnection) -> dict[str, Any]:
    await ws.send(orjson.dumps(INIT).decode())
    return await _recv(ws)


async def test_handshake_returns_metadata_with_the_agents_formats(emu: ConvAIEmulator) -> None:
    async with connect(_url(emu, "agent_ulaw")) as ws:
        metadata = await _handshake(ws)
        session = await emu.wait_for_session()
    assert metadata["type"] == "conversation_initiation_metadata"
    event = metadata["conversation_initiation_metadata_event"]
    assert event["agent_output_audio_format"] == "ulaw_8000"
    assert event["user_input_audio_format"] == "ulaw_8000"
    assert event["conversation_id"] == session.conversation_id
    assert session.init == INIT


async def test_caller_audio_is_recorded_in_order(emu: ConvAIEmulator) -> None:
    async with connect(_url(emu, "agent_x")) as ws:
        await _handshake(ws)
        session = await emu.wait_for_session()
        for part in (b"\x01\x02", b"\x03\x04", b"\x05\x06"):
            await ws.send(orjson.dumps({"user_audio_chunk": base64.b64encode(part).decode()}).decode())
        audio = await session.wait_for_audio(6)
    assert audio == b"\x01\x02\x03\x04\x05\x06"
    assert session.early_audio == b""


async def test_an_agent_that_keeps_no_audio_messages_still_records_the_audio() -> None:
    emulator = ConvAIEmulator()
    emulator.add_agent("lean", AgentScript(scenario=_idle, keep_audio_messages=False))
    await emulator.start()
    try:
        async with connect(_url(emulator, "lean")) as ws:
            await _handshake(ws)
            session = await emulator.wait_for_session()
            await ws.send(orjson.dumps({"user_audio_chunk": base64.b64encode(b"\x07\x08").decode()}).decode())
            await ws.send(orjson.dumps({"type": "user_activity"}).decode())
            await session.wait_for_message("user_activity")
            audio = await session.wait_for_audio(2)
    finally:
        await emulator.stop()
    assert audio == b"\x07\x08"
    kinds = [m.get("type") for m in session.received]
    assert kinds == ["conversation_initiation_client_data", "user_activity"]


async def test_agent_audio_is_chunked_with_one_event_id_per_response(emu: ConvAIEmulator) -> None:
    async with connect(_url(emu, "agent_x")) as ws:
        await _handshake(ws)
        session = await emu.wait_for_session()
        first = await session.send_audio(b"\x00" * 6400, chunk_ms=100)  # 200 ms of pcm_16000
        second = await session.send_audio(b"\x01" * 100, alignment={"chars": ["a"]})
        events = [await _recv(ws) for _ in range(3)]
    assert (first, second) == (1, 2)
    assert [e["audio_event"]["event_id"] for e in events] == [1, 1, 2]
    assert [len(base64.b64decode(e["audio_event"]["audio_base_64"])) for e in events] == [3200, 3200, 100]
    assert "alignment" not in events[0]["audio_event"]
    assert events[2]["audio_event"]["alignment"] == {"chars": ["a"]}


async def test_per_chunk_numbering_gives_every_chunk_a_new_id_and_its_own_alignment(
    emu: ConvAIEmulator,
) -> None:
    emu.add_agent("per_chunk", AgentScript(event_ids="per_chunk", scenario=_idle))
    alignment = {
        "chars": list("abcd"),
        "char_start_times_ms": [0, 60, 110, 190],
        "char_durations_ms": [50] * 4,
    }
    async with connect(_url(emu, "per_chunk")) as ws:
        await _handshake(ws)
        session = await emu.wait_for_session()
        last = await session.send_audio(b"\x00" * 6400, chunk_ms=100, alignment=alignment)  # 2 chunks
        again = await session.send_audio(b"\x01" * 100, event_id=last)  # an id is never reused
        events = [await _recv(ws) for _ in range(3)]
    assert (last, again) == (2, 3)
    assert [e["audio_event"]["event_id"] for e in events] == [1, 2, 3]
    assert events[0]["audio_event"]["alignment"] == {
        "chars": ["a", "b"],
        "char_start_times_ms": [0, 60],
        "char_durations_ms": [50, 50],
    }
    assert events[1]["audio_event"]["alignment"] == {
        "chars": ["c", "d"],
        "char_start_times_ms": [10, 90],
        "char_durations_ms": [50, 50],
    }


def test_an_unknown_numbering_is_refused() -> None:
    with pytest.raises(ValueError, match="event_ids"):
        AgentScript(event_ids="per_word")  # type: ignore[arg-type]


@pytest.mark.parametrize(("ping_ms", "expected"), [(42, 42), (None, None), (OMIT, "absent")])
async def test_ping_waits_for_the_matching_pong(emu: ConvAIEmulator, ping_ms: Any, expected: Any) -> None:
    async with connect(_url(emu, "agent_x")) as ws:
        await _handshake(ws)
        session = await emu.wait_for_session()
        ping_task = asyncio.create_task(session.ping(ping_ms=ping_ms))
        ping = await _recv(ws)
        await ws.send(orjson.dumps({"type": "pong", "event_id": ping["ping_event"]["event_id"]}).decode())
        pong = await ping_task
    assert ping["type"] == "ping"
    assert ping["ping_event"].get("ping_ms", "absent") == expected
    assert pong == {"type": "pong", "event_id": ping["ping_event"]["event_id"]}
    assert session.pongs == [pong]


async def test_server_close_sends_error_event_then_close_code(emu: ConvAIEmulator) -> None:
    async with connect(_url(emu, "agent_x")) as ws:
        await _handshake(ws)
        session = await emu.wait_for_session()
        await session.fail(1011, "unknown_websocket_crash", "Unexpected server error")
        error = await _recv(ws)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert error == {
        "type": "error",
        "error_event": {
            "code": 1011,
            "message": "Unexpected server error",
            "error_type": "unknown_websocket_crash",
            "reason": None,
        },
    }
    assert ws.close_code == 1011
    assert await session.wait_closed() == (1011, "Unexpected server error")
    assert not session.closed_by_client


async def test_client_close_is_recorded(emu: ConvAIEmulator) -> None:
    async with connect(_url(emu, "agent_x")) as ws:
        await _handshake(ws)
        session = await emu.wait_for_session()
        await ws.close(1000, "caller hung up")
    assert await session.wait_closed() == (1000, "caller hung up")
    assert session.closed_by_client


async def test_unknown_agent_is_closed_with_1008(emu: ConvAIEmulator) -> None:
    async with connect(_url(emu, "agent_nope")) as ws:
        error = await _recv(ws)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert error["type"] == "error"
    assert error["error_event"]["code"] == 1008
    assert ws.close_code == 1008
    assert emu.sessions == []


async def test_signed_url_needs_the_api_key_and_opens_a_private_agent(emu: ConvAIEmulator) -> None:
    url = f"{emu.base_url}/v1/convai/conversation/get-signed-url"
    async with httpx.AsyncClient() as http:
        denied = await http.get(url, params={"agent_id": "agent_private"})
        granted = await http.get(
            url, params={"agent_id": "agent_private"}, headers={"xi-api-key": "xi-test-key-123"}
        )
    assert denied.status_code == 401
    assert granted.status_code == 200
    assert granted.headers["content-type"] == "application/json"
    signed_url = granted.json()["signed_url"]
    assert signed_url.startswith(
        f"{emu.ws_url}/v1/convai/conversation?agent_id=agent_private&conversation_signature="
    )
    async with connect(signed_url) as ws:
        metadata = await _handshake(ws)
    assert metadata["type"] == "conversation_initiation_metadata"


async def test_private_agent_without_signature_is_closed_with_1008(emu: ConvAIEmulator) -> None:
    async with connect(_url(emu, "agent_private") + "&conversation_signature=forged") as ws:
        error = await _recv(ws)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert error["error_event"]["code"] == 1008
    assert ws.close_code == 1008


async def test_busy_agent_refuses_with_error_event_and_1002(emu: ConvAIEmulator) -> None:
    async with connect(_url(emu, "agent_busy")) as ws:
        error = await _recv(ws)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert error["error_event"]["code"] == 1002
    assert error["error_event"]["error_type"] == "http_exception"
    assert error["error_event"]["details"] == {"status_code": 429}
    assert ws.close_code == 1002


async def test_busy_agent_can_refuse_the_upgrade_with_http_429(emu: ConvAIEmulator) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(_url(emu, "agent_busy_http")):
            pass
    assert refused.value.response.status_code == 429


async def test_audio_before_metadata_is_recorded_and_can_be_refused(emu: ConvAIEmulator) -> None:
    async with connect(_url(emu, "agent_strict")) as ws:
        await ws.send(orjson.dumps(INIT).decode())
        await ws.send(orjson.dumps({"user_audio_chunk": base64.b64encode(b"\x09\x09").decode()}).decode())
        error = await _recv(ws)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    session = await emu.wait_for_session()
    assert session.early_audio == b"\x09\x09"
    assert error["error_event"]["error_type"] == "invalid_message"
    assert ws.close_code == 1008


async def test_malformed_json_is_closed_with_1008_invalid_message(emu: ConvAIEmulator) -> None:
    async with connect(_url(emu, "agent_x")) as ws:
        await _handshake(ws)
        await ws.send("{not json")
        error = await _recv(ws)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert error["error_event"]["error_type"] == "invalid_message"
    assert ws.close_code == 1008


async def test_wait_for_message_matches_contextual_update(emu: ConvAIEmulator) -> None:
    async with connect(_url(emu, "agent_x")) as ws:
        await _handshake(ws)
        session = await emu.wait_for_session()
        await ws.send(orjson.dumps({"type": "contextual_update", "text": "caller pressed 5"}).decode())
        message = await session.wait_for_message("contextual_update")
    assert message == {"type": "contextual_update", "text": "caller pressed 5"}


async def test_default_agent_greets_with_audio() -> None:
    emulator = ConvAIEmulator(accept_any_agent=AgentScript("ulaw_8000", "ulaw_8000"))
    await emulator.start()
    try:
        async with connect(_url(emulator, "anything")) as ws:
            await _handshake(ws)
            text = await _recv(ws)
            audio = await _recv(ws)
    finally:
        await emulator.stop()
    assert text["type"] == "agent_response"
    assert audio["type"] == "audio"
    assert len(base64.b64decode(audio["audio_event"]["audio_base_64"])) == 800
