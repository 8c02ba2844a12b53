"""Two edge processes sharing one configuration (replicas behind one public URL, or one edge and its
restart): the voice webhook answered by one, the Media Stream taken by the other.

No EDGE_STREAM_TOKEN_SECRET is set: both derive the stream-token secret from TWILIO_AUTH_TOKEN, so a
token minted by either is accepted by both, and still only for its own call and before it expires.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from harness.polling import eventually
from harness.processes import ServiceProcess
from harness.secured_edge import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    answer_inbound,
    dial_config,
    no_agent_work,
    secured_env,
)
from harness.stack import Stack, start_edge, start_stack

from voicebridge.edge.config import stream_token_secret
from voicebridge.edge.twilio.signature import StreamTokens
from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller
from voicebridge.sim.twilio_rest_fake import TwilioRestFake


@pytest.fixture(scope="module")
def edges(
    tmp_path_factory: pytest.TempPathFactory, fake: TwilioRestFake
) -> Iterator[tuple[Stack, ServiceProcess, str]]:
    workdir = tmp_path_factory.mktemp("edge-replicas")
    env = secured_env(fake, EDGE_STREAM_TOKEN_SECRET="")  # derived from the auth token
    stack = start_stack(workdir, {"AGENT_BACKEND": "parrot"}, env)
    try:
        second, url = start_edge(stack, workdir, "edge-2")
    except BaseException:
        stack.stop()
        raise
    yield stack, second, url
    second.stop()
    stack.stop()


async def test_stream_on_the_other_edge_is_accepted(edges: tuple[Stack, ServiceProcess, str]) -> None:
    stack, second, url = edges
    caller = CallerConfig(url="unused", account_sid=ACCOUNT_SID)
    stream_url, params = await answer_inbound(stack, caller)  # the webhook: the first edge
    cfg = dial_config(stack, stream_url, params, call_sid=caller.call_sid)
    cfg.url = url  # the stream: the second edge
    async with TwilioCaller(cfg) as call:
        await call.wait_heard(1.0, timeout=10)  # the parrot's greeting, through the second edge
        assert call.violations == []
    assert "media stream started" in second.log()
    await eventually(lambda: no_agent_work(stack), 5, "the call to end everywhere")


def _expired(call_sid: str) -> str:
    """A genuine token of this call that expired an hour ago (minted with the shared secret)."""
    secret = stream_token_secret(None, AUTH_TOKEN).encode()
    return StreamTokens(secret, ttl_s=60, clock=lambda: time.time() - 3600).mint(call_sid)


def _altered(token: str) -> str:
    nonce, expires, mac = token.split(".")
    return f"{nonce}.{expires}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}"


@pytest.mark.parametrize("case", ["token_of_another_call", "expired_token", "altered_token"])
async def test_a_bad_token_is_refused_by_the_other_edge_before_any_agent_session(
    edges: tuple[Stack, ServiceProcess, str], case: str
) -> None:
    stack, _, url = edges
    other = CallerConfig(url="unused", account_sid=ACCOUNT_SID)
    stream_url, params = await answer_inbound(stack, other)
    call_sid = other.call_sid
    if case == "token_of_another_call":
        call_sid = "CA" + "7" * 32
    elif case == "expired_token":
        params["vb_token"] = _expired(call_sid)
    else:
        params["vb_token"] = _altered(params["vb_token"])
    media_started = stack.metric("media", "grpc_server_started_total")
    sessions = stack.metric("agent", "agent_session_ends_total")

    cfg = dial_config(stack, stream_url, params, call_sid=call_sid)
    cfg.url = url
    call = TwilioCaller(cfg)
    await call.connect()
    await call.wait_closed(timeout=5)

    assert call.close_code == 1008
    assert "stream token" in (call.close_reason or "")
    if case == "expired_token":
        assert "expired" in (call.close_reason or "")
    assert call.samples_heard() == 0
    assert stack.metric("media", "grpc_server_started_total") == media_started
    assert stack.metric("agent", "agent_session_ends_total") == sessions
    assert no_agent_work(stack)
