"""Twilio webhooks on the edge: the voice webhook's TwiML, signatures on every webhook, status callbacks."""

from __future__ import annotations

import hashlib
import logging
from urllib.parse import urlencode

import pytest
from edge_helpers import PUBLIC, SIGNER, ClientFactory, metric, signed
from twilio.request_validator import RequestValidator

from voicebridge.sim.twilio_caller import CallerConfig, stream_from_twiml

CALLER = CallerConfig(url="wss://unused", call_sid="CA" + "1" * 32, account_sid="AC" + "a" * 32)
FORM = CALLER.voice_webhook_form()


async def test_voice_webhook_answers_connect_stream_with_token_numbers_and_hangup(
    edge_client: ClientFactory,
) -> None:
    client = edge_client(EDGE_AGENT_VARIABLES='{"plan": "gold"}')
    reply = await client.post("/twilio/voice", data=FORM, headers=signed("/twilio/voice", FORM))

    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/xml")
    url, params = stream_from_twiml(reply.text)
    assert url == "wss://voice.example.com/twilio/media"  # from PUBLIC_BASE_URL, not the request's host
    token = params["vb_token"]
    assert len(token) > 40
    assert reply.text == (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Connect action="https://voice.example.com/twilio/stream-action" method="POST">'
        '<Stream statusCallback="https://voice.example.com/twilio/stream-status" statusCallbackMethod="POST" '
        'url="wss://voice.example.com/twilio/media">'
        '<Parameter name="plan" value="gold" />'
        f'<Parameter name="vb_token" value="{token}" />'
        '<Parameter name="vb_from" value="+15550001111" />'
        '<Parameter name="vb_to" value="+15550002222" />'
        '<Parameter name="vb_direction" value="inbound" />'
        "</Stream></Connect><Hangup /></Response>"
    )
    assert "Pause" not in reply.text
    assert "?" not in url


