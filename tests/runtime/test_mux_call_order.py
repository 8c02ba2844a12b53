"""The multiplexed stream's call numbering and end markers, in each order a call's first message and
its end can take (runtime/mux/ over in-memory streams, so the order is the test's, not the loop's).

The server tells a new call from the late messages of an ended one by its number: numbers must
first appear on the wire in increasing order, whatever order the calls were opened in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from harness.inmemory_grpc import InMemoryChannel, converse_client

from voicebridge.runtime.mux import CONVERSE_MANY, MuxServer
from voicebridge.v1 import agent_pb2, common_pb2

CONVERSE = "/voicebridge.v1.AgentService/Converse"


def digit(d: str) -> agent_pb2.ConverseRequest:
    return agent_pb2.ConverseRequest(dtmf=common_pb2.DtmfDigit(digit=d))


class Echo:
    def __init__(self) -> None:
        self.handlers = 0
        self.many = MuxServer(self.converse, CONVERSE_MANY, CONVERSE)

    async def converse(self, requests, context) -> AsyncIterator[agent_pb2.ConverseResponse]:
        self.handlers += 1
        async for request in requests:
            yield agent_pb2.ConverseResponse(transcript=common_pb2.Transcript(text=request.dtmf.digit))
        yield agent_pb2.ConverseResponse(end=common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP))

    async def converse_many(self, requests, context):
        async for batch in self.many.serve(requests, context):
            yield batch


@pytest.fixture
async def setup():
    echo, channel = Echo(), InMemoryChannel()
    client = converse_client(channel, echo.converse_many, echo.converse)
    warm = client.open()  # settle the shared stream, so later calls join it at once
    await warm.write(digit("w"))
    assert (await asyncio.wait_for(warm.read(), 5)).transcript.text == "w"
    yield echo, client
    await client.aclose()
    await channel.aclose()


async def test_a_call_opened_first_but_sending_second_is_still_served(setup) -> None:
    _echo, client = setup
    first, second = client.open(), client.open()
    await second.write(digit("2"))
    await first.write(digit("1"))
    assert (await asyncio.wait_for(second.read(), 5)).transcript.text == "2"
    assert (await asyncio.wait_for(first.read(), 5)).transcript.text == "1"


async def test_a_call_that_half_closes_without_a_message_still_ends(setup) -> None:
    _echo, client = setup
    call = client.open()
    await call.done_writing()
    assert (await asyncio.wait_for(call.read(), 5)).WhichOneof("event") == "end"
    assert await asyncio.wait_for(call.read(), 5) is grpc.aio.EOF
    assert await asyncio.wait_for(call.code(), 5) is grpc.StatusCode.OK


async def test_a_call_cancelled_before_sending_reaches_no_handler(setup) -> None:
    echo, client = setup
    handlers = echo.handlers
    cancelled = client.open()
    assert cancelled.cancel()
    later = client.open()
    await later.write(digit("x"))
    assert (await asyncio.wait_for(later.read(), 5)).transcript.text == "x"
    assert echo.handlers == handlers + 1  # only `later`'s
    assert await cancelled.code() is grpc.StatusCode.CANCELLED
