"""The mux tests' shared fixture: the echoing AgentService on loopback and a client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from harness.mux_echo import EchoAgent, client_for, start

from voicebridge.runtime.mux import MuxClient


@pytest.fixture
async def echo() -> AsyncIterator[tuple[EchoAgent, MuxClient]]:
    agent = EchoAgent()
    server, port = await start(agent)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    client = client_for(channel)
    yield agent, client
    await client.aclose()
    await channel.close()
    await server.stop(None)
