"""Many calls on one gRPC stream (runtime/mux.py), over a real grpc.aio server on loopback; the
client's pacing on the virtual clock, against an in-memory stream that records when each batch left.

The server is a small AgentService whose per-call `Converse` echoes each DTMF digit back as a
transcript; `ConverseMany` serves the same method through `MuxServer`. Digits with a meaning:
"!" makes the handler fail, "z" makes it stop reading its requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from harness.virtual_clock import VirtualClock
from prometheus_client import REGISTRY

from voicebridge.runtime.mux import MuxClient, MuxServer
from voicebridge.v1 import agent_pb2, agent_pb2_grpc, common_pb2

CONVERSE = "/voicebridge.v1.AgentService/Converse"


def digit(d: str) -> agent_pb2.ConverseRequest:
    return agent_pb2.ConverseRequest(dtmf=common_pb2.DtmfDigit(digit=d))


class EchoAgent(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, max_unread: int = 1024) -> None:
        self.converse_calls = 0  # per-call handler runs, however the call arrived
        self.many_streams = 0
        self.cancelled = asyncio.Event()  # a handler was cancelled
        self.stalled = asyncio.Event()
        self._many = MuxServer(
            self.Converse,
            agent_pb2.ConverseManyResponse,
            agent_pb2.ConverseManyResponseItem,
            CONVERSE,
            max_unread=max_unread,
        )

    async def Converse(self, requests, context) -> AsyncIterator[agent_pb2.ConverseResponse]:
        self.converse_calls += 1
        try:
            async for request in requests:
                d = request.dtmf.digit
                if d == "!":
                    raise RuntimeError("boom")
                if d == "z":
                    self.stalled.set()
                    await asyncio.Event().wait()
                yield agent_pb2.ConverseResponse(transcript=common_pb2.Transcript(text=d))
            end = common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP)
            yield agent_pb2.ConverseResponse(end=end)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def ConverseMany(self, requests, context):
        self.many_streams += 1
        async for batch in self._many.serve(requests, context):
            yield batch


class PerCallOnlyAgent(EchoAgent):
    """A third-party backend that implements only Converse."""

    ConverseMany = agent_pb2_grpc.AgentServiceServicer.ConverseMany


async def start(servicer: EchoAgent, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, port


def client_for(channel: grpc.aio.Channel, **kwargs) -> MuxClient:
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    return MuxClient(
        stub.ConverseMany,
        stub.Converse,
        agent_pb2.ConverseManyRequest,
        agent_pb2.ConverseManyRequestItem,
        CONVERSE,
        **kwargs,
    )


@pytest.fixture
async def echo() -> AsyncIterator[tuple[EchoAgent, MuxClient]]:
    agent = EchoAgent()
    server, port = await start(agent)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    client = client_for(channel)
    yield agent, client
    await client.aclose()
    await channel.close()
    await server.stop(None)


async def texts_until_end(call) -> list[str]:
    out = []
    while (message := await call.read()) is not grpc.aio.EOF:
        if message.WhichOneof("event") == "transcript":
            out.append(message.transcript.text)
        else:
            out.append(message.WhichOneof("event"))
    return out


async def converse(client: MuxClient, digits: str) -> tuple[list[str], grpc.StatusCode]:
    call = client.open()
    for d in digits:
        await call.write(digit(d))
    await call.done_writing()
    texts = await texts_until_end(call)
    return texts, await call.code()


def batch_items(method: str, side: str, direction: str) -> tuple[float, float]:
    labels = {"grpc_method": f"{method}Many", "side": side, "direction": direction}
    total = REGISTRY.get_sample_value("voicebridge_mux_batch_items_sum", labels) or 0.0
    count = REGISTRY.get_sample_value("voicebridge_mux_batch_items_count", labels) or 0.0
    return total, count


async def test_many_calls_share_one_stream_and_keep_their_own_messages(echo) -> None:
    agent, client = echo
    results = await asyncio.gather(*(converse(client, f"{i}{i}#{i}") for i in range(10)))
    for i, (texts, code) in enumerate(results):
        assert texts == [str(i), str(i), "#", str(i), "end"]
        assert code is grpc.StatusCode.OK
    assert agent.converse_calls == 10
    assert agent.many_streams == 1


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
    assert agent.many_streams == 0
    assert agent.converse_calls == 1


async def test_a_failing_call_ends_alone_with_its_error(echo) -> None:
    _, client = echo
    healthy = client.open()
    await healthy.write(digit("1"))
    assert (await healthy.read()).transcript.text == "1"
    failing = client.open()
    await failing.write(digit("!"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await failing.read()
    assert raised.value.code() is grpc.StatusCode.UNKNOWN
    assert "boom" in raised.value.details()
    await healthy.write(digit("2"))
    assert (await healthy.read()).transcript.text == "2"
    await healthy.done_writing()
    assert await texts_until_end(healthy) == ["end"]


async def test_cancelling_a_call_stops_its_handler_and_no_other(echo) -> None:
    agent, client = echo
    other = client.open()
    await other.write(digit("1"))
    assert (await other.read()).transcript.text == "1"
    doomed = client.open()
    await doomed.write(digit("9"))
    assert (await doomed.read()).transcript.text == "9"
    assert doomed.cancel()
    assert await doomed.code() is grpc.StatusCode.CANCELLED
    await asyncio.wait_for(agent.cancelled.wait(), 5)
    with pytest.raises(asyncio.InvalidStateError):
        await doomed.write(digit("9"))
    await other.write(digit("2"))
    assert (await other.read()).transcript.text == "2"


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


async def test_a_handler_that_stops_reading_loses_its_call_not_the_stream() -> None:
    agent = EchoAgent(max_unread=5)
    server, port = await start(agent)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        client = client_for(channel)
        stuck, fine = client.open(), client.open()
        await stuck.write(digit("z"))
        await agent.stalled.wait()
        for _ in range(10):
            await stuck.write(digit("1"))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stuck.read()
        assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        await fine.write(digit("3"))
        assert (await fine.read()).transcript.text == "3"
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
        assert agent2.many_streams == 1
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
        open_many,
        per_call_only,
        agent_pb2.ConverseManyRequest,
        agent_pb2.ConverseManyRequestItem,
        CONVERSE,
        interval_s=interval_s,
        clock=clock,
    )
    return client, streams


def departures(stream: RecordedStream) -> list[float]:
    return [round(t, 6) for t, _ in stream.batches]


async def test_an_interval_bounds_the_grpc_messages_whatever_the_calls_send() -> None:
    clock = VirtualClock()
    client, streams = paced_client(clock, interval_s=0.1)
    calls = [client.open() for _ in range(5)]
    for step in range(20):  # 100 call messages: one per call every 10 ms for 200 ms
        for call in calls:
            await call.write(digit(str(step % 10)))
        await clock.settle()
        await clock.advance(0.01)
    await clock.advance(0.2)
    (stream,) = streams
    # One gRPC message per 100 ms, the first at once: 0, 100 and 200 ms carry all 100 messages.
    assert departures(stream) == [0.0, 0.1, 0.2]
    by_call: dict[int, list[str]] = {}
    for _, items in stream.batches:
        for number, d in items:
            by_call.setdefault(number, []).append(d)
    assert sorted(by_call) == [1, 2, 3, 4, 5]
    assert all(ds == [str(step % 10) for step in range(20)] for ds in by_call.values())
    await client.aclose()


async def test_the_first_message_after_a_quiet_interval_leaves_at_once_the_next_waits_its_turn() -> None:
    clock = VirtualClock()
    client, streams = paced_client(clock, interval_s=0.1)
    call = client.open()
    await call.write(digit("1"))  # the first ever: at once
    await clock.settle()
    await clock.advance(0.03)
    await call.write(digit("2"))  # 30 ms after the last send: waits for 100 ms after it
    await clock.settle()
    await clock.advance(0.06)
    assert departures(streams[0]) == [0.0]
    await clock.advance(0.01)
    assert departures(streams[0]) == [0.0, 0.1]
    await clock.advance(0.25)  # quiet for longer than the interval
    await call.write(digit("3"))
    await clock.settle()
    assert departures(streams[0]) == [0.0, 0.1, 0.35]  # no wait at all
    assert [items for _, items in streams[0].batches] == [[(1, "1")], [(1, "2")], [(1, "3")]]
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
