"""Many replicas, as Kubernetes runs them: calls spread by load, replicas drained without a drop.

One stack for the module (processes are the expensive part): two edges, three media, one agent
(parrot), each on a loopback address of its own; the edges find media and media finds the agent
through endpoints files this test writes (`file://` targets: the test's stand-in for a headless
Service's DNS name). The tests run in order on it; before each one the stack is settled (`settled`):
replicas that died are out of the name, at least two media replicas serve, every edge sees exactly
them, and no process has a call in progress, so no test inherits an earlier one's leftovers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
from harness.heard import played_audio
from harness.polling import eventually
from harness.stack import CALLS_ACTIVE, IDLE_TIMEOUT_S, scrape_metric

from voicebridge.media.call import GOODBYE
from voicebridge.sim.replica_stack import CALL_STARTED, Replica, ReplicaStack, count_in_log
from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller

# Failure detectors, never what is asserted.
TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaStack]:
    replicas = ReplicaStack(
        tmp_path_factory.mktemp("replicas"),
        {
            "agent": {"AGENT_BACKEND": "parrot", "DRAIN_DEADLINE_S": "60"},
            "media": {"DRAIN_DEADLINE_S": "60"},
            "edge": {"DRAIN_DEADLINE_S": "60"},
        },
    )
    try:
        for service, count in (("agent", 1), ("media", 3), ("edge", 2)):
            for _ in range(count):
                replicas.start(service)
        yield replicas
    finally:
        replicas.stop()


@pytest.fixture(autouse=True)
async def settled(stack: ReplicaStack) -> None:
    """Each test starts from a known, idle stack, whatever the one before it left."""
    for service in ("media", "edge"):
        for replica in list(stack.listed.get(service, [])):
            if not replica.alive():
                stack.unlist(replica)
    await at_least_two_media(stack)

    def idle() -> bool:
        return not any(
            scrape_metric(r.metrics_url, CALLS_ACTIVE[r.service])
            for r in stack.replicas
            if r.service in CALLS_ACTIVE and r.alive()
        )

    await eventually(idle, IDLE_TIMEOUT_S, "every process to have ended its calls")


def edges(stack: ReplicaStack) -> list[Replica]:
    return stack.running("edge")


def media_seen(edge: Replica, state: str) -> float:
    """How many listed media replicas `edge` knows in `state` (its own gauge)."""
    return scrape_metric(edge.metrics_url, "voicebridge_replicas", f'hop="media",state="{state}"')


async def edges_see(stack: ReplicaStack, serving: int, not_serving: int | None = None) -> None:
    def seen() -> bool:
        return all(
            media_seen(e, "serving") == serving
            and (not_serving is None or media_seen(e, "not_serving") == not_serving)
            for e in edges(stack)
        )

    await eventually(seen, TIMEOUT_S, f"every edge to see {serving} serving media replicas")


def started(replicas: list[Replica]) -> list[int]:
    return [count_in_log(r, CALL_STARTED[r.service]) for r in replicas]


@contextlib.asynccontextmanager
async def pinned_to(stack: ReplicaStack, replica: Replica) -> AsyncIterator[None]:
    """Calls opened inside go to `replica`: the name lists it alone until the block ends."""
    others = [m for m in stack.listed["media"] if m is not replica]
    for other in others:
        stack.unlist(other)
    await edges_see(stack, 1)
    try:
        yield
    finally:
        for other in others:
            stack.list_in_name(other)
        await edges_see(stack, len(stack.listed["media"]))


async def short_call(url: str) -> TwilioCaller:
    """A call that hears its greeting start, then hangs up."""
    async with TwilioCaller(CallerConfig(url=url)) as call:
        await call.wait_heard(0.2, timeout=TIMEOUT_S)
    return call


async def short_calls(stack: ReplicaStack, n: int) -> list[TwilioCaller]:
    """`n` concurrent short calls, spread over the edges in turn (the Ingress's part)."""
    urls = [e.ws_url for e in edges(stack)]
    async with asyncio.TaskGroup() as group:  # one failing cancels the rest: nothing left running
        calls = [group.create_task(short_call(urls[i % len(urls)])) for i in range(n)]
    return [c.result() for c in calls]


def assert_unharmed(calls: list[TwilioCaller]) -> None:
    """Each call heard its greeting, broke no protocol rule, and was ended by its caller."""
    assert [c.violations for c in calls] == [[] for _ in calls]
    assert {c.closed_by for c in calls} == {"caller"}


async def gone(stack: ReplicaStack, replica: Replica) -> None:
    """The replica has exited: it leaves the name, and the edges forget it."""
    stack.unlist(replica)
    await edges_see(stack, len(stack.listed["media"]), 0)


async def at_least_two_media(stack: ReplicaStack) -> None:
    while len(stack.listed["media"]) < 2:
        await asyncio.to_thread(stack.start, "media")
    await edges_see(stack, len(stack.listed["media"]), 0)


async def test_thirty_calls_over_three_media_replicas_land_within_two_of_even(stack: ReplicaStack) -> None:
    media = stack.listed["media"]
    before = started(media)
    calls = await short_calls(stack, 30)
    assert_unharmed(calls)
    per_replica = [after - b for after, b in zip(started(media), before, strict=True)]
    assert sum(per_replica) == 30
    assert all(abs(n - 10) <= 2 for n in per_replica), per_replica


async def test_a_not_serving_replica_gets_no_new_call(stack: ReplicaStack) -> None:
    draining = stack.listed["media"][0]
    async with pinned_to(stack, draining):
        held = await TwilioCaller(CallerConfig(url=edges(stack)[0].ws_url)).__aenter__()
        await held.wait_heard(0.2, timeout=TIMEOUT_S)
    try:
        draining.terminate()  # it drains: NOT_SERVING for as long as the held call lasts
        await edges_see(stack, 2, 1)
        before = started([draining])
        calls = await short_calls(stack, 6)
        assert_unharmed(calls)
        assert started([draining]) == before  # none of the six
    finally:
        await held.hangup()
    assert await asyncio.to_thread(draining.wait, TIMEOUT_S) == 0
    await gone(stack, draining)


async def test_a_replica_that_vanishes_before_calls_start_costs_them_nothing(stack: ReplicaStack) -> None:
    await at_least_two_media(stack)
    vanished = stack.listed["media"][0]
    vanished.kill()  # still in the name, and no edge has been told anything
    calls = await short_calls(stack, 6)
    assert_unharmed(calls)
    await gone(stack, vanished)


async def _goes_on(call: TwilioCaller) -> None:
    """The call is still alive: another second of the greeting reaches the caller."""
    await call.wait_heard(call.samples_heard() / 8000 + 1.0, timeout=TIMEOUT_S)


async def test_a_media_replica_under_sigterm_keeps_its_ten_calls_to_their_end_while_new_calls_go_elsewhere(
    stack: ReplicaStack,
) -> None:
    await at_least_two_media(stack)
    draining = stack.listed["media"][0]
    urls = [e.ws_url for e in edges(stack)]
    [earlier] = started([draining])
    async with pinned_to(stack, draining):
        held = [await TwilioCaller(CallerConfig(url=urls[i % 2])).__aenter__() for i in range(10)]
        await asyncio.gather(*(c.wait_heard(0.2, timeout=TIMEOUT_S) for c in held))
    assert started([draining]) == [earlier + 10]
    try:
        draining.terminate()
        others = [m for m in stack.listed["media"] if m is not draining]
        await edges_see(stack, len(others), 1)
        before = started(others)
        new_calls, _ = await asyncio.gather(short_calls(stack, 4), asyncio.gather(*map(_goes_on, held)))
        assert_unharmed(new_calls)
        assert sum(started(others)) - sum(before) == 4
        assert started([draining]) == [earlier + 10]
        assert draining.alive()  # still draining: its calls are in progress
    finally:
        await asyncio.gather(*(c.hangup() for c in held))
    assert_unharmed(held)  # every one ran to its end: the caller hung up, not the service
    assert await asyncio.to_thread(draining.wait, TIMEOUT_S) == 0
    drain_log = draining.log().split("draining: ", 1)[1]  # from the SIGTERM on
    assert drain_log.count("call ended: END_REASON_CALLER_HANGUP") == 10
    assert "END_REASON_SHUTDOWN" not in drain_log
    await gone(stack, draining)


async def test_at_the_drain_deadline_the_caller_hears_the_goodbye_and_is_hung_up(stack: ReplicaStack) -> None:
    quick = await asyncio.to_thread(stack.start, "media", DRAIN_DEADLINE_S="0")
    await edges_see(stack, len(stack.listed["media"]))
    async with pinned_to(stack, quick):
        async with TwilioCaller(CallerConfig(url=edges(stack)[0].ws_url)) as call:
            await call.wait_heard(0.5, timeout=TIMEOUT_S)  # the greeting is playing
            quick.terminate()
            await call.wait_closed(timeout=TIMEOUT_S)
        stack.unlist(quick)
    assert call.closed_by == "server"  # hung up by the service...
    assert call.violations == []
    assert GOODBYE[1600:4000] in played_audio(call)  # ...after the goodbye was played in full
    assert call.clears_received == 1  # the greeting was cut off first
    assert await asyncio.to_thread(quick.wait, TIMEOUT_S) == 0
    assert "call ended: END_REASON_SHUTDOWN" in quick.log()
    await edges_see(stack, len(stack.listed["media"]), 0)


async def test_an_edge_under_sigterm_keeps_its_streams_to_their_end_and_fails_readiness(
    stack: ReplicaStack,
) -> None:
    leaving = edges(stack)[0]
    held = [await TwilioCaller(CallerConfig(url=leaving.ws_url)).__aenter__() for _ in range(2)]
    try:
        await asyncio.gather(*(c.wait_heard(0.2, timeout=TIMEOUT_S) for c in held))
        leaving.terminate()
        await eventually(lambda: not leaving.ready(), TIMEOUT_S, "the draining edge to fail /readyz")
        await asyncio.gather(*map(_goes_on, held))
        assert leaving.alive()
    finally:
        await asyncio.gather(*(c.hangup() for c in held))
    assert_unharmed(held)
    assert await asyncio.to_thread(leaving.wait, TIMEOUT_S) == 0  # the module's last test: one edge left


async def test_an_edge_at_its_drain_deadline_has_media_say_goodbye_and_hangs_up(stack: ReplicaStack) -> None:
    quick = await asyncio.to_thread(stack.start, "edge", DRAIN_DEADLINE_S="0")
    async with TwilioCaller(CallerConfig(url=quick.ws_url)) as call:
        await call.wait_heard(0.5, timeout=TIMEOUT_S)  # the greeting is playing
        quick.terminate()
        await call.wait_closed(timeout=TIMEOUT_S)
    assert call.closed_by == "server"
    assert call.violations == []
    assert GOODBYE[1600:4000] in played_audio(call)
    assert await asyncio.to_thread(quick.wait, TIMEOUT_S) == 0
    assert "media stream ended: END_REASON_SHUTDOWN" in quick.log()
