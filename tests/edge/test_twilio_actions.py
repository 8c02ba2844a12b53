"""Hang-up and transfer the agent asks for, carried out on (a fake of) Twilio's REST API."""

from __future__ import annotations

from edge_helpers import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, metric

from voicebridge.edge.twilio.rest import TwilioRest
from voicebridge.edge.twilio_actions import RestCallControl, TwilioActions
from voicebridge.sim.twilio_rest_fake import TwilioRestFake


def _actions(fake: TwilioRestFake, allowed: frozenset[str] = frozenset()) -> TwilioActions:
    rest = TwilioRest(ACCOUNT_SID, AUTH_TOKEN, base_url=fake.base_url)
    return TwilioActions(RestCallControl(rest, caller_id=FROM_NUMBER), allowed)


async def _live_call(fake: TwilioRestFake) -> str:
    rest = TwilioRest(ACCOUNT_SID, AUTH_TOKEN, base_url=fake.base_url)
    created = await rest.create_call(to="+15551230000", from_=FROM_NUMBER, twiml="<Response/>")
    fake.answer_call(created.sid)
    fake.requests.clear()
    return created.sid


async def test_hang_up_sets_the_call_completed(fake_twilio: TwilioRestFake) -> None:
    sid = await _live_call(fake_twilio)
    await _actions(fake_twilio).hang_up(sid)
    (request,) = fake_twilio.requests
    assert request.path.endswith(f"/Calls/{sid}.json")
    assert request.form == [("Status", "completed")]
    assert fake_twilio.calls[sid].status == "completed"


async def test_hang_up_of_an_already_ended_call_is_not_an_error(fake_twilio: TwilioRestFake) -> None:
    sid = await _live_call(fake_twilio)
    fake_twilio.end_call(sid)
    before = metric("edge_hangups_total", kind="hangup", result="already_ended")
    await _actions(fake_twilio).hang_up(sid)  # 404 / 20404
    assert metric("edge_hangups_total", kind="hangup", result="already_ended") == before + 1


async def test_transfer_replaces_the_twiml_with_dial(fake_twilio: TwilioRestFake) -> None:
    sid = await _live_call(fake_twilio)
    result = await _actions(fake_twilio, frozenset({"+15557770000"})).transfer(sid, "+15557770000")
    assert (result.destination, result.transferred) == ("+15557770000", True)
    (request,) = fake_twilio.requests
    assert request.form == [
        (
            "Twiml",
            '<?xml version="1.0" encoding="UTF-8"?><Response><Dial callerId="+15550009999">'
            "<Number>+15557770000</Number></Dial><Hangup /></Response>",
        )
    ]


async def test_transfer_to_an_unlisted_destination_is_refused_and_reported(
    fake_twilio: TwilioRestFake,
) -> None:
    sid = await _live_call(fake_twilio)
    result = await _actions(fake_twilio, frozenset({"+15557770000"})).transfer(sid, "+19005550123")
    assert (result.destination, result.transferred, result.detail) == (
        "+19005550123",
        False,
        "destination not allowed",
    )
    assert fake_twilio.requests == []  # nothing dialled, and the call is not hung up: it goes on
    assert fake_twilio.calls[sid].status == "in-progress"


async def test_without_rest_credentials_a_transfer_fails_and_says_so() -> None:
    result = await TwilioActions(None, frozenset({"*"})).transfer("CA1", "+15557770000")
    assert not result.transferred
    assert result.detail == "transfers are not available on this line"


async def test_without_rest_credentials_hang_up_is_the_socket_closing() -> None:
    before = metric("edge_hangups_total", kind="hangup", result="websocket_only")
    await TwilioActions(None).hang_up("CA1")
    assert metric("edge_hangups_total", kind="hangup", result="websocket_only") == before + 1
