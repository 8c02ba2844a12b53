"""Batching on the multiplexed stream (runtime/mux/batching.py): messages ready together leave in one
gRPC message; the outbox keeps order and its bound; the pacing on the virtual clock."""

from __future__ import annotations

import asyncio

import pytest
from harness.mux_echo import CONVERSE, batch_items, digit
from harness.virtual_clock import VirtualClock

from voicebridge.runtime.mux.batching import Outbox, Pace


async def test_messages_ready_together_travel_in_one_grpc_message(echo) -> None:
    _, client = echo
    items_before, batches_before = batch_items(CONVERSE, "client", "sent")
    calls = [client.open() for _ in range(20)]
    await asyncio.gather(*(call.write(digit("5")) for call in calls))  # all queued in one loop turn
    for call in calls:
        assert (await call.read()).transcript.text == "5"
        call.cancel()
    items, batches = batch_items(CONVERSE, "client", "sent")
    assert items - items_before == 20
    assert batches - batches_before < 20


async def test_the_outbox_hands_out_everything_queued_in_order_and_empties() -> None:
    outbox = Outbox(limit=10)
    for n in range(3):
        outbox.put(n)
    await asyncio.wait_for(outbox.wait(), 5)
    assert outbox.take() == [0, 1, 2]
    assert len(outbox) == 0
    assert outbox.take() == []


async def test_a_full_outbox_holds_producers_until_the_sender_takes() -> None:
    outbox = Outbox(limit=2)
    outbox.put("a")
    outbox.put("b")
    assert outbox.full()
    waiting = asyncio.create_task(outbox.wait_room())
    await asyncio.sleep(0)
    assert not waiting.done()
    assert outbox.take() == ["a", "b"]
    await asyncio.wait_for(waiting, 5)


async def test_a_released_outbox_holds_nobody() -> None:
    outbox = Outbox(limit=1)
    outbox.put("a")
    waiting = asyncio.create_task(outbox.wait_room())
    await asyncio.sleep(0)
    outbox.release()
    await asyncio.wait_for(waiting, 5)
    assert outbox.full()  # nothing was taken: the producer must look at the stream's state itself


def test_items_slower_than_one_per_interval_never_wait() -> None:
    """A lone call: a frame every 20 ms against a 6 ms interval. The window stays 0: it crosses at once."""
    clock = VirtualClock()
    pace = Pace(0.006, clock)
    for _ in range(100):
        assert pace.window(clock.now()) == 0.0
        pace.sent(1)
        clock._now += 0.020
    assert pace.rate(clock.now()) == pytest.approx(50, rel=0.1)


@pytest.mark.parametrize("calls", [5, 20, 100, 500])
def test_the_window_grows_with_the_rate_towards_the_interval_and_never_past_it(calls: int) -> None:
    """Steady load of `calls` frames per 20 ms arriving evenly spaced (the worst case for batching), sent
    as the window allows: the window is interval - 1/rate, below the interval; messages per second
    stay under 2/interval at any rate and come down to about 1/interval as calls grow."""
    clock = VirtualClock()
    interval = 0.006
    pace = Pace(interval, clock)
    rate = calls / 0.020
    queued, sends = 0.0, 0
    for _ in range(4000):  # 4 s in 1 ms steps
        queued += rate * 0.001
        clock._now += 0.001
        if queued >= 1 and clock.now() >= pace._last + pace.window(clock.now()) - 1e-12:
            pace.sent(int(queued))
            queued -= int(queued)
            sends += 1
    window = pace.window(clock.now())
    assert window == pytest.approx(max(0.0, interval - 1 / rate), abs=0.0015)
    assert window < interval
    per_second = sends / 4
    assert per_second <= 2 / interval
    if calls >= 20:  # sends spaced by the window, which tends to the interval
        assert per_second <= 1.1 / (interval - 1 / rate)


def test_after_a_quiet_spell_the_next_send_goes_at_once() -> None:
    clock = VirtualClock()
    pace = Pace(0.006, clock)
    for _ in range(200):  # a busy stream
        pace.sent(50)
        clock._now += 0.006
    assert pace.window(clock.now()) > 0.005
    clock._now += 1.0  # everyone hung up
    assert pace.window(clock.now()) == 0.0


async def test_pace_without_an_interval_never_waits() -> None:
    clock = VirtualClock()
    pace = Pace(0.0, clock)
    for _ in range(3):
        await pace.wait()
    assert clock.now() == 0.0
