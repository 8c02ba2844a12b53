"""The mux's client half (runtime/mux/client.py, call.py) against a real grpc.aio server on loopback:
falling back to per-call streams, turning multiplexing off, a reader that falls behind, losing the
shared stream, write_nowait; and its pacing on the virtual clock, against an in-memory stream that
records when each batch left."""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest
from harness.mux_echo import (
    CONVERSE,
    EchoAgent,
    PerCallOnlyAgent,
    client_for,
    converse,
    digit,
    start,
    texts_until_end,
)
from harness.virtual_clock import VirtualClock

from voicebridge.runtime.mux import CONVERSE_MANY, MuxClient
from voicebridge.v1 import agent_pb2


async def test_a_server_without_the_many_method_gets_one_stream_per_call() -> None:
    agent = PerCallOnlyAgent()
    server, port = await start(agent)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        client = client_for(channel)
        first = await converse(client, "12")  # the very first call must not be lost to the probe
        second = await asyncio.gather(*(converse(client, "3") for _ in range(3)))
        await client.aclose()
    await server.stop(None)
    assert first == (["1", "2", "end"], grpc.StatusCode.OK)
    assert all(result == (["3", "end"], grpc.StatusCode.OK) for result in second)
    assert agent.converse_calls == 4


async def test_multiplexing_can_be_turned_off() -> None:
    agent = EchoAgent()
    server, port = await start(agent)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        client = client_for(channel, enabled=False)
        assert await converse(client, "7") == (["7", "end"], grpc.StatusCode.OK)
    await server.stop(None)
    assert agent.many_streams == agent.batch_streams == 0
    assert agent.converse_calls == 1


async def test_a_reader_that_falls_behind_loses_its_call_not_the_stream() -> None:
    agent = EchoAgent()
    server, port = await start(agent)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        client = client_for(channel, max_unread=5)
        lazy, busy = client.open(), client.open()
        for _ in range(8):
            await lazy.write(digit("1"))  # eight echoes come back, nobody reads them
        assert await lazy.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        await asyncio.wait_for(agent.cancelled.wait(), 5)  # the server was told to stop it
        await busy.write(digit("2"))
        assert (await busy.read()).transcript.text == "2"
        await client.aclose()
    await server.stop(None)


async def test_losing_the_stream_ends_every_call_and_the_next_call_opens_a_new_one() -> None:
    agent = EchoAgent()
    server, port = await start(agent)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    client = client_for(channel)
    calls = [client.open() for _ in range(3)]
    for call in calls:
        await call.write(digit("1"))
        assert (await call.read()).transcript.text == "1"
    await server.stop(None)
    for call in calls:
        assert await call.code() is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError):
            await call.read()

    agent2 = EchoAgent()
    server2, _ = await start(agent2, port)
    try:
        assert await converse(client, "4") == (["4", "end"], grpc.StatusCode.OK)
        assert agent2.batch_streams == 1
    finally:
        await client.aclose()
        await channel.close()
        await server2.stop(None)


async def test_write_nowait_queues_on_the_shared_stream_in_order_with_write(echo) -> None:
    _, client = echo
    call = client.open()
    assert not call.write_nowait(digit("0"))  # not settled on a stream yet: the caller must wait
    await call.write(digit("1"))
    assert call.write_nowait(digit("2"))
    await call.write(digit("3"))
    assert call.write_nowait(digit("4"))
    await call.done_writing()
    assert not call.write_nowait(digit("5"))  # half-closed
    assert await texts_until_end(call) == ["1", "2", "3", "4", "end"]


# -- pacing (MEDIA_BATCH_INTERVAL_MS), on the virtual clock ----------------------------------------


