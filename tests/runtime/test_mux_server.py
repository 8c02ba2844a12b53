"""The mux's server half (runtime/mux/server.py) behind a real grpc.aio server on loopback: every call
its own handler on one stream, a failing or cancelled call ending alone, a handler that stops reading
losing only its call; and, fed raw batches, the numbering rules and the end of the stream."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from harness.inmemory_grpc import InMemoryChannel
from harness.mux_echo import EchoAgent, client_for, converse, digit, start, texts_until_end

from voicebridge.runtime.mux import CANCEL, HALF_CLOSE
from voicebridge.v1 import agent_pb2


async def test_many_calls_share_one_stream_and_keep_their_own_messages(echo) -> None:
    agent, client = echo
    results = await asyncio.gather(*(converse(client, f"{i}{i}#{i}") for i in range(10)))
    for i, (texts, code) in enumerate(results):
        assert texts == [str(i), str(i), "#", str(i), "end"]
        assert code is grpc.StatusCode.OK
    assert agent.converse_calls == 10
    assert agent.batch_streams == 1


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


# -- the server alone, fed raw batches over an in-memory stream -------------------------------------


async def _responses_until(call, count: int) -> list[tuple[int, str]]:
    """(call number, what) for the next `count` items: a transcript's text, "end", or "status:CODE"."""
    out: list[tuple[int, str]] = []
    while len(out) < count:
        batch = await asyncio.wait_for(call.read(), 5)
        for item in batch.items:
            if item.WhichOneof("kind") == "status":
                out.append((item.call, f"status:{item.status.code}"))
            elif item.response.WhichOneof("event") == "transcript":
                out.append((item.call, item.response.transcript.text))
            else:
                out.append((item.call, item.response.WhichOneof("event")))
    return out


def _batch(*items: agent_pb2.ConverseManyRequestItem) -> agent_pb2.ConverseManyRequest:
    return agent_pb2.ConverseManyRequest(items=items)


def _request(number: int, d: str) -> agent_pb2.ConverseManyRequestItem:
    return agent_pb2.ConverseManyRequestItem(call=number, request=digit(d))


def _signal(number: int, signal: int) -> agent_pb2.ConverseManyRequestItem:
    return agent_pb2.ConverseManyRequestItem(call=number, signal=signal)


@pytest.fixture
async def raw_stream():
    agent = EchoAgent()
    channel = InMemoryChannel()
    call = channel.opener(agent.ConverseMany)()
    yield agent, call
    await channel.aclose()


async def test_late_messages_of_an_ended_call_do_not_open_a_new_one(raw_stream) -> None:
    agent, stream = raw_stream
    await stream.write(_batch(_request(1, "a"), _signal(1, HALF_CLOSE)))
    assert await _responses_until(stream, 3) == [(1, "a"), (1, "end"), (1, "status:0")]
    await stream.write(_batch(_request(1, "late"), _request(2, "b")))
    assert await _responses_until(stream, 1) == [(2, "b")]
    assert agent.converse_calls == 2  # 1 and 2; the late "late" reached nobody


async def test_a_call_cancelled_before_it_opened_never_opens(raw_stream) -> None:
    agent, stream = raw_stream
    await stream.write(_batch(_signal(3, CANCEL), _request(3, "x"), _request(4, "y")))
    assert await _responses_until(stream, 1) == [(4, "y")]
    assert agent.converse_calls == 1


async def test_the_stream_ends_once_the_client_half_closes_and_every_call_has_ended(raw_stream) -> None:
    _, stream = raw_stream
    await stream.write(_batch(_request(1, "a")))
    assert await _responses_until(stream, 1) == [(1, "a")]
    await stream.done_writing()  # the shared stream's half-close half-closes every call on it
    assert await _responses_until(stream, 2) == [(1, "end"), (1, "status:0")]
    assert await asyncio.wait_for(stream.read(), 5) is grpc.aio.EOF
    assert await stream.code() is grpc.StatusCode.OK
