"""The edge locked down, end to end: real processes with TWILIO_VALIDATE_SIGNATURES=true behind a
"proxy" (PUBLIC_BASE_URL=https://voice.test while the edge listens on 127.0.0.1), Twilio played by the
simulated caller and the fake REST API, every signature made by twilio's own RequestValidator."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets
from harness.polling import eventually
from harness.processes import BIN
from harness.secured_edge import (
    ACCOUNT_SID,
    API_TOKEN,
    FROM_NUMBER,
    MINTED,
    PUBLIC,
    PUBLIC_WSS,
    SECRETS,
    SIGNER,
    answer_inbound,
    dial_config,
    no_agent_work,
    secured_env,
)
from harness.stack import Stack, start_stack
from twilio.request_validator import RequestValidator

from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller, stream_from_twiml
from voicebridge.sim.twilio_rest_fake import TwilioRestFake


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, fake: TwilioRestFake) -> AsyncIterator[Stack]:
    stack = start_stack(
        tmp_path_factory.mktemp("secured-stack"), {"AGENT_BACKEND": "parrot"}, secured_env(fake)
    )
    yield stack
    stack.stop()


async def test_inbound_call_the_twilio_way_reaches_the_parrot(secured: Stack) -> None:
    caller = CallerConfig(url="unused", account_sid=ACCOUNT_SID)
    stream_url, params = await answer_inbound(secured, caller)
    assert stream_url == PUBLIC_WSS

    cfg = dial_config(secured, stream_url, params, call_sid=caller.call_sid)
    async with TwilioCaller(cfg) as call:
        await call.wait_heard(1.0, timeout=10)  # the parrot's greeting
        assert call.violations == []
    await eventually(lambda: "media stream started" in secured.edge.log(), 3, "the edge to log the call")
    await eventually(lambda: no_agent_work(secured), 5, "the call to end everywhere")


def _upgrade_cases() -> list[tuple[str, str | None]]:
    return [
        ("no_signature", None),
        ("wrong_auth_token", RequestValidator("f" * 32).compute_signature(PUBLIC_WSS, {})),
        ("signed_for_the_local_url", SIGNER.compute_signature("ws://127.0.0.1/twilio/media", {})),
        ("tampered_url", SIGNER.compute_signature("wss://voice.test/twilio/other", {})),
    ]


@pytest.mark.parametrize(("case", "signature"), _upgrade_cases(), ids=[c[0] for c in _upgrade_cases()])
async def test_websocket_upgrade_without_a_valid_signature_gets_403_and_opens_nothing(
    secured: Stack, case: str, signature: str | None
) -> None:
    rejected = secured.metric("edge", "edge_streams_rejected_total", 'reason="bad_signature"')
    media_started = secured.metric("media", "grpc_server_started_total")
    headers = {"X-Twilio-Signature": signature} if signature else {}

    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(secured.media_ws_url, additional_headers=headers, open_timeout=5)

    assert refused.value.response.status_code == 403, case
    assert secured.metric("edge", "edge_streams_rejected_total", 'reason="bad_signature"') == rejected + 1
    assert secured.metric("media", "grpc_server_started_total") == media_started
    assert no_agent_work(secured)


@pytest.mark.parametrize("case", ["no_token", "forged_token", "token_of_another_call", "replayed_token"])
async def test_signed_stream_without_a_valid_token_is_closed_before_media_or_agent(
    secured: Stack, case: str
) -> None:
    other = CallerConfig(url="unused", account_sid=ACCOUNT_SID)
    stream_url, params = await answer_inbound(secured, other)
    call_sid = other.call_sid
    if case == "no_token":
        params.pop("vb_token")
    elif case == "forged_token":
        params["vb_token"] = "AAAAAAAAAAAAAAAA.9999999999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    elif case == "token_of_another_call":
        call_sid = "CA" + "9" * 32
    else:  # the genuine call uses the token first
        async with TwilioCaller(dial_config(secured, stream_url, params, call_sid=call_sid)) as genuine:
            await genuine.wait_heard(0.2, timeout=10)
        await eventually(lambda: no_agent_work(secured), 5, "the genuine call to end")
    rejected = secured.metric("edge", "edge_streams_rejected_total", 'reason="bad_token"')
    media_started = secured.metric("media", "grpc_server_started_total")

    call = TwilioCaller(dial_config(secured, stream_url, params, call_sid=call_sid))
    await call.connect()
    await call.wait_closed(timeout=5)

    assert call.close_code == 1008
    assert "stream token" in (call.close_reason or "")
    assert call.samples_heard() == 0
    assert secured.metric("edge", "edge_streams_rejected_total", 'reason="bad_token"') == rejected + 1
    assert secured.metric("media", "grpc_server_started_total") == media_started
    assert no_agent_work(secured)


async def test_webhooks_over_http_refuse_a_tampered_parameter(secured: Stack) -> None:
    form = CallerConfig(url="unused", account_sid=ACCOUNT_SID).voice_webhook_form()
    signature = SIGNER.compute_signature(f"{PUBLIC}/twilio/voice", form)
    async with httpx.AsyncClient(base_url=secured.http_base) as client:
        tampered = await client.post(
            "/twilio/voice", data={**form, "To": "+19005550000"}, headers={"X-Twilio-Signature": signature}
        )
        unsigned = await client.post(
            "/twilio/call-status", data={"CallSid": "CA1", "CallStatus": "completed"}
        )
    assert (tampered.status_code, unsigned.status_code) == (403, 403)


async def test_outbound_call_from_the_cli_streams_to_the_agent_and_orders_status_callbacks(
    secured: Stack, fake: TwilioRestFake
) -> None:
    env = {**os.environ, "EDGE_API_TOKEN": API_TOKEN}
    argv = [str(BIN / "voicebridge-call"), "--to", "+15551230000", "--var", "name=Ada", "--edge-url"]
    placed = await asyncio.to_thread(
        subprocess.run, [*argv, secured.http_base], env=env, capture_output=True, text=True, timeout=30
    )
    assert placed.returncode == 0, placed.stderr + placed.stdout
    created = [r for r in fake.requests if r.path.endswith("/Calls.json")][-1]
    assert created.field("To") == "+15551230000"
    assert created.field("From") == FROM_NUMBER
    assert created.field("StatusCallback") == f"{PUBLIC}/twilio/call-status"
    assert created.fields("StatusCallbackEvent") == ["initiated", "ringing", "answered", "completed"]
    sid = next(s for s, c in fake.calls.items() if c.twiml == created.field("Twiml"))
    assert f'"call_sid": "{sid}"' in placed.stdout

    # Twilio answers and runs the inline TwiML: the stream carries the outbound token and the variable.
    stream_url, params = stream_from_twiml(created.field("Twiml") or "")
    MINTED.append(params["vb_token"])
    assert (params["vb_direction"], params["name"]) == ("outbound", "Ada")
    fake.answer_call(sid)
    async with TwilioCaller(dial_config(secured, stream_url, params, call_sid=sid)) as call:
        await call.wait_heard(0.5, timeout=10)

    # Status callbacks arrive out of order: the latest by SequenceNumber wins and nothing follows completed.
    statuses = ("initiated", "ringing", "in-progress", "completed")
    before = {
        s: secured.metric("edge", "edge_call_status_callbacks_total", f'status="{s}"') for s in statuses
    }
    order = [(1, "ringing"), (0, "initiated"), (3, "completed"), (2, "in-progress")]
    codes = await fake.send_status_callbacks(sid, order, deliver_to=secured.http_base)
    assert codes == [204, 204, 204, 204]
    after = {s: secured.metric("edge", "edge_call_status_callbacks_total", f'status="{s}"') for s in statuses}
    assert {s: after[s] - before[s] for s in statuses} == {
        "initiated": 0,
        "ringing": 1,
        "in-progress": 0,
        "completed": 1,
    }
    await eventually(lambda: "call status: completed" in secured.edge.log(), 3, "the edge to log completed")


async def test_calls_api_refuses_a_wrong_token_and_secrets_never_reach_any_log(secured: Stack) -> None:
    async with httpx.AsyncClient(base_url=secured.http_base) as client:
        wrong = await client.post(
            "/calls", json={"to": "+15551230000"}, headers={"Authorization": "Bearer x" * 3}
        )
        none = await client.post("/calls", json={"to": "+15551230000"})
    assert (wrong.status_code, none.status_code) == (403, 401)
    logs = secured.logs()
    assert "media stream started" in logs  # the logs are the ones of the calls above
    leaked = [name for name, secret in zip(("auth", "api", "stream"), SECRETS, strict=True) if secret in logs]
    assert leaked == []
    assert MINTED, "no stream token was minted by the tests above"
    assert [token for token in MINTED if token in logs] == []
