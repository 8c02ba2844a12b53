"""Every end path, end to end and production-configured: real edge, media and agent processes, the
`elevenlabs` backend fetching a signed URL per call from the ConvAI emulator, multiplexed streams,
hang-ups and transfers on the fake Twilio REST API (which closes the stream's socket as Twilio does).

Each path is repeated on the same processes; after every call each service's active gauge is back to
0 and the emulator holds no open conversation. The calls themselves are the benchmark's
(`voicebridge-endpaths`, sim/endpaths.py), so what is measured there is what is proven here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from harness.polling import eventually
from harness.stack import Stack, start_stack

from voicebridge.sim.convai_emulator import ConvAIEmulator
from voicebridge.sim.endpaths import (
    ACCOUNT_SID,
    AGENT_ID,
    API_KEY,
    AUTH_TOKEN,
    CONVERSATIONS,
    GAUGES,
    PATHS,
    EndPaths,
    agent_script,
    service_env,
)
from voicebridge.sim.twilio_rest_fake import TwilioRestFake

pytestmark = pytest.mark.e2e
REPEATS = 3


@pytest.fixture(scope="module")
async def emulator() -> AsyncIterator[ConvAIEmulator]:
    async with ConvAIEmulator(host="127.0.0.1", port=0, api_key=API_KEY) as server:
        server.add_agent(AGENT_ID, agent_script())
        yield server


@pytest.fixture(scope="module")
def twilio_accounts() -> dict[str, str]:
    """The fake Twilio REST API (conftest's `fake`) knows the end-path stack's own account."""
    return {ACCOUNT_SID: AUTH_TOKEN}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, emulator: ConvAIEmulator, fake: TwilioRestFake
) -> Iterator[Stack]:
    env = service_env(fake.base_url)
    agent_env = {**env["agent"], "ELEVENLABS_BASE_URL": emulator.base_url}
    started = start_stack(tmp_path_factory.mktemp("endpaths-stack"), agent_env, env["edge"])
    yield started
    started.stop()


def _idle(stack: Stack) -> bool:
    return all(stack.metric(service, name) == 0 for service, name in GAUGES.items())


@pytest.mark.parametrize("path", PATHS)
async def test_each_end_path_leaves_nothing_open_in_any_service(
    stack: Stack, emulator: ConvAIEmulator, fake: TwilioRestFake, path: str
) -> None:
    calls = EndPaths(stack.media_ws_url, {s: stack.metrics_url(s) for s in GAUGES}, emulator, fake)
    try:
        for _ in range(REPEATS):
            first = len(emulator.sessions)
            assert await calls.one_call(path) is None
            for conversation in emulator.sessions[first:]:
                await conversation.wait_closed(timeout=15)  # failure detector; an event ends it
            await eventually(lambda: _idle(stack), 15, f"every active gauge back to 0 after {path}")
            assert emulator.open_conversations == 0
            assert len(emulator.sessions) == first + CONVERSATIONS.get(path, 1)
    finally:
        await calls.aclose()
    assert len(emulator.signed_url_requests) >= REPEATS  # each call fetched a signed URL
