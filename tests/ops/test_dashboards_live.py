"""Every dashboard panel returns data from a real Prometheus scraping a real stack during real calls.

The Debian `prometheus` binary scrapes edge, media and agent (elevenlabs backend against the ConvAI
emulator) every second while simulated Twilio callers talk, get answered, barge in, echo marks and hang
up. Then every panel query, with Grafana's variables substituted, goes through Prometheus's HTTP API
and must return at least one finite sample.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from harness.audio import espeak_ulaw
from harness.processes import free_port
from harness.stack import Stack, start_stack

from voicebridge.sim.convai_emulator import (
    AgentScript,
    ConvAIEmulator,
    EmulatedSession,
    Utterances,
    default_scenario,
    tone,
)
from voicebridge.sim.twilio_caller import CallerConfig, TwilioCaller

from .test_dashboards import dashboards, queries, substitute

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None,
        reason="the prometheus binary is missing (scripts/test installs it: apt-get install prometheus)",
    ),
]

SCRAPE_S = 1
CALLS = 3


def _prometheus_config(stack: Stack) -> str:
    jobs = {
        "edge": (f"127.0.0.1:{stack.metrics_ports['edge']}", "/metrics"),
        "media": (f"127.0.0.1:{stack.metrics_ports['media']}", "/metrics"),
        "agent": (f"127.0.0.1:{stack.metrics_ports['agent']}", "/metrics"),
    }
    return json.dumps(  # JSON is YAML
        {
            "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
            "scrape_configs": [
                {"job_name": job, "metrics_path": path, "static_configs": [{"targets": [target]}]}
                for job, (target, path) in jobs.items()
            ],
        }
    )


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - loopback
        return json.loads(reply.read())


def _scraped_twice(base: str) -> bool:
    query = urllib.parse.urlencode({"query": "count_over_time(up[1m]) >= 2"})
    try:
        result = _get(f"{base}/api/v1/query?{query}")["data"]["result"]
    except OSError:
        return False
    return {s["metric"]["job"] for s in result} == {"edge", "media", "agent"}


async def _echo_with_transcripts(session: EmulatedSession) -> None:
    """A continuing conversation: ElevenLabs transcribes each caller turn before it answers (the agent
    drops a continued conversation's greeting until that transcript), then the echo answers."""
    utterances = Utterances(session)
    while not session.closed:
        utterance = await utterances.next()
        await session.send_event(
            {"type": "user_transcript", "user_transcription_event": {"user_transcript": "(the caller)"}}
        )
        event_id = session.next_event_id()
        await session.send_event(
            {
                "type": "agent_response",
                "agent_response_event": {"agent_response": "(echo)", "event_id": event_id},
            }
        )
        await session.send_audio(utterance, event_id=event_id)  # μ-law in, μ-law out


@pytest.fixture(scope="module")
async def emulator() -> AsyncIterator[ConvAIEmulator]:
    """Greets, echoes each utterance, and pings every second so ping RTT has samples in a short test.
    The very first conversation closes with 1011 after its greeting, so one call is resumed in a new
    conversation and the resume panels have data too."""
    drops_left = [1]

    async def scenario(session: EmulatedSession) -> None:
        if drops_left[0] and not session.context.resumed:
            drops_left[0] -= 1
            fmt = session.script.output_format
            await session.send_event(
                {"type": "agent_response", "agent_response_event": {"agent_response": "(beep)"}}
            )
            await session.send_audio(tone(fmt, 880, 300))
            await session.fail(1011, "unknown_websocket_crash", "Internal server error")
            return
        if session.context.resumed:
            await _echo_with_transcripts(session)
        else:
            await default_scenario(session, ping_every_s=1.0)

    emu = ConvAIEmulator(host="127.0.0.1", port=0)
    emu.add_agent(
        "default", AgentScript(input_format="ulaw_8000", output_format="ulaw_8000", scenario=scenario)
    )
    await emu.start()
    yield emu
    await emu.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, emulator: ConvAIEmulator) -> Iterator[Stack]:
    s = start_stack(
        tmp_path_factory.mktemp("dash-stack"),
        {
            "AGENT_BACKEND": "elevenlabs",
            "ELEVENLABS_AGENT_ID": "default",
            "ELEVENLABS_BASE_URL": emulator.base_url,
        },
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[str]:
    workdir: Path = tmp_path_factory.mktemp("prometheus")
    (workdir / "prometheus.yml").write_text(_prometheus_config(stack))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # Ready means every service has been scraped at least twice: a counter's first increase must
        # fall between two scrapes for rate() to see it.
        deadline = time.monotonic() + 20
        while not _scraped_twice(base):
            assert proc.poll() is None, (workdir / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "prometheus did not scrape the three services in 20 s"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def _one_call(stack: Stack, speech: bytes) -> dict:
    """Greeting, a turn, a barge-in over the agent's reply, marks throughout, then the caller hangs up."""
    async with TwilioCaller(CallerConfig(url=stack.media_ws_url)) as call:
        await call.wait_agent_quiet(0.3, timeout=10)
        await call.speak(speech)
        await call.wait_heard(call.samples_heard() / 8000 + 0.3, timeout=10)  # the reply is playing
        await call.speak(speech)  # the caller talks over it: barge-in, clear
        await call.wait_for_event("clear", timeout=10)
        await call.wait_agent_quiet(0.5, timeout=15)
        return call.summary()


async def _query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    reply = await asyncio.to_thread(_get, url)
    assert reply["status"] == "success", reply
    return reply["data"]["result"]


def _has_finite(result: list[dict]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


async def test_every_panel_query_returns_data_after_calls(stack: Stack, prometheus: str):
    speech = espeak_ulaw("Hello, I would like to check the status of my order please.")
    summaries = await asyncio.gather(*(_one_call(stack, speech) for _ in range(CALLS)))
    assert all(s["clears_received"] >= 1 for s in summaries), summaries
    assert all(s["marks_echoed"] >= 1 for s in summaries), summaries

    pending = {
        (name, panel["title"], expr): substitute(expr, job=".*", rate_interval="1m")
        for name, d in dashboards().items()
        for panel, expr in queries(d)
    }
    # Scrapes land every second: poll until each query has data, with a deadline (not a sleep).
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        for key, expr in list(pending.items()):
            if _has_finite(await _query(prometheus, expr)):
                del pending[key]
        if pending:
            await asyncio.sleep(SCRAPE_S)
    missing = "\n".join(f"{name} / {title}: {expr}" for name, title, expr in pending)
    assert not pending, f"panel queries with no data after the calls:\n{missing}\n{stack.logs()[-4000:]}"


async def test_job_variable_values_resolve_to_the_three_services(prometheus: str):
    """The dashboards' `job` variable is label_values(up{job=~...}, job): all three must be up."""
    deadline = time.monotonic() + 10
    while True:
        up = {s["metric"]["job"]: s["value"][1] for s in await _query(prometheus, "up")}
        if up == {"edge": "1", "media": "1", "agent": "1"} or time.monotonic() > deadline:
            break
        await asyncio.sleep(SCRAPE_S)
    assert up == {"edge": "1", "media": "1", "agent": "1"}
