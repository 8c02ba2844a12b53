"""Calls spread over replicas (runtime/replicas.py), against real grpc.aio servers on loopback.

Each replica is a small AgentService (harness/mux_echo.py: each DTMF digit comes back as a transcript)
carried by the real MuxServer, with the real gRPC health service unless a test needs a peer without
one. The name is an endpoints file the test writes. A peer without a health service counts as serving
and is never watched again: that is what lets a test decide, with no race, that the pool still thinks
a replica is fine when it is not (it refuses, or it has gone).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from harness.mux_echo import EchoAgent, client_for, digit
from prometheus_client import REGISTRY

from voicebridge.runtime.replicas import ReplicaPool
from voicebridge.runtime.resolvers import FileResolver
from voicebridge.v1 import agent_pb2, agent_pb2_grpc, common_pb2

AGENT = "voicebridge.v1.AgentService"


class RefusingAgent(EchoAgent):
    """A replica that began draining after the client chose it: `end` SHUTDOWN before anything."""

    async def Converse(self, requests, context):
        self.converse_calls += 1
        yield agent_pb2.ConverseResponse(end=common_pb2.CallEnd(reason=common_pb2.END_REASON_SHUTDOWN))


class Replica:
    def __init__(self, servicer: EchoAgent, with_health: bool = True) -> None:
        self.servicer = servicer
        self.server = grpc.aio.server()
        agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, self.server)
        self.health = health.aio.HealthServicer() if with_health else None
        if self.health is not None:
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"

    async def start(self) -> Replica:
        await self.server.start()
        await self.set(health_pb2.HealthCheckResponse.SERVING)
        return self

    async def set(self, status: int) -> None:
        if self.health is not None:
            await self.health.set(AGENT, status)


@pytest.fixture
async def replicas() -> AsyncIterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        await replica.server.stop(0)


async def add(
    replicas: list[Replica], servicer: EchoAgent | None = None, with_health: bool = True
) -> Replica:
    replica = await Replica(servicer or EchoAgent(), with_health).start()
    replicas.append(replica)
    return replica


def write_name(path: Path, replicas: list[Replica]) -> None:
    path.write_text("".join(f"{r.address}\n" for r in replicas))


def pool_for(path: Path) -> ReplicaPool:
    def connect(address: str):
        channel = grpc.aio.insecure_channel(address)
        return channel, client_for(channel)

    return ReplicaPool(FileResolver(path), connect, AGENT, "agent", resolve_interval_s=0.05)


def moved(why: str) -> float:
    value = REGISTRY.get_sample_value("voicebridge_replica_calls_moved_total", {"hop": "agent", "why": why})
    return value or 0.0


async def settle(pool: ReplicaPool, states: dict[str, str]) -> None:
    """Until the pool knows exactly these replicas in these states (failure detector: 10 s)."""

    def known() -> bool:
        return {a: s for a, (s, _) in pool.replicas().items()} == states

    await asyncio.wait_for(pool.wait_until(known), 10)


async def echo(call, d: str) -> str:
    await call.write(digit(d))
    return (await call.read()).transcript.text


async def test_calls_go_to_the_replica_with_the_fewest_calls_in_progress(tmp_path, replicas) -> None:
    name = tmp_path / "agent.endpoints"
    three = [await add(replicas) for _ in range(3)]
    write_name(name, three)
    pool = pool_for(name)
    try:
        await settle(pool, {r.address: "serving" for r in three})
        calls = [pool.open() for _ in range(6)]
        assert [await echo(c, "a") for c in calls] == ["a"] * 6
        assert sorted(active for _, active in pool.replicas().values()) == [2, 2, 2]
        for call in calls[:2]:  # two calls end: their replicas now have the fewest
            await call.done_writing()
            assert (await call.read()).end.reason == common_pb2.END_REASON_CALLER_HANGUP
        freed = {c.replica for c in calls[:2]}
        await asyncio.wait_for(pool.wait_until(lambda: sum(a for _, a in pool.replicas().values()) == 4), 10)
        later = [pool.open() for _ in range(2)]
        assert [await echo(c, "b") for c in later] == ["b", "b"]
        assert {c.replica for c in later} == freed
        for call in calls[2:] + later:
            call.cancel()
    finally:
        await pool.aclose()


async def test_a_not_serving_replica_gets_no_call(tmp_path, replicas) -> None:
    name = tmp_path / "agent.endpoints"
    serving, draining = await add(replicas), await add(replicas)
    write_name(name, [serving, draining])
    pool = pool_for(name)
    try:
        await draining.set(health_pb2.HealthCheckResponse.NOT_SERVING)
        await settle(pool, {serving.address: "serving", draining.address: "not_serving"})
        calls = [pool.open() for _ in range(4)]
        assert [await echo(c, "a") for c in calls] == ["a"] * 4
        assert {c.replica for c in calls} == {serving.address}
        assert draining.servicer.converse_calls == 0
        for call in calls:
            call.cancel()
    finally:
        await pool.aclose()


@pytest.mark.parametrize("trouble", ["refuses", "vanished"])
async def test_a_call_the_chosen_replica_cannot_take_moves_to_another_with_everything_written(
    tmp_path, replicas, trouble: str
) -> None:
    name = tmp_path / "agent.endpoints"
    bad = await add(replicas, RefusingAgent() if trouble == "refuses" else EchoAgent(), with_health=False)
    good = await add(replicas)
    write_name(name, [bad, good])
    pool = pool_for(name)
    try:
        await settle(pool, {bad.address: "serving", good.address: "serving"})
        if trouble == "vanished":
            await bad.server.stop(0)  # the pool has no way to know yet
        before = moved("refused" if trouble == "refuses" else "unavailable")
        call = pool.open()  # ties go to the first listed: the bad one
        for d in "abc":
            await call.write(digit(d))  # written before the move: written again on the good one
        assert [(await call.read()).transcript.text for _ in range(3)] == ["a", "b", "c"]
        assert call.replica == good.address
        assert moved("refused" if trouble == "refuses" else "unavailable") == before + 1
        if trouble == "refuses":
            assert bad.servicer.converse_calls == 1
        assert await echo(call, "d") == "d"  # and it stays there
        call.cancel()
    finally:
        await pool.aclose()


async def test_a_replica_leaving_the_name_keeps_its_call_and_is_closed_after_it(tmp_path, replicas) -> None:
    name = tmp_path / "agent.endpoints"
    leaving, staying = await add(replicas), await add(replicas)
    write_name(name, [leaving])
    pool = pool_for(name)
    try:
        await settle(pool, {leaving.address: "serving"})
        call = pool.open()
        assert await echo(call, "a") == "a"
        write_name(name, [staying])
        await settle(pool, {leaving.address: "serving", staying.address: "serving"})
        assert await echo(call, "b") == "b"  # the call stays on its replica
        new = pool.open()  # new calls: only `staying` is listed now
        assert await echo(new, "c") == "c"
        assert new.replica == staying.address
        await call.done_writing()
        assert (await call.read()).end.reason == common_pb2.END_REASON_CALLER_HANGUP
        await settle(pool, {staying.address: "serving"})  # closed once its last call ended
        new.cancel()
    finally:
        await pool.aclose()


async def test_no_replica_at_all_ends_the_call_unavailable(tmp_path) -> None:
    name = tmp_path / "agent.endpoints"
    name.write_text("")
    pool = ReplicaPool(FileResolver(name), lambda a: (None, None), AGENT, "agent", 0.05, place_timeout_s=0.2)
    try:
        call = pool.open()
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call.read()
        assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
        assert await call.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        await pool.aclose()


@contextlib.asynccontextmanager
async def a_call_on_a_replica_that_vanished(
    tmp_path: Path, replicas: list[Replica]
) -> AsyncIterator[tuple[ReplicaPool, Any, Replica]]:
    """Two replicas, the first with no health service (never watched: the pool cannot see it go); a
    call started on it, then it vanishes. Yields the pool, that call and the good replica."""
    name = tmp_path / "agent.endpoints"
    bad, good = await add(replicas, with_health=False), await add(replicas)
    write_name(name, [bad, good])
    pool = pool_for(name)
    try:
        await settle(pool, {bad.address: "serving", good.address: "serving"})
        first = pool.open()  # ties go to the first listed: the bad one, whose shared stream then opens
        assert await echo(first, "a") == "a"
        assert first.replica == bad.address
        await bad.server.stop(None)  # gone, its stream with it; the pool has no way to know yet
        yield pool, first, good
    finally:
        await pool.aclose()


async def test_a_new_call_on_a_replica_gone_since_its_last_call_moves_with_everything_written(
    tmp_path, replicas
) -> None:
    async with a_call_on_a_replica_that_vanished(tmp_path, replicas) as (pool, first, good):
        first.cancel()
        before = moved("unavailable")
        calls = [pool.open() for _ in range(3)]  # the bad one has the fewest calls in progress
        for call in calls:
            for d in "bc":
                await call.write(digit(d))
        assert [[(await c.read()).transcript.text for _ in range(2)] for c in calls] == [["b", "c"]] * 3
        assert {c.replica for c in calls} == {good.address}
        assert moved("unavailable") > before
        for call in calls:
            call.cancel()


async def test_a_started_call_whose_replica_died_reopens_elsewhere_and_the_dead_one_gets_no_call(
    tmp_path, replicas
) -> None:
    async with a_call_on_a_replica_that_vanished(tmp_path, replicas) as (pool, first, good):
        bad = first.replica
        with pytest.raises(grpc.aio.AioRpcError) as failed:  # a started call's failure is its owner's
            await first.read()
        assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
        again = pool.reopen(first)
        assert await echo(again, "b") == "b"
        assert again.replica == good.address
        assert pool.replicas()[bad][0] == "not_serving"  # no health watch told it: reopen did
        later = pool.open()  # the dead one has the fewest calls, and still gets none
        assert await echo(later, "c") == "c"
        assert later.replica == good.address
        for call in (again, later):
            call.cancel()