class RecordedStream:
    """An in-memory *Many RPC for the client: records each batch written, with the virtual time it
    left at, and answers nothing until cancelled."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.batches: list[tuple[float, list[tuple[int, str]]]] = []
        self._cancelled = asyncio.Event()

    async def initial_metadata(self) -> tuple:
        return ()

    def done(self) -> bool:
        return self._cancelled.is_set()

    async def write(self, batch: agent_pb2.ConverseManyRequest) -> None:
        items = [(item.call, item.request.dtmf.digit) for item in batch.items]
        self.batches.append((self.clock.now(), items))

    async def read(self):
        await self._cancelled.wait()
        return grpc.aio.EOF

    def cancel(self) -> bool:
        self._cancelled.set()
        return True


def paced_client(clock: VirtualClock, interval_s: float) -> tuple[MuxClient, list[RecordedStream]]:
    streams: list[RecordedStream] = []

    def open_many() -> RecordedStream:
        streams.append(RecordedStream(clock))
        return streams[-1]

    def per_call_only():
        raise AssertionError("the shared stream was not used")

    client = MuxClient(
        [(open_many, CONVERSE_MANY)], per_call_only, CONVERSE, interval_s=interval_s, clock=clock
    )
    return client, streams


def departures(stream: RecordedStream) -> list[float]:
    return [round(t, 6) for t, _ in stream.batches]


async def write_frames(client: MuxClient, clock: VirtualClock, calls: int, seconds: float, seed: int):
    """`calls` calls each writing a frame every 20 ms at its own random phase (on the 1 ms grid), as
    callers do; returns when each frame was written, by its id (the digit field carries it)."""
    rng = random.Random(seed)
    opened = [client.open() for _ in range(calls)]
    phases = [rng.randrange(20) for _ in opened]
    written: dict[str, float] = {}
    for step in range(round(seconds * 1000)):
        for n, (call, phase) in enumerate(zip(opened, phases, strict=True)):
            if step % 20 == phase:
                frame_id = f"{n}:{step}"
                written[frame_id] = clock.now()
                await call.write(digit(frame_id))
        await clock.settle()  # the writer task runs at this instant, not at the next step
        await clock.advance(0.001)
    await clock.advance(0.05)
    return written


async def test_a_lone_call_crosses_at_once() -> None:
    clock = VirtualClock()
    client, streams = paced_client(clock, interval_s=0.006)
    written = await write_frames(client, clock, calls=1, seconds=1.0, seed=1)
    (stream,) = streams
    assert len(stream.batches) == len(written)  # one message per frame...
    for t, items in stream.batches:
        ((_, frame_id),) = items
        assert t == pytest.approx(written[frame_id], abs=1e-9)  # ...leaving when it was written
    await client.aclose()


@pytest.mark.parametrize("calls", [20, 100])
async def test_as_calls_grow_messages_stay_bounded_and_no_frame_waits_past_the_interval(calls: int) -> None:
    clock = VirtualClock()
    interval = 0.006
    client, streams = paced_client(clock, interval_s=interval)
    written = await write_frames(client, clock, calls=calls, seconds=2.0, seed=calls)
    (stream,) = streams
    late = [t for t, _ in stream.batches if t >= 1.0]  # once the rate is known
    assert len(late) <= 1.1 / interval  # about one message per interval, however many calls
    left = {frame_id: t for t, items in stream.batches for _, frame_id in items}
    assert left.keys() == written.keys()  # every frame, once
    assert max(left[f] - written[f] for f in written) <= interval + 1e-9
    by_call: dict[int, list[str]] = {}
    for _, items in stream.batches:
        for number, frame_id in items:
            by_call.setdefault(number, []).append(frame_id)
    for frame_ids in by_call.values():  # each call's frames in the order it wrote them
        steps = [int(f.split(":")[1]) for f in frame_ids]
        assert steps == sorted(steps)
    await client.aclose()


async def test_without_an_interval_every_batch_leaves_when_the_sender_runs() -> None:
    clock = VirtualClock()
    client, streams = paced_client(clock, interval_s=0.0)
    call = client.open()
    for d in "123":
        await call.write(digit(d))
        await clock.settle()
    assert departures(streams[0]) == [0.0, 0.0, 0.0]
    await client.aclose()
