"""Hanging up tears everything down: streams, sessions and tasks in every service."""

from __future__ import annotations

import pytest
from harness.polling import eventually
from harness.stack import Stack

from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller

SERVICES_AND_GAUGES = (
    ("edge", "edge_calls_active"),
    ("media", "media_calls_active"),
    ("agent", "agent_sessions_active"),
)


def _all_idle(stack: Stack) -> bool:
    return all(stack.metric(service, gauge) == 0 for service, gauge in SERVICES_AND_GAUGES)


@pytest.mark.parametrize("how", ["stop", "socket_closed"])
async def test_hanging_up_ends_the_call_in_every_service_within_a_second(
    parrot_stack: Stack, how: str
) -> None:
    await eventually(lambda: _all_idle(parrot_stack), 5, "no calls in progress before the test")
    # The first call opens the streams that then carry every call between two services (mux.py):
    # their tasks belong to the process pair, not to a call. A warm-up call opens them before
    # counting. The task gauge is refreshed every 0.5 s: 0.5 s of greeting means it was set mid-call,
    # and its dropping below that value after the call is the refresh that gives the idle count.
    async with TwilioCaller(CallerConfig(url=parrot_stack.media_ws_url)) as warm_up:
        await warm_up.wait_heard(0.5, timeout=10)
        in_call = {s: parrot_stack.metric(s, "voicebridge_asyncio_tasks") for s, _ in SERVICES_AND_GAUGES}
    await eventually(lambda: _all_idle(parrot_stack), 5, "the warm-up call to end")
    for service, _ in SERVICES_AND_GAUGES:
        await eventually(
            lambda s=service: parrot_stack.metric(s, "voicebridge_asyncio_tasks") < in_call[s],
            3.0,
            f"{service}'s task gauge refreshed after the warm-up call",
        )
    tasks_before = {s: parrot_stack.metric(s, "voicebridge_asyncio_tasks") for s, _ in SERVICES_AND_GAUGES}

    call = TwilioCaller(CallerConfig(url=parrot_stack.media_ws_url))
    await call.connect()
    await call.wait_heard(0.5, timeout=10)
    assert all(parrot_stack.metric(s, g) == 1 for s, g in SERVICES_AND_GAUGES)
    if how == "stop":
        await call.hangup()
    else:
        await call.close_abruptly()

    await eventually(lambda: _all_idle(parrot_stack), 1.0, "edge, media and agent to end the call")
    for service, _ in SERVICES_AND_GAUGES:
        await eventually(
            lambda s=service: parrot_stack.metric(s, "voicebridge_asyncio_tasks") <= tasks_before[s],
            3.0,
            f"{service}'s asyncio tasks back to {tasks_before[service]}",
        )
    assert parrot_stack.metric("agent", "agent_session_ends_total", 'reason="caller_hangup"') >= 1
