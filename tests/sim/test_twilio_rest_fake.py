"""The edge's REST wrapper (real twilio Client) against the fake Twilio REST server over loopback HTTP."""

import asyncio
import os

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from voicebridge.edge.twilio.rest import CallNotFound, TwilioApiError, TwilioRest
from voicebridge.edge.twilio.twiml import dial
from voicebridge.sim.twilio_rest_fake import TwilioRestFake

SID = "AC" + "0" * 32
TOKEN = "tok-" + "1" * 28
TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Response><Connect><Stream url="wss://h/twilio/media" /></Connect></Response>'
)


@pytest.fixture
async def fake():
    async with TwilioRestFake({SID: TOKEN}) as server:
        yield server


@pytest.fixture
def rest(fake: TwilioRestFake):
    client = TwilioRest(SID, TOKEN, base_url=fake.base_url, timeout_s=5)
    yield client
    client.close()


async def test_create_call_posts_twilio_form_and_returns_queued_sid(
    fake: TwilioRestFake, rest: TwilioRest
) -> None:
    created = await rest.create_call(
        to="+15557654321", from_="+15550002222", twiml=TWIML, status_callback="https://h/twilio/call-status"
    )
    assert created.sid.startswith("CA")
    assert len(created.sid) == 34
    assert created.status == "queued"
    (req,) = fake.requests
    assert (req.method, req.path) == ("POST", f"/2010-04-01/Accounts/{SID}/Calls.json")
    assert req.auth == (SID, TOKEN)
    assert req.field("To") == "+15557654321"
    assert req.field("From") == "+15550002222"
    assert req.field("Twiml") == TWIML
    assert req.field("Url") is None
    assert req.field("StatusCallback") == "https://h/twilio/call-status"
    assert req.field("StatusCallbackMethod") == "POST"
    assert req.fields("StatusCallbackEvent") == ["initiated", "ringing", "answered", "completed"]


async def test_hangup_completes_a_live_call(fake: TwilioRestFake, rest: TwilioRest) -> None:
    created = await rest.create_call(to="+15557654321", from_="+15550002222", twiml=TWIML)
    fake.answer_call(created.sid)
    assert await rest.hangup(created.sid) is True
    assert fake.calls[created.sid].status == "completed"
    assert fake.requests[-1].form == [("Status", "completed")]
    assert fake.requests[-1].path == f"/2010-04-01/Accounts/{SID}/Calls/{created.sid}.json"


async def test_hangup_of_ended_or_unknown_call_is_success(fake: TwilioRestFake, rest: TwilioRest) -> None:
    created = await rest.create_call(to="+15557654321", from_="+15550002222", twiml=TWIML)
    fake.end_call(created.sid)
    assert await rest.hangup(created.sid) is False
    assert await rest.hangup("CA" + "f" * 32) is False


async def test_transfer_replaces_twiml_with_dial(fake: TwilioRestFake, rest: TwilioRest) -> None:
    created = await rest.create_call(to="+15557654321", from_="+15550002222", twiml=TWIML)
    fake.answer_call(created.sid)
    await rest.transfer(created.sid, dial("+15559990000"))
    assert "<Dial><Number>+15559990000</Number></Dial>" in fake.calls[created.sid].twiml
    fake.end_call(created.sid)
    with pytest.raises(CallNotFound) as info:
        await rest.transfer(created.sid, dial("+15559990000"))
    assert (info.value.status, info.value.code) == (404, 20404)


async def test_wrong_credentials_are_refused(fake: TwilioRestFake) -> None:
    bad = TwilioRest(SID, "wrong", base_url=fake.base_url)
    try:
        with pytest.raises(TwilioApiError) as info:
            await bad.create_call(to="+15557654321", from_="+15550002222", twiml=TWIML)
    finally:
        bad.close()
    assert (info.value.status, info.value.code) == (401, 20003)
    assert fake.calls == {}


async def test_fake_answers_missing_fields_like_twilio(fake: TwilioRestFake) -> None:
    client = Client(SID, TOKEN, environment={"X": "1"})
    client.api.base_url = fake.base_url
    cases = [
        ({"to": "+15557654321", "from_": "+15550002222"}, 21200),
        ({"to": "+15557654321", "from_": "+15550002222", "url": "ftp://h/x"}, 21205),
        ({"to": "", "from_": "+15550002222", "twiml": TWIML}, 21201),
        ({"to": "+15557654321", "from_": "", "twiml": TWIML}, 21213),
    ]
    for kwargs, code in cases:
        with pytest.raises(TwilioRestException) as info:
            await asyncio.to_thread(client.calls.create, **kwargs)
        assert (info.value.status, info.value.code) == (400, code)
    assert fake.calls == {}


def test_empty_environment_does_not_shield_the_client_from_os_environ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Why rest.py does not rely on environment={} (twilio 9.13: ``environment or os.environ``)."""
    monkeypatch.setitem(os.environ, "TWILIO_REGION", "ie1")
    assert Client(SID, TOKEN, environment={}).region == "ie1"


async def test_region_environment_cannot_rewrite_the_base_url(
    fake: TwilioRestFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(os.environ, "TWILIO_REGION", "ie1")
    monkeypatch.setitem(os.environ, "TWILIO_EDGE", "dublin")
    rest = TwilioRest(SID, TOKEN, base_url=fake.base_url)
    try:
        created = await rest.create_call(to="+15557654321", from_="+15550002222", twiml=TWIML)
    finally:
        rest.close()
    assert created.sid in fake.calls
