"""One real agent process (`voicebridge-agent`, elevenlabs backend) against the ConvAI emulator.

The test plays media itself with nothing but the generated stubs, one Converse stream per call, so what
is exercised is the agent service alone (servicer + elevenlabs backend), at the scale of a busy host:
50 calls at once must not hear each other, and 500 calls in a row must leave no socket or task
behind. (Memory over back-to-back calls is a measurement: `voicebridge-load --sequential N
--slo-rss-growth-mib M` reports it, docs/performance.md.) Calls speak μ-law 8 kHz both ways, which
the backend passes through untouched, so content is checked byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest
from harness.audio import dominant_frequency, tone_ulaw, ulaw_to_float
from harness.processes import BIN, ServiceProcess, free_port, grpc_ready
from harness.stack import scrape_metric

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, EmulatedSession
from voicebridge.v1 import agent_pb2, agent_pb2_grpc, common_pb2

pytestmark = pytest.mark.e2e

ULAW = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_MULAW, sample_rate_hz=8000)
FRAME = 160  # 20 ms of μ-law, what media sends


@dataclass
class AgentProcess:
    proc: ServiceProcess
    target: str
    metrics_url: str
    emulator: ConvAIEmulator

    def metric(self, name: str, labels: str = "") -> float:
        return scrape_metric(self.metrics_url, name, labels)

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return self.proc.proc.pid


@pytest.fixture(scope="module")
async def agent(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AgentProcess]:
    emulator = ConvAIEmulator()
    await emulator.start()
    port, metrics_port = free_port(), free_port()
    workdir: Path = tmp_path_factory.mktemp("agent-process")
    proc = ServiceProcess(
        "agent",
        [str(BIN / "voicebridge-agent")],
        {
            "AGENT_LISTEN": f"127.0.0.1:{port}",
            "AGENT_METRICS_PORT": str(metrics_port),
            "AGENT_BACKEND": "elevenlabs",
            "ELEVENLABS_AGENT_ID": "unused-default",
            "ELEVENLABS_BASE_URL": emulator.base_url,
            "ELEVENLABS_ALLOW_AGENT_OVERRIDE": "true",  # each call names its scripted agent
            "LOG_LEVEL": "WARNING",
        },
        workdir / "agent.log",
    )
    proc.start()
    try:
        await asyncio.to_thread(proc.wait_until, grpc_ready(f"127.0.0.1:{port}"))
        yield AgentProcess(proc, f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", emulator)
    finally:
        await asyncio.to_thread(proc.stop)
        await emulator.stop()


async def eventually(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll another process's state (metrics, /proc) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for: {what}")
        await asyncio.sleep(0.05)


def call_sid(i: int) -> str:
    return f"CA{i:032x}"


def index_of(sid: str) -> int:
    return int(sid[2:], 16)


def start_request(i: int, agent_id: str) -> agent_pb2.ConverseRequest:
    call = common_pb2.CallInfo(call_sid=call_sid(i), custom_parameters={"agent_id": agent_id})
    return agent_pb2.ConverseRequest(
        start=agent_pb2.SessionStart(call=call, input_formats=[ULAW], output_formats=[ULAW])
    )


async def send_audio(call: grpc.aio.StreamStreamCall, audio: bytes) -> None:
    for offset in range(0, len(audio), FRAME):
        chunk = agent_pb2.AudioChunk(
            data=audio[offset : offset + FRAME], format=ULAW, timestamp_ms=offset // 8
        )
        await call.write(agent_pb2.ConverseRequest(audio=chunk))


async def read_until_end(call: grpc.aio.StreamStreamCall) -> tuple[bytes, common_pb2.CallEnd]:
    """Agent audio heard until the agent's CallEnd; the stream must then finish cleanly."""
    heard = bytearray()
    while True:
        message = await call.read()
        assert message is not grpc.aio.EOF, "the stream ended without a CallEnd"
        kind = message.WhichOneof("event")
        assert kind not in ("error", "ready"), message
        if kind == "audio":
            assert message.audio.format == ULAW
            heard += message.audio.data
        elif kind == "end":
            with contextlib.suppress(grpc.aio.UsageError, asyncio.InvalidStateError):
                await call.done_writing()
            assert await call.read() is grpc.aio.EOF
            assert await call.code() == grpc.StatusCode.OK
            return bytes(heard), message.end


