"""Stacks of real service processes for the end-to-end tests (one per agent backend, per session)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from harness.stack import Stack, start_stack

from voicebridge.sim.convai_emulator import AgentScript, ConvAIEmulator


@pytest.fixture(scope="session")
def parrot_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("parrot-stack"), {"AGENT_BACKEND": "parrot"})
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
async def convai_emulator() -> AsyncIterator[ConvAIEmulator]:
    """The ElevenLabs stand-in, on the tests' event loop (scenarios are plain coroutines)."""
    emulator = ConvAIEmulator(host="127.0.0.1", port=0)
    emulator.add_agent("default", AgentScript(input_format="ulaw_8000", output_format="ulaw_8000"))
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture(scope="session")
def elevenlabs_stack(
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
