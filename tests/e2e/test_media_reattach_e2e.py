"""A media replica dies mid-reply (SIGKILL) or loses the edge's stream, and the call goes on through
another media replica that re-attaches to the agent's held conversation: real agent and media
processes on loopback, the edge played by the generated MediaService stubs.

The agent is the parrot speaking μ-law 8 kHz, which media passes through untouched: what the "edge"
received from the first media up to `PlayAudio.position`, plus what the second one sent after a
`CallStart.reattach{sent}`, must be the bundled greeting byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from harness.polling import eventually
from harness.processes import BIN, ServiceProcess, free_port, grpc_ready
from harness.stack import scrape_metric

from voicebridge.agent.prompts import load_prompt
from voicebridge.v1 import common_pb2, media_pb2, media_pb2_grpc

pytestmark = pytest.mark.e2e

GREETING = load_prompt("greeting", common_pb2.AUDIO_ENCODING_MULAW, 8000)
SECRET = b"\x2a" * 32
CALL = common_pb2.CallInfo(call_sid="CAreattach0001", stream_sid="MZreattach0001")


@dataclass
class Node:
    proc: ServiceProcess
    target: str
    metrics_url: str

    def metric(self, name: str, labels: str = "") -> float:
        return scrape_metric(self.metrics_url, name, labels)


def _service(
    name: str, binary: str, env: dict[str, str], workdir: Path, listen_var: str, metrics_var: str
) -> Node:
    port, metrics = free_port(), free_port()
    proc = ServiceProcess(
        name,
        [str(BIN / binary)],
        {
            "LOG_LEVEL": "INFO",
            "DRAIN_DEADLINE_S": "0",
            listen_var: f"127.0.0.1:{port}",
            metrics_var: str(metrics),
            **env,
        },
        workdir / f"{name}.log",
    )
    proc.start()
    proc.wait_until(grpc_ready(f"127.0.0.1:{port}"))
    return Node(proc, f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics}/metrics")


@dataclass
class Replicas:
    agent: Node
    media: list[Node]


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[Replicas]:
    started: list[Node] = []
    try:
        agent = await asyncio.to_thread(
            _service,
            "agent",
            "voicebridge-agent",
            {"AGENT_BACKEND": "parrot", "PARROT_FORMAT": "ulaw_8000"},
            tmp_path,
            "AGENT_LISTEN",
            "AGENT_METRICS_PORT",
        )
        started.append(agent)
        media = []
        for i in (1, 2):
            node = await asyncio.to_thread(
                _service,
                f"media-{i}",
                "voicebridge-media",
                {"AGENT_TARGET": agent.target},
                tmp_path,
                "MEDIA_LISTEN",
                "MEDIA_METRICS_PORT",
            )
            started.append(node)
            media.append(node)
        yield Replicas(agent, media)
    finally:
        for node in reversed(started):
            await asyncio.to_thread(node.proc.stop)


class EdgeCall:
    """The edge's side of one Call stream: writes CallRequests, echoes every mark, keeps the audio."""

    def __init__(self, target: str, start: media_pb2.CallStart) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.call = media_pb2_grpc.MediaServiceStub(self.channel).Call()
        self.start = start
        self.played: list[media_pb2.PlayAudio] = []
        self.kinds: list[str] = []

    async def begin(self) -> None:
        await self.call.write(media_pb2.CallRequest(start=self.start))

    def audio(self) -> bytes:
        return b"".join(p.payload for p in self.played)

    async def read_until(self, nbytes: int) -> None:
        async with asyncio.timeout(30):  # failure detector
            while len(self.audio()) < nbytes:
                message = await self.call.read()
                assert message is not grpc.aio.EOF, f"media ended the call: {self.kinds}"
                self.kinds.append(message.WhichOneof("event"))
                if message.WhichOneof("event") == "audio":
                    self.played.append(message.audio)
                    if message.audio.mark:
                        await self.call.write(
                            media_pb2.CallRequest(mark=media_pb2.MarkEcho(name=message.audio.mark))
                        )

    async def hang_up(self) -> None:
        stop = common_pb2.CallEnd(reason=common_pb2.END_REASON_CALLER_HANGUP, detail="caller hung up")
        await self.call.write(media_pb2.CallRequest(stop=stop))
        async with asyncio.timeout(30):
            while await self.call.read() is not grpc.aio.EOF:
                pass
        await self.channel.close()

    async def aclose(self) -> None:
        self.call.cancel()
        await self.channel.close()


def _first_start() -> media_pb2.CallStart:
    return media_pb2.CallStart(call=CALL, call_secret=SECRET)


async def _continue_on(replicas: Replicas, first: EdgeCall) -> EdgeCall:
    sent = first.played[-1].position
    assert sent.response_id == 1
    assert sent.offset_us == len(first.audio()) * 125  # the position is where the audio sent ends
    second = EdgeCall(
        replicas.media[1].target,
        media_pb2.CallStart(call=CALL, call_secret=SECRET, reattach=media_pb2.CallReattach(sent=sent)),
    )
    await second.begin()
    await second.read_until(len(GREETING) - len(first.audio()))
    return second


@pytest.mark.parametrize("how", ["media_killed", "edge_stream_lost"])
async def test_the_call_continues_on_another_media_exactly_where_it_stopped(
    replicas: Replicas, how: str
) -> None:
    agent = replicas.agent
    first = EdgeCall(replicas.media[0].target, _first_start())
    await first.begin()
    await first.read_until(4000)  # half a second of the greeting has reached the "caller"
    if how == "media_killed":
        replicas.media[0].proc.proc.kill()  # SIGKILL: no goodbye to anyone
    else:
        await first.aclose()  # the edge's stream to media 1 breaks: media 1 detaches
    await eventually(lambda: agent.metric("agent_conversations_held") == 1, 20, "the agent holds the call")
    second = await _continue_on(replicas, first)
    with contextlib.suppress(Exception):
        await first.aclose()
    heard = first.audio() + second.audio()
    assert heard[: len(GREETING)] == GREETING  # nothing twice, nothing skipped
    assert second.played[0].position.offset_us == (len(first.audio()) + len(second.played[0].payload)) * 125
    assert agent.metric("agent_conversations_held") == 0
    assert agent.metric("agent_attach_total", 'outcome="attached"') == 1
    assert replicas.media[1].metric("media_reattach_total", 'outcome="attached"') == 1
    await second.hang_up()
    await eventually(lambda: agent.metric("agent_sessions_active") == 0, 20, "the agent ended the session")
    assert agent.metric("agent_conversations_held") == 0