async def open_call(
    stub: agent_pb2_grpc.AgentServiceStub, i: int, agent_id: str
) -> grpc.aio.StreamStreamCall:
    call = stub.Converse()
    await call.write(start_request(i, agent_id))
    ready = await call.read()
    assert ready.WhichOneof("event") == "ready", ready
    assert ready.ready.input_format == ULAW
    assert ready.ready.output_format == ULAW
    assert ready.ready.conversation_id.startswith("conv_emu_")
    return call


# --- 50 calls at once ----------------------------------------------------------------------------

CONCURRENT = 50
SPOKEN_S = 0.3


def caller_hz(i: int) -> float:
    return 300.0 + 50.0 * i  # 300 … 2750 Hz: every caller speaks its own tone


def agent_hz(i: int) -> float:
    return 3400.0 - 50.0 * i  # 3400 … 950 Hz: every agent answers with its own tone


async def test_50_concurrent_sessions_hear_only_their_own_peer(agent: AgentProcess) -> None:
    """Each emulated agent tags its reply with a tone derived from its own `call_sid` dynamic variable,
    then echoes what it received; so both directions are checked by content, per call."""
    by_sid: dict[str, EmulatedSession] = {}

    async def tag_and_echo(session: EmulatedSession) -> None:
        assert session.init is not None
        sid = session.init["dynamic_variables"]["call_sid"]
        by_sid[sid] = session
        expected = len(tone_ulaw(caller_hz(index_of(sid)), SPOKEN_S))
        received = await session.wait_for_audio(expected, timeout=30)
        await session.send_audio(tone_ulaw(agent_hz(index_of(sid)), SPOKEN_S) + received, chunk_ms=100)
        await session.close(1000, "conversation over")

    agent.emulator.add_agent("xtalk", AgentScript("ulaw_8000", "ulaw_8000", scenario=tag_and_echo))
    all_ready = asyncio.Event()
    ready_count = 0

    async def one_call(stub: agent_pb2_grpc.AgentServiceStub, i: int) -> tuple[bytes, common_pb2.CallEnd]:
        nonlocal ready_count
        call = await open_call(stub, i, "xtalk")
        ready_count += 1
        if ready_count == CONCURRENT:
            all_ready.set()
        await all_ready.wait()  # every session is open before anyone speaks
        await send_audio(call, tone_ulaw(caller_hz(i), SPOKEN_S))
        return await read_until_end(call)

    async with grpc.aio.insecure_channel(agent.target) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        calls = [asyncio.create_task(one_call(stub, i)) for i in range(CONCURRENT)]
        await asyncio.wait_for(all_ready.wait(), 30)
        assert agent.metric("agent_sessions_active") == CONCURRENT
        assert sum(not s.closed for s in agent.emulator.sessions if s.agent_id == "xtalk") == CONCURRENT
        results = await asyncio.wait_for(asyncio.gather(*calls), 60)

    assert len(by_sid) == CONCURRENT
    for i, (heard, end) in enumerate(results):
        mine = tone_ulaw(caller_hz(i), SPOKEN_S)
        # The agent of call i received exactly caller i's audio, nothing more, nothing else.
        assert bytes(by_sid[call_sid(i)].received_audio) == mine
        # Caller i heard exactly its own agent: the tag of its call_sid, then its own words.
        tag = tone_ulaw(agent_hz(i), SPOKEN_S)
        assert heard == tag + mine
        assert abs(dominant_frequency(ulaw_to_float(heard[: len(tag)]), 8000) - agent_hz(i)) < 5
        assert end.reason == common_pb2.END_REASON_AGENT_ENDED
    await eventually(lambda: agent.metric("agent_sessions_active") == 0, 5, "no session left")


# --- 500 calls in a row --------------------------------------------------------------------------

TOTAL, WARM_UP, IN_FLIGHT, SAMPLE_EVERY = 500, 50, 10, 50
SHORT = bytes(range(256)) * 3  # 96 ms of audio-shaped bytes: enough to prove both directions


@dataclass
class Footprint:
    fds: int
    tcp: int


def footprint(proc: psutil.Process) -> Footprint:
    return Footprint(proc.num_fds(), len(proc.net_connections(kind="tcp")))


def connected(proc: psutil.Process) -> list:
    return [c for c in proc.net_connections(kind="tcp") if c.status != psutil.CONN_LISTEN]


