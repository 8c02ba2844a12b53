"""The outbound-call API: bearer auth, validation, and exactly what reaches Twilio's REST API."""

from __future__ import annotations

import pytest
from edge_helpers import ACCOUNT_SID, API_TOKEN, AUTH_TOKEN, FROM_NUMBER, ClientFactory, metric

from voicebridge.sim.twilio_caller import stream_from_twiml
from voicebridge.sim.twilio_rest_fake import TwilioRestFake

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


async def test_places_the_call_with_inline_stream_twiml_and_status_callbacks(
    edge_client: ClientFactory, fake_twilio: TwilioRestFake
) -> None:
    client = edge_client(EDGE_AGENT_VARIABLES='{"plan": "gold"}')
    reply = await client.post(
        "/calls", json={"to": "+15551230000", "variables": {"name": "Ada"}}, headers=AUTH
    )

    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["call_sid"].startswith("CA")
    assert body | {"call_sid": "-"} == {
        "call_sid": "-",
        "status": "queued",
        "to": "+15551230000",
        "from": FROM_NUMBER,
    }
    (request,) = fake_twilio.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert request.auth == (ACCOUNT_SID, AUTH_TOKEN)
    twiml = request.field("Twiml")
    assert twiml is not None
    token = stream_from_twiml(twiml)[1]["vb_token"]
    assert sorted(request.form) == sorted(
        [
            ("To", "+15551230000"),
            ("From", FROM_NUMBER),
            ("Twiml", twiml),
            ("StatusCallback", "https://voice.example.com/twilio/call-status"),
            ("StatusCallbackMethod", "POST"),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
        ]
    )
    assert twiml == (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Connect action="https://voice.example.com/twilio/stream-action" method="POST">'
        '<Stream statusCallback="https://voice.example.com/twilio/stream-status" statusCallbackMethod="POST" '
        'url="wss://voice.example.com/twilio/media">'
        '<Parameter name="plan" value="gold" />'
        '<Parameter name="name" value="Ada" />'
        f'<Parameter name="vb_token" value="{token}" />'
        f'<Parameter name="vb_from" value="{FROM_NUMBER}" />'
        '<Parameter name="vb_to" value="+15551230000" />'
        '<Parameter name="vb_direction" value="outbound" />'
        "</Stream></Connect><Hangup /></Response>"
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Basic " + API_TOKEN}, 401),
        ({"Authorization": "Bearer "}, 401),
        ({"Authorization": "Bearer wrong-token-0123456789"}, 403),
        ({"Authorization": f"Bearer {API_TOKEN}x"}, 403),
    ],
    ids=["none", "basic", "empty", "wrong", "longer"],
)
async def test_calls_api_needs_the_bearer_token(
    edge_client: ClientFactory, fake_twilio: TwilioRestFake, headers: dict[str, str], status: int
) -> None:
    reply = await edge_client().post("/calls", json={"to": "+15551230000"}, headers=headers)
    assert reply.status_code == status
    assert fake_twilio.requests == []


async def test_calls_api_is_off_and_says_why_without_a_token(
    edge_client: ClientFactory, fake_twilio: TwilioRestFake
) -> None:
    reply = await edge_client(EDGE_API_TOKEN="").post("/calls", json={"to": "+15551230000"}, headers=AUTH)
    assert reply.status_code == 503
    assert "EDGE_API_TOKEN" in reply.text
    assert fake_twilio.requests == []


async def test_calls_api_needs_rest_credentials(
    edge_client: ClientFactory, fake_twilio: TwilioRestFake
) -> None:
    client = edge_client(TWILIO_ACCOUNT_SID="")
    reply = await client.post("/calls", json={"to": "+15551230000"}, headers=AUTH)
    assert reply.status_code == 503
    assert "TWILIO_ACCOUNT_SID" in reply.text


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"to": "5551230000"}, 422),
        ({"to": "+0551230000"}, 422),
        ({"to": "+1555123000012345"}, 422),
        ({"to": "+1555 123 0000"}, 422),
        ({"to": 15551230000}, 422),
        ({"to": "+15551230000", "from": "anonymous"}, 422),
        ({"to": "+15551230000", "variables": {"vb_token": "forged"}}, 422),
        ({"to": "+15551230000", "variables": {"vb_custom": "x"}}, 422),
        ({"to": "+15551230000", "variables": {"name": 7}}, 422),
        ({"to": "+15551230000", "variables": {"x": "y" * 600}}, 422),
        ({"to": "+15551230000", "variables": ["a"]}, 422),
        ({"to": "+15551230000", "callback": "https://evil.example"}, 422),
        ([1, 2], 400),
    ],
)
async def test_calls_api_validates_numbers_and_variables(
    edge_client: ClientFactory, fake_twilio: TwilioRestFake, body: object, status: int
) -> None:
    reply = await edge_client().post("/calls", json=body, headers=AUTH)
    assert reply.status_code == status, reply.text
    assert fake_twilio.requests == []


async def test_a_twilio_refusal_is_reported_as_bad_gateway_with_twilios_code(
    edge_client: ClientFactory, fake_twilio: TwilioRestFake
) -> None:
    fake_twilio.accounts[ACCOUNT_SID] = "rotated-token"  # our credentials no longer work
    before = metric("edge_outbound_calls_total", result="twilio_error")
    reply = await edge_client().post("/calls", json={"to": "+15551230000"}, headers=AUTH)
    assert reply.status_code == 502
    assert reply.json()["detail"]["twilio_code"] == 20003
    assert metric("edge_outbound_calls_total", result="twilio_error") == before + 1


@pytest.mark.parametrize("name", ["agent_id", "system__agent_id", "system__caller_id"])
async def test_calls_api_refuses_variables_that_steer_the_agent(
    edge_client: ClientFactory, fake_twilio: TwilioRestFake, name: str
) -> None:
    reply = await edge_client().post(
        "/calls", json={"to": "+15551230000", "variables": {name: "agent_other"}}, headers=AUTH
    )
    assert reply.status_code == 422, reply.text
    detail = reply.json()["detail"]
    assert detail["field"] == f"variables.{name}"
    assert name in detail["error"]
    assert fake_twilio.requests == []


async def test_agent_id_passes_only_when_the_allow_list_names_it(
    edge_client: ClientFactory, fake_twilio: TwilioRestFake
) -> None:
    client = edge_client(EDGE_API_AGENT_OVERRIDES="agent_id")
    reply = await client.post(
        "/calls", json={"to": "+15551230000", "variables": {"agent_id": "agent_sales"}}, headers=AUTH
    )
    assert reply.status_code == 201, reply.text
    params = stream_from_twiml(fake_twilio.requests[0].field("Twiml") or "")[1]
    assert params["agent_id"] == "agent_sales"


async def test_validation_errors_name_the_field(edge_client: ClientFactory) -> None:
    reply = await edge_client().post("/calls", json={"to": "+15551230000", "from": "x"}, headers=AUTH)
    assert reply.status_code == 422
    assert reply.json()["detail"]["field"] == "from"
    assert "E.164" in reply.json()["detail"]["error"]
