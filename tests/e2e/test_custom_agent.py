"""The agent service is replaceable: media (a real process) talks to an agent written only against the
generated stubs of agent.proto, with none of voicebridge's agent code (docs/agent-backend.md).

`ToneAgent` below is the guide's example, verbatim (a test checks it): it takes caller audio as PCM
16 kHz (so media must resample the caller's μ-law for it), greets with a 440 Hz tone, answers the end of
the caller's speech with a 660 Hz tone, then hangs up.
"""

from __future__ import annotations

import ast
import inspect
import math
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from harness.audio import active_region, dominant_frequency, pcm16_to_float, tone_ulaw, ulaw_to_float
from harness.polling import eventually
from harness.stack import Stack, start_stack

from voicebridge.sim.twilio_caller import RATE, CallerConfig, TwilioCaller
from voicebridge.v1 import agent_pb2, agent_pb2_grpc, common_pb2

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "agent-backend.md"
PCM16K = common_pb2.AudioFormat(encoding=common_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16000)


class ToneAgent(agent_pb2_grpc.AgentServiceServicer):
    """Greets with a tone, answers the caller's speech with another, then hangs up."""

    def __init__(self) -> None:
        self.received = bytearray()  # caller audio, in the format this agent chose
        self.formats: list[common_pb2.AudioFormat] = []

    def tone(self, hz: float, seconds: float) -> bytes:  # stands in for a TTS
        n = int(16000 * seconds)
        return struct.pack(f"<{n}h", *(int(9830 * math.sin(2 * math.pi * hz * i / 16000)) for i in range(n)))

    def say(self, response_id: int, audio: bytes) -> agent_pb2.ConverseResponse:
        chunk = agent_pb2.AudioChunk(data=audio, format=PCM16K, response_id=response_id)
        return agent_pb2.ConverseResponse(audio=chunk)

    async def Converse(
        self, requests: AsyncIterator[agent_pb2.ConverseRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.ConverseResponse]:
        start = (await anext(requests)).start  # 1. media's first message: the call and its formats
        if PCM16K not in start.input_formats or PCM16K not in start.output_formats:
            yield agent_pb2.ConverseResponse(
                error=common_pb2.Error(code=common_pb2.ERROR_CODE_FAILED_PRECONDITION, fatal=True)
            )
            yield agent_pb2.ConverseResponse(
                end=common_pb2.CallEnd(reason=common_pb2.END_REASON_UNSUPPORTED_FORMAT)
            )
            return
        ready = agent_pb2.SessionReady(input_format=PCM16K, output_format=PCM16K, conversation_id="tone-1")
        yield agent_pb2.ConverseResponse(ready=ready)  # 2. the formats chosen, before any audio
        yield self.say(1, self.tone(440, 1.0))  # 3. audio as fast as produced: media paces it
        reason = common_pb2.END_REASON_CALLER_HANGUP
        async for request in requests:
            kind = request.WhichOneof("event")
            if kind == "audio":
                self.formats.append(request.audio.format)
                self.received += request.audio.data
            elif kind == "activity" and request.activity.kind == agent_pb2.VoiceActivity.KIND_SPEECH_ENDED:
                yield self.say(2, self.tone(660, 1.0))
                yield agent_pb2.ConverseResponse(hangup=common_pb2.HangUp(reason="said my piece"))
            elif kind == "end":  # 4. the call is over: end our side too, then return (half-close)
                reason = request.end.reason
                break
        yield agent_pb2.ConverseResponse(end=common_pb2.CallEnd(reason=reason))


@pytest.fixture(scope="module")
async def tone_agent() -> AsyncIterator[tuple[ToneAgent, str]]:
    agent = ToneAgent()
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(agent, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield agent, f"127.0.0.1:{port}"
    await server.stop(grace=1)


@pytest.fixture(scope="module")
def custom_stack(
    tmp_path_factory: pytest.TempPathFactory, tone_agent: tuple[ToneAgent, str]
) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("custom-agent-stack"), {}, agent_target=tone_agent[1])
    yield stack
    stack.stop()


def test_the_custom_agent_uses_only_the_stubs_and_is_the_guides_example() -> None:
    source = inspect.getsource(ToneAgent)
    assert len(source.splitlines()) <= 80
    modules = set()
    for node in ast.walk(ast.parse(Path(__file__).read_text())):
        if isinstance(node, ast.ImportFrom):
            modules.add(node.module or "")
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    assert not any(m.startswith("voicebridge.agent") for m in modules)
    guide = GUIDE.read_text()
    assert source in guide
    example = guide.split("```python\n", 1)[1].split("```", 1)[0]
    compile(example, "docs/agent-backend.md", "exec")  # the guide's example is whole, imports included


async def test_media_talks_to_an_agent_written_against_the_stubs_alone(
    custom_stack: Stack, tone_agent: tuple[ToneAgent, str]
) -> None:
    agent, _target = tone_agent
    assert custom_stack.agent is None  # no voicebridge agent process in this stack
    ended = custom_stack.metric("edge", "edge_call_ends_total", 'reason="agent_ended"')
    async with TwilioCaller(CallerConfig(url=custom_stack.media_ws_url)) as call:
        await call.wait_heard(1.0, timeout=10)
        await call.speak(tone_ulaw(1000.0, 1.0))
        await call.wait_closed(timeout=15)  # the agent's HangUp, after its answer was heard
        heard = call.heard_ulaw
        assert call.closed_by == "server"
        assert call.violations == []

    # The agent got the caller's audio in the format it chose: PCM 16 kHz, 1 kHz, one second.
    assert agent.formats
    assert all(f == PCM16K for f in agent.formats)
    x = pcm16_to_float(bytes(agent.received))
    a, b = active_region(x, 16000)
    assert abs(dominant_frequency(x[a:b], 16000) - 1000.0) <= 10
    assert abs((b - a) / 16000 - 1.0) <= 0.02
    # The caller heard the greeting (440 Hz), then the answer (660 Hz), each a second long.
    turns = call.turns()
    assert len(turns) == 2
    y = ulaw_to_float(heard)
    spans = call.heard_spans()
    for (start_s, end_s), hz in zip(turns, (440.0, 660.0), strict=True):
        lo, hi = int(start_s * RATE), int(end_s * RATE)
        # Time spent playing, so a playout stall on a loaded machine does not lengthen the tone.
        played = sum(min(b, hi) - max(a, lo) for a, b in spans if a < hi and b > lo) / RATE
        assert abs(played - 1.0) <= 0.03
        assert abs(dominant_frequency(y[lo:hi], RATE) - hz) <= 5
    await eventually(
        lambda: custom_stack.metric("edge", "edge_call_ends_total", 'reason="agent_ended"') == ended + 1,
        5,
        "the edge to record the agent's hang-up",
    )
