"""Fixtures: a fresh ConvAI emulator per test, and a factory of backends pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from voicebridge.agent.backends.elevenlabs import ElevenLabsBackend, ElevenLabsSettings
from voicebridge.sim.convai_emulator import ConvAIEmulator


@pytest.fixture
async def emu() -> AsyncIterator[ConvAIEmulator]:
    emulator = ConvAIEmulator(api_key="xi-secret-key-0123456789")
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def make_backend(emu: ConvAIEmulator) -> AsyncIterator[Callable[..., ElevenLabsBackend]]:
    backends: list[ElevenLabsBackend] = []

    def factory(agent_id: str = "agent_x", **overrides: Any) -> ElevenLabsBackend:
        settings = ElevenLabsSettings(agent_id=agent_id, base_url=emu.base_url, **overrides)
        backend = ElevenLabsBackend(settings)
        backends.append(backend)
        return backend

    yield factory
    for backend in backends:
        await backend.aclose()
