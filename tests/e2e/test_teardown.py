"""Hanging up tears everything down: the call, its sessions and its tasks, in every service."""

from __future__ import annotations

import pytest
from harness.polling import eventually
from harness.stack import CALLS_ACTIVE, IDLE_TIMEOUT_S, Stack

from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller

TASKS = "voicebridge_asyncio_tasks"
# runtime/metrics.py: the loop-lag watcher observes one tick every 0.1 s and counts the tasks every
# 5th tick, so 6 more ticks observed mean the task gauge was sampled since we started waiting.
TICKS = "voicebridge_event_loop_lag_seconds_count"
TICKS_PER_SAMPLE = 6


async def task_counts(stack: Stack, services=tuple(CALLS_ACTIVE)) -> dict[str, float]:
    """Each service's live asyncio tasks, from a sample taken after this call began."""
    ticks = {s: stack.metric(s, TICKS) for s in services}
    await eventually(
        lambda: all(stack.metric(s, TICKS) >= ticks[s] + TICKS_PER_SAMPLE for s in services),
        IDLE_TIMEOUT_S,
        "the task gauges to be sampled again",
    )
    return {s: stack.metric(s, TASKS) for s in services}


async def tasks_back_to(stack: Stack, idle: dict[str, float]) -> dict[str, float]:
    """The services whose tasks have not come back down to `idle` (empty when all have).

    A sample can catch a short-lived task that is no call's (the edge serving this very scrape): a
    leak is a count that never comes back down, so a service above its idle count is sampled again."""
    above = dict(idle)
    for _ in range(int(IDLE_TIMEOUT_S)):
        counts = await task_counts(stack, tuple(above))
        above = {s: n for s, n in counts.items() if n > idle[s]}
        if not above:
            break
    return above


@pytest.mark.parametrize("how", ["stop", "socket_closed"])
async def test_hanging_up_ends_the_call_in_every_service_and_returns_its_tasks(
    parrot_stack: Stack, how: str
) -> None:
    # The first call between two processes opens the streams that then carry every call (runtime/mux/):
    # their tasks belong to the process pair, not to a call, so a warm-up call opens them before the
    # idle count is taken.
    async with TwilioCaller(CallerConfig(url=parrot_stack.media_ws_url)) as warm_up:
        await warm_up.wait_heard(0.3, timeout=15)
    await parrot_stack.wait_idle("the warm-up call to end in every service")
    idle = await task_counts(parrot_stack)
    ends_before = parrot_stack.metric("agent", "agent_session_ends_total", 'reason="caller_hangup"')

    call = TwilioCaller(CallerConfig(url=parrot_stack.media_ws_url))
    await call.connect()
    await call.wait_heard(0.3, timeout=15)
    assert parrot_stack.calls_in_progress() == dict.fromkeys(CALLS_ACTIVE, 1)
    during = await task_counts(parrot_stack)
    assert all(during[s] > idle[s] for s in CALLS_ACTIVE), f"idle {idle}, during the call {during}"
    if how == "stop":
        await call.hangup()
    else:
        await call.close_abruptly()

    await parrot_stack.wait_idle("edge, media and agent to end the call")
    assert await tasks_back_to(parrot_stack, idle) == {}, f"tasks of the call kept; idle before it: {idle}"
    ends = parrot_stack.metric("agent", "agent_session_ends_total", 'reason="caller_hangup"')
    assert ends == ends_before + 1
