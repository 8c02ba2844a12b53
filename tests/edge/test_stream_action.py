"""The `<Connect action>` route: when a call's stream ends, hang up or re-open it (edge died)."""

from __future__ import annotations

import pytest
from edge_helpers import PUBLIC, ClientFactory, make_settings, metric, signed

from voicebridge.edge import call_params
from voicebridge.edge.security import EdgeSecurity
from voicebridge.edge.stream_action import EndedCalls, Outcome, action_url, decide, parse_attempt
from voicebridge.edge.twilio import media_streams as ms
from voicebridge.edge.twilio import twiml
from voicebridge.sim.twilio_caller import CallerConfig, twiml_instruction

CALLER = CallerConfig(url="wss://unused", call_sid="CA" + "5" * 32, account_sid="AC" + "a" * 32)
ACTION = "/twilio/stream-action"


def _form(status: str = "in-progress") -> dict[str, str]:
    return CALLER.voice_webhook_form(call_status=status)


@pytest.mark.parametrize(
    ("status", "ended_here", "attempt", "max_reopens", "outcome"),
    [
        ("in-progress", False, 0, 3, Outcome.REOPEN),
        ("in-progress", False, 2, 3, Outcome.REOPEN),
        ("in-progress", False, 3, 3, Outcome.LIMIT),
        ("in-progress", False, 0, 0, Outcome.LIMIT),
        ("", False, 0, 3, Outcome.REOPEN),  # no status: the call is taken to be on
        ("in-progress", True, 0, 3, Outcome.ENDED_HERE),
        ("completed", False, 0, 3, Outcome.CALL_ENDED),
        ("completed", True, 5, 3, Outcome.CALL_ENDED),
        ("canceled", False, 0, 3, Outcome.CALL_ENDED),
        ("failed", False, 0, 3, Outcome.CALL_ENDED),
        ("busy", False, 0, 3, Outcome.CALL_ENDED),
        ("no-answer", False, 0, 3, Outcome.CALL_ENDED),
    ],
)
def test_decide(status: str, ended_here: bool, attempt: int, max_reopens: int, outcome: Outcome) -> None:
    form = {"CallStatus": status} if status else {}
    assert decide(form, ended_here=ended_here, attempt=attempt, max_reopens=max_reopens) is outcome


@pytest.mark.parametrize(
    ("query", "attempt"),
    [("", 0), ("attempt=0", 0), ("attempt=2", 2), ("other=x", 0), ("attempt=12&x=1", 12)],
)
def test_parse_attempt(query: str, attempt: int) -> None:
    assert parse_attempt(query) == attempt


@pytest.mark.parametrize(
    "query", ["attempt=", "attempt=-1", "attempt=x", "attempt=1&attempt=2", "attempt=99999"]
)
def test_parse_attempt_refuses(query: str) -> None:
    with pytest.raises(ValueError, match="attempt"):
        parse_attempt(query)


@pytest.mark.parametrize(
    ("attempt", "url"),
    [(0, "https://v.test/twilio/stream-action"), (2, "https://v.test/twilio/stream-action?attempt=2")],
)
def test_action_url(attempt: int, url: str) -> None:
    assert action_url("https://v.test/twilio/stream-action", attempt) == url
    assert parse_attempt(url.partition("?")[2]) == attempt


@pytest.mark.parametrize("action", ["/twilio/stream-action", "ftp://x/y", "https://x/y#f", "https:///y"])
def test_connect_action_must_be_absolute_http(action: str) -> None:
    with pytest.raises(twiml.TwimlError, match="15004"):
        twiml.connect_stream("wss://x/media", {}, action=action)


def test_connect_action_is_written_with_post() -> None:
    xml = twiml.connect_stream("wss://x/media", {"a": "b"}, action="https://x/act?attempt=1")
    assert '<Connect action="https://x/act?attempt=1" method="POST">' in xml


def test_ended_calls_expire_and_stay_bounded() -> None:
    now = [0.0]
    ended = EndedCalls(ttl_s=10.0, max_calls=2, clock=lambda: now[0])
    ended.add("CA1")
    now[0] = 5.0
    ended.add("CA2")
    assert "CA1" in ended
    assert "CA2" in ended
    now[0] = 10.0
    assert "CA1" not in ended
    assert "CA2" in ended
    ended.add("CA3")
    ended.add("CA4")
    assert len(ended) == 2
    assert "CA2" not in ended


