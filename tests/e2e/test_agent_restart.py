"""The agent process dies (SIGKILL) mid-call, and the call goes on on another agent replica (issue 15).

Two agent processes behind one AGENT_TARGET (`ipv4:` with both addresses: media's replica pool,
runtime/replicas.py, places each agent session on a serving replica and moves a new session off one
that has vanished, as a headless Service's client would). The test kills whichever agent carries the
call. Media keeps the call's transcript and what reached the caller; when its stream to the agent
fails it opens a new session with SessionStart.resume, which the other agent opens as an ElevenLabs
conversation continuing the call (docs/failover.md). The emulator's DropsMidCall scenario (with no
error close of its own) records the context the new conversation receives. The caller hears the
greeting once, half a reply, then the new conversation's answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.audio import tone_ulaw
from harness.processes import BIN, ServiceProcess, free_port, grpc_ready
from harness.resumed_call import VOICE, answered_then_hang_up, assert_heard_once_each, hear
from harness.stack import Stack, scrape_metric, start_stack

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator, DropsMidCall
from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller

AGENT_ID = "restart"
GREETING = tone_ulaw(440.0, 0.5)
REPLY = tone_ulaw(660.0, 1.0)
CONTINUED = tone_ulaw(550.0, 0.4)


def _agent(workdir: Path, name: str, emulator: ConvAIEmulator) -> tuple[ServiceProcess, int, int]:
    port, metrics = free_port(), free_port()
    env = {
        "LOG_LEVEL": "INFO",
        "AGENT_LISTEN": f"127.0.0.1:{port}",
        "AGENT_METRICS_PORT": str(metrics),
        "AGENT_BACKEND": "elevenlabs",
        "ELEVENLABS_AGENT_ID": AGENT_ID,
        "ELEVENLABS_BASE_URL": emulator.base_url,
    }
    proc = ServiceProcess(name, [str(BIN / "voicebridge-agent")], env, workdir / f"{name}.log")
    proc.start()
    proc.wait_until(grpc_ready(f"127.0.0.1:{port}"))
    return proc, port, metrics


@pytest.fixture
def two_agents(
    tmp_path: Path, convai_emulator: ConvAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Stack, list[tuple[ServiceProcess, int]]]]:
    first, first_port, first_metrics = _agent(tmp_path, "agent-a", convai_emulator)
    second, second_port, second_metrics = _agent(tmp_path, "agent-b", convai_emulator)
    # A target of two addresses is not a host:port the loopback rule can read; it is all loopback.
    monkeypatch.setenv("GRPC_INSECURE", "true")
    stack = start_stack(tmp_path, {}, agent_target=f"ipv4:127.0.0.1:{first_port},127.0.0.1:{second_port}")
    try:
        yield stack, [(first, first_metrics), (second, second_metrics)]
    finally:
        stack.stop()
        first.stop()
        second.stop()


async def test_an_agent_killed_mid_call_is_replaced_and_the_call_goes_on(
    two_agents: tuple[Stack, list[tuple[ServiceProcess, int]]], convai_emulator: ConvAIEmulator
) -> None:
    stack, agents = two_agents
    agent = DropsMidCall(greeting=GREETING, reply=REPLY, continued=CONTINUED, code=None)
    convai_emulator.add_agent(AGENT_ID, AgentScript("ulaw_8000", "ulaw_8000", scenario=agent))
    half = REPLY[: len(REPLY) // 2]
    async with TwilioCaller(CallerConfig(url=stack.media_ws_url)) as call:
        await hear(call, len(GREETING))
        await call.speak(VOICE)  # answered by half a reply
        await hear(call, len(GREETING) + len(half), quiet_s=0.3)
        [(carrier, _)] = [a for a in agents if "session ready" in a[0].log()]
        [(_, other_metrics)] = [a for a in agents if a[0] is not carrier]
        assert carrier.proc is not None
        carrier.proc.kill()  # SIGKILL: no goodbye to media, none to ElevenLabs
        await asyncio.wait_for(agent.context_arrived.wait(), 15)
        await answered_then_hang_up(call, len(GREETING) + len(half) + len(CONTINUED))

    assert_heard_once_each(call, GREETING, half, CONTINUED)  # not greeted again, nothing twice
    context = agent.contexts[0]
    assert context.resumed
    update = context.contextual_updates[0]
    assert f"Caller: {agent.caller_text}" in update  # the transcript reached the new conversation
    assert f"You: {agent.greeting_text}" in update
    heard = agent.heard_reply_text("ulaw_8000").strip()
    assert f"You: {heard}" in update  # the reply as far as its audio reached media, not all of it
    assert agent.reply_text not in update
    url = f"http://127.0.0.1:{other_metrics}/metrics"
    assert scrape_metric(url, "agent_elevenlabs_resumes_total", 'outcome="continued"') == 1
