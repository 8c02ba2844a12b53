"""The locked-down edge of the end-to-end tests: its credentials, its environment, and Twilio's side of
its calls (signed webhooks, signed stream upgrades, outbound calls through the API and the fake REST
API). Shared by every e2e module whose stack runs with TWILIO_VALIDATE_SIGNATURES=true."""

from __future__ import annotations

import httpx
from twilio.request_validator import RequestValidator

from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller, stream_from_twiml
from voicebridge.sim.twilio_rest_fake import TwilioRestFake

from .stack import Stack

AUTH_TOKEN = "e2e-auth-token-0123456789abcdef"
ACCOUNT_SID = "AC" + "e" * 32
API_TOKEN = "e2e-api-token-0123456789abcdef"
STREAM_SECRET = "e2e-stream-secret-0123456789abcdef"
FROM_NUMBER = "+15550004444"
PUBLIC = "https://voice.test"
PUBLIC_WSS = "wss://voice.test/twilio/media"
SIGNER = RequestValidator(AUTH_TOKEN)
SECRETS = (AUTH_TOKEN, API_TOKEN, STREAM_SECRET)
MINTED: list[str] = []  # every stream token the edge handed out in these tests


def secured_env(fake: TwilioRestFake, **extra: str) -> dict[str, str]:
    return {
        "TWILIO_VALIDATE_SIGNATURES": "true",
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_API_BASE_URL": fake.base_url,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "EDGE_API_TOKEN": API_TOKEN,
        "EDGE_STREAM_TOKEN_SECRET": STREAM_SECRET,
        "PUBLIC_BASE_URL": PUBLIC,
        **extra,
    }


async def answer_inbound(stack: Stack, caller: CallerConfig) -> tuple[str, dict[str, str]]:
    """Twilio's side of an inbound call: POST the signed voice webhook, read the stream from the TwiML."""
    form = caller.voice_webhook_form()
    headers = {"X-Twilio-Signature": SIGNER.compute_signature(f"{PUBLIC}/twilio/voice", form)}
    async with httpx.AsyncClient(base_url=stack.http_base) as client:
        reply = await client.post("/twilio/voice", data=form, headers=headers)
    assert reply.status_code == 200, reply.text
    stream_url, params = stream_from_twiml(reply.text)
    MINTED.append(params["vb_token"])
    return stream_url, params


def dial_config(stack: Stack, stream_url: str, params: dict[str, str], **fields: str) -> CallerConfig:
    """How Twilio dials the stream: to the proxy (here the edge itself), signed for the TwiML's URL."""
    return CallerConfig(
        url=stack.media_ws_url,
        signature_url=stream_url,
        auth_token=AUTH_TOKEN,
        account_sid=ACCOUNT_SID,
        custom_parameters=params,
        **fields,
    )


async def place_outbound(stack: Stack, fake: TwilioRestFake, variables: dict[str, str]) -> TwilioCaller:
    """Place an outbound call through the API, answer it, and connect its stream as Twilio would."""
    async with httpx.AsyncClient(base_url=stack.http_base) as client:
        reply = await client.post(
            "/calls",
            json={"to": "+15551230000", "variables": variables},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
    assert reply.status_code == 201, reply.text
    sid = reply.json()["call_sid"]
    fake.answer_call(sid)
    stream_url, params = stream_from_twiml(fake.calls[sid].twiml or "")
    call = TwilioCaller(dial_config(stack, stream_url, params, call_sid=sid))
    await call.connect()
    return call


def call_updates(fake: TwilioRestFake, sid: str) -> list:
    """The REST requests that changed call `sid` (hang-up, transfer)."""
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith(f"/Calls/{sid}.json")]


def no_agent_work(stack: Stack) -> bool:
    return (
        stack.metric("media", "media_calls_active") == 0
        and stack.metric("agent", "agent_sessions_active") == 0
    )
