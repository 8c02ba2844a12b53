"""Batching on the multiplexed stream (runtime/mux/batching.py): messages ready together leave in one
gRPC message; the outbox keeps order and its bound; the pacing on the virtual clock."""

from __future__ import annotations

import asyncio

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


async def test_pace_lets_the_first_send_go_at_once_and_spaces_the_next() -> None:
    clock = VirtualClock(start=5.0)
    pace = Pace(0.006, clock)
    await pace.wait()
    assert clock.now() == 5.0
    waiting = asyncio.create_task(pace.wait())
    await clock.advance(0.005)
    assert not waiting.done()
    await clock.advance(0.001)
    await asyncio.wait_for(waiting, 5)
    assert round(clock.now(), 6) == 5.006


async def test_pace_without_an_interval_never_waits() -> None:
    clock = VirtualClock()
    pace = Pace(0.0, clock)
    for _ in range(3):
        await pace.wait()
    assert clock.now() == 0.0
