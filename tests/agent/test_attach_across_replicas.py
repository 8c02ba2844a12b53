"""An attach finds the agent replica that holds the call, whichever the pool would have picked.

Three agent replicas (the real servicer with the parrot, μ-law 8 kHz, and the real gRPC health
service) on loopback behind an endpoints file; media's side is the real ReplicaPool with media's
ConverseMany client. The conversation is held on one replica; an attach through the pool is answered
NOT_FOUND by the others, moves on without them being counted as failing, and takes it over.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from harness.virtual_clock import VirtualClock

from voicebridge.agent.backends.parrot import ParrotBackend
from voicebridge.agent.converse import ConverseServicer
from voicebridge.agent.holds import HoldSettings
from voicebridge.agent.prompts import load_prompt
from voicebridge.media.agent_link import agent_calls
from voicebridge.runtime.replicas import ReplicaPool
from voicebridge.runtime.resolvers import FileResolver
from voicebridge.v1 import agent_pb2, agent_pb2_grpc, common_pb2

AGENT = "voicebridge.v1.AgentService"
ULAW = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)
GREETING = load_prompt("greeting", ULAW.encoding, ULAW.sample_rate_hz)
SECRET = b"\x33" * 32


class AgentReplica:
    def __init__(self) -> None:
        self.servicer = ConverseServicer(
            ParrotBackend("ulaw_8000"), hold=HoldSettings(grace_s=15.0), clock=VirtualClock()
        )
        self.server = grpc.aio.server()
        agent_pb2_grpc.add_AgentServiceServicer_to_server(self.servicer, self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"

    async def start(self) -> None:
        await self.server.start()
        await self.health.set(AGENT, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self) -> None:
        await self.servicer.drain(0)
        await self.server.stop(0)


@pytest.fixture
async def three() -> AsyncIterator[list[AgentReplica]]:
    replicas = [AgentReplica() for _ in range(3)]
    for replica in replicas:
        await replica.start()
    yield replicas
    for replica in replicas:
        await replica.stop()


def _start(attach: bool) -> agent_pb2.ConverseRequest:
    start = agent_pb2.SessionStart(
        call=common_pb2.CallInfo(call_sid="CAmany0001"),
        input_formats=[ULAW],
        output_formats=[ULAW],
        call_secret=SECRET,
    )
    if attach:
        start.attach.resume_from.CopyFrom(common_pb2.PlaybackPosition(response_id=1, offset_us=800 * 125))
    return agent_pb2.ConverseRequest(start=start)


async def _pool(tmp_path: Path, replicas: list[AgentReplica]) -> ReplicaPool:
    """Media's pool over the replicas (an endpoints file), once it sees every one serving."""
    name = tmp_path / "agent.endpoints"
    name.write_text("".join(f"{r.address}\n" for r in replicas))

    def connect(address: str):
        channel = grpc.aio.insecure_channel(address)
        return channel, agent_calls(agent_pb2_grpc.AgentServiceStub(channel), True, 0.0)

    pool = ReplicaPool(FileResolver(name), connect, AGENT, "agent", resolve_interval_s=0.05)
    await asyncio.wait_for(pool.wait_until(lambda: _states(pool) == _serving(replicas)), 10)
    return pool


def _states(pool: ReplicaPool) -> dict[str, str]:
    return {a: s for a, (s, _) in pool.replicas().items()}


def _serving(replicas: list[AgentReplica]) -> dict[str, str]:
    return {r.address: "serving" for r in replicas}


async def _audio(call, nbytes: int) -> bytes:
    got = b""
    async with asyncio.timeout(10):  # failure detector
        while len(got) < nbytes:
            message = await call.read()
            assert message is not grpc.aio.EOF
            assert message.WhichOneof("event") != "error", message
            got += message.audio.data
    return got


@pytest.mark.parametrize("holder", [0, 1, 2])
async def test_an_attach_asks_each_replica_until_the_one_that_holds_the_call(
    tmp_path: Path, three: list[AgentReplica], holder: int
) -> None:
    held = three[holder]
    async with grpc.aio.insecure_channel(held.address) as channel:
        first = agent_pb2_grpc.AgentServiceStub(channel).Converse()
        await first.write(_start(attach=False))
        await first.read()
        await _audio(first, 1600)
        first.cancel()
        async with asyncio.timeout(10):
            await held.servicer.holds.wait_until(lambda: len(held.servicer.holds) == 1)

    pool = await _pool(tmp_path, three)
    try:
        call = pool.open()
        await call.write(_start(attach=True))
        ready = await asyncio.wait_for(call.read(), 10)
        assert ready.ready.attached
        assert call.replica == held.address
        assert await _audio(call, len(GREETING) - 800) == GREETING[800:]
        # "Not here" is no failure: every replica still takes new calls.
        assert _states(pool) == _serving(three)
        call.cancel()
    finally:
        await pool.aclose()


async def test_when_no_replica_holds_the_call_media_sees_not_found(
    tmp_path: Path, three: list[AgentReplica]
) -> None:
    pool = await _pool(tmp_path, three)
    try:
        call = pool.open()
        await call.write(_start(attach=True))
        answer = await asyncio.wait_for(call.read(), 10)
        assert answer.error.code == common_pb2.ERROR_CODE_NOT_FOUND
        assert _states(pool) == _serving(three)
        call.cancel()
    finally:
        await pool.aclose()