def _tampered_cases() -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(case, form posted, headers): each one Twilio would never send."""
    good = signed("/twilio/voice", FORM)
    return [
        ("missing_header", FORM, {}),
        ("wrong_token", FORM, signed("/twilio/voice", FORM, token="f" * 32)),
        ("tampered_parameter", {**FORM, "From": "+15559999999"}, good),
        ("added_parameter", {**FORM, "Digits": "1"}, good),
        ("removed_parameter", {k: v for k, v in FORM.items() if k != "Caller"}, good),
        (
            "tampered_url",
            FORM,
            {"X-Twilio-Signature": SIGNER.compute_signature(PUBLIC + "/twilio/other", FORM)},
        ),
        (
            "request_host_signed",  # what a naive edge would check: the URL as it reached the app
            FORM,
            {"X-Twilio-Signature": SIGNER.compute_signature("http://edge/twilio/voice", FORM)},
        ),
        ("garbage_header", FORM, {"X-Twilio-Signature": "not base64 at all!"}),
    ]


@pytest.mark.parametrize(
    ("case", "form", "headers"), _tampered_cases(), ids=[c[0] for c in _tampered_cases()]
)
async def test_voice_webhook_refuses_anything_not_signed_by_twilio_with_403(
    edge_client: ClientFactory, case: str, form: dict[str, str], headers: dict[str, str]
) -> None:
    client = edge_client()
    reply = await client.post("/twilio/voice", data=form, headers=headers)
    assert reply.status_code == 403, case
    assert "Stream" not in reply.text


async def test_a_query_string_on_the_webhook_url_is_part_of_what_is_signed(
    edge_client: ClientFactory,
) -> None:
    client = edge_client()
    sig = SIGNER.compute_signature(PUBLIC + "/twilio/voice?tenant=a%20b", FORM)
    ok = await client.post("/twilio/voice?tenant=a%20b", data=FORM, headers={"X-Twilio-Signature": sig})
    swapped = await client.post("/twilio/voice?tenant=other", data=FORM, headers={"X-Twilio-Signature": sig})
    assert (ok.status_code, swapped.status_code) == (200, 403)


async def test_public_base_url_with_a_path_prefix_is_what_gets_signed(edge_client: ClientFactory) -> None:
    client = edge_client(PUBLIC_BASE_URL="https://proxy.example.com/voice")
    sig = SIGNER.compute_signature("https://proxy.example.com/voice/twilio/voice", FORM)
    reply = await client.post("/twilio/voice", data=FORM, headers={"X-Twilio-Signature": sig})
    assert reply.status_code == 200
    assert stream_from_twiml(reply.text)[0] == "wss://proxy.example.com/voice/twilio/media"


async def test_oversized_or_non_form_webhooks_are_refused_before_any_check(
    edge_client: ClientFactory,
) -> None:
    client = edge_client(EDGE_MAX_WEBHOOK_BYTES="1000")
    big = {**FORM, "Junk": "x" * 2000}
    assert (
        await client.post("/twilio/voice", data=big, headers=signed("/twilio/voice", big))
    ).status_code == 413
    multipart = await client.post("/twilio/voice", files={"f": b"x"}, headers=signed("/twilio/voice", {}))
    assert multipart.status_code == 415


async def test_json_webhook_bodies_are_checked_against_body_sha256(edge_client: ClientFactory) -> None:
    client = edge_client()
    body = b'{"CallSid": "CA1"}'
    query = urlencode({"bodySHA256": hashlib.sha256(body).hexdigest()})
    sig = SIGNER.compute_signature(f"{PUBLIC}/twilio/call-status?{query}", {})
    headers = {"X-Twilio-Signature": sig, "Content-Type": "application/json"}
    genuine = await client.post(f"/twilio/call-status?{query}", content=body, headers=headers)
    forged = await client.post(f"/twilio/call-status?{query}", content=b'{"CallSid": "CA2"}', headers=headers)
    assert forged.status_code == 403
    assert genuine.status_code == 400  # authentic, but not a call status form: refused for what it is


async def test_signature_checks_are_off_only_when_explicitly_disabled(edge_client: ClientFactory) -> None:
    client = edge_client(TWILIO_VALIDATE_SIGNATURES="false", PUBLIC_BASE_URL="http://127.0.0.1:8000")
    reply = await client.post("/twilio/voice", data=FORM)
    assert reply.status_code == 200
    assert stream_from_twiml(reply.text)[1]["vb_direction"] == "inbound"


async def test_stream_status_callbacks_are_signed_and_errors_logged(
    edge_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = edge_client()
    form = {
        "AccountSid": CALLER.account_sid,
        "CallSid": CALLER.call_sid,
        "StreamSid": "MZ" + "2" * 32,
        "StreamName": "MZ" + "2" * 32,
        "StreamEvent": "stream-error",
        "StreamError": "Stream - WebSocket - Connection Refused",
        "Timestamp": "2026-01-01T00:00:00Z",
    }
    before = metric("edge_stream_status_callbacks_total", event="stream-error")
    with caplog.at_level(logging.INFO):
        unsigned = await client.post("/twilio/stream-status", data=form)
        reply = await client.post(
            "/twilio/stream-status", data=form, headers=signed("/twilio/stream-status", form)
        )
    assert (unsigned.status_code, reply.status_code) == (403, 204)
    assert metric("edge_stream_status_callbacks_total", event="stream-error") == before + 1
    assert "Connection Refused" in caplog.text


async def test_call_status_callbacks_out_of_order_keep_the_latest_and_terminal_wins(
    edge_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = edge_client()
    sid = "CA" + "7" * 32
    before = {
        s: metric("edge_call_status_callbacks_total", status=s)
        for s in ("ringing", "in-progress", "completed")
    }
    ignored = metric("edge_call_status_callbacks_ignored_total")

    async def post(seq: int, status: str) -> int:
        form = {
            "AccountSid": CALLER.account_sid,
            "CallSid": sid,
            "CallStatus": status,
            "SequenceNumber": str(seq),
        }
        reply = await client.post(
            "/twilio/call-status", data=form, headers=signed("/twilio/call-status", form)
        )
        return reply.status_code

    with caplog.at_level(logging.INFO):
        codes = [await post(2, "in-progress"), await post(1, "ringing"), await post(3, "completed")]
        codes.append(await post(4, "ringing"))  # nothing after a terminal status counts
    assert codes == [204, 204, 204, 204]
    after = {s: metric("edge_call_status_callbacks_total", status=s) for s in before}
    assert {s: after[s] - before[s] for s in before} == {"ringing": 0, "in-progress": 1, "completed": 1}
    assert metric("edge_call_status_callbacks_ignored_total") == ignored + 2
    assert "call status: completed" in caplog.text


async def test_call_status_callback_with_a_bad_signature_is_refused(edge_client: ClientFactory) -> None:
    client = edge_client()
    form = {"CallSid": "CA1", "CallStatus": "completed", "SequenceNumber": "0"}
    sig = RequestValidator("f" * 32).compute_signature(PUBLIC + "/twilio/call-status", form)
    reply = await client.post("/twilio/call-status", data=form, headers={"X-Twilio-Signature": sig})
    assert reply.status_code == 403
