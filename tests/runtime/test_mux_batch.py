"""The batch RPC (ConverseBatch) between the real mux client and server over loopback gRPC: caller audio
crosses as columns and reaches the handler as frame objects, each call's audio and control in order;
a malformed item or batch ends its own calls only; a server of the release before it (ConverseMany
only) or a third-party agent (Converse only) still gets every call."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from harness.mux_echo import (
    EchoAgent,
    ManyOnlyAgent,
    PerCallOnlyAgent,
    client_for,
    digit,
    start,
    texts_until_end,
)

from voicebridge.runtime.mux import HALF_CLOSE, CallerChunkFrame
from voicebridge.v1 import agent_pb2, agent_pb2_grpc, common_pb2

PCM = common_pb2.AUDIO_ENCODING_PCM_S16LE


def frame(call: int, n: int) -> CallerChunkFrame:
    return CallerChunkFrame(bytes([call, n]) * 160, PCM, 16000, 0, n, 0)


async def talk(client, call_no: int, frames: int) -> list[tuple[str, object]]:
    """Audio frames with a DTMF digit after the second; what comes back, as (kind, detail)."""
    call = client.open()
    for n in range(1, frames + 1):
        await call.write(frame(call_no, n))
        if n == 2:
            await call.write(digit(str(call_no % 10)))
    await call.done_writing()
    out: list[tuple[str, object]] = []
    while (message := await call.read()) is not grpc.aio.EOF:
        kind = message.WhichOneof("event")
        if kind == "audio":
            out.append(("audio", (message.audio.response_id, message.audio.data[:2])))
        else:
            out.append((kind, message.transcript.text if kind == "transcript" else ""))
    assert await call.code() is grpc.StatusCode.OK
    return out


def expected(call_no: int, frames: int) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for n in range(1, frames + 1):
        out.append(("audio", (n, bytes([call_no, n]))))
        if n == 2:
            out.append(("transcript", str(call_no % 10)))
    return [*out, ("end", "")]


@pytest.fixture
async def served():
    servers = []

    async def serve(agent: EchoAgent):
        server, port = await start(agent)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        servers.append((server, channel))
        return channel

    yield serve
    for server, channel in servers:
        await channel.close()
        await server.stop(None)


async def test_audio_of_many_calls_crosses_as_frames_and_keeps_each_calls_order(served) -> None:
    agent = EchoAgent()
    client = client_for(await served(agent))
    results = await asyncio.gather(*(talk(client, i, 6) for i in range(1, 13)))
    await client.aclose()
    assert results == [expected(i, 6) for i in range(1, 13)]
    assert agent.batch_streams == 1
    assert agent.many_streams == 0
    assert agent.audio_types == {CallerChunkFrame}  # no protobuf message per frame on the server


@pytest.mark.parametrize(
    ("agent_type", "batch", "many"), [(ManyOnlyAgent, 0, 1), (PerCallOnlyAgent, 0, 0)], ids=["many", "call"]
)
async def test_a_server_without_the_batch_method_still_gets_every_call(
    served, agent_type, batch, many
) -> None:
    agent = agent_type()
    client = client_for(await served(agent))
    first = await talk(client, 1, 3)  # the very first call must not be lost to the probes
    rest = await asyncio.gather(*(talk(client, i, 3) for i in range(2, 5)))
    await client.aclose()
    assert [first, *rest] == [expected(i, 3) for i in range(1, 5)]
    assert (agent.batch_streams, agent.many_streams) == (batch, many)
    assert agent.converse_calls == 4
    assert agent.audio_types == {agent_pb2.ConverseRequest}  # the frames went as their messages


async def responses(stream, count: int) -> list[tuple[int, str]]:
    """(call, what) for the next `count` response entries of a raw ConverseBatch stream."""
    out: list[tuple[int, str]] = []
    while len(out) < count:
        batch = await asyncio.wait_for(stream.read(), 10)
        for call in batch.audio.calls:
            out.append((call, "audio"))
        for item in batch.items:
            kind = item.WhichOneof("kind")
            detail = item.status.code if kind == "status" else item.response.WhichOneof("event")
            out.append((item.call, f"{kind}:{detail}"))
    return out


def good_audio(*calls: int) -> agent_pb2.AudioChunkColumns:
    return agent_pb2.AudioChunkColumns(calls=list(calls), lengths=[2] * len(calls), data=b"ab" * len(calls))


async def test_a_malformed_item_ends_its_call_and_no_other(served) -> None:
    agent = EchoAgent()
    stream = agent_pb2_grpc.AgentServiceStub(await served(agent)).ConverseBatch()
    await stream.write(agent_pb2.ConverseBatchRequest(audio=good_audio(1, 2)))
    assert sorted(await responses(stream, 2)) == [(1, "audio"), (2, "audio")]
    # call 2 sends an item with nothing in it; call 1 goes on in the same batch
    await stream.write(
        agent_pb2.ConverseBatchRequest(items=[{"call": 2}], item_positions=[0], audio=good_audio(1))
    )
    got = await responses(stream, 2)
    assert sorted(got) == [(1, "audio"), (2, f"status:{grpc.StatusCode.INVALID_ARGUMENT.value[0]}")]
    await stream.write(agent_pb2.ConverseBatchRequest(audio=good_audio(1, 2)))  # 2 is over: dropped
    assert await responses(stream, 1) == [(1, "audio")]
    stream.cancel()


async def test_a_batch_whose_columns_disagree_ends_the_calls_it_names_and_no_other(served) -> None:
    agent = EchoAgent()
    stream = agent_pb2_grpc.AgentServiceStub(await served(agent)).ConverseBatch()
    await stream.write(agent_pb2.ConverseBatchRequest(audio=good_audio(1, 2)))
    assert sorted(await responses(stream, 2)) == [(1, "audio"), (2, "audio")]
    bad = agent_pb2.AudioChunkColumns(calls=[2, 3], lengths=[2, 9], data=b"abcd")  # lengths past the data
    await stream.write(agent_pb2.ConverseBatchRequest(audio=bad))
    invalid = f"status:{grpc.StatusCode.INVALID_ARGUMENT.value[0]}"
    assert sorted(await responses(stream, 2)) == [(2, invalid), (3, invalid)]
    await stream.write(
        agent_pb2.ConverseBatchRequest(
            items=[{"call": 1, "request": digit("7")}, {"call": 1, "signal": HALF_CLOSE}],
            item_positions=[0, 0],
        )
    )
    assert await responses(stream, 3) == [(1, "response:transcript"), (1, "response:end"), (1, "status:0")]
    stream.cancel()


async def test_text_and_end_still_cross_on_the_batch_stream(served) -> None:
    client = client_for(await served(EchoAgent()))
    call = client.open()
    for d in "12":
        await call.write(digit(d))
    await call.done_writing()
    assert await texts_until_end(call) == ["1", "2", "end"]
    await client.aclose()