def test_the_reopen_marker_never_reaches_the_agent() -> None:
    info = call_params.call_info(
        call_sid="CA1",
        stream_sid="MZ1",
        account_sid="AC1",
        custom_parameters={"vb_reopen": "1", "plan": "gold"},
    )
    assert dict(info.custom_parameters) == {"plan": "gold"}


# --- the route -----------------------------------------------------------------------------------


async def test_a_lost_stream_is_reopened_for_the_same_call_with_a_fresh_token(
    edge_client: ClientFactory,
) -> None:
    client = edge_client(EDGE_AGENT_VARIABLES='{"plan": "gold"}')
    before = metric("edge_stream_actions_total", outcome="reopen")
    reply = await client.post(ACTION, data=_form(), headers=signed(ACTION, _form()))
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/xml")
    step = twiml_instruction(reply.text)
    assert step.stream_url == "wss://voice.example.com/twilio/media"
    assert step.action == f"{PUBLIC}{ACTION}?attempt=1"
    params = step.parameters
    assert (params["vb_reopen"], params["vb_from"], params["vb_to"]) == (
        "1",
        CALLER.from_number,
        CALLER.to_number,
    )
    assert (params["vb_direction"], params["plan"]) == ("inbound", "gold")
    assert len(params["vb_token"]) > 40
    assert metric("edge_stream_actions_total", outcome="reopen") == before + 1

    # The re-opened stream's own action carries the count on; it is signed with its query string.
    again = f"{ACTION}?attempt=1"
    reply = await client.post(again, data=_form(), headers=signed(again, _form()))
    assert twiml_instruction(reply.text).action == f"{PUBLIC}{ACTION}?attempt=2"


@pytest.mark.parametrize(("status", "query"), [("completed", ""), ("in-progress", "?attempt=3")])
async def test_an_ended_call_or_the_last_attempt_hangs_up(
    edge_client: ClientFactory, status: str, query: str
) -> None:
    client = edge_client()
    path = ACTION + query
    reply = await client.post(path, data=_form(status), headers=signed(path, _form(status)))
    assert reply.status_code == 200
    assert reply.text == twiml.hangup()
    assert twiml_instruction(reply.text).stream_url is None


async def test_the_action_route_checks_signature_query_and_call_sid(edge_client: ClientFactory) -> None:
    client = edge_client()
    assert (await client.post(ACTION, data=_form())).status_code == 403
    # The signature covers the query string: a counter rewritten in transit is refused.
    headers = signed(f"{ACTION}?attempt=1", _form())
    assert (await client.post(f"{ACTION}?attempt=0", data=_form(), headers=headers)).status_code == 403
    path = f"{ACTION}?attempt=x"
    assert (await client.post(path, data=_form(), headers=signed(path, _form()))).status_code == 400
    form = {k: v for k, v in _form().items() if k != "CallSid"}
    assert (await client.post(ACTION, data=form, headers=signed(ACTION, form))).status_code == 400
    big = {**_form(), "Padding": "x" * 70_000}
    assert (await client.post(ACTION, data=big, headers=signed(ACTION, big))).status_code == 413


async def test_an_outbound_calls_stream_is_reopened_as_outbound_with_a_token_for_its_call_sid(
    edge_client: ClientFactory,
) -> None:
    client = edge_client()
    outbound = CallerConfig(url="wss://unused", call_sid="CA" + "6" * 32, direction="outbound-api")
    form = outbound.action_form()
    reply = await client.post(ACTION, data=form, headers=signed(ACTION, form))
    params = twiml_instruction(reply.text).parameters
    assert (params["vb_direction"], params["vb_reopen"]) == ("outbound", "1")
    # Outbound tokens are first bound to From/To (no CallSid yet when the TwiML was written); the
    # re-open's is bound to the CallSid Twilio now reports, which the edge's start check accepts.
    security = EdgeSecurity(make_settings())
    start = ms.Start(
        sequence_number=1,
        account_sid="AC1",
        call_sid=outbound.call_sid,
        stream_sid="MZ1",
        tracks=("inbound",),
        media_format=ms.MediaFormat("audio/x-mulaw", 8000, 1),
        custom_parameters=params,
    )
    assert security.verify_start(start) is None
