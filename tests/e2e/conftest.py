"""Stacks of real service processes for the end-to-end tests (one per agent backend, per session).

Every test here starts or uses service processes, so each carries the `e2e` marker (a quick
development run: `scripts/test -m "not e2e"`). A shared stack is handed to a test only idle, and
taken back only once every service has ended every call the test made: a test that leaves a call
behind fails itself (naming the service that still holds it), not whichever test comes next.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from harness.secured_edge import ACCOUNT_SID, AUTH_TOKEN
from harness.stack import Stack, start_stack

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator
from voicebridge.sim.twilio_rest_fake import TwilioRestFake

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


async def _lend(stack: Stack) -> AsyncIterator[Stack]:
    if not stack.idle():  # the test before left a call up (and failed for it): start afresh
        await asyncio.to_thread(stack.restart)
    yield stack
    await stack.wait_idle("every service to end the calls this test made")


@pytest.fixture(scope="session")
def parrot_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("parrot-stack"), {"AGENT_BACKEND": "parrot"})
    yield stack
    stack.stop()


@pytest.fixture
async def parrot_stack(parrot_processes: Stack) -> AsyncIterator[Stack]:
    """The stack with the `parrot` backend, idle when the test starts and when it ends."""
    async for stack in _lend(parrot_processes):
        yield stack


@pytest.fixture(scope="module")
def twilio_accounts() -> dict[str, str]:
    """Account sid -> auth token the fake Twilio REST API accepts: the secured edge's
    (harness/secured_edge.py). A module whose stack uses other credentials overrides this fixture."""
    return {ACCOUNT_SID: AUTH_TOKEN}


@pytest.fixture(scope="module")
async def fake(twilio_accounts: dict[str, str]) -> AsyncIterator[TwilioRestFake]:
    """Twilio's REST API, played by the fake on loopback: one per test module, so a module reads only
    the requests its own stack made."""
    async with TwilioRestFake(twilio_accounts) as server:
        yield server


@pytest.fixture(scope="session")
async def convai_emulator() -> AsyncIterator[ConvAIEmulator]:
    """The ElevenLabs stand-in, on the tests' event loop (scenarios are plain coroutines)."""
    emulator = ConvAIEmulator(host="127.0.0.1", port=0)
    emulator.add_agent("default", AgentScript(input_format="ulaw_8000", output_format="ulaw_8000"))
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture(scope="session")
def elevenlabs_processes(
    tmp_path_factory: pytest.TempPathFactory, convai_emulator: ConvAIEmulator
) -> Iterator[Stack]:
    """The stack with the real `elevenlabs` backend, pointed at the emulator; tests pick an agent per
    call with the `agent_id` stream parameter (allowed here explicitly; it is off by default)."""
    stack = start_stack(
        tmp_path_factory.mktemp("elevenlabs-stack"),
        {
            "AGENT_BACKEND": "elevenlabs",
            "ELEVENLABS_AGENT_ID": "default",
            "ELEVENLABS_BASE_URL": convai_emulator.base_url,
            "ELEVENLABS_ALLOW_AGENT_OVERRIDE": "true",
        },
    )
    yield stack
    stack.stop()


@pytest.fixture
async def elevenlabs_stack(elevenlabs_processes: Stack) -> AsyncIterator[Stack]:
    """The stack with the real `elevenlabs` backend, pointed at the emulator; tests pick an agent per
    call with the `agent_id` stream parameter. Idle when the test starts and when it ends."""
    async for stack in _lend(elevenlabs_processes):
        yield stack
