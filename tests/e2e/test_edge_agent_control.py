"""What the agent asks the phone call to do, carried out by the edge on Twilio's REST API: hang up after
its last words have played, transfer with <Dial>; and the caller's keypad reaching the agent.

The agent is a minimal server inside this test (generated stubs only, grpc.aio on 127.0.0.1:0); media
and edge are real processes, Twilio is the simulated caller plus the fake REST API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from harness.polling import eventually
from harness.secured_edge import (
    ACCOUNT_SID,
    answer_inbound,
    call_updates,
    dial_config,
    place_outbound,
    secured_env,
)
from harness.stack import Stack, start_stack

from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller
from voicebridge.sim.twilio_rest_fake import TwilioRestFake
from voicebridge.v1 import agent_pb2, agent_pb2_grpc, common_pb2

ULAW_8K = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)
GOODBYE = b"\x10\x90" * 6000  # 1.5 s of (loud) μ-law: "Thanks for calling, goodbye!"
TRANSFER_TO = "+15557770000"


class ScriptedAgent(agent_pb2_grpc.AgentServiceServicer):
    """Per call, the `script` variable decides: "goodbye" (speak, then hang up), "transfer", or listen."""

    def __init__(self) -> None:
        self.digits: list[str] = []

    async def Converse(
        self, requests: AsyncIterator[agent_pb2.ConverseRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.ConverseResponse]:
        first = await anext(aiter(requests))
        script = first.start.call.custom_parameters.get("script", "listen")
        yield agent_pb2.ConverseResponse(
            ready=agent_pb2.SessionReady(input_format=ULAW_8K, output_format=ULAW_8K)
        )
        if script in ("goodbye", "transfer"):
            for i in range(0, len(GOODBYE), 160):
                chunk = agent_pb2.AudioChunk(data=GOODBYE[i : i + 160], format=ULAW_8K, response_id=1)
                yield agent_pb2.ConverseResponse(audio=chunk)
            if script == "goodbye":
                yield agent_pb2.ConverseResponse(hangup=common_pb2.HangUp(reason="said goodbye"))
            else:
                transfer = common_pb2.TransferCall(destination=TRANSFER_TO, reason="caller asked for sales")
                yield agent_pb2.ConverseResponse(transfer=transfer)
        async for request in requests:
            if request.WhichOneof("event") == "dtmf":
                self.digits.append(request.dtmf.digit)
            elif request.WhichOneof("event") == "end":
                return


@pytest.fixture(scope="module")
async def agent() -> AsyncIterator[tuple[ScriptedAgent, str]]:
    servicer = ScriptedAgent()
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(grace=None)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, fake: TwilioRestFake, agent: tuple[ScriptedAgent, str]
) -> AsyncIterator[Stack]:
    env = secured_env(fake, EDGE_TRANSFER_DESTINATIONS=TRANSFER_TO)
    started = start_stack(tmp_path_factory.mktemp("scripted-agent"), {}, env, agent_target=agent[1])
    yield started
    started.stop()


async def test_hang_up_comes_after_the_goodbye_has_fully_played(stack: Stack, fake: TwilioRestFake) -> None:
    call = await place_outbound(stack, fake, {"script": "goodbye"})
    sid = call.cfg.call_sid
    await call.wait_closed(timeout=15)  # the edge closes the stream once it has hung up
    await call.hangup()

    (hangup,) = call_updates(fake, sid)
    assert hangup.form == [("Status", "completed")]
    assert fake.calls[sid].status == "completed"
    # Every sample of the goodbye was played, and every mark echoed as played (none flushed by a clear)...
    assert call.samples_heard() == len(GOODBYE)
    assert call.echoes
    assert not any(flushed for _, _, flushed in call.echoes)
    assert call.echoes[-1][0] >= len(GOODBYE)
    # ...before the REST hang-up left the edge: the caller's last mark echo precedes the request.
    last_echo_sent = max(at for at, message in call.sent if message["event"] == "mark")
    assert last_echo_sent < hangup.at
    assert call.closed_by == "server"


async def test_transfer_replaces_the_call_with_dial_after_the_last_words(
    stack: Stack, fake: TwilioRestFake
) -> None:
    call = await place_outbound(stack, fake, {"script": "transfer"})
    sid = call.cfg.call_sid
    await call.wait_closed(timeout=15)
    await call.hangup()

    (transfer,) = call_updates(fake, sid)
    assert transfer.field("Twiml") == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Dial callerId="+15550004444">'
        f"<Number>{TRANSFER_TO}</Number></Dial><Hangup /></Response>"
    )
    assert call.samples_heard() == len(GOODBYE)
    last_echo_sent = max(at for at, message in call.sent if message["event"] == "mark")
    assert last_echo_sent < transfer.at


async def test_caller_dtmf_reaches_the_agent(stack: Stack, agent: tuple[ScriptedAgent, str]) -> None:
    servicer, _ = agent
    servicer.digits.clear()
    caller = CallerConfig(url="unused", account_sid=ACCOUNT_SID)
    stream_url, params = await answer_inbound(stack, caller)
    async with TwilioCaller(dial_config(stack, stream_url, params, call_sid=caller.call_sid)) as call:
        await eventually(
            lambda: stack.metric("media", "media_calls_active") == 1, 5, "the call to reach media"
        )
        for digit in "5#":
            await call.send_dtmf(digit)
        await eventually(lambda: len(servicer.digits) == 2, 5, "both digits at the agent")
    assert servicer.digits == ["5", "#"]
    await eventually(lambda: "caller pressed a key" in stack.edge.log(), 3, "the edge to log the key")
    assert "caller pressed #" not in stack.edge.log()  # which key is personal data (a PIN)
