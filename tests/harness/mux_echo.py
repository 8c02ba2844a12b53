"""An AgentService that echoes, served per call and multiplexed (runtime/mux), for the mux tests.

Its per-call `Converse` echoes each DTMF digit back as a transcript and caller audio as agent audio
(reply id: the audio's timestamp), and ends with a CallEnd; `ConverseBatch` and `ConverseMany` serve
the same method through `MuxServer`. Digits with a meaning: "!" makes the handler fail, "z" makes it
stop reading its requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from prometheus_client import REGISTRY

from voicebridge.runtime.mux import MuxClient, agent_client, agent_servers
from voicebridge.v1 import agent_pb2, agent_pb2_grpc, common_pb2

CONVERSE = "/voicebridge.v1.AgentService/Converse"


def digit(d: str) -> agent_pb2.ConverseRequest:
    return agent_pb2.ConverseRequest(dtmf=common_pb2.DtmfDigit(digit=d))


class EchoAgent(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, max_unread: int = 1024) -> None:
        self.converse_calls = 0  # per-call handler runs, however the call arrived
        self.many_streams = 0
        self.batch_streams = 0
        self.audio_types: set[type] = set()  # what the handler was given for caller audio
        self.cancelled = asyncio.Event()  # a handler was cancelled
        self.stalled = asyncio.Event()
        self._batch, self._many = agent_servers(self.Converse, max_unread=max_unread)

    async def Converse(self, requests, context) -> AsyncIterator[agent_pb2.ConverseResponse]:
        self.converse_calls += 1
        try:
            async for request in requests:
                if request.WhichOneof("event") == "audio":  # echoed as agent audio of reply timestamp_ms
                    self.audio_types.add(type(request))
                    chunk = request.audio
                    yield agent_pb2.ConverseResponse(
                        audio=agent_pb2.AudioChunk(
                            data=chunk.data, format=chunk.format, response_id=chunk.timestamp_ms
                        )
                    )
                    continue
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

    async def ConverseBatch(self, requests, context):
        self.batch_streams += 1
        async for batch in self._batch.serve(requests, context):
            yield batch


class ManyOnlyAgent(EchoAgent):
    """An agent of the release before ConverseBatch: Converse and ConverseMany."""

    ConverseBatch = agent_pb2_grpc.AgentServiceServicer.ConverseBatch


class PerCallOnlyAgent(EchoAgent):
    """A third-party backend that implements only Converse."""

    ConverseMany = agent_pb2_grpc.AgentServiceServicer.ConverseMany
    ConverseBatch = agent_pb2_grpc.AgentServiceServicer.ConverseBatch


async def start(servicer: EchoAgent, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, port


def client_for(channel: grpc.aio.Channel, **kwargs) -> MuxClient:
    return agent_client(agent_pb2_grpc.AgentServiceStub(channel), **kwargs)


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


def batch_items(method: str, side: str, direction: str, rpc: str = "Batch") -> tuple[float, float]:
    labels = {"grpc_method": f"{method}{rpc}", "side": side, "direction": direction}
    total = REGISTRY.get_sample_value("voicebridge_mux_batch_items_sum", labels) or 0.0
    count = REGISTRY.get_sample_value("voicebridge_mux_batch_items_count", labels) or 0.0
    return total, count