@pytest.mark.slow
async def test_500_sequential_calls_leave_no_socket_or_task_behind(agent: AgentProcess) -> None:
    """Short calls (handshake, a little audio both ways, end), ten in flight; the caller ends even
    calls, the agent ends odd ones, so both teardown paths are counted."""

    async def echo(session: EmulatedSession) -> None:
        assert session.init is not None
        received = await session.wait_for_audio(len(SHORT), timeout=10)
        await session.send_audio(received, chunk_ms=50)
        if index_of(session.init["dynamic_variables"]["call_sid"]) % 2:
            await session.close(1000, "agent done")
        else:
            await session.wait_closed(timeout=10)

    agent.emulator.add_agent("leak", AgentScript("ulaw_8000", "ulaw_8000", scenario=echo))
    proc = psutil.Process(agent.pid)

    def idle() -> bool:
        return agent.emulator.open_connections == 0 and agent.metric("agent_sessions_active") == 0

    async def one_call(stub: agent_pb2_grpc.AgentServiceStub, i: int) -> None:
        call = await open_call(stub, i, "leak")
        await send_audio(call, SHORT)
        heard = bytearray()
        if i % 2 == 0:
            while len(heard) < len(SHORT):
                message = await call.read()
                if message.WhichOneof("event") == "audio":
                    heard += message.audio.data
            hangup = common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP)
            await call.write(agent_pb2.ConverseRequest(end=hangup))
            await call.done_writing()
            rest, end = await read_until_end(call)
            heard += rest
            assert end.reason == common_pb2.END_REASON_CALLER_HANGUP
        else:
            heard, end = await read_until_end(call)
            assert end.reason == common_pb2.END_REASON_AGENT_ENDED
        assert bytes(heard) == SHORT

    async def calls(stub: agent_pb2_grpc.AgentServiceStub, first: int, count: int) -> None:
        todo = iter(range(first, first + count))

        async def worker() -> None:
            for i in todo:
                await one_call(stub, i)

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))

    async def settle(what: str, baseline: Footprint, tasks: float) -> Footprint:
        # The timeouts are failure detectors: a leak never comes back down.
        await eventually(idle, 30, f"every session closed on both sides ({what})")
        # <=: a socket of an earlier metrics scrape can still be closing when the baseline is taken.
        await eventually(lambda: proc.num_fds() <= baseline.fds, 30, f"fds back to {baseline.fds} ({what})")
        await eventually(
            lambda: len(proc.net_connections(kind="tcp")) <= baseline.tcp, 30, f"TCP back ({what})"
        )
        await eventually(
            lambda: agent.metric("voicebridge_asyncio_tasks") <= tasks, 30, f"tasks back to {tasks} ({what})"
        )
        return footprint(proc)

    async with grpc.aio.insecure_channel(agent.target) as channel:
        await channel.channel_ready()
        await eventually(idle, 10, "no call in progress before the test")
        # The baseline: the agent's listening sockets and our channel's connection, nothing else
        # (an earlier test's channel may still be closing).
        await eventually(lambda: len(connected(proc)) == 1, 10, "no connection but ours")
        await eventually(lambda: agent.metric("voicebridge_asyncio_tasks") > 0, 5, "the task gauge")
        tasks_before = agent.metric("voicebridge_asyncio_tasks")
        before = footprint(proc)
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        sessions_before = len(agent.emulator.sessions)

        await calls(stub, 0, WARM_UP)
        after = await settle("after the warm-up", before, tasks_before)
        for first in range(WARM_UP, TOTAL, SAMPLE_EVERY):
            await calls(stub, first, SAMPLE_EVERY)
            after = await settle(f"after {first + SAMPLE_EVERY} calls", before, tasks_before)
        # The task gauge is sampled every 5th loop-lag tick (runtime/metrics.py): 6 more ticks, and the
        # reading is one taken after the last call.
        ticks = agent.metric("voicebridge_event_loop_lag_seconds_count")
        await eventually(
            lambda: agent.metric("voicebridge_event_loop_lag_seconds_count") >= ticks + 6, 30, "a task sample"
        )
        tasks_after = agent.metric("voicebridge_asyncio_tasks")
        assert tasks_after <= tasks_before

    ours = agent.emulator.sessions[sessions_before:]
    assert len(ours) == TOTAL
    assert all(s.closed and s.close_code == 1000 for s in ours)
    assert sum(s.closed_by_client for s in ours) == TOTAL // 2  # the caller's hang-ups closed by the agent
    print(f"agent: fds {before.fds}->{after.fds}, tcp {before.tcp}->{after.tcp}")
    print(f"agent: tasks {tasks_before:g}->{tasks_after:g}")
